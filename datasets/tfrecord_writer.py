"""The converters' shared half: image checks, Example features, and the sharded TFRecord writer.

Both converters (datasets/voc_to_tfrecords.py, datasets/coco_to_tfrecords.py) produce items one image at a
time, in listing order; `write_shards` writes them into `<output_name>_000.tfrecord`, `_001`, ... and the
metadata file `<output_name>_metadata.json`, all in a staging directory moved into place only once
everything is complete (common/fileio.staging_dir). An item is either a DatasetError (an invalid image:
raised unless `skip_invalid`, else listed under "skipped") or a (serialized Example, info) pair.
"""
import collections
import concurrent.futures
import io
import itertools
import json
import os
import re

import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from common.errors import DatasetError
from common.fileio import staging_dir

FORMAT_VERSION = 1
# Pillow modes whose files TF's decode_jpeg / decode_png turn into RGB, with the file's channel count.
_JPEG_MODES = {"L": 1, "RGB": 3, "CMYK": 4}
_PNG_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "P": 3, "LA": 2, "RGB": 3, "RGBA": 4}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def shard_name(output_name, index):
    return f"{output_name}_{index:03d}.tfrecord"


def metadata_name(output_name):
    return f"{output_name}_metadata.json"


def inspect_image(path, data):
    """Decodes `data` completely; returns (format, width, height, channels) or raises DatasetError.

    A full Pillow decode catches missing or corrupt scan data; the end-marker check catches files cut
    after the last scan line (no JPEG EOI after the last SOS, no PNG IEND chunk), which Pillow accepts but
    TF's decoder may reject at training time.
    """
    try:
        with Image.open(io.BytesIO(data)) as image:
            kind, (width, height), mode = image.format, image.size, image.mode
            if kind not in ("JPEG", "PNG"):
                raise DatasetError(path, f"unsupported image format {kind} (JPEG or PNG expected)")
            image.load()
    except UnidentifiedImageError:
        raise DatasetError(path, "not a JPEG or PNG image") from None
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(path, f"corrupt image ({err})") from None
    if kind == "JPEG":
        last_scan = data.rfind(b"\xff\xda")
        if last_scan < 0 or data.find(b"\xff\xd9", last_scan) < 0:
            raise DatasetError(path, "truncated JPEG (no end-of-image marker)")
        channels = _JPEG_MODES.get(mode)
    else:
        if data.rfind(_PNG_IEND) < 0:
            raise DatasetError(path, "truncated PNG (no IEND chunk)")
        channels = _PNG_CHANNELS.get(mode)
    if channels is None:
        raise DatasetError(path, f"unsupported {kind} pixel mode {mode}")
    return kind.lower(), width, height, channels


# EXIF orientations under which viewers swap an image's sides (a quarter turn, mirrored or not).
_EXIF_ORIENTATION_TAG = 0x0112
_TRANSPOSING_ORIENTATIONS = (5, 6, 7, 8)


def turned_by_exif_hint(encoded, width, height, annotated_width, annotated_height):
    """For the error of an image whose stored width x height differs from its annotation's size: "" unless
    the image's EXIF orientation turns it to the annotated size, else a clause saying so. The boxes were then
    most likely drawn on the image as viewers show it, while the converters keep the stored pixels, which is
    what TensorFlow's decoders read (they ignore EXIF)."""
    if (height, width) != (annotated_width, annotated_height):
        return ""
    with Image.open(io.BytesIO(encoded)) as image:
        orientation = image.getexif().get(_EXIF_ORIENTATION_TAG, 1)
    if orientation not in _TRANSPOSING_ORIENTATIONS:
        return ""
    return (f"; its EXIF orientation ({orientation}) turns it to {annotated_width}x{annotated_height} for "
            f"viewers, so the boxes were likely drawn on the turned picture, but training reads the stored "
            f"pixels: save the image turned (PIL.ImageOps.exif_transpose) or annotate the stored pixels")


def read_image_file(path):
    """The bytes of an image file, checked by inspect_image -> (bytes, format, width, height, channels)."""
    if not os.path.isfile(path):
        raise DatasetError(path, "missing image file")
    try:
        with open(path, "rb") as f:
            encoded = f.read()
    except OSError as err:
        raise DatasetError(path, f"cannot read image ({err.strerror or err})") from None
    return (encoded,) + inspect_image(path, encoded)


