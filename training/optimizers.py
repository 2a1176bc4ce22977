"""Learning-rate schedules and optimisers from explicit arguments (TF-Slim's train_image_classifier.py).

Schedules are functions of the global step (the number of updates already applied), so a run restarted
from a checkpoint continues its schedule exactly:

    fixed        lr
    exponential  lr * decay_factor ^ floor(step / decay_steps)            (TF-Slim: staircase)
    polynomial   (lr - end_lr) * (1 - min(step, decay_steps) / decay_steps) ^ power + end_lr
    piecewise    lr * decay_factor ^ (number of boundaries <= step)       (Caffe's "multistep"; alias)

`piecewise` follows Caffe's multistep policy to the step: the Caffe SSD trains VOC07+12 with base_lr 1e-3,
gamma 0.1 and stepvalue 80000, 100000 (max_iter 120000), and Caffe decays at the update whose iteration
number equals the step value (tf.compat.v1.train.piecewise_constant would decay one update later).
An optional linear warm-up ramps from `warmup_learning_rate` at step 0 to the schedule's value at
`warmup_steps`.

Optimisers take TF-Slim's hyper-parameters by their flag names. Momentum SGD differs from Caffe's only at a
learning-rate change: TF accumulates gradients and scales the step by the current rate, Caffe accumulates
rate-scaled steps.

The epsilon of adam, adadelta and rmsprop defaults per optimiser (`opt_epsilon=None`), not to TF-Slim's
single 1.0: that value suits RMSProp as the Inception papers train it, but in Adam it dwarfs the
second-moment term (sqrt(v) is about the gradient's size, often 1e-3 or less), so every step becomes about
learning_rate x gradient: plain SGD with a tiny rate, which does not train an SSD from scratch.
"""
import tensorflow as tf

OPTIMIZERS = ("adadelta", "adagrad", "adam", "ftrl", "momentum", "sgd", "rmsprop")
DECAY_TYPES = ("exponential", "fixed", "polynomial", "piecewise", "multistep")

# TF-Slim's defaults for the optimiser flags, except opt_epsilon (EPSILON_DEFAULTS).
OPTIMIZER_DEFAULTS = {
    "adadelta_rho": 0.95,
    "adagrad_initial_accumulator_value": 0.1,
    "adam_beta1": 0.9,
    "adam_beta2": 0.999,
    "opt_epsilon": None,
    "ftrl_learning_rate_power": -0.5,
    "ftrl_initial_accumulator_value": 0.1,
    "ftrl_l1": 0.0,
    "ftrl_l2": 0.0,
    "momentum": 0.9,
    "rmsprop_momentum": 0.9,
    "rmsprop_decay": 0.9,
}


# opt_epsilon=None: Adam's paper (Kingma & Ba 2015), Adadelta's (Zeiler 2012), and TF-Slim's / the TF Object
# Detection API's SSD configurations for RMSProp.
EPSILON_DEFAULTS = {"adam": 1e-8, "adadelta": 1e-6, "rmsprop": 1.0}

# The hyper-parameters each optimiser takes, by flag name.
OPTIMIZER_ARGUMENTS = {
    "adadelta": ("adadelta_rho", "opt_epsilon"),
    "adagrad": ("adagrad_initial_accumulator_value",),
    "adam": ("adam_beta1", "adam_beta2", "opt_epsilon"),
    "ftrl": ("ftrl_learning_rate_power", "ftrl_initial_accumulator_value", "ftrl_l1", "ftrl_l2"),
    "momentum": ("momentum",),
    "rmsprop": ("rmsprop_decay", "rmsprop_momentum", "opt_epsilon"),
    "sgd": (),
}


def optimizer_hyper_parameters(name, **hyper):
    """{flag name: value} of the hyper-parameters optimiser `name` uses, defaults resolved (for the log)."""
    if name not in OPTIMIZER_ARGUMENTS:
        raise ValueError(f"Optimizer [{name}] was not recognized (one of {', '.join(OPTIMIZERS)})")
    unknown = set(hyper) - set(OPTIMIZER_DEFAULTS)
    if unknown:
        raise ValueError(f"unknown optimiser arguments: {', '.join(sorted(unknown))}")
    h = dict(OPTIMIZER_DEFAULTS, **hyper)
    if h["opt_epsilon"] is None:
        h["opt_epsilon"] = EPSILON_DEFAULTS.get(name)
    return {k: h[k] for k in OPTIMIZER_ARGUMENTS[name]}


def optimizer_warnings(name, **hyper):
    """Reasons to expect a run with these settings not to learn, as sentences (empty when none)."""
    h = optimizer_hyper_parameters(name, **hyper)
    eps = h.get("opt_epsilon")
    if name in ("adam", "adadelta") and eps is not None and eps >= 1e-3:
        return [f"{name} with epsilon {eps:g}: the epsilon dwarfs the root of the squared-gradient average, "
                f"so each step is about learning_rate x gradient, too small to train from scratch "
                f"({name}'s own epsilon is {EPSILON_DEFAULTS[name]:g})"]
    return []


