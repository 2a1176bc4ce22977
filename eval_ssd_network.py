"""Evaluates SSD detections on Pascal VOC with the official devkit's metric (VOC2007 11-point and VOC2010+ AP).

Model mode runs a checkpoint over a converted split, writes the VOC results files and scores them:

    python eval_ssd_network.py --checkpoint_path=checkpoints/ssd_300_vgg --dataset_dir=tfrecords/ \\
        --dataset_name=pascalvoc_2007 --dataset_split_name=test --eval_dir=eval/ --batch_size=32 \\
        --output_json=eval/metrics.json
    python eval_ssd_network.py --checkpoint_path=train/ --wait_for_checkpoints --timeout=3600 ...

`--checkpoint_path` is a checkpoint prefix or a directory (its latest checkpoint); the model is rebuilt
from the ssd_config.json beside it, and its class names must equal the dataset's. Detections are clipped
to the image and mapped back to each image's original size; the results files go to
`<eval_dir>/results/comp4_det_<split>_<class>.txt` and are scored as scoring mode would score them,
against the ground truth of the images evaluated (all of the split, or the first --max_num_batches
batches). `--wait_for_checkpoints` evaluates the newest checkpoint of a training directory each time a
new one appears, until --timeout seconds pass without one (or Ctrl-C); TensorBoard scalars are written
at each checkpoint's global step.

Scoring mode scores VOC results files (the project's or anyone's) against ground truth from the
project's TFRecords or from a VOC folder:

    python eval_ssd_network.py --detections_path=results/ --voc_dir=VOCdevkit/VOC2007 \\
        --dataset_split_name=test --eval_dir=eval/ --output_json=eval/metrics.json
    python eval_ssd_network.py --detections_path=results/ --dataset_dir=tfrecords/ \\
        --dataset_name=pascalvoc_2007 --dataset_split_name=test --eval_dir=eval/

Results files: `<detections_path>/comp4_det_<split>_<class>.txt`, one `<image_id> <score> <xmin> <ymin>
<xmax> <ymax>` a line, 1-based pixels. Both modes print the per-class table; write `--output_json`, and
into `--eval_dir` a precision-recall plot per class, a summary chart and TensorBoard scalars.

COCO AP (`--metric=coco`, COCOeval bbox: the 12 statistics and per-class AP; docs/coco.md):

    python eval_ssd_network.py --metric=coco --checkpoint_path=checkpoints/ssd_300_vgg_coco --dataset_dir=tfrecords/ \
        --dataset_name=coco --dataset_split_name=coco_2017_val --coco_annotations=instances_val2017.json \
        --eval_dir=eval/          # writes eval/detections_coco_2017_val.json, then scores it
    python eval_ssd_network.py --metric=coco --coco_annotations=instances_val2017.json \
        --detections_path=results.json --output_json=metrics.json     # no TensorFlow graph
"""
import os
import sys

from cli import flags
from common.errors import ConfigError, run_main
from datasets.voc_classes import VOC_CLASSES
from evaluation.coco_metric import BACKENDS as COCO_BACKENDS


def build_parser():
    p = flags.script_parser(__doc__)
    p.add_argument("--detections_path",
                   help="scoring mode: directory of VOC results files comp4_det_<split>_<class>.txt (with "
                        "--metric=coco: a COCO results JSON)")
    p.add_argument("--metric", default="voc", choices=["voc", "coco"],
                   help="voc: the devkit's VOC07/VOC12 AP; coco: COCOeval's 12 box statistics (default %(default)s)")
    p.add_argument("--coco_annotations", help="--metric=coco: the ground truth, an instances_<split>.json")
    p.add_argument("--coco_backend", default="auto", choices=COCO_BACKENDS,
                   help="--metric=coco: COCOeval implementation (default %(default)s: faster_coco_eval if installed)")
    p.add_argument("--checkpoint_path",
                   help="model mode: a checkpoint prefix, or a directory (its latest checkpoint)")
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
    m = p.add_argument_group("model mode")
    m.add_argument("--model_name", default=None,
                   help="expected model name (e.g. ssd_300_vgg); default: whatever the checkpoint's ssd_config.json says")
    m.add_argument("--batch_size", type=int, default=32, help="images per batch (default %(default)s)")
    m.add_argument("--max_num_batches", type=int, default=None,
                   help="evaluate only the first N batches (scored against those images' ground truth)")
    m.add_argument("--wait_for_checkpoints", action="store_true",
                   help="--checkpoint_path is a training directory: evaluate its newest checkpoint each time a "
                        "new one appears")
    m.add_argument("--timeout", type=float, default=None,
                   help="with --wait_for_checkpoints: stop after this many seconds without a new checkpoint "
                        "(default: wait until interrupted)")
    m.add_argument("--eval_interval_secs", type=float, default=0,
                   help="with --wait_for_checkpoints: at least this many seconds between evaluations")
    flags.add_post_processing_flags(m)
    m.add_argument("--log_every_n_batches", type=int, default=10,
                   help="a progress line every N batches, 0 for none (default %(default)s)")
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
        raise ConfigError("--dataset_split_name", "is required with --dataset_dir")
    dataset = flags.get_dataset(args.dataset_name, args.dataset_split_name, args.dataset_dir, args.labels_file)
    return ground_truth.ground_truth_from_records(list(dataset.files), dataset.class_names), args.dataset_split_name


