"""The TFRecord example format of the project and its decoder for tf.data.

One tf.train.Example per image, written by datasets/voc_to_tfrecords.py:

    image/encoded      bytes    the original image file, byte for byte (JPEG or PNG)
    image/format       bytes    b"jpeg" or b"png"
    image/filename     bytes    the image id, e.g. b"000005"
    image/height, image/width, image/channels   int64 (channels of the file: 1 for grayscale, 3 for RGB)
    image/object/bbox/{xmin,ymin,xmax,ymax}     float  relative to the image (datasets/pixel_boxes.py)
    image/object/bbox/label                     int64  1..N in the order of the class list, 0 is background
    image/object/bbox/label_text                bytes  the class names
    image/object/bbox/difficult, truncated      int64  as written in the XML (absent tag: 0)

COCO records (datasets/coco_to_tfrecords.py) have the same features (filename: the COCO image id as
text; difficult = iscrowd, as Caffe SSD's ReadJSONToAnnotatedDatum; truncated 0) plus:

    image/id                   int64  the COCO image id
    image/object/category_id   int64  COCO's own (non-contiguous) category id of each box
    image/object/iscrowd       int64  COCO's iscrowd
    image/object/area          float  COCO's area (of the segmentation, in pixels)

`parse_example(serialized)` returns the decoded image with its ground truth, `parse_example_encoded` the
still-encoded bytes with it, `parse_example_no_image` the ground truth alone (for evaluation). All work
inside tf.data's `map` and in graph mode.
"""
import tensorflow as tf

ENCODED = "image/encoded"
FORMAT = "image/format"
FILENAME = "image/filename"
HEIGHT = "image/height"
WIDTH = "image/width"
CHANNELS = "image/channels"
XMIN = "image/object/bbox/xmin"
YMIN = "image/object/bbox/ymin"
XMAX = "image/object/bbox/xmax"
YMAX = "image/object/bbox/ymax"
LABEL = "image/object/bbox/label"
LABEL_TEXT = "image/object/bbox/label_text"
DIFFICULT = "image/object/bbox/difficult"
TRUNCATED = "image/object/bbox/truncated"
IMAGE_ID = "image/id"
CATEGORY_ID = "image/object/category_id"
ISCROWD = "image/object/iscrowd"
AREA = "image/object/area"

_HEADER_FEATURES = {
    FORMAT: tf.io.FixedLenFeature([], tf.string, default_value="jpeg"),
    FILENAME: tf.io.FixedLenFeature([], tf.string),
    HEIGHT: tf.io.FixedLenFeature([], tf.int64),
    WIDTH: tf.io.FixedLenFeature([], tf.int64),
    CHANNELS: tf.io.FixedLenFeature([], tf.int64, default_value=3),
    XMIN: tf.io.RaggedFeature(tf.float32),
    YMIN: tf.io.RaggedFeature(tf.float32),
    XMAX: tf.io.RaggedFeature(tf.float32),
    YMAX: tf.io.RaggedFeature(tf.float32),
    LABEL: tf.io.RaggedFeature(tf.int64),
    LABEL_TEXT: tf.io.RaggedFeature(tf.string),
    DIFFICULT: tf.io.RaggedFeature(tf.int64),
    TRUNCATED: tf.io.RaggedFeature(tf.int64),
}
FEATURES = dict(_HEADER_FEATURES, **{ENCODED: tf.io.FixedLenFeature([], tf.string)})


def decode_image(encoded):
    """Encoded JPEG/PNG bytes -> uint8 [H, W, 3] RGB.

    JPEGs use libjpeg's accurate integer IDCT (ISLOW): it gives the same pixels as OpenCV's `imdecode`,
    which Caffe's data layer uses, and as Pillow; TF's default (IFAST) differs by up to a few levels.
    """
    image = tf.cond(
        tf.io.is_jpeg(encoded),
        lambda: tf.io.decode_jpeg(encoded, channels=3, dct_method="INTEGER_ACCURATE"),
        lambda: tf.io.decode_png(encoded, channels=3))
    image.set_shape([None, None, 3])
    return image


def _ground_truth(parsed):
    # RaggedFeature without partitions parses a variable-length list straight to a dense [G] tensor: no
    # SparseTensor and no SparseToDense per field, as VarLenFeature would need.
    boxes = tf.stack([parsed[YMIN], parsed[XMIN], parsed[YMAX], parsed[XMAX]], axis=1)
    return {
        "shape": tf.cast(tf.stack([parsed[HEIGHT], parsed[WIDTH], 3]), tf.int32),
        "filename": parsed[FILENAME],
        "boxes": tf.reshape(boxes, [-1, 4]),
        "labels": parsed[LABEL],
        "label_text": parsed[LABEL_TEXT],
        "difficult": parsed[DIFFICULT],
        "truncated": parsed[TRUNCATED],
    }


def parse_example(serialized):
    """One serialized Example -> dict of tensors.

    image uint8 [H, W, 3] (RGB); shape int32 [3] = [H, W, 3]; filename string (the image id);
    boxes float32 [G, 4] = [ymin, xmin, ymax, xmax] relative; labels int64 [G] (1..N);
    label_text string [G]; difficult int64 [G]; truncated int64 [G].
    """
    out = parse_example_encoded(serialized)
    out["image"] = decode_image(out.pop("encoded"))
    return out


def parse_example_encoded(serialized):
    """As `parse_example`, with the image still encoded (`encoded`: the file's bytes), for training, which
    decodes only the crop it uses."""
    parsed = tf.io.parse_single_example(serialized, FEATURES)
    out = _ground_truth(parsed)
    out["encoded"] = parsed[ENCODED]
    return out


def parse_example_no_image(serialized):
    """As `parse_example`, without the image (the encoded bytes are not even parsed): ground truth only."""
    return _ground_truth(tf.io.parse_single_example(serialized, _HEADER_FEATURES))
