"""Checkpoints of a training run: written atomically, the last few kept, the newest readable one restored.

TF's Saver writes a checkpoint's data and index under temporary names and renames them when complete, but
then points `checkpoint` (the state file) at the new prefix and deletes old checkpoints itself. Here the
Saver only writes the files; the checkpoint is then read back (index, shards, every expected variable), and
only then is the state file replaced, in one rename, and the oldest checkpoints beyond `max_to_keep`
removed. A crash or a full disk at any moment leaves `checkpoint` naming a complete checkpoint. Paths in
the state file are relative, so a training directory can be moved.
"""
import glob
import logging
import os

import numpy as np
import tensorflow as tf
from google.protobuf import text_format
from tensorflow.python.training import checkpoint_state_pb2

from common import fileio
from common.errors import CheckpointError
from datasets.voc_classes import VOC_CLASSES
from nets import model_config, nets_factory

log = logging.getLogger("ssd.train")

STATE_NAME = "checkpoint"
BASENAME = "model.ckpt"


def checkpoint_step(prefix):
    """The global step in a `model.ckpt-<step>` prefix, or None."""
    tail = os.path.basename(prefix).rsplit("-", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def read_state(train_dir):
    """Checkpoint prefixes listed in train_dir's state file, oldest first (absolute paths); [] if none."""
    state = tf.train.get_checkpoint_state(train_dir)
    if state is None:
        return []
    paths = list(state.all_model_checkpoint_paths) or [state.model_checkpoint_path]
    if state.model_checkpoint_path and state.model_checkpoint_path not in paths:
        paths.append(state.model_checkpoint_path)
    return [p if os.path.isabs(p) else os.path.join(train_dir, p) for p in paths if p]


def write_state(train_dir, prefixes):
    """Replaces the state file in one rename: the last prefix is the latest."""
    state = checkpoint_state_pb2.CheckpointState(
        model_checkpoint_path=os.path.basename(prefixes[-1]),
        all_model_checkpoint_paths=[os.path.basename(p) for p in prefixes])
    fileio.write_text(os.path.join(train_dir, STATE_NAME), text_format.MessageToString(state))


def verify_checkpoint(prefix, expected_names):
    """Raises CheckpointError unless the index reads, every data shard is there and all names are in it."""
    try:
        names = set(tf.train.load_checkpoint(prefix).get_variable_to_shape_map())
    except (tf.errors.OpError, ValueError) as err:
        raise CheckpointError(prefix, f"checkpoint unreadable after writing ({str(err).splitlines()[0]})") \
            from None
    shards = glob.glob(glob.escape(prefix) + ".data-*-of-*")
    if not shards:
        raise CheckpointError(prefix, "checkpoint has no data file")
    total = int(shards[0].rsplit("-of-", 1)[1])
    if len(shards) != total:
        raise CheckpointError(prefix, f"checkpoint has {len(shards)} of {total} data files")
    lost = sorted(set(expected_names) - names)
    if lost:
        raise CheckpointError(prefix, f"checkpoint lacks {len(lost)} variables, e.g. {lost[0]}")


def remove_checkpoint(prefix):
    for path in glob.glob(glob.escape(prefix) + ".*"):
        try:
            os.remove(path)
        except OSError as err:
            log.warning("could not remove old checkpoint file %s: %s", path, err)


class CheckpointKeeper:
    """Saves, verifies and rotates the checkpoints of `train_dir`, and restores the newest readable one.

    saver: a tf.compat.v1.train.Saver over every variable to keep (model, optimiser state, global step).
    """

    def __init__(self, train_dir, saver, variable_names, max_to_keep=5):
        if max_to_keep < 1:
            raise ValueError(f"max_to_keep must be >= 1, got {max_to_keep}")
        self.train_dir = train_dir
        self.saver = saver
        self.variable_names = list(variable_names)
        self.max_to_keep = max_to_keep
        self.kept = [p for p in read_state(train_dir) if tf.io.gfile.exists(p + ".index")]

    @property
    def latest(self):
        return self.kept[-1] if self.kept else None

    def save(self, session, step):
        """Writes model.ckpt-<step>, verifies it, then points the state file at it; returns the prefix."""
        prefix = os.path.join(self.train_dir, BASENAME)
        path = self.saver.save(session, prefix, global_step=step, write_meta_graph=False, write_state=False)
        verify_checkpoint(path, self.variable_names)
        kept = [p for p in self.kept if os.path.abspath(p) != os.path.abspath(path)] + [path]
        dropped, self.kept = kept[:-self.max_to_keep], kept[-self.max_to_keep:]
        write_state(self.train_dir, self.kept)
        for old in dropped:
            remove_checkpoint(old)
        return path

    def restore_latest(self, session):
        """Restores the newest checkpoint that reads; returns its prefix, or None when there is none.

        A checkpoint that fails to restore (damaged after it was written) is reported and the next older
        one is tried; if none restores, CheckpointError lists them.
        """
        failures = []
        for prefix in reversed(self.kept):
            try:
                self.saver.restore(session, prefix)
            except (tf.errors.OpError, ValueError) as err:
                reason = str(err).strip().splitlines()[0]
                log.warning("cannot restore %s (%s); trying an older checkpoint", prefix, reason)
                failures.append(f"{os.path.basename(prefix)}: {reason}")
                continue
            return prefix
        if failures:
            raise CheckpointError(self.train_dir, "no checkpoint restores: " + "; ".join(failures))
        return None


def save_initial_model(directory, model_name="ssd_300_vgg_lite", class_names=VOC_CLASSES, seed=0, config=None,
                       load_values=None, global_step=None, write_config=True):
    """A network as a training run's step 0 would save it: initialised (seeded), model.ckpt[-global_step] and
    ssd_config.json in `directory`; returns the checkpoint prefix. For tests and benchmarks, where the weights
    do not matter (or are set by load_values).

    config: the model configuration (default: nets_factory.default_config(model_name, class_names=class_names)).
    load_values(session, model, variables): sets variables after the random initialisation (e.g. fixed
    weights, random batch norm statistics). global_step: the checkpoint's step suffix.
    """
    config = config or nets_factory.default_config(model_name, class_names=class_names)
    os.makedirs(directory, exist_ok=True)
    with tf.Graph().as_default():
        if seed is not None:
            tf.compat.v1.set_random_seed(seed)
        model = nets_factory.build_model(config)
        height, width = model.image_size
        model.network_fn(tf.compat.v1.placeholder(tf.float32, [None, height, width, 3]))
        variables = tf.compat.v1.global_variables()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            if load_values is not None:
                load_values(sess, model, variables)
            prefix = tf.compat.v1.train.Saver(variables).save(
                sess, os.path.join(str(directory), "model.ckpt"), global_step=global_step, write_meta_graph=False)
    if write_config:
        model_config.save_model_config(str(directory), config)
    return prefix


def random_batch_norm_statistics(rng, head_stddev=0.0):
    """load_values for save_initial_model: random batch norm statistics and offsets (moving mean and beta from
    N(0, 0.5), moving variance and gamma from U(0.5, 2)), so that a fresh batch norm network's activations do not
    vanish layer by layer and its scores do not all tie; head_stddev > 0 also draws the heads' weights (the
    variables under a *_box scope) from N(0, head_stddev). rng: a NumPy Generator."""
    def load(session, model, variables):
        for v in variables:
            name, shape = v.op.name, v.shape.as_list()
            if name.endswith(("moving_mean", "BatchNorm/beta")):
                v.load(rng.normal(0, 0.5, shape).astype(np.float32), session)
            elif name.endswith(("moving_variance", "BatchNorm/gamma")):
                v.load(rng.uniform(0.5, 2.0, shape).astype(np.float32), session)
            elif head_stddev and "_box/" in name and name.endswith("weights"):
                v.load(rng.normal(0.0, head_stddev, shape).astype(np.float32), session)
    return load
