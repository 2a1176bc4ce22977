import cv2
import numpy as np
import pytest
import tensorflow as tf

from preprocessing import resizing


@pytest.mark.parametrize("out_size", [(20, 30), (37, 53), (74, 100), (13, 160), (300, 300), (1, 1)])
def test_nearest_is_opencvs_inter_nearest_exactly(out_size):
    """Caffe's NEAREST is OpenCV's INTER_NEAREST (floor(x * W / w), no half-pixel offset): bit for bit, down,
    up and mixed."""
    image = np.random.default_rng(11).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(resizing.resize_nearest_opencv(tf.constant(image), tf.constant(out_size)))
    np.testing.assert_array_equal(out, cv2.resize(image, out_size[::-1], interpolation=cv2.INTER_NEAREST))


def test_lanczos3_equals_tf_image_resize_bit_for_bit():
    """The two height passes give exactly tf.image.resize's Lanczos-3: down, up, mixed, one-pixel sides,
    the pipeline's 500x375 -> 300x300, uint8 and float, one and three channels."""
    rng = np.random.default_rng(12)
    cases = [((375, 500, 3), (300, 300)), ((37, 53, 3), (20, 30)), ((20, 30, 3), (300, 300)),
             ((13, 160, 3), (90, 40)), ((1, 1, 3), (5, 7)), ((9, 1, 3), (1, 4)), ((1, 17, 3), (3, 1)),
             ((64, 48, 1), (64, 48))]
    cases += [((int(h), int(w), 3), (int(oh), int(ow))) for h, w, oh, ow in rng.integers(1, 400, (12, 4))]
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        image = tf.compat.v1.placeholder(tf.uint8, [None, None, None])
        floats = tf.compat.v1.placeholder(tf.float32, [None, None, None])
        size = tf.compat.v1.placeholder(tf.int32, [2])
        ours = [resizing.resize_lanczos3(image, size), resizing.resize_lanczos3(floats, size)]
        theirs = [tf.image.resize(image, size, method="lanczos3"), tf.image.resize(floats, size, method="lanczos3")]
        for shape, out_size in cases:
            pixels = rng.integers(0, 256, shape).astype(np.uint8)
            feed = {image: pixels, floats: rng.uniform(-50, 300, shape).astype(np.float32), size: out_size}
            got, want = sess.run([ours, theirs], feed)
            for g, w in zip(got, want):
                assert g.dtype == np.float32 and g.shape == out_size + shape[2:]
                np.testing.assert_array_equal(g, w, err_msg=f"{shape} -> {out_size}")
        # The two are not the same computation by accident: a plain bilinear differs.
        assert not np.array_equal(got[0], sess.run(tf.image.resize(image, size), feed))


@pytest.mark.parametrize("method", resizing.INTERPOLATIONS)
def test_resize_saturates_and_keeps_the_shape(method):
    """Every interpolation returns float32 in [0, 255] of the asked size, on a checkerboard whose sharp edges
    make Lanczos and bicubic overshoot."""
    board = (np.indices((40, 60)).sum(axis=0) % 2 * 255).astype(np.uint8)[..., None].repeat(3, axis=2)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(resizing.resize(tf.constant(board), tf.constant([33, 71]), method))
        raw = sess.run(tf.image.resize(board, [33, 71], method=method))
    assert out.dtype == np.float32 and out.shape == (33, 71, 3)
    assert out.min() >= 0.0 and out.max() <= 255.0
    if method in ("bicubic", "lanczos3"):
        assert raw.min() < 0.0 or raw.max() > 255.0  # there was something to saturate
        np.testing.assert_array_equal(out, np.clip(raw, 0.0, 255.0))
