"""Pascal VOC layout -> TFRecord shards and a metadata file (the library behind tf_convert_data.py).

Input, `dataset_dir`:
    Annotations/<id>.xml                  VOC XML; boxes 1-based inclusive pixels
    JPEGImages/<id>.jpg                   or JPEGImages/<filename> when the XML's <filename> is there
    ImageSets/Main/<split>.txt            the ids of a split, one a line (first token); without a split,
                                          every Annotations/*.xml is converted, in sorted order
Every image is checked before it is written: the file decodes completely (a truncated JPEG or PNG is
detected), its size equals the XML's <size>, every class is in the class list, and every box satisfies
1 <= xmin <= xmax <= width and 1 <= ymin <= ymax <= height (xmin == xmax is a legal one-pixel box).
Strict by default: the first invalid image (in listing order) raises DatasetError naming the file, and
nothing appears in `output_dir`. With `skip_invalid` the invalid images are left out and listed.

Output, `output_dir` (files appear together, only once all are complete; see common/fileio.staging_dir):
    <output_name>_000.tfrecord, _001, ...  `samples_per_file` examples each, in listing order, so the
                                           output is the same whatever `num_threads` (format:
                                           datasets/tfrecord_decoder.py)
    <output_name>_metadata.json:
        {"format_version": 1,
         "output_name": "voc_2007_test",
         "split": "test" or null (every annotation),
         "source_dir": absolute path of dataset_dir,
         "num_examples": images written,
         "num_objects": objects written (difficult included), "num_difficult": ..., "num_truncated": ...,
         "objects_per_class": {"aeroplane": n, ...},
         "class_names": [...] names of labels 1..N, "num_classes": N + 1 (label 0 is background),
         "samples_per_file": 200, "shards": [file names in order], "shard_sizes": [examples per shard],
         "skipped": [{"file": path, "reason": text}, ...]}
Dataset definitions (datasets/dataset_factory.py) take split sizes and class names from this file.
"""
import collections
import concurrent.futures
import dataclasses
import io
import itertools
import json
import math
import os
import re

import numpy as np
import tensorflow as tf
from PIL import Image, UnidentifiedImageError

from common.errors import DatasetError
from common.fileio import staging_dir
from datasets import tfrecord_decoder as fmt
from datasets.pixel_boxes import voc_to_relative
from datasets.voc_classes import VOC_CLASSES
from datasets.voc_xml import read_voc_annotation

FORMAT_VERSION = 1
# Pillow modes whose files TF's decode_jpeg / decode_png turn into RGB, with the file's channel count.
_JPEG_MODES = {"L": 1, "RGB": 3, "CMYK": 4}
_PNG_CHANNELS = {"1": 1, "L": 1, "I": 1, "I;16": 1, "P": 3, "LA": 2, "RGB": 3, "RGBA": 4}
_PNG_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def shard_name(output_name, index):
    return f"{output_name}_{index:03d}.tfrecord"


def metadata_name(output_name):
    return f"{output_name}_metadata.json"


