"""Throughput of the SSD training input pipeline (datasets/input_pipeline.train_dataset), images per second.

Writes a few hundred synthetic VOC-like records (500x375 JPEG of about 90 KB, quality 90, 1-5 boxes) to
a temporary directory, then times the full pipeline: read, parse, decode, Caffe SSD augmentation, anchor
target encoding, batching. With --stages it also times the pipeline cut after each stage, to show where
the time goes. Input must keep up with training: the goal is >= 400 images/s for SSD-300 on 2 cores.
The machine's load average is printed: other processes take cores from the pipeline. On a virtual machine
the share of CPU time the hypervisor stole during the timed run is printed too (Linux's /proc/stat steal):
when the host is busy, the same code runs 10-30% slower.

    python benchmarks/bench_input.py [--model_name=ssd_300_vgg] [--batch_size=32] [--num_batches=40] [--stages]
"""
import io
import os
import resource
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402

from common.errors import ConfigError, run_main  # noqa: E402
from datasets import input_pipeline  # noqa: E402
from datasets import tfrecord_decoder as decoder  # noqa: E402
from nets import nets_factory  # noqa: E402
from box_ops.box_coding import encode_targets  # noqa: E402
from preprocessing import ssd_vgg_preprocessing  # noqa: E402


def synthetic_jpeg(rng, width=500, height=375):
    """A textured photo-like JPEG with 1-5 filled rectangles; returns (bytes, boxes [G, 4] relative, labels)."""
    coarse = rng.integers(0, 256, size=(height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BICUBIC)
    draw = ImageDraw.Draw(image)
    boxes = []
    for _ in range(rng.integers(1, 6)):
        w, h = rng.integers(20, width // 2), rng.integers(20, height // 2)
        x, y = rng.integers(0, width - w), rng.integers(0, height - h)
        draw.rectangle([x, y, x + w - 1, y + h - 1], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
        boxes.append([y / height, x / width, (y + h) / height, (x + w) / width])
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue(), np.array(boxes, np.float32), rng.integers(1, 21, size=len(boxes))


def write_records(directory, num_images, num_shards, seed=0, width=500, height=375):
    rng = np.random.default_rng(seed)
    paths = [os.path.join(directory, f"bench_{i:03d}.tfrecord") for i in range(num_shards)]
    writers = [tf.io.TFRecordWriter(p) for p in paths]
    total_bytes = 0
    for i in range(num_images):
        data, boxes, labels = synthetic_jpeg(rng, width, height)
        total_bytes += len(data)
        f = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v))  # noqa: E731
        n = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
        b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v))  # noqa: E731
        example = tf.train.Example(features=tf.train.Features(feature={
            decoder.ENCODED: b([data]), decoder.FORMAT: b([b"jpeg"]), decoder.FILENAME: b([b"%06d" % i]),
            decoder.HEIGHT: n([height]), decoder.WIDTH: n([width]), decoder.CHANNELS: n([3]),
            decoder.YMIN: f(boxes[:, 0]), decoder.XMIN: f(boxes[:, 1]),
            decoder.YMAX: f(boxes[:, 2]), decoder.XMAX: f(boxes[:, 3]),
            decoder.LABEL: n(labels), decoder.LABEL_TEXT: b([b"x"] * len(labels)),
            decoder.DIFFICULT: n([0] * len(labels)), decoder.TRUNCATED: n([0] * len(labels))}))
        writers[i % num_shards].write(example.SerializeToString())
    for w in writers:
        w.close()
    return paths, total_bytes / num_images


def stage_datasets(files, model, batch_size, dct_method):
    """Pipelines cut after each stage (same reading and batching as train_dataset)."""
    out_shape = tuple(model.image_size)

    def records():
        return tf.data.Dataset.from_tensor_slices(files).repeat().interleave(
            tf.data.TFRecordDataset, cycle_length=len(files), num_parallel_calls=tf.data.AUTOTUNE,
            deterministic=False)

    def parse(s):
        return decoder.parse_example_encoded(s)

    def decode_full(s):
        e = parse(s)
        return tf.io.decode_jpeg(e["encoded"], channels=3, dct_method=dct_method)[0, 0]

    def augment(s):
        e = parse(s)
        return ssd_vgg_preprocessing.preprocess_encoded_for_train(
            e["encoded"], e["shape"][0], e["shape"][1], e["labels"], e["boxes"], e["difficult"], out_shape,
            model.mean_rgb, dct_method=dct_method)

    def encode_only(s):
        e = parse(s)
        return encode_targets(e["labels"], e["boxes"], model.anchors, model.variances)

    stages = {"read+parse": lambda s: parse(s)["boxes"][:1], "+decode whole image": decode_full,
              "parse+augment (no targets)": lambda s: augment(s)[0],
              "parse+encode targets only": lambda s: encode_only(s)[0]}

    def pipeline(fn):
        return (records().map(fn, num_parallel_calls=tf.data.AUTOTUNE, deterministic=False).batch(batch_size)
                .prefetch(tf.data.AUTOTUNE).with_options(input_pipeline._options()))

    return {name: (lambda fn=fn: pipeline(fn)) for name, fn in stages.items()}


