"""train_ssd_network.py end to end on a tiny synthetic record set (lite SSD, batch 2, a few steps).

One train_dir goes through a short run (the loss falls) and a restart (the global step and the learning-rate
schedule continue without a jump) that a NaN injected into the loss (tests/scripts/train_with_nan.py) stops (exit 1 naming the step and the
loss terms; the last good checkpoint stays). SIGTERM is tested in-process (tests/training/test_trainer.py).
"""
import json
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import train_ssd_network
from common.errors import ConfigError
from tests.training.fixtures import tiny_record_set

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "train_ssd_network.py")
BOUNDARY = 9
CLONES_TIMEOUT = 300  # seconds: a few steps take under a minute even on a busy 2-core machine
LINE = re.compile(r"step (\d+)(?:/\d+)?: loss (\S+) \(ce_pos (\S+), ce_neg (\S+), loc (\S+), reg (\S+)\) "
                  r"pos (\d+) neg (\d+) lr (\S+)")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    return tiny_record_set(str(tmp_path_factory.mktemp("tiny")))


def command(records, train_dir, *extra):
    records_dir, split, _ = records
    return [sys.executable, SCRIPT, f"--train_dir={train_dir}", f"--dataset_dir={records_dir}",
            "--dataset_name=voc_custom", f"--dataset_split_name={split}", "--model_name=ssd_300_vgg_lite",
            "--batch_size=2", "--log_every_n_steps=1", "--save_interval_secs=0", "--optimizer=adam",
            "--learning_rate=0.001", "--learning_rate_decay_type=piecewise",
            f"--learning_rate_boundaries={BOUNDARY}", "--seed=1", "--num_summary_images=1", *extra]


def env():
    return dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")


def parse(stdout):
    """{step: (total loss, learning rate)} of the progress lines."""
    return {int(m.group(1)): (float(m.group(2)), float(m.group(9))) for m in LINE.finditer(stdout)}


def expected_lr(step):
    """The logged step N is the N-th update; it uses the Caffe multistep rate of global step N - 1."""
    return 1e-3 * (0.1 if step - 1 >= BOUNDARY else 1.0)


def latest_step(train_dir):
    with open(os.path.join(train_dir, "checkpoint")) as f:
        return int(re.search(r'^model_checkpoint_path: "model\.ckpt-(\d+)"', f.read(), re.M).group(1))


def test_help_lists_the_tf_slim_flags():
    out = subprocess.run([sys.executable, SCRIPT, "--help"], capture_output=True, text=True, timeout=60).stdout
    for flag in ("--train_dir", "--checkpoint_exclude_scopes", "--trainable_scopes", "--ignore_missing_vars",
                 "--checkpoint_model_scope", "--learning_rate_decay_type", "--num_epochs_per_decay",
                 "--end_learning_rate", "--negative_ratio", "--match_threshold", "--loss_alpha", "--rmsprop_decay",
                 "--adam_beta1", "--ftrl_l1", "--save_interval_secs", "--save_summaries_secs", "--optimizer"):
        assert flag in out, flag


def test_missing_checkpoint_is_one_line_error(records, tmp_path):
    proc = subprocess.run(command(records, tmp_path / "run", "--checkpoint_path=/nonexistent/model.ckpt"),
                          capture_output=True, text=True, timeout=120, env=env())
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: /nonexistent/model.ckpt: no such checkpoint")
    assert not os.path.exists(tmp_path / "run")


@pytest.fixture(scope="module")
def short_run(records, tmp_path_factory):
    """8 steps on one replica: (train_dir, the finished process). The resume test goes on in its train_dir."""
    train_dir = str(tmp_path_factory.mktemp("short") / "train")
    first = subprocess.run(command(records, train_dir, "--max_number_of_steps=8"), capture_output=True,
                           text=True, timeout=600, env=env())
    assert first.returncode == 0, first.stderr[-3000:]
    return train_dir, first


