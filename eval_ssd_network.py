"""Evaluates SSD detections on Pascal VOC with the official devkit's metric (VOC2007 11-point and VOC2010+ AP).

Scoring mode scores VOC results files (the project's or anyone's) against ground truth from the
project's TFRecords or from a VOC folder:

    python eval_ssd_network.py --detections_path=results/ --voc_dir=VOCdevkit/VOC2007 \\
        --dataset_split_name=test --eval_dir=eval/ --output_json=eval/metrics.json
    python eval_ssd_network.py --detections_path=results/ --dataset_dir=tfrecords/ \\
        --dataset_name=pascalvoc_2007 --dataset_split_name=test --eval_dir=eval/

Results files: `<detections_path>/comp4_det_<split>_<class>.txt`, one `<image_id> <score> <xmin> <ymin>
<xmax> <ymax>` a line, 1-based pixels. Prints the per-class table; writes `--output_json`, and into
`--eval_dir` a precision-recall plot per class, a summary chart and TensorBoard scalars.
Model mode (`--checkpoint_path`) runs a network over the split and is not available yet.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter; set before it is imported

from common.errors import ConfigError, run_main  # noqa: E402
from datasets.voc_classes import VOC_CLASSES  # noqa: E402


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit status 1, like every other bad input
        raise ConfigError(None, message)


def build_parser():
    p = _ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--detections_path",
                   help="scoring mode: directory of VOC results files comp4_det_<split>_<class>.txt")
    p.add_argument("--checkpoint_path",
                   help="model mode: a checkpoint, or a directory (its latest) [not available yet]")
    p.add_argument("--dataset_dir", help="directory of the converted TFRecords and their metadata (ground truth "
                                         "from records)")
    p.add_argument("--dataset_name", default="pascalvoc_2007",
                   help="dataset name of datasets/dataset_factory.py, e.g. pascalvoc_2007 or voc_custom "
                        "(default %(default)s)")
    p.add_argument("--dataset_split_name", help="split, e.g. test: the records' split, ImageSets/Main/<split>.txt "
                                                "and the <split> of the results file names")
    p.add_argument("--voc_dir", help="a VOC folder (e.g. VOCdevkit/VOC2007): ground truth from its Annotations/; "
                                     "without --dataset_split_name every annotation is used")
    p.add_argument("--labels_file", help="class names, one a line (label i = line i); default: the 20 VOC classes "
                                         "with --voc_dir, the records' metadata (checked against it) otherwise")
    p.add_argument("--eval_dir", help="directory for the PR plots, the summary chart and TensorBoard scalars")
    p.add_argument("--output_json", help="write {num_images, mAP_VOC07, mAP_VOC12, AP_VOC07, AP_VOC12} here")
    p.add_argument("--matching_threshold", type=float, default=0.5,
                   help="IoU a detection needs with a ground-truth box, >= (the devkit's 0.5 by default)")
    p.add_argument("--global_step", type=int, default=None, help="step of the TensorBoard scalars (scoring mode)")
    return p


def load_ground_truth(args):
    """GroundTruth and the results split name (None: to be read off the results files) from the flags."""
    from datasets.voc_to_tfrecords import read_labels_file  # imports TensorFlow, as dataset_factory
    from evaluation import ground_truth

    if args.voc_dir:
        class_names = read_labels_file(args.labels_file) if args.labels_file else VOC_CLASSES
        gt = ground_truth.ground_truth_from_voc(args.voc_dir, class_names, args.dataset_split_name)
        return gt, args.dataset_split_name
    if not args.dataset_split_name:
        raise ConfigError(None, "--dataset_split_name is required with --dataset_dir")
    from datasets import dataset_factory

    try:
        dataset = dataset_factory.get_dataset(args.dataset_name, args.dataset_split_name, args.dataset_dir,
                                              labels_file=args.labels_file)
    except ValueError as err:  # an unknown dataset name
        raise ConfigError(None, str(err)) from None
    return ground_truth.ground_truth_from_records(list(dataset.files), dataset.class_names), args.dataset_split_name


def scoring_mode(args):
    from evaluation import report, voc_metric, voc_results

    gt, split = load_ground_truth(args)
    if split is None:
        split = voc_results.infer_split(args.detections_path, gt.class_names)
    detections, notes = voc_results.read_results(args.detections_path, split, gt.class_names)
    for note in gt.notes + tuple(notes):
        print(f"note: {note}", file=sys.stderr)
    evaluation = voc_metric.evaluate_detections(gt, detections, iou_threshold=args.matching_threshold)
    report.report_evaluation(evaluation, eval_dir=args.eval_dir, output_json=args.output_json,
                             global_step=args.global_step)
    return 0


def model_mode(args):
    """Runs the network over the split, writes the results files, then reports like scoring mode."""
    raise ConfigError(None, "model mode (--checkpoint_path) is not available yet; "
                            "score VOC results files with --detections_path")


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if bool(args.detections_path) == bool(args.checkpoint_path):
        raise ConfigError(None, "give exactly one of --detections_path (scoring mode) and --checkpoint_path "
                                "(model mode)")
    if not 0.0 < args.matching_threshold <= 1.0:
        raise ConfigError(None, f"--matching_threshold must be in (0, 1], got {args.matching_threshold}")
    if args.detections_path:
        if bool(args.voc_dir) == bool(args.dataset_dir):
            raise ConfigError(None, "scoring mode needs ground truth from exactly one of --voc_dir and --dataset_dir")
        return scoring_mode(args)
    return model_mode(args)


if __name__ == "__main__":
    run_main(main)
