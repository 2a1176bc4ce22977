"""Trains or fine-tunes an SSD network on converted TFRecords (TF-Slim's train_image_classifier.py flags).

    python train_ssd_network.py --train_dir=./logs/ssd_300_vgg --dataset_dir=./tfrecords \
        --dataset_name=pascalvoc_0712 --dataset_split_name=trainval --model_name=ssd_300_vgg \
        --checkpoint_path=./checkpoints/vgg_16.ckpt --checkpoint_model_scope=vgg_16 \
        --checkpoint_exclude_scopes=ssd_300_vgg/block8,ssd_300_vgg/block9,ssd_300_vgg/block10,\
ssd_300_vgg/block11,*_box --batch_size=32 --max_number_of_steps=120000

The defaults are the Caffe SSD's VOC07+12 solver: momentum 0.9, learning rate 1e-3 divided by 10 at
steps 80000 and 100000, weight decay 5e-4 (not on biases), biases at twice the learning rate, 3 negatives
per positive, match threshold 0.5. A run restarted
with the same --train_dir resumes from its newest checkpoint (--checkpoint_path is then ignored);
--train_dir also receives ssd_config.json, so evaluation and detection need only the directory.
SIGINT/SIGTERM save a checkpoint and exit 0; a NaN or infinite loss stops with exit status 1, keeping the
last good checkpoint. Several GPUs train with tf.distribute (MirroredStrategy, --batch_size is the global
batch); several machines with --distribution=multi_worker and TF_CONFIG (training/distribution.py).
"""
import argparse
import logging
import os
import sys
import warnings

from cli import flags
from common.errors import ConfigError, run_main


