"""SSD VGG pre-processing: the training augmentation as a whole (boxes follow pixels) and evaluation."""
import io

import cv2
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from preprocessing import preprocessing_factory
from preprocessing import ssd_augmentation as aug
from preprocessing import ssd_transforms as T
from nets.ssd_vgg_300 import VGG_MEAN_RGB
from preprocessing import ssd_vgg_preprocessing as prep

MEAN = np.array(VGG_MEAN_RGB, np.float32)
H, W = 375, 500
BACKGROUND = (90, 90, 90)
# Non-overlapping coloured rectangles, pixel rows/cols [y0, y1) x [x0, x1); label i + 1.
RECTS = [((40, 150, 30, 200), (230, 20, 20)), ((200, 360, 60, 170), (20, 220, 20)),
         ((60, 300, 260, 330), (20, 20, 230)), ((250, 330, 380, 480), (230, 230, 20))]
DIFFICULT = [0, 1, 0, 1]


def scene():
    image = np.empty((H, W, 3), np.uint8)
    image[:] = BACKGROUND
    boxes = []
    for (y0, y1, x0, x1), colour in RECTS:
        image[y0:y1, x0:x1] = colour
        boxes.append([y0 / H, x0 / W, y1 / H, x1 / W])
    return image, np.array(boxes, np.float32), np.arange(1, len(RECTS) + 1, dtype=np.int64), np.array(DIFFICULT)


class TrainRunner:
    def __init__(self, **options):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.seed = tf.compat.v1.placeholder(tf.int64, [2])
            self.image = tf.compat.v1.placeholder(tf.uint8, [None, None, 3])
            self.labels = tf.compat.v1.placeholder(tf.int64, [None])
            self.boxes = tf.compat.v1.placeholder(tf.float32, [None, 4])
            self.difficult = tf.compat.v1.placeholder(tf.int64, [None])
            self.out = prep.preprocess_for_train(self.image, self.labels, self.boxes, self.difficult, (300, 300),
                                                 VGG_MEAN_RGB, seed=self.seed, **options)
        self.sess = tf.compat.v1.Session(graph=self.graph)

    def __call__(self, seed, image, labels, boxes, difficult):
        return self.sess.run(self.out, {self.seed: [seed, 3], self.image: image, self.labels: labels,
                                        self.boxes: boxes, self.difficult: difficult})


def check_boxes(boxes):
    assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4
    assert (boxes >= 0).all() and (boxes <= 1).all()
    assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()


def test_boxes_stay_valid_aligned_and_on_their_objects():
    image, boxes, labels, difficult = scene()
    run = TrainRunner(distortion=None)  # colours identify the objects
    kept = 0
    for seed in range(150):
        out, out_labels, out_boxes, out_difficult = run(seed, image, labels, boxes, difficult)
        assert out.shape == (300, 300, 3) and out.dtype == np.float32
        check_boxes(out_boxes)
        assert len(out_labels) == len(out_boxes) == len(out_difficult)
        assert list(out_labels) == sorted(out_labels)  # original order, a subset
        for label, box, diff in zip(out_labels, out_boxes, out_difficult):
            assert diff == DIFFICULT[label - 1]
            y0, x0, y1, x1 = box * 300
            if y1 - y0 < 6 or x1 - x0 < 6:
                continue  # too small for the interpolation to keep the centre pixel's colour
            centre = out[int((y0 + y1) / 2), int((x0 + x1) / 2)] + MEAN
            np.testing.assert_allclose(centre, RECTS[label - 1][1], atol=30, err_msg=f"seed {seed} box {box}")
            kept += 1
    assert kept > 150  # most objects survive most crops


def test_zoom_out_box_frames_the_original_content():
    image, boxes, _, _ = scene()
    frame = np.concatenate([boxes[:1], [[0.0, 0.0, 1.0, 1.0]]]).astype(np.float32)  # red rect, whole image
    run = TrainRunner(samplers=(aug.BatchSampler(),), expand_prob=1.0, flip_prob=0.0, distortion=None,
                      interpolations=("nearest",))
    red = np.array(RECTS[0][1], np.float32) - MEAN
    grey = np.array(BACKGROUND, np.float32) - MEAN
    shrunk = 0
    for seed in range(20):
        out, out_labels, out_boxes, _ = run(seed, image, np.array([1, 2]), frame, np.array([0, 0]))
        assert out_labels.tolist() == [1, 2]
        (ry0, rx0, ry1, rx1), (iy0, ix0, iy1, ix1) = np.round(out_boxes * 300).astype(int)
        # The image sits inside its box, the mean-filled canvas (0 after mean subtraction) around it.
        inside = out[iy0:iy1, ix0:ix1]
        assert (np.abs(inside).sum(-1) > 0).all()
        outside = np.ones((300, 300), bool)
        outside[iy0:iy1, ix0:ix1] = False
        assert (out[outside] == 0).all()
        # The red rectangle fills its box, and the pixels just outside it are grey.
        np.testing.assert_allclose(out[ry0 + 1:ry1 - 1, rx0 + 1:rx1 - 1],
                                   np.broadcast_to(red, (ry1 - ry0 - 2, rx1 - rx0 - 2, 3)))
        np.testing.assert_allclose(out[ry1 + 1, rx0 + 1:rx1 - 1], np.broadcast_to(grey, (rx1 - rx0 - 2, 3)))
        np.testing.assert_allclose(out[ry0 + 1:ry1 - 1, rx1 + 1], np.broadcast_to(grey, (ry1 - ry0 - 2, 3)))
        shrunk += (iy1 - iy0) < 290
    assert shrunk >= 10  # the canvas was larger than the image in most draws