def _cpu_ticks():
    """(steal, total) jiffies of all CPUs from /proc/stat, or None where there is no such file."""
    try:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    # user nice system idle iowait irq softirq steal [guest guest_nice, already counted in user and nice]
    return fields[7] if len(fields) > 7 else 0, sum(fields[:8])


def time_dataset(dataset, batch_size, num_batches, warmup):
    with tf.Graph().as_default():
        batch = tf.compat.v1.data.make_one_shot_iterator(dataset()).get_next()
        # Fetch something small so that the session does not spend time copying batches to NumPy.
        probe = tf.nest.map_structure(lambda t: tf.reshape(t, [-1])[0], batch)
        with tf.compat.v1.Session() as sess:
            for _ in range(warmup):
                sess.run(probe)
            start, cpu_start, ticks_start = time.perf_counter(), _cpu_seconds(), _cpu_ticks()
            for _ in range(num_batches):
                sess.run(probe)
            elapsed, cpu, ticks = time.perf_counter() - start, _cpu_seconds() - cpu_start, _cpu_ticks()
    num_images = num_batches * batch_size
    steal = None
    if ticks and ticks_start and ticks[1] > ticks_start[1]:
        steal = 100.0 * (ticks[0] - ticks_start[0]) / (ticks[1] - ticks_start[1])
    return num_images / elapsed, 1000.0 * cpu / num_images, steal


def _cpu_seconds():
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def main(argv=None):
    p = flags.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model_name", default="ssd_300_vgg")
    p.add_argument("--batch_size", type=int, default=32)
    p.add_argument("--num_batches", type=int, default=40, help="timed batches (after --warmup)")
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--num_images", type=int, default=320, help="synthetic records written")
    p.add_argument("--num_shards", type=int, default=4)
    p.add_argument("--dct_method", default="INTEGER_FAST")
    p.add_argument("--seed", type=int, default=None, help="seeded (deterministic) pipeline instead of the fastest")
    p.add_argument("--stages", action="store_true", help="also time the pipeline cut after each stage")
    args = p.parse_args(argv)
    if args.batch_size < 1 or args.num_batches < 1 or args.num_images < 1:
        raise ConfigError(None, "--batch_size, --num_batches and --num_images must be positive")
    model = nets_factory.build_model(nets_factory.default_config(args.model_name, num_classes=21))
    with tempfile.TemporaryDirectory(prefix="bench_input_") as tmp:
        files, mean_bytes = write_records(tmp, args.num_images, args.num_shards)
        print(f"{args.num_images} records of 500x375 JPEG ({mean_bytes / 1024:.0f} KB average), {model.name} "
              f"{model.image_size[0]}x{model.image_size[1]}, {len(model.anchors)} anchors, batch {args.batch_size}, "
              f"{os.cpu_count()} CPUs")
        print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.stages:
            for name, make in stage_datasets(files, model, args.batch_size, args.dct_method).items():
                rate, cpu_ms, _ = time_dataset(make, args.batch_size, args.num_batches, args.warmup)
                print(f"  {name:28s} {rate:8.1f} images/s  {cpu_ms:6.2f} CPU-ms/image")
        def full():
            return input_pipeline.train_dataset(files, model, args.batch_size, seed=args.seed,
                                                dct_method=args.dct_method)

        rate, cpu_ms, steal = time_dataset(full, args.batch_size, args.num_batches, args.warmup)
        print(f"full training pipeline: {rate:.1f} images/s  ({cpu_ms:.2f} CPU-ms/image: "
              f"{1000.0 * os.cpu_count() / cpu_ms:.0f} images/s if all {os.cpu_count()} cores were free)")
        if steal is not None:
            print(f"CPU time stolen by the hypervisor during the run: {steal:.1f}%")
        print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    run_main(main)
