"""The training loop in-process, on the in-memory batches of fixtures.py (lite SSD, batch 2).

A 6-step run is the reference: its loss falls on a repeated batch, and a run stopped by SIGTERM at step 2
and resumed to step 6 must end with the same weights, which needs the global step, the learning-rate
schedule (a decay at step 5 falls in the resumed part) and Adam's state all restored.
"""
import glob
import json
import logging
import os
import signal

import numpy as np
import pytest
import tensorflow as tf

from common.errors import CheckpointError, ConfigError
from nets import model_config, nets_factory
from tests.training.fixtures import SCENES, memory_input_fn
from training import distribution, optimizers, trainer

MODEL = "ssd_300_vgg_lite"
BATCH = 2
BOUNDARY = 5


def build(num_classes):
    config = nets_factory.default_config(MODEL, class_names=[f"c{i}" for i in range(1, num_classes)])
    return nets_factory.build_model(config, is_training=True), config


def run(train_dir, steps, model, config, optimizer="adam", lr=1e-3, on_step=None, warm_start=None, scenes=SCENES,
        **options):
    opts = trainer.TrainOptions(train_dir=str(train_dir), batch_size=BATCH, max_number_of_steps=steps,
                                log_every_n_steps=1, save_interval_secs=1e9, save_summaries_secs=1e9,
                                seed=7, **options)
    return trainer.train(
        model, memory_input_fn(model, BATCH, scenes),
        lambda step: optimizers.learning_rate_schedule(step, lr, "piecewise", boundaries=(BOUNDARY,)),
        lambda rate: optimizers.configure_optimizer(optimizer, rate),
        distribution.make_distribution("mirrored", ["/cpu:0"]), opts, warm_start=warm_start,
        model_config=config, on_step=on_step)


