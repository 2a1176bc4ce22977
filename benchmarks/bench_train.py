"""Training throughput (images/s) of the SSD training step, on whatever device this machine has.

    python benchmarks/bench_train.py [--models=ssd_300_vgg,ssd_300_vgg_lite] [--batch_size=8]
        [--num_steps=5] [--warmup_steps=2] [--pipeline] [--optimizer=momentum] [--precision=float32|bf16] [--smoke]

For each model, the graph of train_ssd_network.py (training/trainer.build_train_graph: forward, Caffe
MultiBox loss with hard negative mining, weight decay, backward, optimiser update, under MirroredStrategy
over every visible GPU, else the CPU) runs on a fixed in-memory batch (random pixels, 1-5 random boxes per
image, targets encoded once), so the figure is the model step alone. With --pipeline it runs again fed by
datasets/input_pipeline.train_dataset on TFRecords of synthetic 500x375 JPEGs written to a temporary
directory (decode, Caffe SSD augmentation, target encoding, batching): the end-to-end figure.
Prints one JSON line per run: model, input, batch size, images/s, seconds per step (median of the timed
steps), the device, and the load average before and after (the machine may be shared).
"""
import json
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)


def parse_args(argv):
    p = flags.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="ssd_300_vgg,ssd_300_vgg_lite", help="comma-separated model names")
    p.add_argument("--batch_size", type=int, default=8, help="global batch")
    p.add_argument("--num_steps", type=int, default=5, help="timed steps")
    p.add_argument("--warmup_steps", type=int, default=2, help="untimed steps first")
    p.add_argument("--optimizer", default="momentum", help="see training/optimizers.py")
    p.add_argument("--precision", default="float32", choices=("float32", "bf16"),
                   help="train_ssd_network.py's --precision (bf16: common/precision.py)")
    p.add_argument("--pipeline", action="store_true", help="also time with the TFRecord input pipeline")
    p.add_argument("--num_records", type=int, default=64, help="images written for --pipeline")
    p.add_argument("--smoke", action="store_true", help="lite model, batch 2, one step each (for tests)")
    args = p.parse_args(argv)
    if args.smoke:
        args.models, args.batch_size, args.num_steps, args.warmup_steps, args.num_records = \
            "ssd_300_vgg_lite", 2, 1, 1, 4
    if args.batch_size < 1 or args.num_steps < 1 or args.warmup_steps < 0:
        p.error("--batch_size and --num_steps must be >= 1, --warmup_steps >= 0")
    return args



def memory_input_fn(model, batch_size, seed=0):
    """() -> a dataset repeating one batch of random images with random boxes and their encoded targets."""
    import numpy as np
    import tensorflow as tf
    from box_ops.box_coding import encode_targets

    rng = np.random.default_rng(seed)
    h, w = model.image_size
    images = rng.uniform(-110, 130, size=(batch_size, h, w, 3)).astype(np.float32)
    boxes = np.zeros((batch_size, 5, 4), np.float32)
    labels = np.zeros((batch_size, 5), np.int64)
    counts = rng.integers(1, 6, size=batch_size).astype(np.int32)
    for i, n in enumerate(counts):
        yx = rng.uniform(0.0, 0.6, size=(n, 2))
        hw = rng.uniform(0.1, 0.4, size=(n, 2))
        boxes[i, :n] = np.concatenate([yx, yx + hw], axis=1)
        labels[i, :n] = rng.integers(1, model.num_classes, size=n)

    def input_fn():
        def targets(b, lab, n):
            gclasses, glocalisations, gscores = encode_targets(lab[:n], b[:n], model.anchors, model.variances)
            return {"gclasses": gclasses, "glocalisations": glocalisations, "gscores": gscores, "boxes": b,
                    "labels": lab, "num_boxes": n}

        encoded = tf.data.Dataset.from_tensor_slices((boxes, labels, counts)).map(targets).batch(batch_size)
        batch = tf.data.Dataset.zip((tf.data.Dataset.from_tensors(images), encoded))
        batch = batch.map(lambda image, rest: dict(rest, image=image)).cache()
        return batch.repeat()

    return input_fn


def records_input_fn(model, batch_size, directory, num_records):
    from datasets import input_pipeline
    from datasets.synthetic_voc import generate_synthetic_voc
    from datasets.voc_to_tfrecords import convert_voc, read_labels_file

    voc = os.path.join(directory, "voc")
    generate_synthetic_voc(voc, num_train=num_records, num_test=1, image_size=(375, 500), seed=0)
    convert_voc(voc, directory, "bench_train", split="train", class_names=read_labels_file(
        os.path.join(voc, "labels.txt")), samples_per_file=max(1, num_records // 4))
    files = sorted(os.path.join(directory, f) for f in os.listdir(directory) if f.endswith(".tfrecord"))
    return lambda: input_pipeline.train_dataset(files, model, batch_size, is_training=True)


def time_training(model, input_fn, args):
    import numpy as np
    import tensorflow as tf
    from training import distribution, optimizers, trainer

    options = trainer.TrainOptions(train_dir="unused", batch_size=args.batch_size, num_summary_images=0)
    with tf.Graph().as_default():
        dist = distribution.make_distribution("mirrored", precision=args.precision)
        tg = trainer.build_train_graph(
            model, input_fn, lambda step: optimizers.learning_rate_schedule(step, 1e-3),
            lambda lr: optimizers.configure_optimizer(args.optimizer, lr), dist, options)
        init = tf.compat.v1.global_variables_initializer()
        with tf.compat.v1.Session(config=dist.session_config) as session:
            session.run([init, tg.iterator_initializer])
            for _ in range(args.warmup_steps):
                session.run(tg.fetches["train_op"])
            times = []
            for _ in range(args.num_steps):
                start = time.perf_counter()
                values = session.run(tg.fetches)
                times.append(time.perf_counter() - start)
            if not np.isfinite(values["total_loss"]):
                raise RuntimeError(f"non-finite loss {values['total_loss']}")
    return float(np.median(times)), float(np.sum(times)), dist.num_replicas


def main(argv=None):
    args = parse_args(argv)
    import warnings
    import tensorflow as tf
    tf.get_logger().setLevel("ERROR")
    warnings.filterwarnings("ignore", module="tensorflow")
    from inference import session_options
    from nets import nets_factory

    device = session_options.device_description()
    tmp = tempfile.TemporaryDirectory(prefix="bench_train_") if args.pipeline else None
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = nets_factory.build_model(nets_factory.default_config(name, num_classes=21), is_training=True)
        inputs = [("memory", memory_input_fn(model, args.batch_size))]
        if args.pipeline:
            inputs.append(("tfrecords", records_input_fn(model, args.batch_size, os.path.join(tmp.name, name),
                                                         args.num_records)))
        for kind, input_fn in inputs:
            load_before = os.getloadavg()[0]
            median, total, replicas = time_training(model, input_fn, args)
            print(json.dumps({
                "model": name, "input": kind, "batch_size": args.batch_size, "replicas": replicas,
                "images_per_sec": round(args.batch_size / median, 3), "secs_per_step": round(median, 4),
                "timed_steps": args.num_steps, "optimizer": args.optimizer, "precision": args.precision, "device": device,
                "load_average": [round(load_before, 2), round(os.getloadavg()[0], 2)]}), flush=True)
    if tmp is not None:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