def _bool(text):
    value = str(text).strip().lower()
    if value in ("1", "true", "yes", "y", "t"):
        return True
    if value in ("0", "false", "no", "n", "f"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def _steps(text):
    try:
        return [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated steps, got {text!r}") from None


# Presets of preprocessing/ssd_vgg_preprocessing.preprocess_for_train options; ssd is the Caffe SSD's.
AUGMENTATIONS = {"ssd": {"expand_prob": 0.5}, "light": {"distortion": None, "expand_prob": 0.0}}


def augmentation_options(args):
    """preprocess_for_train options from --augmentation, --expand_prob and --max_expand_ratio."""
    options = dict(AUGMENTATIONS[args.augmentation], max_expand_ratio=args.max_expand_ratio)
    if args.expand_prob is not None:
        options["expand_prob"] = args.expand_prob
    return options


def parse_args(argv):
    from training.optimizers import DECAY_TYPES, OPTIMIZERS
    p = flags.ArgumentParser(description=__doc__.split("\n\n")[0],
                             formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    g = p.add_argument_group("run").add_argument
    g("--train_dir", required=True, help="checkpoints, summaries and ssd_config.json; resumes from here")
    g("--log_every_n_steps", type=int, default=10, help="progress line period, in steps")
    g("--save_summaries_secs", type=float, default=600, help="TensorBoard summary period, in seconds")
    g("--save_interval_secs", type=float, default=600, help="checkpoint period, in seconds")
    g("--max_checkpoints_to_keep", type=int, default=5, help="newest checkpoints kept in --train_dir")
    g("--max_number_of_steps", type=int, default=None, help="global step to stop at (default: never)")
    g("--batch_size", type=int, default=32, help="images per step, over all replicas (the global batch)")
    g("--seed", type=int, default=None, help="fixed initial weights, input order and augmentation (slower)")
    g("--num_preprocessing_threads", type=int, default=None, help="parallel input calls (default: autotune)")
    g("--num_summary_images", type=int, default=3, help="training images with boxes in each summary")
    g("--precision", default="float32", choices=("float32", "bf16"),
      help="bf16: convolutions and their gradients in bfloat16, variables and updates float32 (grappler's "
           "oneDNN rewrite, common/precision.py); 1.5x faster for ResNet-50 and Inception-v2 on CPUs with "
           "AVX512_BF16 or AMX")
    g("--distribution", default="auto", choices=("auto", "mirrored", "multi_worker"),
      help="tf.distribute strategy; auto: multi_worker when TF_CONFIG names several workers, else mirrored")
    g("--num_clones", type=int, default=0, help="replicas on this machine: the first N GPUs (0: all GPUs)")
    g("--clone_on_cpu", type=_bool, nargs="?", const=True, default=False,
      help="replicas on --num_clones logical CPU devices instead (tests, debugging)")
    d = p.add_argument_group("dataset").add_argument
    d("--dataset_dir", required=True, help="TFRecords and metadata written by tf_convert_data.py")
    d("--dataset_name", default="pascalvoc_0712", choices=flags.dataset_names(),
      help="see datasets/dataset_factory.py")
    d("--dataset_split_name", default="trainval", help="split (voc_custom: the converter's --output_name)")
    d("--labels_file", default=None, help="class names the records must have (voc_custom)")
    m = p.add_argument_group("model and loss").add_argument
    m("--model_name", default="ssd_300_vgg", choices=flags.model_names(), help="network (nets/nets_factory.py)")
    m("--negative_ratio", type=float, default=3.0, help="hard negatives per positive (Caffe neg_pos_ratio)")
    m("--match_threshold", type=float, default=0.5, help="anchor/box IoU for a positive (Caffe overlap)")
    m("--loss_alpha", type=float, default=1.0, help="weight of the localisation loss")
    m("--augmentation", default="ssd", choices=sorted(AUGMENTATIONS),
      help="ssd: the Caffe SSD's (photometric, zoom-out, batch sampler, flip); light: batch sampler and flip "
           "only, for short runs on easy data such as the quickstart's")
    m("--expand_prob", type=float, default=None,
      help="zoom-out probability (Caffe expand_param prob; default: the --augmentation preset's, 0.5 for ssd)")
    m("--max_expand_ratio", type=float, default=4.0, help="largest zoom-out canvas (Caffe max_expand_ratio)")
    m("--weight_decay", type=float, default=0.0005, help="L2 decay of every trained variable but biases")
    m("--freeze_batch_norm", type=_bool, nargs="?", const=True, default=False,
      help="batch norm layers use their (checkpoint's) moving statistics and do not update them: for "
           "fine-tuning with small batches")
    m("--batch_norm_decay", type=float, default=None,
      help="moving-average decay of batch norm (default: the base's, 0.997 / 0.9997); e.g. 0.9 for short runs")
    m("--depth_multiplier", type=float, default=None,
      help="channel multiplier of the base (ssdlite_320_mobilenet_v2; default: the model's, 1.0)")
    c = p.add_argument_group("initial weights").add_argument
    c("--checkpoint_path", default=None, help="checkpoint (or its directory) to start a new run from")
    c("--checkpoint_model_scope", default=None,
      help="scope of the model in the checkpoint, e.g. vgg_16 for a TF-Slim ImageNet checkpoint")
    c("--checkpoint_exclude_scopes", default=None, help="comma-separated scopes (or globs) not restored")
    c("--checkpoint_class_map", default=None,
      help="class heads from the checkpoint's matching classes: coco_to_voc (Caffe's coco_voc_map.txt by name) "
           "or a file of from,to,name lines (checkpoint label, model label, model class name)")
    c("--trainable_scopes", default=None, help="comma-separated scopes to train (default: everything)")
    c("--ignore_missing_vars", type=_bool, nargs="?", const=True, default=False,
      help="start variables the checkpoint lacks from their initialisation instead of failing")
    o = p.add_argument_group("optimiser").add_argument
    o("--optimizer", default="momentum", choices=OPTIMIZERS, help="optimiser")
    o("--adadelta_rho", type=float, default=0.95, help="adadelta decay")
    o("--adagrad_initial_accumulator_value", type=float, default=0.1, help="adagrad accumulator start")
    o("--adam_beta1", type=float, default=0.9, help="adam first-moment decay")
    o("--adam_beta2", type=float, default=0.999, help="adam second-moment decay")
    o("--opt_epsilon", type=float, default=None,
      help="epsilon of adadelta, adam, rmsprop (default: the optimiser's own: adam 1e-8, adadelta 1e-6, "
           "rmsprop 1.0 as TF-Slim)")
    o("--ftrl_learning_rate_power", type=float, default=-0.5, help="ftrl learning-rate power")
    o("--ftrl_initial_accumulator_value", type=float, default=0.1, help="ftrl accumulator start")
    o("--ftrl_l1", type=float, default=0.0, help="ftrl L1 strength")
    o("--ftrl_l2", type=float, default=0.0, help="ftrl L2 strength")
    o("--momentum", type=float, default=0.9, help="momentum of the momentum optimiser")
    o("--rmsprop_momentum", type=float, default=0.9, help="rmsprop momentum")
    o("--rmsprop_decay", type=float, default=0.9, help="rmsprop decay")
    o("--bias_learning_rate_multiplier", type=float, default=2.0,
      help="learning-rate multiplier of biases (Caffe SSD: lr_mult 2; TF-Slim: 1)")
    r = p.add_argument_group("learning rate").add_argument
    r("--learning_rate", type=float, default=0.001, help="initial learning rate")
    r("--learning_rate_decay_type", default="piecewise", choices=DECAY_TYPES, help="schedule")
    r("--learning_rate_decay_factor", type=float, default=0.1,
      help="exponential: factor per period; piecewise: factor at each boundary")
    r("--num_epochs_per_decay", type=float, default=2.0, help="exponential period / polynomial length, epochs")
    r("--end_learning_rate", type=float, default=0.0001, help="polynomial: final learning rate")
    r("--learning_rate_decay_power", type=float, default=1.0, help="polynomial: power")
    r("--learning_rate_boundaries", type=_steps, default=[80000, 100000], help="piecewise: steps")
    r("--warmup_steps", type=int, default=0, help="linear warm-up length in steps (0: none)")
    r("--warmup_learning_rate", type=float, default=0.0, help="learning rate at step 0 of the warm-up")
    args = p.parse_args(argv)
    flags.check_at_least(args, num_clones=0, batch_size=1, log_every_n_steps=1, max_checkpoints_to_keep=1,
                         max_number_of_steps=0)
    if not 0.0 <= (args.expand_prob or 0.0) <= 1.0 or args.max_expand_ratio < 1.0:
        raise ConfigError("--expand_prob", "needs 0 <= --expand_prob <= 1 and --max_expand_ratio >= 1")
    if args.depth_multiplier is not None and args.depth_multiplier <= 0:
        raise ConfigError("--depth_multiplier", f"must be > 0, got {args.depth_multiplier}")
    if args.batch_norm_decay is not None and not 0.0 < args.batch_norm_decay < 1.0:
        raise ConfigError("--batch_norm_decay", f"must be in (0, 1), got {args.batch_norm_decay}")
    if args.checkpoint_path is not None and not os.path.exists(args.checkpoint_path) \
            and not os.path.exists(args.checkpoint_path + ".index"):
        raise ConfigError(args.checkpoint_path, "no such checkpoint or directory (--checkpoint_path)")
    if args.checkpoint_class_map and not args.checkpoint_path:
        raise ConfigError("--checkpoint_class_map", "goes with --checkpoint_path (the checkpoint it maps from)")
    return args


def main(argv=None):
    args = parse_args(argv)
    logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(asctime)s %(message)s",
                        datefmt="%H:%M:%S")
    import tensorflow as tf
    tf.get_logger().setLevel(logging.ERROR)  # TF's deprecation notices about its own v1 code paths
    warnings.filterwarnings("ignore", module="tensorflow")
    from datasets import input_pipeline
    from nets import model_config, nets_factory
    from training import checkpoint_init, distribution, optimizers, trainer

    dataset = flags.get_dataset(args.dataset_name, args.dataset_split_name, args.dataset_dir, args.labels_file)
    config = nets_factory.default_config(args.model_name, class_names=dataset.class_names)
    for name in ("depth_multiplier", "batch_norm_decay"):
        if getattr(args, name) is not None:
            config["params"][name] = getattr(args, name)
    model = nets_factory.build_model(config, is_training=True,  # the trainer adds the weight decay
                                     freeze_batch_norm=args.freeze_batch_norm)
    devices = None
    if args.clone_on_cpu:  # N logical CPU devices (set before TensorFlow's runtime starts)
        if args.num_clones > 1:
            cpu = tf.config.list_physical_devices("CPU")[0]
            tf.config.set_logical_device_configuration(
                cpu, [tf.config.LogicalDeviceConfiguration()] * args.num_clones)
        devices = [d.name for d in tf.config.list_logical_devices("CPU")][:max(args.num_clones, 1)]
    elif args.num_clones:
        gpus = [d.name for d in tf.config.list_logical_devices("GPU")]
        if len(gpus) < args.num_clones:
            raise ConfigError("--num_clones", f"{args.num_clones} replicas asked, {len(gpus)} GPUs visible")
        devices = gpus[:args.num_clones]
    dist = distribution.make_distribution(args.distribution, devices, precision=args.precision)

    decay_steps = optimizers.decay_steps_from_epochs(dataset.num_samples, args.batch_size,
                                                     args.num_epochs_per_decay)
    schedule = dict(learning_rate=args.learning_rate, decay_type=args.learning_rate_decay_type,
                    decay_steps=decay_steps, decay_factor=args.learning_rate_decay_factor,
                    end_learning_rate=args.end_learning_rate, boundaries=tuple(args.learning_rate_boundaries),
                    power=args.learning_rate_decay_power, warmup_steps=args.warmup_steps,
                    warmup_learning_rate=args.warmup_learning_rate)
    try:
        optimizers.check_schedule(args.learning_rate, args.learning_rate_decay_type, decay_steps,
                                  schedule["boundaries"], args.warmup_steps)
    except ValueError as err:
        raise ConfigError("--learning_rate_decay_type", str(err)) from None
    hyper = {k: getattr(args, k) for k in optimizers.OPTIMIZER_DEFAULTS}
    train_log = logging.getLogger("ssd.train")
    used = optimizers.optimizer_hyper_parameters(args.optimizer, **hyper)
    train_log.info("optimizer %s (%s), learning rate %g (%s), weight decay %g", args.optimizer,
                   ", ".join(f"{k} {v:g}" for k, v in used.items()) or "no hyper-parameters", args.learning_rate,
                   args.learning_rate_decay_type, args.weight_decay)
    for warning in optimizers.optimizer_warnings(args.optimizer, **hyper):
        train_log.warning("%s (--opt_epsilon)", warning)
    parallel = args.num_preprocessing_threads or tf.data.AUTOTUNE

    augmentation = augmentation_options(args)

    def input_fn():
        return input_pipeline.train_dataset(dataset.files, model, args.batch_size, is_training=True,
                                            seed=args.seed, match_threshold=args.match_threshold,
                                            num_parallel_calls=parallel,
                                            augmentation=augmentation)

    warm_start = None
    if args.checkpoint_path:
        checkpoint = model_config.resolve_checkpoint(args.checkpoint_path)
        class_map = None
        if args.checkpoint_class_map:
            source = model_config.load_model_config(checkpoint) if os.path.isfile(
                model_config.config_path(checkpoint)) else {}
            class_map = checkpoint_init.read_class_map(args.checkpoint_class_map, dataset.class_names,
                                                       source.get("class_names"), source.get("num_classes"))
        warm_start = trainer.WarmStart(
            checkpoint, args.checkpoint_model_scope,
            checkpoint_init.parse_scopes(args.checkpoint_exclude_scopes), args.ignore_missing_vars, class_map)
    options = trainer.TrainOptions(
        train_dir=args.train_dir, batch_size=args.batch_size, max_number_of_steps=args.max_number_of_steps,
        log_every_n_steps=args.log_every_n_steps, save_interval_secs=args.save_interval_secs,
        save_summaries_secs=args.save_summaries_secs, max_checkpoints_to_keep=args.max_checkpoints_to_keep,
        negative_ratio=args.negative_ratio, loss_alpha=args.loss_alpha, weight_decay=args.weight_decay,
        bias_learning_rate_multiplier=args.bias_learning_rate_multiplier,
        trainable_scopes=checkpoint_init.parse_scopes(args.trainable_scopes),
        num_summary_images=args.num_summary_images, seed=args.seed)
    train_log.info(
        "training %s on %s/%s (%d images, %d classes) in %s", args.model_name, args.dataset_name,
        args.dataset_split_name, dataset.num_samples, dataset.num_classes, args.train_dir)
    result = trainer.train(
        model, input_fn, lambda step: optimizers.learning_rate_schedule(step, **schedule),
        lambda lr: optimizers.configure_optimizer(args.optimizer, lr, **hyper), dist, options,
        warm_start=warm_start, model_config=config)
    print(f"stopped at step {result.step} ({result.stopped_by}); checkpoint: {result.checkpoint}")
    return 0


if __name__ == "__main__":
    run_main(main)