def coco_scoring_mode(args):
    """Scores a COCO results JSON against --coco_annotations; TensorFlow is not imported (unless
    --eval_dir asks for TensorBoard scalars)."""
    from evaluation import coco_metric, coco_report

    evaluation = coco_metric.evaluate_coco(args.coco_annotations, args.detections_path, backend=args.coco_backend)
    coco_report.report_coco(evaluation, eval_dir=args.eval_dir, output_json=args.output_json,
                            global_step=args.global_step)
    return 0


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


RESULTS_SUBDIR = "results"


def check_model_flags(args):
    for flag in ("dataset_dir", "dataset_split_name", "eval_dir"):
        if not getattr(args, flag):
            raise ConfigError(None, f"model mode needs --{flag}")
    if args.voc_dir:
        raise ConfigError(None, "model mode reads the split from --dataset_dir; --voc_dir is for scoring mode")
    flags.check_at_least(args, batch_size=1, max_num_batches=1, log_every_n_batches=0, timeout=0)
    flags.check_post_processing(args)
    if not args.wait_for_checkpoints and (args.timeout is not None or args.eval_interval_secs):
        raise ConfigError(None, "--timeout and --eval_interval_secs go with --wait_for_checkpoints")
    if args.wait_for_checkpoints and not os.path.isdir(args.checkpoint_path):
        raise ConfigError(args.checkpoint_path, "--wait_for_checkpoints needs a training directory as "
                                                "--checkpoint_path")


class _CheckpointRunner:
    """The evaluation graph for one model configuration, built once and reused for every checkpoint."""

    def __init__(self, args, dataset):
        self.args = args
        self.dataset = dataset
        self.evaluator = None
        self.config = None
        self.coco_ground_truth = None  # --metric=coco: the checked annotations dict

    def evaluator_for(self, checkpoint):
        from evaluation import model_eval
        from nets import model_config
        from inference.detector import load_model

        config = model_config.load_model_config(checkpoint)
        if self.evaluator is not None and config == self.config:
            return self.evaluator
        if self.evaluator is not None:
            self.evaluator.close()
            self.evaluator = None
        model, _ = load_model(checkpoint, self.args.model_name)
        model_eval.check_class_names(config.get("class_names"), self.dataset.class_names,
                                     model_config.config_path(checkpoint),
                                     f"{self.dataset.name} {self.dataset.split_name}")
        a = self.args
        self.evaluator = model_eval.ModelEvaluator(
            model, self.dataset.files, self.dataset.class_names, a.batch_size, max_num_batches=a.max_num_batches,
            num_examples=self.dataset.num_samples, **flags.post_processing_overrides(a))
        self.config = config
        return self.evaluator

    def evaluate(self, checkpoint):
        """Evaluates one checkpoint prefix: results files, table, JSON, plots, TensorBoard scalars."""
        from evaluation import report, voc_metric, voc_results

        a = self.args
        evaluator = self.evaluator_for(checkpoint)
        print(f"evaluating {checkpoint} on {self.dataset.name} {self.dataset.split_name} "
              f"({evaluator.num_images_expected} images, batch {a.batch_size})", flush=True)
        result = evaluator.evaluate(checkpoint, log_fn=lambda line: print(line, flush=True),
                                    log_every_n_batches=a.log_every_n_batches)
        step = result.global_step
        print(f"{result.num_images} images in {result.seconds:.1f} s ({result.images_per_second:.1f} images/s)"
              + (f", global step {step}" if step is not None else ""), flush=True)
        split = a.dataset_split_name
        if a.metric == "coco":
            return self.evaluate_coco(result, split, step if a.global_step is None else a.global_step)
        results_dir = os.path.join(a.eval_dir, RESULTS_SUBDIR)
        voc_results.write_results(results_dir, split, result.detections, self.dataset.class_names)
        # Scored from the files just written: the figures are exactly what scoring mode (or the devkit)
        # gives on them.
        detections, _ = voc_results.read_results(results_dir, split, self.dataset.class_names)
        evaluation = voc_metric.evaluate_detections(result.ground_truth, detections,
                                                    iou_threshold=a.matching_threshold)
        print(f"results files: {os.path.join(results_dir, voc_results.results_filename(split, '<class>'))}")
        report.report_evaluation(evaluation, eval_dir=a.eval_dir, output_json=a.output_json,
                                 global_step=step if a.global_step is None else a.global_step)
        return evaluation

    def evaluate_coco(self, result, split, step):
        """The model's detections -> <eval_dir>/detections_<split>.json, scored from that file against
        --coco_annotations on the images evaluated."""
        from evaluation import coco_metric, coco_report, coco_results

        a = self.args
        detections = coco_results.model_detections(result.detections, self.dataset.class_names,
                                                   self.dataset.category_ids)
        path = os.path.join(a.eval_dir, coco_results.results_filename(split))
        coco_results.write_results(path, detections)
        print(f"COCO results file: {path} ({len(detections)} detections)")
        image_ids = [int(i) for i in result.ground_truth.image_ids]
        evaluation = coco_metric.evaluate_coco(self.coco_ground_truth, path, image_ids=image_ids,
                                                backend=a.coco_backend, source=a.coco_annotations)
        coco_report.report_coco(evaluation, eval_dir=a.eval_dir, output_json=a.output_json, global_step=step)
        return evaluation

    def close(self):
        if self.evaluator is not None:
            self.evaluator.close()


