"""Ground truth for the VOC metric: from a VOC folder (Annotations/*.xml) or from the project's TFRecords.

Both give an evaluation.voc_metric.GroundTruth with the devkit's pixel boxes. Objects whose class is not
among the classes scored are left out (the devkit only looks at the class it scores), with a note.
From records, the pixel boxes are recovered from the relative floats with datasets/pixel_boxes, and a
recovered coordinate within 1e-3 of an integer is rounded to it (VOC's coordinates are integers; the
float32 round trip moves them by ~1e-5 for images up to a few thousand pixels).
"""
import collections
import os

import numpy as np

from common.errors import DatasetError
from datasets.pixel_boxes import relative_to_voc
from datasets.voc_xml import read_voc_annotation
from evaluation.voc_metric import GroundTruth

INTEGER_TOLERANCE = 1e-3


def _ignored_note(counter):
    if not counter:
        return ()
    listed = ", ".join(f"{name} ({n})" for name, n in sorted(counter.items()))
    return (f"ignored ground-truth objects of classes not evaluated: {listed}",)


def ground_truth_from_voc(voc_dir, class_names, split=None):
    """GroundTruth from a VOC folder (e.g. VOCdevkit/VOC2007).

    Image ids come from ImageSets/Main/<split>.txt, or are all Annotations/*.xml (sorted) when split is
    None. class_names: the N classes scored, label i+1 = class_names[i]. Raises DatasetError naming the
    file for a missing folder, split file or annotation, or malformed XML.
    """
    from datasets.voc_to_tfrecords import list_image_ids  # the converter's listing (its module imports TF)

    ann_dir = os.path.join(voc_dir, "Annotations")
    if not os.path.isdir(ann_dir):
        raise DatasetError(ann_dir, "VOC Annotations folder does not exist")
    image_ids = list_image_ids(voc_dir, split)
    label_of = {name: i for i, name in enumerate(class_names, start=1)}
    ignored = collections.Counter()

    images = []
    for image_id in image_ids:
        ann = read_voc_annotation(os.path.join(ann_dir, f"{image_id}.xml"))
        kept = [o for o in ann.objects if o.name in label_of]
        ignored.update(o.name for o in ann.objects if o.name not in label_of)
        images.append((image_id, [[o.xmin, o.ymin, o.xmax, o.ymax] for o in kept],
                       [label_of[o.name] for o in kept], [bool(o.difficult) for o in kept]))
    return GroundTruth.from_images(class_names, images, notes=_ignored_note(ignored), source=voc_dir)


def round_near_integers(values, tolerance=INTEGER_TOLERANCE):
    """Rounds the values within `tolerance` of an integer to it; leaves the others as they are."""
    values = np.asarray(values, dtype=np.float64)
    nearest = np.round(values)
    return np.where(np.abs(values - nearest) <= tolerance, nearest, values)


def _feature(features, key, kind, path, index):
    feature = features.get(key)
    if feature is None:
        raise DatasetError(path, f"record {index} has no feature {key!r}")
    return getattr(feature, kind).value


def _parse_record(example, path, index, num_classes):
    """tf.train.Example -> (image_id, pixel boxes [G, 4], labels [G], difficult [G], label_text [G] or None)."""
    f = example.features.feature
    image_id = bytes(_feature(f, "image/filename", "bytes_list", path, index)[0]).decode("utf-8")
    height = _feature(f, "image/height", "int64_list", path, index)[0]
    width = _feature(f, "image/width", "int64_list", path, index)[0]
    coords = [np.asarray(_feature(f, f"image/object/bbox/{k}", "float_list", path, index), dtype=np.float32)
              for k in ("ymin", "xmin", "ymax", "xmax")]
    labels = np.asarray(_feature(f, "image/object/bbox/label", "int64_list", path, index), dtype=np.int64)
    difficult = np.asarray(_feature(f, "image/object/bbox/difficult", "int64_list", path, index), dtype=bool)
    texts = f.get("image/object/bbox/label_text")
    texts = [bytes(t).decode("utf-8") for t in texts.bytes_list.value] if texts is not None else None
    sizes = {len(c) for c in coords} | {len(labels), len(difficult)} | ({len(texts)} if texts else set())
    if len(sizes) != 1:
        raise DatasetError(path, f"record {index} ({image_id}): box, label and difficult lists differ in length")
    bad = (labels < 1) | (labels > num_classes)
    if bad.any():
        raise DatasetError(path, f"record {index} ({image_id}): label {labels[bad][0]} outside 1..{num_classes}")
    if height <= 0 or width <= 0:
        raise DatasetError(path, f"record {index} ({image_id}): image size {height}x{width}")
    boxes = round_near_integers(relative_to_voc(np.stack(coords, axis=-1).reshape(-1, 4), height, width))
    return image_id, boxes, labels, difficult, texts


def ground_truth_from_records(files, class_names):
    """GroundTruth from TFRecord shards (list of paths) without decoding the images.

    Reads `image/filename` (the image id), `image/height`, `image/width`,
    `image/object/bbox/{xmin,ymin,xmax,ymax}` (relative), `image/object/bbox/label` (1..N) and
    `image/object/bbox/difficult`; where `image/object/bbox/label_text` is present it must agree with
    class_names. Works in eager and graph-mode programs alike (a plain record iterator, no tf.data).
    """
    import tensorflow as tf  # imported here: the metric itself needs no TensorFlow

    if not files:
        raise DatasetError(None, "no TFRecord files to read ground truth from")
    num_classes = len(class_names)

    def images():
        for path in files:
            if not os.path.isfile(path):
                raise DatasetError(path, "TFRecord file does not exist")
            try:
                for index, raw in enumerate(tf.compat.v1.io.tf_record_iterator(path)):
                    try:
                        example = tf.train.Example.FromString(raw)
                    except Exception as err:  # protobuf's DecodeError
                        raise DatasetError(path, f"record {index} is not a tf.train.Example ({err})") from None
                    image_id, boxes, labels, difficult, texts = _parse_record(example, path, index, num_classes)
                    if texts is not None:
                        for label, text in zip(labels.tolist(), texts):
                            if text != class_names[label - 1]:
                                raise DatasetError(path, f"record {index} ({image_id}): label {label} is {text!r} "
                                                         f"in the record but {class_names[label - 1]!r} in the "
                                                         "class list")
                    yield image_id, boxes, labels, difficult
            except tf.errors.OpError as err:
                raise DatasetError(path, f"corrupt TFRecord file ({err.message.splitlines()[0]})") from None

    return GroundTruth.from_images(class_names, images(), source=files[0] if len(files) == 1 else None)
