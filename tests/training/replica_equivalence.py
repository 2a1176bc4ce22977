"""Run in a subprocess by test_distributed.py: one replica vs two replicas on the same global batch.

The CPU is split into two logical devices (which must happen before TensorFlow initialises, hence the
separate process). The same lite SSD, with the same initial weights, takes one plain SGD step on the same
global batch of 4 images, once as one replica on /cpu:0 and once as two replicas of 2 images on /cpu:0 and
/cpu:1. With plain SGD the update is the learning rate times the gradient, so equal updates mean equal
gradients: the loss normalised by the global positives, the weight decay counted once, the replicas'
gradients summed. Prints one JSON line: max |update difference|, max |update|, the losses and positives.
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
from tests.training.fixtures import memory_input_fn  # noqa: E402
from training import checkpoint_init, distribution, optimizers, trainer  # noqa: E402
from training.checkpoint_init import variable_name  # noqa: E402

BATCH = 4
LEARNING_RATE = 0.05


def one_step(model, devices, initial=None):
    """Builds the training step on `devices`, sets the weights to `initial` (if given), runs one update.

    Returns (weights before, weights after, reduced step values)."""
    options = trainer.TrainOptions(train_dir="unused", batch_size=BATCH, weight_decay=0.0005,
                                   bias_learning_rate_multiplier=2.0)
    with tf.Graph().as_default():
        dist = distribution.make_distribution("mirrored", devices)
        tg = trainer.build_train_graph(
            model, memory_input_fn(model, BATCH),
            lambda step: optimizers.learning_rate_schedule(step, LEARNING_RATE),
            lambda lr: optimizers.configure_optimizer("sgd", lr), dist, options)
        assign = None
        if initial is not None:
            plan = checkpoint_init.RestorePlan("memory", dict(initial), {}, [], [], [])
            assign = checkpoint_init.CheckpointInitializer(plan, tg.model_variables)
        init = tf.compat.v1.global_variables_initializer()
        with tf.compat.v1.Session(config=dist.session_config) as session:
            session.run([init, tg.iterator_initializer])
            if assign is not None:
                assign(session)
            names = [variable_name(v) for v in tg.model_variables]
            before = dict(zip(names, session.run(tg.model_variables)))
            values = session.run(tg.fetches)
            after = dict(zip(names, session.run(tg.model_variables)))
            replicas = dist.num_replicas
    return before, after, {k: float(v) for k, v in values.items() if k != "train_op"}, replicas


def main():
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
    model = nets_factory.build_model(nets_factory.default_config("ssd_300_vgg_lite", num_classes=6),
                                     is_training=True)
    before1, after1, values1, replicas1 = one_step(model, ["/cpu:0"])
    before2, after2, values2, replicas2 = one_step(model, ["/cpu:0", "/cpu:1"], initial=before1)
    diff = max(float(np.max(np.abs((after1[n] - before1[n]) - (after2[n] - before2[n])))) for n in before1)
    start = max(float(np.max(np.abs(before1[n] - before2[n]))) for n in before1)
    update = max(float(np.max(np.abs(after1[n] - before1[n]))) for n in before1)
    print(json.dumps({"replicas": [replicas1, replicas2], "max_update_diff": diff, "max_start_diff": start,
                      "max_update": update, "one": values1, "two": values2}))


if __name__ == "__main__":
    main()
