"""Winograd F(m x m, 3 x 3) convolutions and the optimised Detector, against direct convolutions."""
import numpy as np
import pytest
import tensorflow as tf

from inference import winograd
from inference.detector import Detector
from training.checkpoints import save_initial_model


def numpy_conv3x3(x, kernel, padding):
    """Direct cross-correlation in float64, NHWC x HWIO, stride 1: the definition written out."""
    x = np.asarray(x, np.float64)
    if padding == "SAME":
        x = np.pad(x, [(0, 0), (1, 1), (1, 1), (0, 0)])
    out_h, out_w = x.shape[1] - 2, x.shape[2] - 2
    out = np.zeros((x.shape[0], out_h, out_w, kernel.shape[3]))
    for i in range(3):
        for j in range(3):
            out += np.einsum("bhwc,co->bhwo", x[:, i:i + out_h, j:j + out_w], kernel[i, j].astype(np.float64))
    return out


def test_kernel_transform_is_g_kernel_gt():
    rng = np.random.default_rng(0)
    kernel = rng.standard_normal((3, 3, 4, 5)).astype(np.float32)
    for tile in (2, 4, 6):
        _, g, _ = winograd.TRANSFORMS[tile]
        expected = np.einsum("xi,ijco,yj->xyco", g, kernel.astype(np.float64), g).reshape(-1, 4, 5)
        np.testing.assert_allclose(winograd.transform_kernel(kernel, tile), expected, rtol=1e-5, atol=1e-6)


def test_transforms_reproduce_the_one_dimensional_correlation():
    """A^T [(G g) * (B^T d)] = the 'valid' correlation of d with g, for every tile size (Lavin & Gray eq. 5)."""
    rng = np.random.default_rng(1)
    for tile, (bt, g, at) in winograd.TRANSFORMS.items():
        d, k = rng.standard_normal(tile + 2), rng.standard_normal(3)
        np.testing.assert_allclose(at @ ((g @ k) * (bt @ d)), np.correlate(d, k, "valid"), atol=1e-12)


@pytest.mark.parametrize("tile", [2, 4, 6])
@pytest.mark.parametrize("padding", ["SAME", "VALID"])
@pytest.mark.parametrize("size", [(7, 10), (3, 3), (1, 1), (12, 8)])
def test_winograd_conv2d_equals_direct_convolution(tile, padding, size):
    if padding == "VALID" and min(size) < 3:
        pytest.skip("no output")
    rng = np.random.default_rng(sum(size) + tile)
    x = rng.standard_normal((2,) + size + (5,)).astype(np.float32)
    kernel = rng.standard_normal((3, 3, 5, 6)).astype(np.float32)
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [None, size[0], size[1], 5])  # dynamic batch
        ours = winograd.winograd_conv2d(images, kernel, padding, tile)
        direct = tf.nn.conv2d(images, kernel, 1, padding)
        with tf.compat.v1.Session() as sess:
            got, tf_direct = sess.run([ours, direct], {images: x})
    expected = numpy_conv3x3(x, kernel, padding)
    assert got.shape == expected.shape == tf_direct.shape
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_default_policy_picks_the_measured_tile_sizes():
    policy = winograd.default_policy
    assert policy([None, 300, 300, 3], (3, 3, 3, 64)) == 0            # conv1_1: nothing to save
    assert policy([None, 300, 300, 64], (3, 3, 64, 64)) == 6
    assert policy([None, 300, 300, 64], (3, 3, 64, 64), large_maps=False) == 0
    assert policy([None, 150, 150, 128], (3, 3, 128, 128), large_maps=False) == 6
    assert policy([None, 38, 38, 512], (3, 3, 512, 512)) == 4
    assert policy([None, 1, 1, 256], (3, 3, 256, 84)) == 4