def int64s(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def bytes_feature(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def example(feature):
    """{feature name: tf.train.Feature} -> tf.train.Example."""
    return tf.train.Example(features=tf.train.Features(feature=feature))


def ordered_map(fn, items, num_threads):
    """Yields fn(item) for items in order, computing at most a few per thread ahead of the consumer, so
    that memory stays bounded by the images in flight, not the dataset."""
    if num_threads == 1:
        yield from map(fn, items)
        return
    with concurrent.futures.ThreadPoolExecutor(num_threads) as pool:
        items = iter(items)
        pending = collections.deque(pool.submit(fn, x) for x in itertools.islice(items, 4 * num_threads))
        try:
            while pending:
                result = pending.popleft().result()
                for x in itertools.islice(items, 1):
                    pending.append(pool.submit(fn, x))
                yield result
        finally:  # the consumer stopped early (strict failure): drop the work not yet started
            for future in pending:
                future.cancel()


def check_writer_args(output_name, samples_per_file, num_threads):
    """Validates the writer's arguments; returns num_threads (None: all cores)."""
    if samples_per_file < 1:
        raise ValueError(f"samples_per_file must be >= 1, got {samples_per_file}")
    num_threads = (os.cpu_count() or 1) if num_threads is None else num_threads
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if not output_name or os.path.basename(output_name) != output_name:
        raise ValueError(f"output_name must be a plain file name prefix, got {output_name!r}")
    return num_threads


def write_shards(items, num_items, output_dir, output_name, metadata_fn, samples_per_file=200,
                 skip_invalid=False, skipped=(), progress_fn=None, on_record=None, source=None):
    """Writes the records of `items` as shards + metadata into `output_dir`; returns the metadata dict.

    items: iterable of DatasetError or (serialized Example, info), in output order. on_record(info) is
    called for every record written (for the converter's counts). metadata_fn(shard_sizes) -> the
    converter's metadata fields, num_examples among them (format_version, output_name, samples_per_file,
    shards, shard_sizes and skipped are filled in here). `skipped`: entries the converter skipped before writing (listed first).
    progress_fn(num_done, num_items) after each item. Raises the first DatasetError unless `skip_invalid`,
    and DatasetError(source) when no record is valid; `output_dir` is then left as it was. Shards of an
    earlier run with the same `output_name` that this run does not rewrite are removed.
    """
    skipped, shards, shard_sizes = list(skipped), [], []
    with staging_dir(output_dir) as stage:
        writer = None
        try:
            for done, item in enumerate(items, 1):
                if isinstance(item, DatasetError):
                    if not skip_invalid:
                        raise item
                    skipped.append({"file": item.path, "reason": item.reason})
                else:
                    record, info = item
                    if writer is None:
                        shards.append(shard_name(output_name, len(shards)))
                        shard_sizes.append(0)
                        writer = tf.io.TFRecordWriter(os.path.join(stage, shards[-1]))
                    writer.write(record)
                    shard_sizes[-1] += 1
                    if shard_sizes[-1] == samples_per_file:
                        writer.close()
                        writer = None
                    if on_record is not None:
                        on_record(info)
                if progress_fn is not None:
                    progress_fn(done, num_items)
        finally:
            close = getattr(items, "close", None)
            if close is not None:
                close()  # on a strict failure: cancel the images not started yet
            if writer is not None:
                writer.close()
        if not shards:
            raise DatasetError(source, f"none of the {num_items} listed images is valid")
        metadata = {"format_version": FORMAT_VERSION, "output_name": output_name}
        metadata.update(metadata_fn(shard_sizes))
        metadata.update({"samples_per_file": samples_per_file, "shards": shards, "shard_sizes": shard_sizes,
                         "skipped": skipped})
        # Sorted into place after the shards (`_metadata` > `_NNN`): readers never see it before them.
        with open(os.path.join(stage, metadata_name(output_name)), "w") as f:
            f.write(json.dumps(metadata, indent=2) + "\n")
    _remove_stale_shards(output_dir, output_name, shards)
    return metadata


def _remove_stale_shards(output_dir, output_name, keep):
    pattern = re.compile(re.escape(output_name) + r"_\d{3,}\.tfrecord")
    for name in os.listdir(output_dir):
        if pattern.fullmatch(name) and name not in keep:
            os.remove(os.path.join(output_dir, name))