@pytest.mark.slow
def test_train_then_resume_until_a_nan_stops_it(records, short_run):
    # 1. A short run: the loss falls.
    train_dir, first = short_run
    logged = parse(first.stdout)
    assert sorted(logged) == list(range(1, 9)), first.stdout[-2000:]
    losses = [logged[s][0] for s in range(1, 9)]
    assert np.mean(losses[-3:]) < 0.85 * np.mean(losses[:3]), losses
    assert latest_step(train_dir) == 8
    config = json.load(open(os.path.join(train_dir, "ssd_config.json")))
    assert config["model_name"] == "ssd_300_vgg_lite" and config["num_classes"] == len(records[2]) + 1
    assert config["class_names"] == list(records[2])

    # 2. Restarted with the same train_dir: the global step and the schedule continue (the decay at step
    # BOUNDARY falls in this part) until a NaN injected at step 12 stops it with status 1, naming the step
    # and the loss terms; the last good checkpoint (step 11) stays and reads.
    nan_step = 12
    wrapper = [sys.executable, os.path.join(ROOT, "tests", "scripts", "train_with_nan.py"), str(nan_step)]
    proc = subprocess.run(wrapper + command(records, train_dir, "--max_number_of_steps=1000")[2:],
                          capture_output=True, text=True, timeout=600, env=env())
    assert proc.returncode == 1, proc.stderr[-3000:]
    resumed = parse(proc.stdout)
    assert sorted(resumed) == list(range(9, nan_step)), proc.stdout[-2000:]
    for step, (_, lr) in list(logged.items()) + list(resumed.items()):  # no jump in the schedule
        assert lr == pytest.approx(expected_lr(step), rel=1e-5), step
    assert resumed[BOUNDARY + 1][1] == pytest.approx(1e-4) and resumed[BOUNDARY][1] == pytest.approx(1e-3)
    error = proc.stderr.strip().splitlines()[-1]
    assert error.startswith(f"error: {train_dir}: non-finite total_loss")
    assert f"at step {nan_step} (total_loss=nan, cross_entropy_pos=" in error
    assert "cross_entropy_neg=" in error and "localization=" in error
    assert latest_step(train_dir) == nan_step - 1
    import tensorflow as tf
    reader = tf.train.load_checkpoint(os.path.join(train_dir, f"model.ckpt-{nan_step - 1}"))
    assert int(reader.get_tensor("global_step")) == nan_step - 1
    for name in reader.get_variable_to_shape_map():
        assert np.all(np.isfinite(reader.get_tensor(name))), name


@pytest.mark.slow
def test_two_replicas_on_logical_cpus_train_as_one_does(records, short_run, tmp_path):
    """--clone_on_cpu --num_clones=2 (two logical CPU devices under MirroredStrategy): the command trains, and with
    the same seed its first steps log the losses of one replica on the same global batches. It once waited
    forever in its first step (the strategy was made while eager execution was on: training/distribution.py)."""
    train_dir = str(tmp_path / "train")
    proc = subprocess.run(command(records, train_dir, "--clone_on_cpu", "--num_clones=2", "--max_number_of_steps=3"),
                          capture_output=True, text=True, timeout=CLONES_TIMEOUT, env=env())
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "MirroredStrategy over 2 device(s)" in proc.stdout and latest_step(train_dir) == 3
    two, one = parse(proc.stdout), parse(short_run[1].stdout)
    assert "MirroredStrategy over 1 device(s)" in short_run[1].stdout
    assert sorted(two) == [1, 2, 3]
    for step, values in two.items():
        assert values == pytest.approx(one[step], rel=1e-3), step


def test_augmentation_presets_and_zoom_out_flags(tmp_path):
    base = [f"--train_dir={tmp_path / 't'}", f"--dataset_dir={tmp_path}"]
    ssd = train_ssd_network.augmentation_options(train_ssd_network.parse_args(base))
    # The Caffe SSD's: photometric distortion on (the preprocessing default), zoom-out 0.5 up to 4x.
    assert ssd == {"expand_prob": 0.5, "max_expand_ratio": 4.0}
    light = train_ssd_network.augmentation_options(train_ssd_network.parse_args(base + ["--augmentation=light"]))
    assert light == {"distortion": None, "expand_prob": 0.0, "max_expand_ratio": 4.0}
    custom = train_ssd_network.augmentation_options(train_ssd_network.parse_args(
        base + ["--augmentation=light", "--expand_prob=0.3", "--max_expand_ratio=2"]))
    assert custom["expand_prob"] == 0.3 and custom["max_expand_ratio"] == 2.0 and custom["distortion"] is None
    for bad in (["--expand_prob=1.5"], ["--max_expand_ratio=0.5"]):
        with pytest.raises(ConfigError, match="expand"):
            train_ssd_network.parse_args(base + bad)
