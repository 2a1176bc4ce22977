"""COCO instances JSON + image folder -> TFRecord shards and a metadata file (behind tf_convert_data.py).

Input: `annotations_file` (instances_<split>.json: "images", "annotations", "categories") and
`images_dir` (the images' `file_name`s). The JSON is read once and its annotations grouped by image id
into compact arrays (segmentations are dropped while parsing); the images are then streamed in the JSON's
order, a few per thread in flight, so memory holds the annotations, never the images' bytes.

Checks (strict by default: the first failure raises DatasetError and nothing is written):
- the file: well-formed JSON with the three lists; categories with distinct int ids and names;
- images: int id (a duplicate id is an error), file_name, positive width and height; the file exists,
  decodes completely (datasets/tfrecord_writer.inspect_image) and has the JSON's size;
- annotations: a known image id and category id, a bbox of 4 finite numbers with w > 0 and h > 0 that
  lies within the image up to one pixel (-1 <= x, x + w <= width + 1, likewise y), iscrowd 0 or 1.
With `skip_invalid` an invalid annotation is left out on its own, and an invalid image (missing,
corrupt, wrong size, duplicate id) with all its annotations; both are listed under "skipped" (image
problems name the image file, annotation problems the annotations file and the annotation id).
Images without annotations are converted (no boxes), as are iscrowd objects.

Records: the VOC features (datasets/tfrecord_decoder.py) with `image/filename` = the COCO image id as
text, labels 1..K in the order of the JSON's categories, label_text the category names, difficult =
iscrowd (Caffe SSD's ReadJSONToAnnotatedDatum), truncated 0, plus image/id, image/object/category_id,
image/object/iscrowd and image/object/area. Boxes are COCO's float [x, y, w, h] divided by the image size
(datasets/pixel_boxes.coco_to_relative, not clipped), so relative_to_coco gives them back.

Metadata (`<output_name>_metadata.json`), beside the VOC converter's fields: "dataset": "coco",
"annotations_file", "images_dir", "categories": [{"label", "id", "name"}, ...] in label order,
"coco_category_ids" (label i's COCO id at index i - 1), "num_crowd", "num_images_without_objects".
"""
import collections
import json
import math
import os

import numpy as np

from common.errors import DatasetError
from datasets import tfrecord_decoder as fmt
from datasets.pixel_boxes import coco_to_relative
from datasets.tfrecord_writer import (bytes_feature, check_writer_args, example, floats, int64s, ordered_map,
                                      read_image_file, turned_by_exif_hint, write_shards)


class CocoAnnotations:
    """The checked content of an instances JSON.

    categories: ((coco id, name), ...) in the file's order (label i + 1 is categories[i]);
    images: list of (image id, file_name, width, height) in the file's order;
    objects: {image id: (annotation ids [G] int64, category ids [G] int64, boxes [G, 4] float64 xywh,
    iscrowd [G] int64, area [G] float64)}; skipped: [{"file", "reason"}] (with skip_invalid).
    """

    def __init__(self, path, categories, images, objects, skipped):
        self.path = path
        self.categories = categories
        self.images = images
        self.objects = objects
        self.skipped = skipped

    @property
    def class_names(self):
        return tuple(name for _, name in self.categories)

    @property
    def category_ids(self):
        return tuple(cid for cid, _ in self.categories)


def _drop_segmentation(obj):
    obj.pop("segmentation", None)  # polygons and RLE are most of the file; boxes are all SSD needs
    return obj


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def load_json(path):
    """Reads a COCO JSON file (segmentations dropped); DatasetError naming it if missing or malformed."""
    try:
        with open(path, "rb") as f:
            return json.load(f, object_hook=_drop_segmentation)
    except OSError as err:
        raise DatasetError(path, f"cannot read ({err.strerror or err})") from None
    except (ValueError, RecursionError) as err:  # json.JSONDecodeError, bad UTF-8
        raise DatasetError(path, f"malformed JSON ({err})") from None


def _categories(path, data):
    categories, seen_ids, seen_names = [], set(), set()
    for i, cat in enumerate(data):
        cid, name = (cat.get("id"), cat.get("name")) if isinstance(cat, dict) else (None, None)
        if not _is_int(cid) or not isinstance(name, str) or not name:
            raise DatasetError(path, f"category {i}: needs an int 'id' and a non-empty 'name', got {cat!r:.100}")
        if cid in seen_ids or name in seen_names:
            raise DatasetError(path, f"category {i}: duplicate category id {cid} or name {name!r}")
        seen_ids.add(cid)
        seen_names.add(name)
        categories.append((cid, name))
    if not categories:
        raise DatasetError(path, "no categories")
    return tuple(categories)


