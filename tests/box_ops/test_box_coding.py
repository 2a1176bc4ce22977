"""Box coding and Caffe matching against the NumPy references in reference.py."""
import numpy as np
import pytest
import tensorflow as tf

from box_ops import anchors as anchors_lib
from box_ops import box_coding
from nets.ssd_vgg_300 import SSD300_PARAMS
from tests.box_ops import reference

VAR = (0.1, 0.1, 0.2, 0.2)


def run(fetches):
    with tf.compat.v1.Session() as sess:
        return sess.run(fetches)


def random_boxes(rng, n, min_size=0.02, max_size=0.6):
    size = rng.uniform(min_size, max_size, (n, 2))
    corner = rng.uniform(0, 1 - size)
    return np.concatenate([corner, corner + size], axis=1).astype(np.float32)


def test_encode_decode_round_trip():
    rng = np.random.default_rng(0)
    anchors = anchors_lib.ssd_anchors(SSD300_PARAMS)
    boxes = random_boxes(rng, len(anchors))
    with tf.Graph().as_default():
        enc = box_coding.encode_boxes(boxes, anchors, VAR)
        dec = box_coding.decode_boxes(enc, anchors, VAR)
        enc_v, dec_v = run([enc, dec])
    np.testing.assert_allclose(dec_v, boxes, atol=1e-5)
    # Against the reference encoder, on a sample.
    for i in rng.integers(0, len(anchors), 50):
        np.testing.assert_allclose(enc_v[i], reference.encode(boxes[i], anchors[i], VAR), rtol=1e-4, atol=1e-4)


def test_decode_batched_shapes():
    anchors = anchors_lib.prior_box((2, 2), (10, 10), [4], [], [])
    with tf.Graph().as_default():
        out = run(box_coding.decode_boxes(np.zeros((3, 4, 4), np.float32), anchors, VAR))
    assert out.shape == (3, 4, 4)
    np.testing.assert_allclose(out[1], anchors, atol=1e-6)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_match_equals_caffe_match_bbox(seed):
    rng = np.random.default_rng(seed)
    anchors = anchors_lib.ssd_anchors(SSD300_PARAMS)
    # A subset of anchors keeps the brute force fast while keeping real anchor geometry.
    anchors = anchors[rng.choice(len(anchors), 600, replace=False)]
    gt = random_boxes(rng, 7, 0.05, 0.7)
    with tf.Graph().as_default():
        ours = run(box_coding.match(gt, anchors, 0.5))
    np.testing.assert_array_equal(ours, reference.caffe_match(gt, anchors, 0.5))


@pytest.mark.parametrize("seed", [0, 1])
def test_match_on_every_anchor_with_crowded_and_duplicate_boxes(seed):
    """All 8,732 SSD-300 anchors, and boxes made to fight over the same anchors: near-copies of one box
    (their best anchors collide, so the greedy order decides) and exact duplicates (tied IoU columns, so
    the tie order decides), plus a few others."""
    rng = np.random.default_rng(10 + seed)
    anchors = anchors_lib.ssd_anchors(SSD300_PARAMS)
    base = random_boxes(rng, 1, 0.2, 0.4)
    near = np.clip(base + rng.normal(0, 0.01, (6, 4)), 0, 1).astype(np.float32)
    gt = np.concatenate([near, near[:2], base, random_boxes(rng, 3, 0.05, 0.6)])
    gt = gt[rng.permutation(len(gt))]
    with tf.Graph().as_default():
        ours = run(box_coding.match(gt, anchors, 0.5))
    ref = reference.caffe_match(gt, anchors, 0.5)
    np.testing.assert_array_equal(ours, ref)
    # Every box got an anchor of its own in the bipartite step, so each index appears at least once.
    assert set(range(len(gt))) <= set(ours.tolist())


def test_bipartite_resolves_shared_best_anchor():
    # Two boxes whose best anchor is the same: Caffe gives it to the higher IoU and the other its next best.
    anchors = np.array([[0.0, 0.0, 0.5, 0.5], [0.0, 0.0, 0.6, 0.6], [0.5, 0.5, 1.0, 1.0]], np.float32)
    gt = np.array([[0.0, 0.0, 0.5, 0.52], [0.0, 0.0, 0.48, 0.5]], np.float32)
    with tf.Graph().as_default():
        ours = run(box_coding.match(gt, anchors, 0.99))
    ref = reference.caffe_match(gt, anchors, 0.99)
    np.testing.assert_array_equal(ours, ref)
    assert sorted(ours[:2].tolist()) == [0, 1]


def test_box_smaller_than_every_anchor_gets_exactly_its_best_anchor():
    anchors = anchors_lib.ssd_anchors(SSD300_PARAMS)
    tiny = np.array([[0.40, 0.40, 0.41, 0.41]], np.float32)  # 3x3 pixels; smallest anchor is 30x30
    ious = np.array([reference.iou(tiny[0], a) for a in anchors])
    assert ious.max() < 0.5
    with tf.Graph().as_default():
        gclasses, glocs, gscores = run(box_coding.encode_targets([7], tiny, anchors, VAR, 0.5))
    positives = np.flatnonzero(gclasses)
    assert positives.tolist() == [int(np.argmax(ious))]
    assert gclasses[positives[0]] == 7
    np.testing.assert_allclose(gscores[positives[0]], ious.max(), rtol=1e-5)
    with tf.Graph().as_default():
        dec = run(box_coding.decode_boxes(glocs[positives], anchors[positives], VAR))
    np.testing.assert_allclose(dec, tiny, atol=1e-5)


def test_image_without_boxes_gives_all_background():
    anchors = anchors_lib.ssd_anchors(SSD300_PARAMS)
    with tf.Graph().as_default():
        gclasses, glocs, gscores = run(box_coding.encode_targets(
            np.zeros([0], np.int64), np.zeros([0, 4], np.float32), anchors, VAR, 0.5))
    assert gclasses.shape == (8732,) and not gclasses.any()
    assert np.all(glocs == 0) and np.all(gscores == 0)


@pytest.mark.parametrize("seed,num_boxes", [(5, 4), (6, 12)])
def test_encode_targets_on_every_anchor_equal_caffe_match_and_encode(seed, num_boxes):
    """Class, offsets and score of every anchor against the Caffe MatchBBox / EncodeBBox transcriptions:
    the matched box's label, offsets and IoU where matched, exact zeros where background."""
    rng = np.random.default_rng(seed)
    anchors = anchors_lib.ssd_anchors(SSD300_PARAMS)
    gt = random_boxes(rng, num_boxes, 0.05, 0.6)
    gt[-1] = gt[0]  # a duplicate box: the two compete for the same anchors
    labels = rng.integers(1, 21, num_boxes)
    with tf.Graph().as_default():
        gclasses, glocs, gscores = run(box_coding.encode_targets(labels, gt, anchors, VAR, 0.5))
    matches = reference.caffe_match(gt, anchors, 0.5)
    positive = matches >= 0
    assert gclasses.dtype == np.int64 and glocs.shape == (len(anchors), 4)
    np.testing.assert_array_equal(gclasses, np.where(positive, labels[np.maximum(matches, 0)], 0))
    assert np.all(glocs[~positive] == 0) and np.all(gscores[~positive] == 0)
    for i in np.flatnonzero(positive):
        np.testing.assert_allclose(glocs[i], reference.encode(gt[matches[i]], anchors[i], VAR), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(gscores[i], reference.iou(gt[matches[i]], anchors[i]), rtol=1e-5, atol=1e-7)
