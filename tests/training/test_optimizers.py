"""Learning-rate schedules against their definitions written out in NumPy, and the optimiser factory."""
import math

import numpy as np
import pytest
import tensorflow as tf

from training import optimizers

STEPS = [0, 1, 2, 9, 10, 11, 29, 30, 31, 49, 50, 79999, 80000, 80001, 99999, 100000, 120000]


def evaluate(**kwargs):
    with tf.Graph().as_default():
        step = tf.compat.v1.placeholder(tf.int64, [])
        lr = optimizers.learning_rate_schedule(step, **kwargs)
        with tf.compat.v1.Session() as session:
            return np.array([session.run(lr, {step: s}) for s in STEPS])


def reference(step, lr, kind, decay_steps=None, factor=0.1, end=1e-4, boundaries=(), power=1.0):
    if kind == "fixed":
        return lr
    if kind == "exponential":  # staircase
        return lr * factor ** math.floor(step / decay_steps)
    if kind == "polynomial":
        s = min(step, decay_steps)
        return (lr - end) * (1 - s / decay_steps) ** power + end
    # Caffe multistep: iteration `step` uses gamma ^ (number of step values <= step).
    return lr * factor ** sum(step >= b for b in boundaries)


@pytest.mark.parametrize("kind,kwargs", [
    ("fixed", {}),
    ("exponential", {"decay_steps": 10, "decay_factor": 0.94}),
    ("polynomial", {"decay_steps": 50, "end_learning_rate": 1e-4, "power": 2.0}),
    ("piecewise", {"boundaries": (80000, 100000), "decay_factor": 0.1}),
    ("multistep", {"boundaries": (10, 30), "decay_factor": 0.5}),
])
def test_schedules_match_their_definitions(kind, kwargs):
    got = evaluate(learning_rate=1e-3, decay_type=kind, **kwargs)
    ref_kwargs = {"decay_steps": kwargs.get("decay_steps"), "factor": kwargs.get("decay_factor", 0.1),
                  "end": kwargs.get("end_learning_rate", 1e-4), "boundaries": kwargs.get("boundaries", ()),
                  "power": kwargs.get("power", 1.0)}
    want = [reference(s, 1e-3, kind, **ref_kwargs) for s in STEPS]
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-12)  # float32 underflows to 0 far out


def test_caffe_ssd_schedule_decays_at_the_step_values():
    got = dict(zip(STEPS, evaluate(learning_rate=1e-3, decay_type="piecewise", boundaries=(80000, 100000))))
    assert got[79999] == pytest.approx(1e-3) and got[80000] == pytest.approx(1e-4)
    assert got[99999] == pytest.approx(1e-4) and got[100000] == pytest.approx(1e-5)


def test_warmup_ramps_linearly_into_the_schedule():
    got = dict(zip(STEPS, evaluate(learning_rate=1e-3, decay_type="piecewise", boundaries=(30,),
                                   warmup_steps=10, warmup_learning_rate=1e-4)))
    for s in (0, 1, 2, 9):
        assert got[s] == pytest.approx(1e-4 + (1e-3 - 1e-4) * s / 10)
    assert got[10] == pytest.approx(1e-3) and got[30] == pytest.approx(1e-4)


def test_decay_steps_from_epochs_is_tf_slims():
    assert optimizers.decay_steps_from_epochs(16551, 32, 2.0) == int(16551 * 2.0 / 32)
    assert optimizers.decay_steps_from_epochs(4, 32, 0.1) == 1


@pytest.mark.parametrize("bad", [
    dict(learning_rate=1e-3, decay_type="cosine"),
    dict(learning_rate=0.0, decay_type="fixed"),
    dict(learning_rate=1e-3, decay_type="exponential", decay_steps=0),
    dict(learning_rate=1e-3, decay_type="piecewise", boundaries=(100, 50)),
    dict(learning_rate=1e-3, decay_type="fixed", warmup_steps=-1),
])
def test_invalid_schedules_are_refused(bad):
    with pytest.raises(ValueError):
        optimizers.learning_rate_schedule(tf.constant(0, tf.int64), **bad)


def test_optimizers_take_tf_slim_hyper_parameters():
    with tf.Graph().as_default():
        train = tf.compat.v1.train
        kinds = {"adadelta": train.AdadeltaOptimizer, "adagrad": train.AdagradOptimizer,
                 "adam": train.AdamOptimizer, "ftrl": train.FtrlOptimizer, "momentum": train.MomentumOptimizer,
                 "sgd": train.GradientDescentOptimizer, "rmsprop": train.RMSPropOptimizer}
        assert set(kinds) == set(optimizers.OPTIMIZERS)
        for name, cls in kinds.items():
            assert isinstance(optimizers.configure_optimizer(name, 0.1), cls)
        momentum = optimizers.configure_optimizer("momentum", 0.1, momentum=0.5)
        assert momentum._momentum == 0.5 and momentum.get_name() == "Momentum"
        adam = optimizers.configure_optimizer("adam", 0.1, adam_beta1=0.8, opt_epsilon=1e-8)
        assert (adam._beta1, adam._beta2, adam._epsilon) == (0.8, 0.999, 1e-8)
        rms = optimizers.configure_optimizer("rmsprop", 0.1)
        assert (rms._decay, rms._momentum, rms._epsilon) == (0.9, 0.9, 1.0)  # TF-Slim's defaults
        with pytest.raises(ValueError, match="not recognized"):
            optimizers.configure_optimizer("lamb", 0.1)
        with pytest.raises(ValueError, match="unknown optimiser arguments"):
            optimizers.configure_optimizer("sgd", 0.1, nesterov=True)
