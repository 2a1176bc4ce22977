"""Batched DetectionOutput against a brute-force NumPy reference (reference.detection_output)."""
import numpy as np
import pytest
import tensorflow as tf

from box_ops import post_processing
from tests.box_ops import reference


def random_case(rng, batch, n, c):
    centers = rng.uniform(0.2, 0.8, (batch, n, 2))
    # Boxes clustered around a few centres so NMS has real work to do.
    centers = np.round(centers * 4) / 4 + rng.normal(0, 0.03, centers.shape)
    size = rng.uniform(0.1, 0.3, (batch, n, 2))
    boxes = np.concatenate([centers - size / 2, centers + size / 2], axis=-1).astype(np.float32)
    logits = rng.normal(0, 2, (batch, n, c))
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return probs.astype(np.float32), boxes


@pytest.mark.parametrize("seed,top_k,keep_top_k", [(0, 400, 200), (1, 15, 30), (2, 50, 10)])
def test_select_detections_equals_detection_output(seed, top_k, keep_top_k):
    rng = np.random.default_rng(seed)
    probs, boxes = random_case(rng, 3, 120, 5)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(post_processing.select_detections(
            probs, boxes, select_threshold=0.05, nms_threshold=0.45, top_k=top_k, keep_top_k=keep_top_k))
    assert out["boxes"].shape == (3, keep_top_k, 4)
    for b in range(3):
        ref = reference.detection_output(probs[b], boxes[b], 0.05, 0.45, top_k, keep_top_k)
        n = int(out["num_detections"][b])
        assert n == len(ref)
        got = sorted(zip(out["classes"][b, :n], out["scores"][b, :n], map(tuple, out["boxes"][b, :n])),
                     key=lambda d: (-d[1], d[0]))
        ref = sorted(((c, s, tuple(bx)) for c, s, bx in ref), key=lambda d: (-d[1], d[0]))
        for (c1, s1, b1), (c2, s2, b2) in zip(got, ref):
            assert c1 == c2
            assert s1 == pytest.approx(s2, abs=1e-6)
            np.testing.assert_allclose(b1, b2, atol=1e-6)
        assert np.all(out["scores"][b, n:] == 0) and np.all(out["classes"][b, n:] == 0)


def test_threshold_is_strict_and_background_never_detected():
    probs = np.array([[[0.0, 0.5, 0.5], [0.9, 0.05, 0.05]]], np.float32)
    boxes = np.array([[[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1]]], np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(post_processing.select_detections(probs, boxes, select_threshold=0.05, keep_top_k=5))
    n = out["num_detections"][0]
    assert n == 2  # the two 0.5 scores; 0.05 is not > 0.05, and background 0.9 is never a detection
    assert set(out["classes"][0, :n].tolist()) == {1, 2}


def _run_both(probs, boxes, **kwargs):
    """select_detections' two formulations (static batch for per_class) on the same inputs."""
    out = {}
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        for nms in post_processing.NMS_FORMULATIONS:
            out[nms] = sess.run(post_processing.select_detections(
                tf.constant(probs), tf.constant(boxes), nms=nms, **kwargs))
    return out


@pytest.mark.parametrize("seed,top_k,keep_top_k", [(3, 400, 200), (4, 15, 30), (5, 50, 10)])
def test_per_class_formulation_equals_detection_output(seed, top_k, keep_top_k):
    """nms="per_class" (the export-friendly one, for TFLite) gives what the reference and "combined" give."""
    rng = np.random.default_rng(seed)
    probs, boxes = random_case(rng, 2, 120, 5)
    out = _run_both(probs, boxes, select_threshold=0.05, top_k=top_k, keep_top_k=keep_top_k)
    for b in range(2):
        ref = reference.detection_output(probs[b], boxes[b], 0.05, 0.45, top_k, keep_top_k)
        for nms, res in out.items():
            n = int(res["num_detections"][b])
            assert n == len(ref), nms
            got = sorted(zip(res["classes"][b, :n], res["scores"][b, :n], map(tuple, res["boxes"][b, :n])),
                         key=lambda d: (-d[1], d[0]))
            for (c1, s1, b1), (c2, s2, b2) in zip(got, sorted(ref, key=lambda d: (-d[1], d[0]))):
                assert c1 == c2 and s1 == pytest.approx(s2, abs=1e-6), nms
                np.testing.assert_allclose(b1, b2, atol=1e-6)
            assert np.all(res["scores"][b, n:] == 0) and np.all(res["classes"][b, n:] == 0)


def test_top_k_ties_keep_the_lower_index_as_caffe():
    """Equal scores at the top_k boundary: Caffe's stable sort keeps the lower anchor index; zeroing the scores
    outside the top_k by position (not by comparison with the k-th score) keeps exactly top_k candidates."""
    boxes = np.array([[[0.0, 0.0, 0.1, 0.1], [0.2, 0.2, 0.3, 0.3], [0.4, 0.4, 0.5, 0.5], [0.6, 0.6, 0.7, 0.7]]],
                     np.float32)
    probs = np.array([[[0.1, 0.9], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]]], np.float32)
    ref = reference.detection_output(probs[0], boxes[0], 0.01, 0.45, 2, 10)
    assert [tuple(b) for _, _, b in ref] == [tuple(boxes[0, 0]), tuple(boxes[0, 1])]
    for nms, res in _run_both(probs, boxes, select_threshold=0.01, top_k=2, keep_top_k=10).items():
        assert int(res["num_detections"][0]) == 2, nms
        np.testing.assert_array_equal(res["boxes"][0, :2], boxes[0, :2])