def read_checkpoint(prefix):
    reader = tf.train.load_checkpoint(prefix)
    return {name: reader.get_tensor(name) for name in reader.get_variable_to_shape_map()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    model, config = build(6)
    train_dir = tmp_path_factory.mktemp("reference")
    return train_dir, run(train_dir, 6, model, config), model, config


def test_loss_falls_and_train_dir_holds_config_checkpoint_and_summaries(reference):
    train_dir, result, _, config = reference
    assert result.step == 6 and result.stopped_by == "max_number_of_steps"
    assert result.checkpoint == os.path.join(str(train_dir), "model.ckpt-6")
    losses = {r["step"]: r["total_loss"] for r in result.records}
    assert sorted(losses) == [1, 2, 3, 4, 5, 6]
    assert losses[5] < 0.8 * losses[1]  # steps 1 and 5 see the same batch
    # The learning rate is the Caffe multistep value of the step before each update.
    for r in result.records:
        expected = 1e-3 * (0.1 if r["step"] - 1 >= BOUNDARY else 1.0)
        assert r["learning_rate"] == pytest.approx(expected, rel=1e-6)
    assert model_config.load_model_config(str(train_dir)) == json.loads(json.dumps(config))
    events = glob.glob(os.path.join(str(train_dir), "events.out.tfevents.*"))
    tags = {v.tag for e in tf.compat.v1.train.summary_iterator(events[0]) for v in e.summary.value}
    assert {"losses/total_loss", "losses/cross_entropy_neg", "batch/num_positives", "batch/num_negatives",
            "optimizer/learning_rate"} <= tags
    assert any(t.startswith("images_with_ground_truth") for t in tags)


@pytest.mark.slow
def test_sigterm_saves_and_a_resumed_run_ends_where_an_uninterrupted_one_does(reference, tmp_path):
    ref_dir, ref_result, model, config = reference

    def stop_at_two(step, values):
        if step == 2:
            signal.raise_signal(signal.SIGTERM)  # to this (the main) thread: native libraries loaded by earlier tests run threads of their own

    first = run(tmp_path, 100, model, config, on_step=stop_at_two)
    assert (first.step, first.stopped_by) == (2, "signal SIGTERM")
    assert [r["total_loss"] for r in first.records] == pytest.approx(
        [r["total_loss"] for r in ref_result.records[:2]], rel=1e-5)  # the same start (seed)
    assert first.checkpoint.endswith("model.ckpt-2")
    second = run(tmp_path, 6, model, config)
    assert [r["step"] for r in second.records] == [3, 4, 5, 6]
    # No jump: the resumed records equal the uninterrupted run's, step for step.
    for a, b in zip(second.records, ref_result.records[2:]):
        assert a["learning_rate"] == pytest.approx(b["learning_rate"], rel=1e-7)
        assert a["total_loss"] == pytest.approx(b["total_loss"], rel=1e-4)
    ref, resumed = read_checkpoint(ref_result.checkpoint), read_checkpoint(second.checkpoint)
    assert set(ref) == set(resumed) and any(n.endswith("/Adam") for n in ref)
    for name, value in ref.items():
        np.testing.assert_allclose(resumed[name], value, rtol=1e-4, atol=1e-6, err_msg=name)


def test_fine_tuning_with_other_classes_restores_all_but_class_heads(reference, tmp_path, caplog):
    ref_dir, ref_result, _, _ = reference
    model, config = build(4)
    heads = "ssd_300_vgg_lite/block[0-9]+_box"  # a regular expression, as TF-Slim
    with caplog.at_level(logging.INFO, logger="ssd.train"):
        result = run(tmp_path, 1, model, config, optimizer="sgd", trainable_scopes=(heads,),
                     warm_start=trainer.WarmStart(ref_result.checkpoint))
    assert "class heads have another number of classes" in caplog.text
    old, new = read_checkpoint(ref_result.checkpoint), read_checkpoint(result.checkpoint)
    base = [n for n in new if n.startswith("ssd_300_vgg_lite/") and "_box/" not in n]
    assert len(base) > 20
    for name in base:  # restored, and not trained (--trainable_scopes)
        np.testing.assert_array_equal(new[name], old[name], err_msg=name)
    cls = "ssd_300_vgg_lite/block7_box/conv_cls/weights"
    assert old[cls].shape[-1] // 6 == new[cls].shape[-1] // 4
    loc = "ssd_300_vgg_lite/block7_box/conv_loc/weights"
    assert not np.array_equal(new[loc], old[loc])  # restored, then trained
    assert model_config.load_model_config(str(tmp_path))["num_classes"] == 4


def test_train_dir_of_another_model_is_refused(tmp_path):
    _, config6 = build(6)
    _, config4 = build(4)
    trainer.prepare_train_dir(str(tmp_path), config6)
    trainer.prepare_train_dir(str(tmp_path), config6)  # same model: fine
    with pytest.raises(ConfigError, match="num_classes"):
        trainer.prepare_train_dir(str(tmp_path), config4)


def test_a_warm_start_that_does_not_fit_fails_before_writing_anything(reference, tmp_path):
    from tests.training.test_checkpoint_init import write_checkpoint
    _, ref_result, model, config = reference
    tensors = read_checkpoint(ref_result.checkpoint)
    tensors["ssd_300_vgg_lite/conv2/conv2_1/weights"] = np.zeros((3, 3, 8, 99), np.float32)
    bad = write_checkpoint(str(tmp_path / "bad.ckpt"), tensors)
    with pytest.raises(CheckpointError, match=r"conv2_1/weights .*checkpoint \[3, 3, 8, 99\], model \[3, 3, 8, 16\]"):
        run(tmp_path / "train", 2, model, config, warm_start=trainer.WarmStart(bad))
    assert not os.path.exists(tmp_path / "train")


def test_progress_records_positives_per_image(reference):
    _, result, _, _ = reference
    for record in result.records:  # one record a step here (log_every_n_steps=1)
        assert record["positives_per_image"] == pytest.approx(record["num_positives"] / BATCH)
        assert record["num_positives"] > 0


def test_a_run_without_positives_warns(tmp_path, caplog):
    model, config = build(6)
    with caplog.at_level(logging.WARNING, logger="ssd.train"):
        result = run(tmp_path / "empty", 2, model, config, scenes=((), ()))
    assert all(r["num_positives"] == 0 for r in result.records)
    warnings = [r.getMessage() for r in caplog.records if "no positive anchors" in r.getMessage()]
    assert warnings == ["no positive anchors in steps 1-1: no ground-truth box matched an anchor, so nothing is "
                        "learnt but background (check the records' boxes, the match threshold and the model's "
                        "anchors)", warnings[1]] and "steps 2-2" in warnings[1]