def read_labels_file(path):
    """A labels file -> tuple of class names (labels 1..N in file order).

    One class name a line; blank lines and `#` comments are ignored. Duplicates, an empty list, or a
    `background` entry (label 0 is implicit) raise DatasetError.
    """
    try:
        with open(path, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise DatasetError(path, f"cannot read labels file ({err.strerror or err})") from None
    names, seen = [], {}
    for number, line in enumerate(lines, 1):
        name = line.split("#", 1)[0].strip()
        if not name:
            continue
        if name in seen:
            raise DatasetError(path, f"line {number}: duplicate class name {name!r} (first on line {seen[name]})")
        if name.lower() in ("background", "__background__"):
            raise DatasetError(path, f"line {number}: label 0 is the implicit background; list only object classes")
        seen[name] = number
        names.append(name)
    if not names:
        raise DatasetError(path, "no class names")
    return tuple(names)


def list_image_ids(dataset_dir, split=None):
    """Image ids to convert, in order: ImageSets/Main/<split>.txt, or every Annotations/*.xml sorted."""
    if split:
        path = os.path.join(dataset_dir, "ImageSets", "Main", f"{split}.txt")
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise DatasetError(path, f"cannot read split list ({err.strerror or err})") from None
        ids, seen = [], set()
        for number, line in enumerate(lines, 1):
            tokens = line.split()
            if not tokens:
                continue
            if tokens[0] in seen:
                raise DatasetError(path, f"line {number}: image id {tokens[0]!r} listed twice")
            seen.add(tokens[0])
            ids.append(tokens[0])
    else:
        path = os.path.join(dataset_dir, "Annotations")
        try:
            names = os.listdir(path)
        except OSError as err:
            raise DatasetError(path, f"cannot list annotations ({err.strerror or err})") from None
        ids = sorted(n[:-4] for n in names if n.endswith(".xml"))
    if not ids:
        raise DatasetError(path, "no images listed")
    return ids


@dataclasses.dataclass(frozen=True)
class VOCSample:
    """One checked image: its file's bytes and its annotation (pixel boxes, as in the XML)."""
    image_id: str
    image_path: str
    encoded: bytes
    image_format: str  # "jpeg" or "png"
    height: int
    width: int
    channels: int
    annotation: object  # datasets.voc_xml.VOCAnnotation


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


def check_annotation(xml_path, annotation, class_names):
    """Raises DatasetError naming `xml_path` for an unknown class or a box outside the XML's <size>."""
    width, height = annotation.width, annotation.height
    if width < 1 or height < 1:
        raise DatasetError(xml_path, f"invalid <size> {width}x{height}")
    known = set(class_names)
    for number, obj in enumerate(annotation.objects, 1):
        if obj.name not in known:
            raise DatasetError(xml_path, f"object {number}: unknown class {obj.name!r} "
                                         f"(not among the {len(class_names)} class names)")
        for lo, hi, size, axis in ((obj.xmin, obj.xmax, width, "x"), (obj.ymin, obj.ymax, height, "y")):
            if not (math.isfinite(lo) and math.isfinite(hi) and 1 <= lo <= hi <= size):
                raise DatasetError(xml_path, f"object {number} ({obj.name}): invalid box, {axis}min={lo:g} "
                                             f"{axis}max={hi:g} not within 1 <= {axis}min <= {axis}max <= {size}")


def load_sample(dataset_dir, image_id, class_names):
    """Reads and checks one image and its annotation -> VOCSample; raises DatasetError naming the file."""
    xml_path = os.path.join(dataset_dir, "Annotations", f"{image_id}.xml")
    if not os.path.isfile(xml_path):
        raise DatasetError(xml_path, "missing annotation file")
    annotation = read_voc_annotation(xml_path)
    check_annotation(xml_path, annotation, class_names)
    image_dir = os.path.join(dataset_dir, "JPEGImages")
    image_path = os.path.join(image_dir, f"{image_id}.jpg")
    named = os.path.join(image_dir, os.path.basename(annotation.filename)) if annotation.filename else None
    if named and os.path.isfile(named):
        image_path = named
    elif not os.path.isfile(image_path):
        also = f" (nor {named}, the annotation's <filename>)" if named and named != image_path else ""
        raise DatasetError(image_path, f"missing image file{also}")
    try:
        with open(image_path, "rb") as f:
            encoded = f.read()
    except OSError as err:
        raise DatasetError(image_path, f"cannot read image ({err.strerror or err})") from None
    kind, width, height, channels = inspect_image(image_path, encoded)
    if (width, height) != (annotation.width, annotation.height):
        raise DatasetError(xml_path, f"<size> is {annotation.width}x{annotation.height} but the image "
                                     f"{image_path} is {width}x{height}")
    return VOCSample(image_id, image_path, encoded, kind, height, width, channels, annotation)


def _int64s(values):
    return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(v) for v in values]))


def _floats(values):
    return tf.train.Feature(float_list=tf.train.FloatList(value=[float(v) for v in values]))


def _bytes(values):
    return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(values)))


def sample_to_example(sample, class_names):
    """VOCSample -> tf.train.Example (format in datasets/tfrecord_decoder.py); labels are 1-based indices."""
    objects = sample.annotation.objects
    label = {name: i + 1 for i, name in enumerate(class_names)}
    pixel = np.array([[o.xmin, o.ymin, o.xmax, o.ymax] for o in objects], np.float64).reshape(-1, 4)
    rel = voc_to_relative(pixel, sample.height, sample.width)  # [G, 4] ymin, xmin, ymax, xmax
    feature = {
        fmt.ENCODED: _bytes([sample.encoded]),
        fmt.FORMAT: _bytes([sample.image_format.encode()]),
        fmt.FILENAME: _bytes([sample.image_id.encode()]),
        fmt.HEIGHT: _int64s([sample.height]),
        fmt.WIDTH: _int64s([sample.width]),
        fmt.CHANNELS: _int64s([sample.channels]),
        fmt.YMIN: _floats(rel[:, 0]), fmt.XMIN: _floats(rel[:, 1]),
        fmt.YMAX: _floats(rel[:, 2]), fmt.XMAX: _floats(rel[:, 3]),
        fmt.LABEL: _int64s([label[o.name] for o in objects]),
        fmt.LABEL_TEXT: _bytes([o.name.encode() for o in objects]),
        fmt.DIFFICULT: _int64s([o.difficult for o in objects]),
        fmt.TRUNCATED: _int64s([o.truncated for o in objects]),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature))