def test_flip_mirrors_image_and_boxes():
    image, boxes, labels, difficult = scene()
    plain, flipped = TrainRunner(flip_prob=0.0), TrainRunner(flip_prob=1.0)
    for seed in range(10):
        a_img, a_labels, a_boxes, _ = plain(seed, image, labels, boxes, difficult)
        b_img, b_labels, b_boxes, _ = flipped(seed, image, labels, boxes, difficult)
        np.testing.assert_allclose(b_img, a_img[:, ::-1], atol=1e-4)
        assert a_labels.tolist() == b_labels.tolist()
        np.testing.assert_allclose(b_boxes[:, [0, 2]], a_boxes[:, [0, 2]])
        np.testing.assert_allclose(b_boxes[:, 1], 1 - a_boxes[:, 3], atol=1e-6)
        np.testing.assert_allclose(b_boxes[:, 3], 1 - a_boxes[:, 1], atol=1e-6)


def test_photometric_distortion_keeps_pixels_in_range_and_seed_reproduces():
    rng = np.random.default_rng(0)
    image = cv2.resize(rng.integers(0, 256, (30, 40, 3)).astype(np.uint8), (W, H))
    image[:50] = 255
    image[50:100] = 0
    _, boxes, labels, difficult = scene()
    run = TrainRunner()
    outputs = []
    for seed in range(30):
        out, out_labels, out_boxes, _ = run(seed, image, labels, boxes, difficult)
        pixels = out + MEAN
        assert np.isfinite(out).all() and pixels.min() >= -1e-3 and pixels.max() <= 255 + 1e-3
        again = run(seed, image, labels, boxes, difficult)
        np.testing.assert_array_equal(out, again[0])
        np.testing.assert_array_equal(out_boxes, again[2])
        outputs.append(out)
    assert all(not np.array_equal(outputs[0], o) for o in outputs[1:])


def test_image_without_boxes():
    image, _, _, _ = scene()
    run = TrainRunner()
    for seed in range(5):
        out, labels, boxes, difficult = run(seed, image, np.zeros([0], np.int64), np.zeros([0, 4], np.float32),
                                            np.zeros([0], np.int64))
        assert out.shape == (300, 300, 3) and boxes.shape == (0, 4) and labels.shape == (0,)


def encode(image, fmt):
    buf = io.BytesIO()
    Image.fromarray(image).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_encoded_input_equals_decoded_input(fmt):
    image, boxes, labels, difficult = scene()
    data = encode(image, fmt)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        seed = tf.compat.v1.placeholder(tf.int64, [2])
        decoded = tf.io.decode_image(data, channels=3, expand_animations=False)
        if fmt == "JPEG":
            decoded = tf.io.decode_jpeg(data, channels=3, dct_method="INTEGER_ACCURATE")
        a = prep.preprocess_for_train(decoded, labels, boxes, difficult, (300, 300), VGG_MEAN_RGB, seed=seed)
        # The size as a run-time value, as in the other path (constant folding may round differently).
        size = tf.compat.v1.placeholder(tf.int32, [2])
        b = prep.preprocess_encoded_for_train(data, size[0], size[1], labels, boxes, difficult, (300, 300), VGG_MEAN_RGB,
                                              seed=seed, dct_method="INTEGER_ACCURATE")
        for s in range(15):
            ra, rb = sess.run([a, b], {seed: [s, 0], size: [H, W]})
            for x, y in zip(ra[1:], rb[1:]):
                np.testing.assert_allclose(x, y, atol=1e-6)
            if fmt == "PNG":
                np.testing.assert_allclose(ra[0], rb[0], atol=1e-3)
            else:  # decoding only the crop may round chroma upsampling differently at the window's edges
                assert np.abs(ra[0] - rb[0]).mean() < 0.5


def test_eval_preprocessing_matches_opencv_linear_resize():
    image, _, _, _ = scene()
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(prep.preprocess_for_eval(image, (300, 300), VGG_MEAN_RGB))
    expected = cv2.resize(image.astype(np.float32), (300, 300), interpolation=cv2.INTER_LINEAR) - MEAN
    np.testing.assert_allclose(out, expected, atol=0.05)


def test_eval_preprocessing_of_uint8_equals_that_of_its_float_values():
    """uint8 frames are resized without a float copy first: the same values bit for bit, up- and downscaled."""
    rng = np.random.default_rng(5)
    for shape in ((2, 180, 320, 3), (1, 120, 90, 3)):
        images = rng.integers(0, 256, shape, dtype=np.uint8)
        with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
            ours, floats = sess.run([prep.preprocess_for_eval(images, (300, 300), VGG_MEAN_RGB),
                                     prep.preprocess_for_eval(images.astype(np.float32), (300, 300), VGG_MEAN_RGB)])
        assert ours.dtype == np.float32
        np.testing.assert_array_equal(ours, floats)


