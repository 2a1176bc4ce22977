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
- A class map (`--checkpoint_class_map=coco_to_voc`, or a file of `from,to,name` lines as Caffe's
  data/VOC0712/coco_voc_map.txt): the class heads start from the checkpoint's rows of the mapped classes
  instead of at random, as the Caffe SSD's VOC07+12+COCO models were made. conv_cls kernels and biases are
  laid out anchor-major x class (channel a * K + k is anchor a, class k), so the model's channel a * K + t
  takes the checkpoint's a * K' + s for each pair s -> t, background 0 -> 0; unmapped classes keep their
  initialisation.
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

from common.errors import CheckpointError, ConfigError

log = logging.getLogger("ssd.train")

CLASS_HEAD_PATTERN = "*_box/conv_cls/*"
# conv6/conv7 of the SSD base are fc6/fc7 of the VGG-16 classifier.
CLASSIFIER_ALIASES = {"conv6": "fc6", "conv7": "fc7"}


# COCO's 80 categories in the order of its instances files (labels 1..80 of the COCO models; Caffe's
# labelmap_coco.prototxt has the same order and names).
COCO_CLASSES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard",
    "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors",
    "teddy bear", "hair drier", "toothbrush")
# Caffe's coco_voc_map.txt, by name: the COCO class each of the 20 VOC classes starts from.
VOC_FROM_COCO = {
    "aeroplane": "airplane", "bicycle": "bicycle", "bird": "bird", "boat": "boat", "bottle": "bottle",
    "bus": "bus", "car": "car", "cat": "cat", "chair": "chair", "cow": "cow", "diningtable": "dining table",
    "dog": "dog", "horse": "horse", "motorbike": "motorcycle", "person": "person", "pottedplant": "potted plant",
    "sheep": "sheep", "sofa": "couch", "train": "train", "tvmonitor": "tv"}
BUILTIN_CLASS_MAPS = ("coco_to_voc",)


@dataclasses.dataclass(frozen=True)
class ClassMap:
    """pairs: ((checkpoint label, model label, model class name), ...), labels 1-based (background 0 -> 0 is
    implied); num_source / num_target: the checkpoint's and the model's class counts, background included."""
    pairs: tuple
    num_source: int
    num_target: int

    def channels(self, num_anchors):
        """(model channels, checkpoint channels) of a class head with `num_anchors` anchors per cell."""
        pairs = [(0, 0)] + [(s, t) for s, t, _ in self.pairs]
        target = [a * self.num_target + t for a in range(num_anchors) for s, t in pairs]
        source = [a * self.num_source + s for a in range(num_anchors) for s, t in pairs]
        return np.array(target), np.array(source)


