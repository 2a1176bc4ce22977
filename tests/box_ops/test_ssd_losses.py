"""The multibox loss against reference.multibox_loss (Caffe MultiBoxLoss transcribed)."""
import numpy as np
import pytest
import tensorflow as tf

from box_ops import ssd_losses
from tests.box_ops import reference


@pytest.mark.parametrize("seed", [0, 1])
def test_loss_equals_caffe_multibox_loss(seed):
    rng = np.random.default_rng(seed)
    b, n, c = 3, 200, 6
    logits = rng.normal(0, 2, (b, n, c)).astype(np.float32)
    locs = rng.normal(0, 1.5, (b, n, 4)).astype(np.float32)
    glocs = rng.normal(0, 1.5, (b, n, 4)).astype(np.float32)
    gclasses = np.where(rng.uniform(size=(b, n)) < 0.05, rng.integers(1, c, (b, n)), 0)
    gclasses[2] = 0  # an image without positives contributes no negatives either
    gclasses[1, :100] = rng.integers(1, c, 100)  # an image whose 3x negatives exceed its candidates
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(ssd_losses.ssd_losses(logits, locs, gclasses, glocs, negative_ratio=3.0, alpha=1.0))
    ref = reference.multibox_loss(logits, locs, gclasses, glocs, 3.0, 1.0)
    assert out["total_loss"] == pytest.approx(ref, rel=1e-5)
    assert out["num_positives"] == (gclasses > 0).sum()
    expected_neg = sum(min(int(3 * (gclasses[i] > 0).sum()), (gclasses[i] == 0).sum()) for i in range(b))
    assert out["num_negatives"] == expected_neg


def test_no_positives_gives_finite_zero_loss():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(2, 50, 4)).astype(np.float32)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(ssd_losses.ssd_losses(logits, np.zeros((2, 50, 4), np.float32), np.zeros((2, 50), np.int64),
                                              np.zeros((2, 50, 4), np.float32)))
    assert np.isfinite(out["total_loss"]) and out["total_loss"] == 0.0


def test_external_normaliser_scales_the_loss():
    rng = np.random.default_rng(3)
    logits = rng.normal(size=(2, 60, 4)).astype(np.float32)
    gclasses = np.zeros((2, 60), np.int64)
    gclasses[:, :5] = 2
    args = (logits, np.zeros((2, 60, 4), np.float32), gclasses, np.ones((2, 60, 4), np.float32))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        own = sess.run(ssd_losses.ssd_losses(*args))["total_loss"]
        ext = sess.run(ssd_losses.ssd_losses(*args, num_positives=40.0))["total_loss"]
    assert ext == pytest.approx(own * 10 / 40, rel=1e-6)