def decay_steps_from_epochs(num_samples_per_epoch, batch_size, num_epochs_per_decay):
    """TF-Slim's decay period in steps: int(num_samples_per_epoch * num_epochs_per_decay / batch_size), >= 1."""
    return max(1, int(num_samples_per_epoch * num_epochs_per_decay / batch_size))


def learning_rate_schedule(global_step, learning_rate, decay_type="fixed", decay_steps=None, decay_factor=0.1,
                           end_learning_rate=0.0001, boundaries=(), power=1.0, warmup_steps=0,
                           warmup_learning_rate=0.0):
    """The learning rate at `global_step` (a scalar tensor, updates done so far).

    Args:
      decay_type: one of DECAY_TYPES. decay_steps: period of `exponential`, length of `polynomial`.
      decay_factor: `exponential` base, `piecewise` multiplier at each boundary (Caffe's gamma).
      boundaries: increasing steps of `piecewise`. power: `polynomial` exponent.
      warmup_steps, warmup_learning_rate: linear warm-up from warmup_learning_rate (0 = no warm-up).
    Returns:
      float32 scalar tensor.
    """
    check_schedule(learning_rate, decay_type, decay_steps, boundaries, warmup_steps)
    step = tf.cast(global_step, tf.float32)
    with tf.name_scope("learning_rate"):
        if decay_type == "fixed":
            lr = tf.constant(learning_rate, tf.float32)
        elif decay_type == "exponential":
            lr = tf.compat.v1.train.exponential_decay(learning_rate, global_step, decay_steps, decay_factor,
                                                      staircase=True)
        elif decay_type == "polynomial":
            lr = tf.compat.v1.train.polynomial_decay(learning_rate, global_step, decay_steps, end_learning_rate,
                                                     power=power, cycle=False)
        else:
            passed = tf.add_n([tf.cast(step >= float(b), tf.float32) for b in boundaries]) if boundaries \
                else tf.constant(0.0)
            lr = learning_rate * tf.pow(tf.constant(decay_factor, tf.float32), passed)
        lr = tf.cast(lr, tf.float32)
        if warmup_steps:
            ramp = warmup_learning_rate + (lr - warmup_learning_rate) * step / float(warmup_steps)
            lr = tf.where(step < float(warmup_steps), ramp, lr)
        return tf.identity(lr, name="value")


def check_schedule(learning_rate, decay_type, decay_steps=None, boundaries=(), warmup_steps=0):
    """Raises ValueError for a schedule that cannot be built."""
    if decay_type not in DECAY_TYPES:
        raise ValueError(f"learning_rate_decay_type [{decay_type}] was not recognized "
                         f"(one of {', '.join(DECAY_TYPES)})")
    if not learning_rate > 0:
        raise ValueError(f"learning rate must be > 0, got {learning_rate}")
    if decay_type in ("exponential", "polynomial") and not (decay_steps and decay_steps >= 1):
        raise ValueError(f"{decay_type} decay needs decay_steps >= 1, got {decay_steps}")
    if decay_type in ("piecewise", "multistep"):
        if any(b <= 0 for b in boundaries) or list(boundaries) != sorted(set(boundaries)):
            raise ValueError(f"piecewise boundaries must be increasing positive steps, got {list(boundaries)}")
    if warmup_steps < 0:
        raise ValueError(f"warmup_steps must be >= 0, got {warmup_steps}")


def configure_optimizer(name, learning_rate, **hyper):
    """A tf.compat.v1.train optimiser, as TF-Slim's _configure_optimizer.

    Args:
      name: one of OPTIMIZERS. learning_rate: float or scalar tensor.
      hyper: any of OPTIMIZER_DEFAULTS' keys (the TF-Slim flag names); the rest take TF-Slim's defaults,
        and opt_epsilon None (or absent) the optimiser's own, EPSILON_DEFAULTS.
    """
    h = optimizer_hyper_parameters(name, **hyper)
    train = tf.compat.v1.train
    if name == "adadelta":
        return train.AdadeltaOptimizer(learning_rate, rho=h["adadelta_rho"], epsilon=h["opt_epsilon"])
    if name == "adagrad":
        return train.AdagradOptimizer(learning_rate,
                                      initial_accumulator_value=h["adagrad_initial_accumulator_value"])
    if name == "adam":
        return train.AdamOptimizer(learning_rate, beta1=h["adam_beta1"], beta2=h["adam_beta2"],
                                   epsilon=h["opt_epsilon"])
    if name == "ftrl":
        return train.FtrlOptimizer(learning_rate, learning_rate_power=h["ftrl_learning_rate_power"],
                                   initial_accumulator_value=h["ftrl_initial_accumulator_value"],
                                   l1_regularization_strength=h["ftrl_l1"],
                                   l2_regularization_strength=h["ftrl_l2"])
    if name == "momentum":
        return train.MomentumOptimizer(learning_rate, momentum=h["momentum"], name="Momentum")
    if name == "rmsprop":
        return train.RMSPropOptimizer(learning_rate, decay=h["rmsprop_decay"], momentum=h["rmsprop_momentum"],
                                      epsilon=h["opt_epsilon"])
    return train.GradientDescentOptimizer(learning_rate)