def _check_image_entry(path, i, image):
    if not isinstance(image, dict):
        raise DatasetError(path, f"image {i}: not an object")
    image_id, file_name = image.get("id"), image.get("file_name")
    width, height = image.get("width"), image.get("height")
    if not _is_int(image_id):
        raise DatasetError(path, f"image {i}: 'id' is not an int ({image_id!r})")
    if not isinstance(file_name, str) or not file_name:
        raise DatasetError(path, f"image id {image_id}: missing 'file_name'")
    if not (_is_int(width) and _is_int(height) and width > 0 and height > 0):
        raise DatasetError(path, f"image id {image_id}: invalid size {width!r}x{height!r}")
    return image_id, file_name, width, height


def _check_annotation(path, ann, sizes, category_ids):
    """-> (id, image id, category id, x, y, w, h, iscrowd, area); DatasetError naming the annotation."""
    if not isinstance(ann, dict):
        raise DatasetError(path, f"annotation {ann!r:.60}: not an object")
    ann_id = ann.get("id")
    where = f"annotation {ann_id}"
    if not _is_int(ann_id):
        raise DatasetError(path, f"{where}: 'id' is not an int")
    image_id, category_id = ann.get("image_id"), ann.get("category_id")
    if not _is_int(image_id) or image_id not in sizes:
        raise DatasetError(path, f"{where}: unknown image id {image_id!r}")
    if not _is_int(category_id) or category_id not in category_ids:
        raise DatasetError(path, f"{where}: unknown category id {category_id!r}")
    bbox = ann.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
        raise DatasetError(path, f"{where}: bbox is not 4 finite numbers ({bbox!r:.80})")
    x, y, w, h = (float(v) for v in bbox)
    width, height = sizes[image_id]
    if not (w > 0 and h > 0):
        raise DatasetError(path, f"{where}: box of non-positive size {w:g}x{h:g}")
    if not (x >= -1 and y >= -1 and x + w <= width + 1 and y + h <= height + 1):
        raise DatasetError(path, f"{where}: box [{x:g}, {y:g}, {w:g}, {h:g}] lies outside image {image_id} "
                                 f"({width}x{height}) by more than a pixel")
    iscrowd = ann.get("iscrowd", 0)
    if iscrowd not in (0, 1) or isinstance(iscrowd, float):
        raise DatasetError(path, f"{where}: iscrowd is not 0 or 1 ({iscrowd!r})")
    area = ann.get("area", w * h)
    if not _is_number(area) or area < 0:
        raise DatasetError(path, f"{where}: invalid area {area!r}")
    return ann_id, image_id, category_id, x, y, w, h, int(iscrowd), float(area)


def read_coco_annotations(path, skip_invalid=False):
    """Reads and checks an instances JSON -> CocoAnnotations (see the module docstring for the checks)."""
    data = load_json(path)
    if not isinstance(data, dict):
        raise DatasetError(path, "not a COCO instances file (the top level is not a JSON object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(path, f"not a COCO instances file (no '{key}' list)")
    categories = _categories(path, data["categories"])
    category_ids = {cid for cid, _ in categories}
    skipped = []

    def refuse(err):
        if not skip_invalid:
            raise err
        skipped.append({"file": err.path, "reason": err.reason})

    entries, counts = [], collections.Counter()
    for i, image in enumerate(data.pop("images")):
        try:
            entries.append(_check_image_entry(path, i, image))
            counts[entries[-1][0]] += 1
        except DatasetError as err:
            refuse(err)
    images, sizes = [], {}
    for entry in entries:
        if counts[entry[0]] == 1:
            images.append(entry)
        elif entry[0] not in sizes:  # which entry the annotations belong to is unknowable: none is kept
            refuse(DatasetError(path, f"image id {entry[0]} listed {counts[entry[0]]} times ({entry[1]})"))
        sizes[entry[0]] = (entry[2], entry[3])  # annotations of a duplicated id are still checked, then dropped
    rows = []
    for ann in data.pop("annotations"):
        try:
            row = _check_annotation(path, ann, sizes, category_ids)
        except DatasetError as err:
            refuse(err)
            continue
        if counts[row[1]] == 1:
            rows.append(row)
    return CocoAnnotations(path, categories, images, _group_by_image(rows), skipped)


def _group_by_image(rows):
    if not rows:
        return {}
    ann_ids, image_ids, cat_ids = (np.array([r[k] for r in rows], np.int64) for k in range(3))
    boxes = np.array([r[3:7] for r in rows], np.float64)
    iscrowd = np.array([r[7] for r in rows], np.int64)
    area = np.array([r[8] for r in rows], np.float64)
    order = np.argsort(image_ids, kind="stable")  # file order within each image
    starts = np.flatnonzero(np.r_[True, np.diff(image_ids[order]) != 0])
    objects = {}
    for part in np.split(order, starts[1:]):
        objects[int(image_ids[part[0]])] = (ann_ids[part], cat_ids[part], boxes[part], iscrowd[part], area[part])
    return objects


_NO_OBJECTS = (np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0, np.int64), np.zeros(0))


