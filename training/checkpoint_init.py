"""Initialising a model from a checkpoint: an SSD checkpoint, or a TF-Slim `vgg_16` ImageNet classifier.

As TF-Slim's train_image_classifier.py: `exclude_scopes` leaves variables out of the restore (name prefixes,
or glob patterns such as `*_box/conv_cls`), `checkpoint_model_scope` replaces the model's scope in the names
looked up in the checkpoint (`--checkpoint_model_scope=vgg_16` reads `vgg_16/conv1/conv1_1/weights` into
`ssd_300_vgg/conv1/conv1_1/weights`), and `ignore_missing_vars` skips variables the checkpoint lacks.

Beyond TF-Slim:
- fc6/fc7 of a VGG-16 classifier initialise conv6/conv7 as the Caffe SSD's VGG_ILSVRC_16_layers_fc_reduced
  does. fc6 (7x7x512x4096) becomes conv6 (3x3x512x1024) by decimation: kernel rows and columns 0, 3, 6 and
  every 4th output channel; fc7 (1x1x4096x4096) becomes conv7 (1x1x1024x1024) keeping every 4th input and
  output channel (biases likewise). The kept taps are 3 cells apart on VGG's pool5 grid (stride 32); SSD's
  pool5 is 3x3/s1, so conv6 runs on the stride-16 grid where those taps are 6 cells apart: hence conv6's
  dilation 6, which keeps the classifier's field of view (2 x 6 x 16 = 192 px across the three taps).
  The same rule (spatial (k-1)/(k'-1), channels k/k') maps the lite model's channel-divided layers.
- A checkpoint with another number of classes (fine-tuning on a custom dataset): the class heads
  `*_box/conv_cls` are left out automatically, with a notice, instead of failing on their shapes.
- Anything else that does not fit raises a CheckpointError listing every mismatching variable with its
  checkpoint and model shapes.

Values are read with NumPy and assigned through placeholders, so the restore works on plain and on
tf.distribute mirrored variables alike.
"""
import dataclasses
import fnmatch
import logging
import re

import numpy as np
import tensorflow as tf

from common.errors import CheckpointError

log = logging.getLogger("ssd.train")

CLASS_HEAD_PATTERN = "*_box/conv_cls/*"
# conv6/conv7 of the SSD base are fc6/fc7 of the VGG-16 classifier.
CLASSIFIER_ALIASES = {"conv6": "fc6", "conv7": "fc7"}


def variable_name(var):
    return var.name.split(":")[0]


def matches_scope(name, scope):
    """TF-Slim's exclusion test (a name prefix), plus glob patterns (with * or ?), which also match
    everything below them: `*_box/conv_cls` matches ssd_300_vgg/block4_box/conv_cls/weights."""
    scope = scope.strip()
    if not scope:
        return False
    if any(c in scope for c in "*?"):
        return fnmatch.fnmatchcase(name, scope) or fnmatch.fnmatchcase(name, scope.rstrip("/") + "/*")
    return name.startswith(scope)


def parse_scopes(text):
    """'a, b,c' -> ('a', 'b', 'c'); None or '' -> ()."""
    return tuple(s.strip() for s in (text or "").split(",") if s.strip())


def variables_to_train(variables, trainable_scopes=()):
    """TF-Slim's _get_variables_to_train: every variable when no scope is given, else those whose names
    match one of the scopes as a regular expression from the start (tf.get_collection(scope=...))."""
    if not trainable_scopes:
        return list(variables)
    patterns = [re.compile(scope) for scope in trainable_scopes]
    return [v for v in variables if any(p.match(variable_name(v)) for p in patterns)]