def test_rewrite_replaces_only_eligible_convolutions():
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 20, 20, 64)).astype(np.float32)
    with tf.Graph().as_default() as graph:
        images = tf.compat.v1.placeholder(tf.float32, [None, 20, 20, 64], name="images")
        k3 = tf.constant(rng.standard_normal((3, 3, 64, 64)).astype(np.float32) / 24)
        k1 = tf.constant(rng.standard_normal((1, 1, 64, 64)).astype(np.float32) / 8)
        a = tf.nn.relu(tf.nn.bias_add(tf.nn.conv2d(images, k3, 1, "SAME", name="same3x3"), tf.ones([64])))
        b = tf.nn.conv2d(a, k3, 2, "SAME", name="stride2")        # stride 2: kept
        c = tf.nn.conv2d(a, k1, 1, "VALID", name="pointwise")     # 1x1: kept
        d = tf.nn.conv2d(a, k3, 1, "VALID", name="valid3x3")
        small = tf.nn.conv2d(images[..., :8], k3[:, :, :8], 1, "SAME", name="few_channels")  # policy: kept
        outputs = [tf.identity(t, name=f"out{i}") for i, t in enumerate([b, c, d, small])]
        graph_def = graph.as_graph_def()
        with tf.compat.v1.Session() as sess:
            expected = sess.run(outputs, {images: x})
    rewritten, names = winograd.rewrite_convolutions(graph_def)
    assert names == ["same3x3", "valid3x3"]
    assert graph_def is not rewritten and len(rewritten.node) > len(graph_def.node)
    with tf.Graph().as_default() as graph:
        tf.graph_util.import_graph_def(rewritten, name="")
        assert graph.get_operation_by_name("same3x3").type == "Identity"
        assert graph.get_operation_by_name("stride2").type == "Conv2D"
        with tf.compat.v1.Session() as sess:
            got = sess.run([f"out{i}:0" for i in range(4)], {"images:0": x})
    for g, e in zip(got, expected):
        np.testing.assert_allclose(g, e, rtol=0, atol=1e-4 * np.abs(e).max())


def _matched(ref, ours, min_iou, score_tol):
    """Fraction of ref's detections matched one-to-one by ours (same label, IoU, score)."""
    used, hits = set(), 0
    for label, score, box in zip(ref["classes"], ref["scores"], ref["boxes"]):
        for j, (l2, s2, b2) in enumerate(zip(ours["classes"], ours["scores"], ours["boxes"])):
            if j in used or l2 != label or abs(s2 - score) > score_tol:
                continue
            ih = max(0.0, min(box[2], b2[2]) - max(box[0], b2[0]))
            iw = max(0.0, min(box[3], b2[3]) - max(box[1], b2[1]))
            union = (box[2] - box[0]) * (box[3] - box[1]) + (b2[2] - b2[0]) * (b2[3] - b2[1]) - ih * iw
            if union > 0 and ih * iw / union >= min_iou:
                used.add(j)
                hits += 1
                break
    return hits / max(len(ref["scores"]), 1)


@pytest.mark.slow
def test_optimized_detector_detects_what_the_plain_one_does(tmp_path):
    """Frozen graph + Winograd + XLA: the same detections as the plain graph (XLA compiles for ~20 s)."""
    save_initial_model(str(tmp_path), class_names=["a", "b", "c"], seed=1)
    rng = np.random.default_rng(3)
    images = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    with Detector(str(tmp_path), keep_top_k=50) as plain:
        expected = plain.detect_batch(images)
    with Detector(str(tmp_path), keep_top_k=50, optimize=True) as fast:
        rewritten = [op.name for op in fast.graph.get_operations() if op.name.endswith("/winograd/gemm")]
        got = fast.detect_batch(images)
    assert len(rewritten) >= 10  # conv4 / conv5 (64 channels in the lite model), fc6 and the heads
    for e, g in zip(expected, got):
        assert len(g["scores"]) == len(e["scores"]) == 50
        assert _matched(e, g, 0.99, 1e-4) == 1.0
