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


def test_epsilon_defaults_are_each_optimisers_own():
    with tf.Graph().as_default():
        assert optimizers.configure_optimizer("adam", 0.1)._epsilon == 1e-8
        assert optimizers.configure_optimizer("adadelta", 1.0)._epsilon == 1e-6
        assert optimizers.configure_optimizer("rmsprop", 0.1)._epsilon == 1.0  # TF-Slim's RMSProp setting
        assert optimizers.configure_optimizer("adam", 0.1, opt_epsilon=None)._epsilon == 1e-8
        assert optimizers.configure_optimizer("adam", 0.1, opt_epsilon=0.5)._epsilon == 0.5
    assert optimizers.optimizer_hyper_parameters("adam") == {"adam_beta1": 0.9, "adam_beta2": 0.999,
                                                             "opt_epsilon": 1e-8}
    assert optimizers.optimizer_hyper_parameters("sgd", momentum=0.5) == {}


def adam_reference(grads, lr, beta1=0.9, beta2=0.999, eps=1e-8):
    """Kingma & Ba's Algorithm 1 in NumPy (the "epsilon hat" form TF uses): the parameter after each step."""
    theta, m, v, out = 0.0, 0.0, 0.0, []
    for t, g in enumerate(grads, start=1):
        m, v = beta1 * m + (1 - beta1) * g, beta2 * v + (1 - beta2) * g * g
        theta -= lr * math.sqrt(1 - beta2 ** t) / (1 - beta1 ** t) * m / (math.sqrt(v) + eps)
        out.append(theta)
    return np.array(out)


@pytest.mark.parametrize("epsilon", [None, 1.0])
def test_adam_steps_follow_the_algorithm_and_the_default_moves_by_the_rate(epsilon):
    """With gradients of 1e-4 (an SSD's are of that order), Adam's own epsilon moves each weight by about the
    learning rate per step; TF-Slim's 1.0 moves it by lr x gradient, 10,000 times less: no learning."""
    grads, lr = [1e-4] * 5, 1e-3
    with tf.Graph().as_default():
        w = tf.compat.v1.get_variable("w", initializer=0.0)
        opt = optimizers.configure_optimizer("adam", lr, opt_epsilon=epsilon)
        step = opt.minimize(1e-4 * w)  # d loss / d w = 1e-4
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            got = []
            for _ in grads:
                session.run(step)
                got.append(session.run(w))
    want = adam_reference(grads, lr, eps=1e-8 if epsilon is None else epsilon)
    np.testing.assert_allclose(got, want, rtol=1e-4)
    if epsilon is None:
        assert abs(got[-1]) == pytest.approx(5 * lr, rel=1e-2)  # epsilon hat: 0.3% of sqrt(v) at step 1
        assert optimizers.optimizer_warnings("adam") == []
    else:
        assert abs(got[-1]) < 1e-3 * 5 * lr
        (warning,) = optimizers.optimizer_warnings("adam", opt_epsilon=epsilon)
        assert "epsilon 1" in warning and "1e-08" in warning
