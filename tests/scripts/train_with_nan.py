"""train_ssd_network.py whose total loss is NaN at one global step, for the test of the NaN stop. The loss is
wrapped here, from the test's side, so that the library's graph carries no test-only hook.

    python tests/scripts/train_with_nan.py NAN_STEP <train_ssd_network.py flags>

NAN_STEP is 1-based, as the progress lines count steps: the update that takes the global step from
NAN_STEP - 1 to NAN_STEP sees the NaN.
"""
import math
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)

from box_ops import ssd_losses  # noqa: E402
from common.errors import run_main  # noqa: E402
import train_ssd_network  # noqa: E402


def with_nan_at(nan_step, losses_fn):
    def losses(*args, **kwargs):
        import tensorflow as tf
        terms = dict(losses_fn(*args, **kwargs))
        step = tf.compat.v1.train.get_global_step().read_value()  # before this update increments it
        terms["total_loss"] += tf.where(tf.equal(step + 1, nan_step), math.nan, 0.0)
        return terms
    return losses


if __name__ == "__main__":
    ssd_losses.ssd_losses = with_nan_at(int(sys.argv[1]), ssd_losses.ssd_losses)
    run_main(train_ssd_network.main, sys.argv[2:])