def _ordered_map(fn, items, num_threads):
    """Yields fn(item) for items in order, computing at most a few per thread ahead of the consumer."""
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


def convert_voc(dataset_dir, output_dir, output_name, split=None, class_names=VOC_CLASSES,
                samples_per_file=200, num_threads=None, skip_invalid=False, progress_fn=None):
    """Converts a VOC-layout folder into `<output_name>_NNN.tfrecord` shards + metadata in `output_dir`.

    Returns the metadata dict (also written as `<output_name>_metadata.json`). Raises DatasetError
    naming the file for the first invalid image unless `skip_invalid`, and when nothing valid is left;
    in both cases `output_dir` is left as it was. `progress_fn(num_done, num_total)` is called after each
    image. Shards of an earlier run with the same `output_name` that this run does not rewrite are removed.
    """
    class_names = tuple(class_names)
    if len(set(class_names)) != len(class_names) or not class_names:
        raise ValueError(f"class_names must be distinct and non-empty: {class_names}")
    if samples_per_file < 1:
        raise ValueError(f"samples_per_file must be >= 1, got {samples_per_file}")
    num_threads = (os.cpu_count() or 1) if num_threads is None else num_threads
    if num_threads < 1:
        raise ValueError(f"num_threads must be >= 1, got {num_threads}")
    if not output_name or os.path.basename(output_name) != output_name:
        raise ValueError(f"output_name must be a plain file name prefix, got {output_name!r}")
    if not os.path.isdir(dataset_dir):
        raise DatasetError(dataset_dir, "dataset directory does not exist")
    image_ids = list_image_ids(dataset_dir, split)

    def convert_one(image_id):
        try:
            sample = load_sample(dataset_dir, image_id, class_names)
        except DatasetError as err:
            return err
        return sample.annotation.objects, sample_to_example(sample, class_names).SerializeToString()

    skipped, shards, shard_sizes = [], [], []
    counts = collections.Counter()
    per_class = dict.fromkeys(class_names, 0)
    with staging_dir(output_dir) as stage:
        writer = None
        results = _ordered_map(convert_one, image_ids, num_threads)
        try:
            for done, result in enumerate(results, 1):
                if isinstance(result, DatasetError):
                    if not skip_invalid:
                        raise result
                    skipped.append({"file": result.path, "reason": result.reason})
                else:
                    objects, record = result
                    if writer is None:
                        shards.append(shard_name(output_name, len(shards)))
                        shard_sizes.append(0)
                        writer = tf.io.TFRecordWriter(os.path.join(stage, shards[-1]))
                    writer.write(record)
                    shard_sizes[-1] += 1
                    if shard_sizes[-1] == samples_per_file:
                        writer.close()
                        writer = None
                    counts["objects"] += len(objects)
                    counts["difficult"] += sum(1 for o in objects if o.difficult)
                    counts["truncated"] += sum(1 for o in objects if o.truncated)
                    for o in objects:
                        per_class[o.name] += 1
                if progress_fn is not None:
                    progress_fn(done, len(image_ids))
        finally:
            results.close()  # on a strict failure: cancel the images not started yet
            if writer is not None:
                writer.close()
        if not shards:
            raise DatasetError(dataset_dir, f"none of the {len(image_ids)} listed images is valid")
        metadata = {
            "format_version": FORMAT_VERSION,
            "output_name": output_name,
            "split": split or None,
            "source_dir": os.path.abspath(dataset_dir),
            "num_examples": sum(shard_sizes),
            "num_objects": counts["objects"],
            "num_difficult": counts["difficult"],
            "num_truncated": counts["truncated"],
            "objects_per_class": per_class,
            "class_names": list(class_names),
            "num_classes": len(class_names) + 1,
            "samples_per_file": samples_per_file,
            "shards": shards,
            "shard_sizes": shard_sizes,
            "skipped": skipped,
        }
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