def read_class_map(spec, target_names, source_names=None, num_source=None):
    """A --checkpoint_class_map value -> ClassMap onto a model whose labels 1..N are `target_names`.

    spec: "coco_to_voc" (Caffe's COCO -> VOC map by class name, the checkpoint's classes `source_names`,
    default COCO_CLASSES), or a file of `from,to,name` lines (checkpoint label, model label, model class
    name; blank lines and # comments skipped). num_source: the checkpoint's classes with background
    (default len(source_names) + 1). ConfigError naming the file (and line) for anything inconsistent.
    """
    target_names = tuple(target_names)
    num_target = len(target_names) + 1
    if spec in BUILTIN_CLASS_MAPS:
        source_names = tuple(source_names or COCO_CLASSES)
        num_source = num_source or len(source_names) + 1
        pairs = tuple((source_names.index(VOC_FROM_COCO[name]) + 1, t, name)
                      for t, name in enumerate(target_names, 1)
                      if VOC_FROM_COCO.get(name) in source_names)
        if not pairs:
            raise ConfigError("class_map", f"coco_to_voc maps none of the model's classes "
                                                        f"{list(target_names[:5])}... from {list(source_names[:5])}...")
        return ClassMap(pairs, num_source, num_target)
    try:
        with open(spec, encoding="utf-8") as f:
            lines = f.read().splitlines()
    except OSError as err:
        raise ConfigError(spec, f"cannot read the class map ({err.strerror or err})") from None
    num_source = num_source or (len(source_names) + 1 if source_names else None)
    pairs, targets = [], set()
    for number, line in enumerate(lines, 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        fields = [x.strip() for x in line.split(",")]
        try:
            source, target = int(fields[0]), int(fields[1])
        except (ValueError, IndexError):
            raise ConfigError(spec, f"line {number}: expected 'from,to,name', got {line!r}") from None
        name = fields[2] if len(fields) > 2 else target_names[target - 1] if 0 < target < num_target else ""
        if not 0 < target < num_target or (num_source and not 0 < source < num_source) or source < 1:
            raise ConfigError(spec, f"line {number}: labels {source} -> {target} out of range (checkpoint 1.."
                                    f"{(num_source or 0) - 1}, model 1..{num_target - 1})")
        if target_names[target - 1] != name:
            raise ConfigError(spec, f"line {number}: label {target} of the model is {target_names[target - 1]!r}, "
                                    f"not {name!r}")
        if target in targets:
            raise ConfigError(spec, f"line {number}: model label {target} mapped twice")
        targets.add(target)
        pairs.append((source, target, name))
    if not pairs:
        raise ConfigError(spec, "the class map has no lines")
    if num_source is None:
        raise ConfigError(spec, "the checkpoint's number of classes is unknown (no ssd_config.json beside it)")
    return ClassMap(tuple(pairs), num_source, num_target)


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
    partial: dict = dataclasses.field(default_factory=dict)  # var name -> bool [last dim]: channels set

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
                 ignore_missing_vars=False, class_map=None):
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
    plan = RestorePlan(checkpoint_path, {}, {}, [], [], [], {})
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
        if class_map is not None and fnmatch.fnmatchcase(name, CLASS_HEAD_PATTERN):
            mapped = _map_class_head(reader.get_tensor(ckpt_name), shape, class_map)
            if mapped is None:
                mismatched.append((name, ckpt_name, ckpt_shape, shape))
            else:
                plan.values[name], plan.partial[name] = mapped
                plan.sources[name] = (ckpt_name, f"{len(class_map.pairs)} classes mapped from {_fmt(ckpt_shape)}")
            continue
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
    if plan.partial:
        names = ", ".join(f"{s}->{n}" for s, _, n in class_map.pairs[:6])
        plan.notices.append(
            f"class heads ({len(plan.partial)} variables) start from the checkpoint's mapped classes: background "
            f"and {len(class_map.pairs)} of {class_map.num_target - 1} ({names}{', ...' if len(class_map.pairs) > 6 else ''})"
            f"; the other classes from their initialisation")
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
                                               f"(exclude their scopes, or start them from their initialisation):\n"
                                               f"{names}")
    if plan.missing:
        plan.notices.append(f"{len(plan.missing)} variables not in the checkpoint keep their initialisation: "
                            + ", ".join(plan.missing))
    if not plan.values:
        raise CheckpointError(checkpoint_path, "no model variable found in the checkpoint (check "
                                               "--checkpoint_model_scope and --checkpoint_exclude_scopes)")
    return plan


def _map_class_head(value, shape, class_map):
    """A checkpoint's class-head kernel or bias -> (model-shaped array, bool mask over its last axis) with
    the mapped channels copied (ClassMap.channels), or None if the shapes do not fit the map."""
    value = np.asarray(value)
    if value.shape[:-1] != tuple(shape[:-1]) or shape[-1] % class_map.num_target \
            or value.shape[-1] != shape[-1] // class_map.num_target * class_map.num_source:
        return None
    target, source = class_map.channels(shape[-1] // class_map.num_target)
    out = np.zeros(shape, value.dtype)
    out[..., target] = value[..., source]
    mask = np.zeros(shape[-1], bool)
    mask[target] = True
    return out, mask


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
                if name in plan.partial:  # only the mapped channels; the others keep the initial values
                    ph_value = tf.where(tf.constant(plan.partial[name]), ph, var.read_value())
                    assigns.append(var.assign(ph_value))
                else:
                    assigns.append(var.assign(ph))
                self._feeds.append((ph, name))
            self._op = tf.group(*assigns)

    def __call__(self, session):
        session.run(self._op, {ph: self.plan.values[name] for ph, name in self._feeds})