def model_mode(args):
    """Runs the network over the split, writes the results files, then reports like scoring mode."""
    from nets import model_config

    check_model_flags(args)
    if not args.wait_for_checkpoints:
        checkpoint = model_config.resolve_checkpoint(args.checkpoint_path)  # a missing one fails before the data
    dataset = flags.get_dataset(args.dataset_name, args.dataset_split_name, args.dataset_dir, args.labels_file)
    runner = _CheckpointRunner(args, dataset)
    if args.metric == "coco":  # before the model runs: a bad annotations file or non-COCO records fail now
        from evaluation import coco_metric

        if dataset.category_ids is None:
            raise ConfigError(None, f"--metric=coco needs COCO records (--dataset_name=coco, coco_2017 or "
                                    f"coco_2014), not {args.dataset_name}")
        runner.coco_ground_truth = coco_metric.read_ground_truth(args.coco_annotations)
    try:
        if not args.wait_for_checkpoints:
            runner.evaluate(checkpoint)
            return 0
        return wait_for_checkpoints(runner, args.checkpoint_path, args.timeout, args.eval_interval_secs)
    finally:
        runner.close()


def wait_for_checkpoints(runner, train_dir, timeout, min_interval_secs=0):
    """Evaluates train_dir's newest checkpoint each time one appears (tf.train.checkpoints_iterator: a
    checkpoint written while another is being evaluated is skipped for the newer one), until `timeout`
    seconds pass without a new checkpoint, or Ctrl-C."""
    import tensorflow as tf

    from common.errors import CheckpointError

    print(f"waiting for checkpoints in {train_dir}"
          + (f" (stopping after {timeout:g} s without a new one)" if timeout is not None else ""), flush=True)
    evaluated = 0
    try:
        for checkpoint in tf.train.checkpoints_iterator(train_dir, min_interval_secs=min_interval_secs,
                                                        timeout=timeout):
            try:
                runner.evaluate(checkpoint)
                evaluated += 1
            except CheckpointError as err:  # e.g. removed by the trainer's rotation meanwhile: wait for the next
                print(f"error: {err}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
    print(f"evaluated {evaluated} checkpoint{'s' if evaluated != 1 else ''} of {train_dir}", flush=True)
    return 0


def main(argv=None):
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    if bool(args.detections_path) == bool(args.checkpoint_path):
        raise ConfigError(None, "give exactly one of --detections_path (scoring mode) and --checkpoint_path "
                                "(model mode)")
    if not 0.0 < args.matching_threshold <= 1.0:
        raise ConfigError(None, f"--matching_threshold must be in (0, 1], got {args.matching_threshold}")
    if args.metric == "coco":
        if not args.coco_annotations:
            raise ConfigError(None, "--metric=coco needs --coco_annotations (the instances JSON of the split)")
        if args.detections_path:
            if args.voc_dir or args.dataset_dir:
                raise ConfigError(None, "--metric=coco scoring mode reads the ground truth from --coco_annotations "
                                        "alone (no --voc_dir or --dataset_dir)")
            return coco_scoring_mode(args)
    elif args.coco_annotations:
        raise ConfigError(None, "--coco_annotations goes with --metric=coco")
    if args.detections_path:
        if bool(args.voc_dir) == bool(args.dataset_dir):
            raise ConfigError(None, "scoring mode needs ground truth from exactly one of --voc_dir and --dataset_dir")
        return scoring_mode(args)
    return model_mode(args)


if __name__ == "__main__":
    run_main(main)