def subsample_classifier(value, target_shape):
    """Caffe's fc-reduced decimation of a classifier kernel or bias to `target_shape`; None if impossible.

    Kernel [kh, kw, cin, cout]: spatial taps every (kh-1)/(kh'-1) (7 -> 3: 0, 3, 6), channels every
    cin/cin' and cout/cout' (4096 -> 1024: 0, 4, 8, ...). Bias [cout]: every cout/cout'.
    """
    value = np.asarray(value)
    target_shape = tuple(int(d) for d in target_shape)
    if value.ndim != len(target_shape):
        return None
    index = []
    for axis, (src, dst) in enumerate(zip(value.shape, target_shape)):
        spatial = value.ndim == 4 and axis < 2
        if src == dst:
            index.append(slice(None))
        elif spatial and dst > 1 and (src - 1) % (dst - 1) == 0:
            index.append(slice(0, src, (src - 1) // (dst - 1)))
        elif not spatial and dst and src % dst == 0:
            index.append(slice(0, src, src // dst))
        else:
            return None
    out = np.array(value[tuple(index)])  # a copy, so that the full classifier can be freed
    return out if out.shape == target_shape else None


@dataclasses.dataclass
class RestorePlan:
    """What a checkpoint gives the model: values[var name] = NumPy array, and what was left out, and why."""
    checkpoint_path: str
    values: dict
    sources: dict            # var name -> (checkpoint name, "copy" | "subsampled from <shape>")
    excluded: list           # var names left out by exclude_scopes or the class-head rule
    missing: list            # var names the checkpoint lacks (only with ignore_missing_vars)
    notices: list            # human sentences, logged by the trainer

    def summary(self):
        subsampled = sum(1 for _, how in self.sources.values() if how != "copy")
        return (f"{len(self.values)} variables from {self.checkpoint_path} ({subsampled} subsampled), "
                f"{len(self.excluded)} excluded, {len(self.missing)} missing")


def _checkpoint_name(name, model_scope, checkpoint_model_scope):
    if checkpoint_model_scope is not None and model_scope and (name == model_scope or
                                                               name.startswith(model_scope + "/")):
        rest = name[len(model_scope):]
        return (checkpoint_model_scope + rest) if checkpoint_model_scope else rest.lstrip("/")
    return name


def _classifier_alias(ckpt_name):
    parts = ckpt_name.split("/")
    for i, part in enumerate(parts):
        if part in CLASSIFIER_ALIASES:
            return "/".join(parts[:i] + [CLASSIFIER_ALIASES[part]] + parts[i + 1:])
    return None


def _fmt(shape):
    return "[" + ", ".join(str(int(d)) for d in shape) + "]"


def plan_restore(variables, checkpoint_path, model_scope, checkpoint_model_scope=None, exclude_scopes=(),
                 ignore_missing_vars=False):
    """Matches model variables with a checkpoint and reads their values.

    Args:
      variables: the model's variables (not the optimiser's). checkpoint_path: a checkpoint prefix.
      model_scope: the model's variable scope (e.g. ssd_300_vgg). checkpoint_model_scope: the scope to read
        instead (e.g. vgg_16), '' for none; None keeps the names. exclude_scopes: see matches_scope.
    Returns:
      RestorePlan. Raises CheckpointError for an unreadable checkpoint, variables whose shapes differ (all
      listed with both shapes) and, unless ignore_missing_vars, variables the checkpoint lacks (all listed).
    """
    try:
        reader = tf.train.load_checkpoint(checkpoint_path)
        ckpt_shapes = reader.get_variable_to_shape_map()
    except (tf.errors.OpError, ValueError) as err:
        raise CheckpointError(checkpoint_path, f"unreadable checkpoint ({str(err).splitlines()[0]})") from None
    plan = RestorePlan(checkpoint_path, {}, {}, [], [], [])
    shapes = {variable_name(v): tuple(int(d) for d in v.shape) for v in variables}
    mismatched, class_heads = [], []
    for name, shape in shapes.items():
        if any(matches_scope(name, s) for s in exclude_scopes):
            plan.excluded.append(name)
            continue
        ckpt_name = _checkpoint_name(name, model_scope, checkpoint_model_scope)
        alias = _classifier_alias(ckpt_name)
        if ckpt_name not in ckpt_shapes and alias in ckpt_shapes:
            ckpt_name = alias
        if ckpt_name not in ckpt_shapes:
            plan.missing.append(name)
            continue
        ckpt_shape = tuple(int(d) for d in ckpt_shapes[ckpt_name])
        if ckpt_shape == shape:
            plan.values[name] = reader.get_tensor(ckpt_name)
            plan.sources[name] = (ckpt_name, "copy")
            continue
        if fnmatch.fnmatchcase(name, CLASS_HEAD_PATTERN) and ckpt_shape[:-1] == shape[:-1]:
            class_heads.append((name, ckpt_name, ckpt_shape, shape))
            continue
        is_classifier = any(part in CLASSIFIER_ALIASES for part in name.split("/"))
        value = subsample_classifier(reader.get_tensor(ckpt_name), shape) if is_classifier else None
        if value is not None:
            plan.values[name] = value
            plan.sources[name] = (ckpt_name, f"subsampled from {_fmt(ckpt_shape)}")
        else:
            mismatched.append((name, ckpt_name, ckpt_shape, shape))
    if class_heads:
        plan.excluded.extend(n for n, _, _, _ in class_heads)
        heads = sorted({n.rsplit("/", 2)[0].rsplit("/", 1)[-1] for n, _, _, _ in class_heads})
        plan.notices.append(
            f"the checkpoint's class heads have another number of classes (e.g. {class_heads[0][1]} "
            f"{_fmt(class_heads[0][2])}, model {_fmt(class_heads[0][3])}): {len(class_heads)} class-head "
            f"variables ({', '.join(heads)}/conv_cls) are not restored and train from their initialisation")
        # A class head whose other variable did fit (e.g. equal bias size by coincidence) stays consistent.
        for name in list(plan.values):
            if fnmatch.fnmatchcase(name, CLASS_HEAD_PATTERN):
                del plan.values[name], plan.sources[name]
                plan.excluded.append(name)
    if mismatched:
        lines = "\n".join(f"  {n} (checkpoint {c}): checkpoint {_fmt(cs)}, model {_fmt(ms)}"
                          for n, c, cs, ms in mismatched)
        raise CheckpointError(checkpoint_path, f"{len(mismatched)} variables do not fit the model "
                                               f"(name, checkpoint shape, model shape):\n{lines}")
    if plan.missing and not ignore_missing_vars:
        names = "\n".join(f"  {n} (looked up as {_checkpoint_name(n, model_scope, checkpoint_model_scope)})"
                          for n in plan.missing)
        raise CheckpointError(checkpoint_path, f"{len(plan.missing)} model variables are not in the checkpoint "
                                               f"(use --checkpoint_exclude_scopes or --ignore_missing_vars):\n"
                                               f"{names}")
    if plan.missing:
        plan.notices.append(f"{len(plan.missing)} variables not in the checkpoint keep their initialisation: "
                            + ", ".join(plan.missing))
    if not plan.values:
        raise CheckpointError(checkpoint_path, "no model variable found in the checkpoint (check "
                                               "--checkpoint_model_scope and --checkpoint_exclude_scopes)")
    return plan


class CheckpointInitializer:
    """Builds assign ops for a RestorePlan's variables once; `__call__(session)` runs them."""

    def __init__(self, plan, variables):
        self.plan = plan
        by_name = {variable_name(v): v for v in variables}
        self._feeds = []
        assigns = []
        with tf.name_scope("init_from_checkpoint"):
            for name in plan.values:
                var = by_name[name]
                ph = tf.compat.v1.placeholder(var.dtype.base_dtype, var.shape)
                assigns.append(var.assign(ph))
                self._feeds.append((ph, name))
            self._op = tf.group(*assigns)

    def __call__(self, session):
        session.run(self._op, {ph: self.plan.values[name] for ph, name in self._feeds})
