"""Warm start of the batch norm SSDs from TF-Slim-layout ImageNet checkpoints through train_ssd_network.py.

Each base checkpoint is written with the base network's own TF-Slim variable names, built in its own graph:
ResNet-50 and Inception-v2 by tf_slim.nets itself (resnet_v1_50, inception_v2_base), MobileNet-v2 by
mobilenet_v2_base under TF-Slim's MobilenetV2 scope; every value, the moving statistics included, random.
A step of phase 1 of the fine-tuning recipe (docs/models.md: extras and heads excluded from the restore and
alone trained) must leave every base variable equal to the checkpoint and create every other one new.
"""
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim
from tf_slim.nets import inception_v2, resnet_v1

from common.errors import ConfigError
from nets import ssd_inception_v2, ssd_resnet_v1, ssdlite_mobilenet_v2
from tests.training.fixtures import tiny_record_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

# model, TF-Slim scope, --checkpoint_exclude_scopes, --trainable_scopes (docs/models.md's phase 1)
RECIPES = {
    "ssd_300_resnet_v1_50": ("resnet_v1_50", "ssd_300_resnet_v1_50/block5,ssd_300_resnet_v1_50/block6,"
                             "ssd_300_resnet_v1_50/block7,*_box",
                             "ssd_300_resnet_v1_50/block[5-7],ssd_300_resnet_v1_50/.*_box"),
    "ssd_300_inception_v2": ("InceptionV2", "ssd_300_inception_v2/Mixed_5c_,*_box",
                             "ssd_300_inception_v2/Mixed_5c_,ssd_300_inception_v2/.*_box"),
    "ssdlite_320_mobilenet_v2": ("MobilenetV2", "ssdlite_320_mobilenet_v2/layer_19_,*_box",
                                 "ssdlite_320_mobilenet_v2/layer_19_,ssdlite_320_mobilenet_v2/.*_box"),
}


def build_base(model_name, depth_multiplier=1.0):
    """The base as TF-Slim builds it for ImageNet (with its classifier where TF-Slim's checkpoints have one)."""
    images = tf.compat.v1.placeholder(tf.float32, [1, 224, 224, 3])
    if model_name == "ssd_300_resnet_v1_50":
        with slim.arg_scope(ssd_resnet_v1.ssd_resnet_arg_scope()):
            resnet_v1.resnet_v1_50(images, num_classes=1000, is_training=False)
    elif model_name == "ssd_300_inception_v2":
        with slim.arg_scope(ssd_inception_v2.ssd_inception_arg_scope()):
            inception_v2.inception_v2_base(images, scope="InceptionV2")
    else:
        with slim.arg_scope(ssdlite_mobilenet_v2.ssdlite_arg_scope()), \
                tf.compat.v1.variable_scope("MobilenetV2"):
            net, _ = ssdlite_mobilenet_v2.mobilenet_v2_base(images, depth_multiplier)
            slim.conv2d(tf.reduce_mean(net, [1, 2], keepdims=True), 1001, [1, 1], normalizer_fn=None,
                        activation_fn=None, scope="Logits/Conv2d_1c_1x1")


def write_base_checkpoint(model_name, path, depth_multiplier=1.0):
    """Random values for every variable (moving means normal, moving variances in [0.5, 2]); {name: value}."""
    rng = np.random.default_rng(0)
    with tf.Graph().as_default():
        build_base(model_name, depth_multiplier)
        variables = tf.compat.v1.global_variables()
        values = {}
        for v in variables:
            shape = v.shape.as_list()
            if v.op.name.endswith("moving_variance"):
                values[v.op.name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
            else:
                values[v.op.name] = rng.normal(0.0, 0.1, shape).astype(np.float32)
        with tf.compat.v1.Session() as sess:
            for v in variables:
                v.load(values[v.op.name], sess)
            tf.compat.v1.train.Saver(variables).save(sess, path, write_meta_graph=False)
    return values


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return tiny_record_set(str(tmp_path_factory.mktemp("tiny")), num_train=4)


def train(records, train_dir, model_name, checkpoint, *extra):
    records_dir, split, _ = records
    scope, exclude, trainable = RECIPES[model_name]
    cmd = [sys.executable, os.path.join(ROOT, "train_ssd_network.py"), f"--train_dir={train_dir}",
           f"--dataset_dir={records_dir}", "--dataset_name=voc_custom", f"--dataset_split_name={split}",
           f"--model_name={model_name}", "--batch_size=2", "--max_number_of_steps=1", "--save_interval_secs=0",
           f"--checkpoint_path={checkpoint}", f"--checkpoint_model_scope={scope}",
           f"--checkpoint_exclude_scopes={exclude}", f"--trainable_scopes={trainable}", "--seed=1",
           "--num_summary_images=0", *extra]
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    reader = tf.train.load_checkpoint(tf.train.latest_checkpoint(str(train_dir)))
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()
            if name.startswith(model_name + "/") and "/Momentum" not in name}


@pytest.mark.slow
@pytest.mark.parametrize("model_name", sorted(RECIPES))
def test_base_restored_heads_new(records, tmp_path, model_name):
    scope = RECIPES[model_name][0]
    base = write_base_checkpoint(model_name, str(tmp_path / "base.ckpt"))
    trained = train(records, tmp_path / "train", model_name, tmp_path / "base.ckpt", "--freeze_batch_norm")
    restored = {name: value for name, value in trained.items()
                if scope + name[len(model_name):] in base}
    new = set(trained) - set(restored)
    # Every base variable of the SSD comes from the checkpoint and, not trained and batch norm frozen, still
    # equals it after the step; every other variable (extras, heads) is not in the checkpoint at all.
    assert restored and new
    for name, value in restored.items():
        np.testing.assert_array_equal(value, base[scope + name[len(model_name):]], err_msg=name)
    assert all("_box/" in n or n.split("/")[1] not in {k.split("/")[1] for k in base} for n in new)
    assert any("_box/conv_cls/" in n for n in new)
    classifier = {k for k in base if "logits" in k.lower()}
    assert len(restored) == len(base) - len(classifier)


@pytest.mark.parametrize("flag", ["--depth_multiplier=0", "--batch_norm_decay=1.5", "--batch_norm_decay=0"])
def test_bad_batch_norm_flags_are_config_errors(tmp_path, flag):
    import train_ssd_network
    from common.errors import ConfigError
    with pytest.raises(ConfigError, match=flag.split("=")[0]):
        train_ssd_network.parse_args([f"--train_dir={tmp_path}", f"--dataset_dir={tmp_path}",
                                      "--model_name=ssdlite_320_mobilenet_v2", flag])


def test_flags_reach_the_model_configuration():
    import train_ssd_network
    args = train_ssd_network.parse_args(["--train_dir=x", "--dataset_dir=y", "--model_name=ssd_300_inception_v2",
                                         "--freeze_batch_norm", "--batch_norm_decay=0.9"])
    assert args.freeze_batch_norm is True and args.batch_norm_decay == 0.9
    # --model_name's choices are the factory's networks: each parses, a name it lacks is one line and status 1.
    from nets import nets_factory
    for name in nets_factory.networks_map:
        assert train_ssd_network.parse_args(["--train_dir=x", "--dataset_dir=y", f"--model_name={name}"]).model_name == name
    with pytest.raises(ConfigError, match="invalid choice: 'ssd_300_vgg16'"):
        train_ssd_network.parse_args(["--train_dir=x", "--dataset_dir=y", "--model_name=ssd_300_vgg16"])
