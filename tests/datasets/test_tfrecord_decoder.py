"""The record decoder (datasets/tfrecord_decoder.py), in graph mode inside tf.data as the input pipeline uses it.

Examples are built here from the feature names written out (not the module's constants); images are
compared with Pillow's and OpenCV's decoding of the same bytes (OpenCV is what Caffe's data layer uses).
"""
import io
import os

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from voc_testdata import SAMPLES, SPLITS, image_bytes, pixel_boxes, write_voc_dir
from datasets import tfrecord_decoder, voc_to_tfrecords
from datasets.pixel_boxes import relative_to_voc
from datasets.voc_classes import VOC_CLASSES

GT_KEYS = {"shape", "filename", "boxes", "labels", "label_text", "difficult", "truncated"}


def _example(encoded, image_id, height, width, boxes_yxyx, labels, difficult, truncated, with_image=True):
    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=v))

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=v))

    def strings(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=v))

    boxes = np.asarray(boxes_yxyx, np.float32).reshape(-1, 4)
    feature = {
        "image/format": strings([b"jpeg"]), "image/filename": strings([image_id.encode()]),
        "image/height": ints([height]), "image/width": ints([width]), "image/channels": ints([3]),
        "image/object/bbox/ymin": floats(boxes[:, 0]), "image/object/bbox/xmin": floats(boxes[:, 1]),
        "image/object/bbox/ymax": floats(boxes[:, 2]), "image/object/bbox/xmax": floats(boxes[:, 3]),
        "image/object/bbox/label": ints(labels),
        "image/object/bbox/label_text": strings([VOC_CLASSES[i - 1].encode() for i in labels]),
        "image/object/bbox/difficult": ints(difficult), "image/object/bbox/truncated": ints(truncated),
    }
    if with_image:
        feature["image/encoded"] = strings([encoded])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _run(parse_fn, serialized=None, files=None):
    """Runs `parse_fn` over records in a tf.data pipeline in graph mode; returns the list of outputs."""
    with tf.Graph().as_default():
        if files is None:
            dataset = tf.data.Dataset.from_tensor_slices(tf.constant(serialized, tf.string))
        else:
            dataset = tf.data.TFRecordDataset(files)
        dataset = dataset.map(parse_fn)
        item = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        if "image" in item:
            assert item["image"].shape.as_list() == [None, None, 3]
        assert item["boxes"].shape.as_list() == [None, 4]
        out = []
        with tf.compat.v1.Session() as sess:
            while True:
                try:
                    out.append(sess.run(item))
                except tf.errors.OutOfRangeError:
                    return out


def _pillow_rgb(encoded):
    return np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))


def test_fields_and_image_of_a_hand_built_example():
    encoded = image_bytes(37, 29, seed=3)
    boxes = [[0.1, 0.2, 0.3, 0.4], [0.0, 0.05, 1.0, 0.95]]
    [out] = _run(tfrecord_decoder.parse_example,
                 [_example(encoded, "2008_000123", 29, 37, boxes, [12, 15], [0, 1], [1, 0])])
    assert out["image"].dtype == np.uint8 and out["image"].shape == (29, 37, 3)
    np.testing.assert_array_equal(out["image"], _pillow_rgb(encoded))
    opencv = cv2.imdecode(np.frombuffer(encoded, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(out["image"], opencv)  # same pixels as Caffe's data layer
    assert out["shape"].dtype == np.int32 and out["shape"].tolist() == [29, 37, 3]
    assert out["filename"] == b"2008_000123"
    assert out["boxes"].dtype == np.float32
    np.testing.assert_array_equal(out["boxes"], np.float32(boxes))  # [ymin, xmin, ymax, xmax]
    assert out["labels"].dtype == np.int64 and out["labels"].tolist() == [12, 15]
    assert out["label_text"].tolist() == [b"dog", b"person"]
    assert out["difficult"].dtype == np.int64 and out["difficult"].tolist() == [0, 1]
    assert out["truncated"].dtype == np.int64 and out["truncated"].tolist() == [1, 0]


def test_an_image_without_objects():
    [out] = _run(tfrecord_decoder.parse_example, [_example(image_bytes(20, 10), "x", 10, 20, [], [], [], [])])
    assert out["boxes"].shape == (0, 4) and out["boxes"].dtype == np.float32
    for key in ("labels", "difficult", "truncated", "label_text"):
        assert out[key].shape == (0,)


def test_ground_truth_only():
    serialized = _example(b"", "000007", 10, 20, [[0.5, 0.25, 0.75, 1.0]], [3], [1], [0], with_image=False)
    [out] = _run(tfrecord_decoder.parse_example_no_image, [serialized])
    assert set(out) == GT_KEYS
    assert out["shape"].tolist() == [10, 20, 3] and out["filename"] == b"000007"
    np.testing.assert_array_equal(out["boxes"], [[0.5, 0.25, 0.75, 1.0]])
    assert out["labels"].tolist() == [3] and out["difficult"].tolist() == [1]


@pytest.fixture(scope="module")
def converted(tmp_path_factory):
    root = tmp_path_factory.mktemp("decoder")
    voc_dir = write_voc_dir(root / "VOC")
    metadata = voc_to_tfrecords.convert_voc(voc_dir, str(root / "out"), "tv", split="trainval",
                                            samples_per_file=4, num_threads=1)
    return voc_dir, [os.path.join(root, "out", s) for s in metadata["shards"]]


def test_converted_records_decode_to_the_xml_values(converted):
    voc_dir, files = converted
    outputs = _run(tfrecord_decoder.parse_example, files=files)
    assert [o["filename"].decode() for o in outputs] == SPLITS["trainval"]
    for out in outputs:
        image_id = out["filename"].decode()
        width, height, filename, _, _, objects = SAMPLES[image_id]
        with open(os.path.join(voc_dir, "JPEGImages", filename), "rb") as f:
            np.testing.assert_array_equal(out["image"], _pillow_rgb(f.read()))  # JPEG, grayscale JPEG, PNG
        assert out["shape"].tolist() == [height, width, 3]
        pixels = relative_to_voc(out["boxes"], height, width)
        np.testing.assert_allclose(pixels, pixel_boxes(image_id), atol=1e-3)  # the XML's pixel boxes
        assert out["labels"].tolist() == [VOC_CLASSES.index(o.name) + 1 for o in objects]
        assert out["label_text"].tolist() == [o.name.encode() for o in objects]
        assert out["difficult"].tolist() == [o.difficult for o in objects]
        assert out["truncated"].tolist() == [o.truncated for o in objects]
    no_image = _run(tfrecord_decoder.parse_example_no_image, files=files)
    for out, gt in zip(outputs, no_image):
        assert set(gt) == GT_KEYS
        for key in GT_KEYS:
            np.testing.assert_array_equal(gt[key], out[key])