def image_example(annotations, image_entry, images_dir):
    """One image -> (serialized tf.train.Example, (category ids [G], iscrowd [G])); DatasetError naming the
    image file if it is missing, corrupt or not of the JSON's size."""
    image_id, file_name, width, height = image_entry
    image_path = os.path.join(images_dir, file_name)
    encoded, kind, file_width, file_height, channels = read_image_file(image_path)
    if (file_width, file_height) != (width, height):
        hint = turned_by_exif_hint(encoded, file_width, file_height, width, height)
        raise DatasetError(image_path, f"is {file_width}x{file_height}, but {annotations.path} says {width}x{height} "
                                       f"(image id {image_id}){hint}")
    _, cat_ids, boxes, iscrowd, area = annotations.objects.get(image_id, _NO_OBJECTS)
    label_of = {cid: i + 1 for i, cid in enumerate(annotations.category_ids)}
    name_of = dict(annotations.categories)
    rel = coco_to_relative(boxes, height, width).reshape(-1, 4)
    feature = {
        fmt.ENCODED: bytes_feature([encoded]),
        fmt.FORMAT: bytes_feature([kind.encode()]),
        fmt.FILENAME: bytes_feature([str(image_id).encode()]),
        fmt.HEIGHT: int64s([height]),
        fmt.WIDTH: int64s([width]),
        fmt.CHANNELS: int64s([channels]),
        fmt.YMIN: floats(rel[:, 0]), fmt.XMIN: floats(rel[:, 1]),
        fmt.YMAX: floats(rel[:, 2]), fmt.XMAX: floats(rel[:, 3]),
        fmt.LABEL: int64s([label_of[c] for c in cat_ids]),
        fmt.LABEL_TEXT: bytes_feature([name_of[c].encode() for c in cat_ids]),
        fmt.DIFFICULT: int64s(iscrowd),
        fmt.TRUNCATED: int64s([0] * len(cat_ids)),
        fmt.IMAGE_ID: int64s([image_id]),
        fmt.CATEGORY_ID: int64s(cat_ids),
        fmt.ISCROWD: int64s(iscrowd),
        fmt.AREA: floats(area),
    }
    return example(feature).SerializeToString(), (cat_ids, iscrowd)


def convert_coco(annotations_file, images_dir, output_dir, output_name, samples_per_file=200, num_threads=None,
                 skip_invalid=False, progress_fn=None):
    """Converts a COCO split into `<output_name>_NNN.tfrecord` shards + metadata in `output_dir`.

    Returns the metadata dict (also written as `<output_name>_metadata.json`). Raises DatasetError naming
    the file (or the annotations file and the annotation id) for the first invalid input unless
    `skip_invalid`, and when no image is valid; `output_dir` is then left as it was.
    `progress_fn(num_done, num_total)` is called after each image.
    """
    num_threads = check_writer_args(output_name, samples_per_file, num_threads)
    if not os.path.isdir(images_dir):
        raise DatasetError(images_dir, "image directory does not exist")
    annotations = read_coco_annotations(annotations_file, skip_invalid=skip_invalid)
    if not annotations.images:
        raise DatasetError(annotations_file, "no images listed")

    def convert_one(entry):
        try:
            return image_example(annotations, entry, images_dir)
        except DatasetError as err:
            return err

    label_of = {cid: i + 1 for i, cid in enumerate(annotations.category_ids)}
    per_class = dict.fromkeys(annotations.class_names, 0)
    counts = collections.Counter()

    def count(info):
        cat_ids, iscrowd = info
        counts["objects"] += len(cat_ids)
        counts["crowd"] += int(np.sum(iscrowd))
        counts["empty"] += not len(cat_ids)
        for c in cat_ids:
            per_class[annotations.class_names[label_of[c] - 1]] += 1

    def metadata_fields(shard_sizes):
        return {
            "dataset": "coco",
            "split": None,
            "annotations_file": os.path.abspath(annotations_file),
            "images_dir": os.path.abspath(images_dir),
            "num_examples": sum(shard_sizes),
            "num_objects": counts["objects"],
            "num_difficult": counts["crowd"],
            "num_truncated": 0,
            "num_crowd": counts["crowd"],
            "num_images_without_objects": counts["empty"],
            "objects_per_class": per_class,
            "class_names": list(annotations.class_names),
            "num_classes": len(annotations.categories) + 1,
            "coco_category_ids": list(annotations.category_ids),
            "categories": [{"label": i + 1, "id": cid, "name": name}
                           for i, (cid, name) in enumerate(annotations.categories)],
        }

    return write_shards(ordered_map(convert_one, annotations.images, num_threads), len(annotations.images),
                        output_dir, output_name, metadata_fields, samples_per_file=samples_per_file,
                        skip_invalid=skip_invalid, skipped=annotations.skipped, progress_fn=progress_fn,
                        on_record=count, source=annotations_file)
