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
import glob
import json
import os
import re
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter; set before it is imported

from common.errors import ConfigError, DatasetError, run_main  # noqa: E402
from datasets.voc_classes import VOC_CLASSES  # noqa: E402


class _ArgumentParser(argparse.ArgumentParser):
    def error(self, message):  # one line and exit status 1, like every other bad input
        raise ConfigError(None, message)


def build_parser():
    p = _ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                        epilog=__doc__.split("\n", 1)[1])
    p.add_argument("--detections_path", help="scoring mode: directory of VOC results files comp4_det_<split>_<class>.txt")
    p.add_argument("--checkpoint_path", help="model mode: a checkpoint, or a directory (its latest) [not available yet]")
    p.add_argument("--dataset_dir", help="directory of the converted TFRecord shards (ground truth from records)")
    p.add_argument("--dataset_name", default="pascalvoc_2007", help="dataset name (default %(default)s)")
    p.add_argument("--dataset_split_name", help="split, e.g. test: the records' split, ImageSets/Main/<split>.txt "
                                                "and the <split> of the results file names")
    p.add_argument("--voc_dir", help="a VOC folder (e.g. VOCdevkit/VOC2007): ground truth from its Annotations/; "
                                     "without --dataset_split_name every annotation is used")
    p.add_argument("--labels_file", help="class names, one a line (label i = line i); default: the records' "
                                         "metadata, or the 20 VOC classes with --voc_dir")
    p.add_argument("--eval_dir", help="directory for the PR plots, the summary chart and TensorBoard scalars")
    p.add_argument("--output_json", help="write {num_images, mAP_VOC07, mAP_VOC12, AP_VOC07, AP_VOC12} here")
    p.add_argument("--matching_threshold", type=float, default=0.5,
                   help="IoU a detection needs with a ground-truth box, >= (the devkit's 0.5 by default)")
    p.add_argument("--global_step", type=int, default=None, help="step of the TensorBoard scalars (scoring mode)")
    return p


def read_labels_file(path):
    """Class names, one a non-blank line, in label order (label 1 = first line)."""
    try:
        with open(path) as f:
            names = [line.strip() for line in f if line.strip()]
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(path, f"cannot read labels file ({getattr(err, 'strerror', None) or err})") from None
    if not names:
        raise ConfigError(path, "labels file lists no class")
    if len(set(names)) != len(names):
        raise ConfigError(path, "labels file lists a class twice")
    return names


def records_source(dataset_dir, dataset_name, split_name):
    """(shard files, class names or None) of a converted split in `dataset_dir`.

    A stand-in for datasets/dataset_factory, to be replaced by it: shards are `<prefix>_<NNN>.tfrecord`
    whose prefix is the split name or ends with `_<split>` (e.g. voc_2007_test_000.tfrecord); the class
    names come from a JSON metadata file beside them (`<prefix>.json`, `<prefix>_metadata.json` or
    `metadata.json`) holding "class_names" (a leading "background" is dropped).
    """
    del dataset_name  # the factory will map it to its file pattern; one split per directory here
    if not os.path.isdir(dataset_dir):
        raise DatasetError(dataset_dir, "dataset directory does not exist")
    shard = re.compile(rf"^((?:.*_)?{re.escape(split_name)})_\d+\.tfrecord$")
    groups = {}
    for path in sorted(glob.glob(os.path.join(dataset_dir, "*.tfrecord"))):
        m = shard.match(os.path.basename(path))
        if m:
            groups.setdefault(m.group(1), []).append(path)
    if not groups:
        raise DatasetError(dataset_dir, f"no TFRecord shards of split {split_name!r} (*_{split_name}_NNN.tfrecord)")
    if len(groups) > 1:
        raise DatasetError(dataset_dir, f"several record sets of split {split_name!r}: {', '.join(sorted(groups))}")
    prefix, files = next(iter(groups.items()))
    for name in (f"{prefix}.json", f"{prefix}_metadata.json", "metadata.json"):
        path = os.path.join(dataset_dir, name)
        if os.path.isfile(path):
            try:
                with open(path) as f:
                    names = json.load(f).get("class_names")
            except (OSError, ValueError, AttributeError) as err:
                raise DatasetError(path, f"unreadable metadata ({err})") from None
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise DatasetError(path, "metadata has no \"class_names\" list")
            return files, names[1:] if names[:1] == ["background"] else names
    return files, None


def load_ground_truth(args):
    """GroundTruth and the results split name from the flags (records or VOC folder)."""
    from evaluation import ground_truth

    class_names = read_labels_file(args.labels_file) if args.labels_file else None
    if args.voc_dir:
        gt = ground_truth.ground_truth_from_voc(args.voc_dir, class_names or list(VOC_CLASSES),
                                                args.dataset_split_name)
        return gt, args.dataset_split_name
    if not args.dataset_split_name:
        raise ConfigError(None, "--dataset_split_name is required with --dataset_dir")
    files, metadata_names = records_source(args.dataset_dir, args.dataset_name, args.dataset_split_name)
    class_names = class_names or metadata_names
    if class_names is None:
        raise ConfigError(args.dataset_dir, "no class names: no metadata JSON beside the records; give --labels_file")
    return ground_truth.ground_truth_from_records(files, class_names), args.dataset_split_name


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
