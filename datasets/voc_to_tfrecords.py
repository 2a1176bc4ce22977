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
import dataclasses
import math
import os

import numpy as np

from common.errors import DatasetError
from datasets import tfrecord_decoder as fmt
from datasets.tfrecord_writer import (  # noqa: F401 (shard_name, metadata_name, inspect_image: re-exported)
    bytes_feature, check_writer_args, example, floats, inspect_image, int64s, metadata_name, ordered_map, read_image_file,
    shard_name, turned_by_exif_hint, write_shards)
from datasets.pixel_boxes import voc_to_relative
from datasets.voc_classes import VOC_CLASSES
from datasets.voc_xml import read_voc_annotation

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
    encoded, kind, width, height, channels = read_image_file(image_path)
    if (width, height) != (annotation.width, annotation.height):
        hint = turned_by_exif_hint(encoded, width, height, annotation.width, annotation.height)
        raise DatasetError(xml_path, f"<size> is {annotation.width}x{annotation.height} but the image "
                                     f"{image_path} is {width}x{height}{hint}")
    return VOCSample(image_id, image_path, encoded, kind, height, width, channels, annotation)


def sample_to_example(sample, class_names):
    """VOCSample -> tf.train.Example (format in datasets/tfrecord_decoder.py); labels are 1-based indices."""
    objects = sample.annotation.objects
    label = {name: i + 1 for i, name in enumerate(class_names)}
    pixel = np.array([[o.xmin, o.ymin, o.xmax, o.ymax] for o in objects], np.float64).reshape(-1, 4)
    rel = voc_to_relative(pixel, sample.height, sample.width)  # [G, 4] ymin, xmin, ymax, xmax
    feature = {
        fmt.ENCODED: bytes_feature([sample.encoded]),
        fmt.FORMAT: bytes_feature([sample.image_format.encode()]),
        fmt.FILENAME: bytes_feature([sample.image_id.encode()]),
        fmt.HEIGHT: int64s([sample.height]),
        fmt.WIDTH: int64s([sample.width]),
        fmt.CHANNELS: int64s([sample.channels]),
        fmt.YMIN: floats(rel[:, 0]), fmt.XMIN: floats(rel[:, 1]),
        fmt.YMAX: floats(rel[:, 2]), fmt.XMAX: floats(rel[:, 3]),
        fmt.LABEL: int64s([label[o.name] for o in objects]),
        fmt.LABEL_TEXT: bytes_feature([o.name.encode() for o in objects]),
        fmt.DIFFICULT: int64s([o.difficult for o in objects]),
        fmt.TRUNCATED: int64s([o.truncated for o in objects]),
    }
    return example(feature)


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
    num_threads = check_writer_args(output_name, samples_per_file, num_threads)
    if not os.path.isdir(dataset_dir):
        raise DatasetError(dataset_dir, "dataset directory does not exist")
    image_ids = list_image_ids(dataset_dir, split)

    def convert_one(image_id):
        try:
            sample = load_sample(dataset_dir, image_id, class_names)
        except DatasetError as err:
            return err
        return sample_to_example(sample, class_names).SerializeToString(), sample.annotation.objects

    counts = collections.Counter()
    per_class = dict.fromkeys(class_names, 0)

    def count(objects):
        counts["objects"] += len(objects)
        counts["difficult"] += sum(1 for o in objects if o.difficult)
        counts["truncated"] += sum(1 for o in objects if o.truncated)
        for o in objects:
            per_class[o.name] += 1

    def metadata_fields(shard_sizes):
        return {
            "split": split or None,
            "source_dir": os.path.abspath(dataset_dir),
            "num_examples": sum(shard_sizes),
            "num_objects": counts["objects"],
            "num_difficult": counts["difficult"],
            "num_truncated": counts["truncated"],
            "objects_per_class": per_class,
            "class_names": list(class_names),
            "num_classes": len(class_names) + 1,
        }

    return write_shards(ordered_map(convert_one, image_ids, num_threads), len(image_ids), output_dir, output_name,
                        metadata_fields, samples_per_file=samples_per_file, skip_invalid=skip_invalid,
                        progress_fn=progress_fn, on_record=count, source=dataset_dir)