def test_factory():
    assert preprocessing_factory.get_preprocessing("ssd_300_vgg", is_training=True) is prep.preprocess_for_train
    assert preprocessing_factory.get_preprocessing("ssd_512_vgg") is prep.preprocess_for_eval
    assert preprocessing_factory.get_preprocessing("caffe_ssd", True, from_encoded=True) is \
        prep.preprocess_encoded_for_train
    with pytest.raises(ValueError):
        preprocessing_factory.get_preprocessing("resnet")


def test_training_transform_draws_each_transforms_numbers_in_one_op():
    """One random op per draw of a transform (a per-image pipeline is dominated by small ops): Distort,
    Expand, Resize and Flip draw once, BatchSample twice (its trials, then its choice), nothing one by one."""
    image, boxes, labels, difficult = scene()
    with tf.Graph().as_default() as graph:
        prep.preprocess_for_train(image, labels, boxes, difficult, (300, 300), VGG_MEAN_RGB, seed=3)
    random_ops = [op for op in graph.get_operations() if op.type == "StatelessRandomUniformV2"]
    assert len(random_ops) == 6


def _unpadded_geometry(numbers, size, boxes, labels):
    """The transform's geometry written out on the boxes as given (no padding, no XLA), with the ops and the
    numbers of each transform: the reference for the padded, compiled _draw_geometry."""
    canvas, offset = aug.sample_expand(size, numbers["expand"])
    trials, choice = numbers["batch_sample"]
    crops, found = aug.generate_samples(aug.boxes_to_canvas(boxes, size, canvas, offset), trials)
    crop = aug.choose_sample(crops, found, choice)
    flip = numbers["flip"] < 0.5
    window, content, ok, scale, shift = T.Resize((300, 300)).geometry(crop, canvas, offset, size)
    scale = tf.tile(scale * tf.cast(size, tf.float32) / 300.0, [2])
    out_boxes, out_labels = aug.crop_boxes(boxes * scale + tf.tile(shift / 300.0, [2]), labels)
    return window, content, ok, flip, tf.where(flip, aug.flip_boxes(out_boxes), out_boxes), out_labels


@pytest.mark.parametrize("num_boxes", [0, 1, 8, 9, 70])
def test_padded_compiled_geometry_equals_the_plain_one(num_boxes):
    """Across box-count buckets (8 | 9, 64 | 70) and without boxes, the training transform's geometry
    (pixel window, its place in the output, flip, boxes, labels) equals the same steps run on the unpadded
    boxes as plain TensorFlow ops, with the same draws."""
    rng = np.random.default_rng(num_boxes)
    low = rng.uniform(0, 0.8, (num_boxes, 2))
    boxes = np.concatenate([low, low + rng.uniform(0.01, 0.2, (num_boxes, 2))], axis=1).astype(np.float32)
    labels = rng.integers(1, 21, num_boxes)
    with tf.Graph().as_default():
        seed = tf.compat.v1.placeholder(tf.int64, [])
        size = tf.constant([H, W], tf.int32)
        transforms = T.ssd_transforms((300, 300), VGG_MEAN_RGB)
        numbers = T.Compose(transforms).draw(tf.stack([seed, tf.constant(3, tf.int64)]))
        reference = _unpadded_geometry(numbers, size, tf.constant(boxes.reshape(-1, 4)), tf.constant(labels))
        window, content, ok, flip, out_boxes, out_labels, _ = prep._train_geometry(
            tf.constant(boxes.reshape(-1, 4)), tf.constant(labels), tf.constant(labels * 0), size, numbers,
            {type(t): t for t in transforms})
        with tf.compat.v1.Session() as sess:
            kept = 0
            for s in range(30):
                ref, got = sess.run([reference, (window, content, ok, flip, out_boxes, out_labels)], {seed: s})
                for name, a, b in zip(("window", "content", "ok", "flip"), ref[:4], got[:4]):
                    np.testing.assert_array_equal(b, a, err_msg=f"{name}, seed {s}")
                assert got[5].tolist() == ref[5].tolist(), f"seed {s}"
                np.testing.assert_allclose(got[4], ref[4], atol=1e-6, err_msg=f"seed {s}")
                kept += len(got[5])
    assert kept > 0 or num_boxes == 0


def test_a_transform_without_a_fast_path_step_is_refused(monkeypatch):
    """A transform added to the specification's list must get its step in the fast path too: until then the
    fast path refuses to run rather than silently leaving it out."""
    caffe_list = T.ssd_transforms
    monkeypatch.setattr(T, "ssd_transforms", lambda *a, **k: caffe_list(*a, **k) + [T.Flip(name="second_flip")])
    image, boxes, labels, difficult = scene()
    with tf.Graph().as_default(), pytest.raises(NotImplementedError, match="no step"):
        prep.preprocess_for_train(image, labels, boxes, difficult, (300, 300), VGG_MEAN_RGB, seed=3)
