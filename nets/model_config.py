"""The model configuration written beside every checkpoint: `ssd_config.json`.

It records what is needed to rebuild the model without flags: model name, number of classes and their
names, the network parameters (anchors, sizes, variances), the input mean, the post-processing defaults
and, for networks built from Caffe, the deploy prototxt text. Training writes it into --train_dir, the Caffe
converter into --output_dir; evaluation, detection, the notebook and the exporter read it.
"""
import json
import os

import tensorflow as tf

from common import fileio
from common.errors import CheckpointError

CONFIG_NAME = "ssd_config.json"


def save_model_config(directory, config):
    fileio.write_json(os.path.join(directory, CONFIG_NAME), config)


def config_path(path_or_dir):
    """The ssd_config.json for a checkpoint directory, a checkpoint prefix, or the JSON file itself."""
    if os.path.isdir(path_or_dir):
        return os.path.join(path_or_dir, CONFIG_NAME)
    if path_or_dir.endswith(".json"):
        return path_or_dir
    return os.path.join(os.path.dirname(path_or_dir) or ".", CONFIG_NAME)


def load_model_config(path_or_dir):
    path = config_path(path_or_dir)
    if not os.path.exists(path):
        raise CheckpointError(path, "no model configuration (ssd_config.json) here")
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as err:
        raise CheckpointError(path, f"unreadable model configuration ({err})") from None


def resolve_checkpoint(path):
    """A checkpoint prefix from a prefix or a directory (its latest checkpoint)."""
    if os.path.isdir(path):
        ckpt = tf.train.latest_checkpoint(path)
        if ckpt is None:
            raise CheckpointError(path, "no checkpoint in this directory")
        return ckpt
    if not tf.io.gfile.exists(path + ".index"):
        raise CheckpointError(path, "no such checkpoint (expected <prefix>.index)")
    return path
