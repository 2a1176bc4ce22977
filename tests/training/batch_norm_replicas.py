"""Run in a subprocess by test_batch_norm_replicas.py: batch norm's moving averages under one and two replicas.

An SSDLite MobileNet-v2 (depth 0.35) in training mode takes one step on the same global batch of 4 images
from the same weights, as one replica and as two replicas of 2 images (replica_equivalence.one_step). The
trainer must run the UPDATE_OPS of every replica; the moving variables aggregate by MEAN, so the first
layer's moving mean (its inputs are the images themselves) moves to the same value either way: the mean of
the two halves' means is the batch mean. Prints one JSON line.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, ROOT)
from common import tf_env  # noqa: E402,F401  (TensorFlow's environment defaults)
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from nets import nets_factory  # noqa: E402
from tests.training.replica_equivalence import one_step  # noqa: E402

FIRST = "ssdlite_320_mobilenet_v2/Conv/BatchNorm/moving_mean"


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    config = nets_factory.default_config("ssdlite_320_mobilenet_v2", num_classes=6)
    config["params"]["depth_multiplier"] = 0.35
    model = nets_factory.build_model(config, is_training=True)
    before1, after1, _, _ = one_step(model, ["/cpu:0"])
    before2, after2, _, replicas = one_step(model, ["/cpu:0", "/cpu:1"], initial=before1)
    moving = [n for n in before1 if "/BatchNorm/moving_" in n]
    print(json.dumps({
        "replicas": replicas, "num_moving": len(moving),
        "unchanged_one": [n for n in moving if np.array_equal(before1[n], after1[n])],
        "unchanged_two": [n for n in moving if np.array_equal(before2[n], after2[n])],
        "first_layer_diff": float(np.max(np.abs(after1[FIRST] - after2[FIRST]))),
        "first_layer_update": float(np.max(np.abs(after1[FIRST] - before1[FIRST]))),
        "finite": all(bool(np.all(np.isfinite(after2[n]))) for n in moving)}))


if __name__ == "__main__":
    main()
