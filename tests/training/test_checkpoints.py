"""CheckpointKeeper: rotation, relative state file, a failed or broken save never becomes the latest, and
restoring falls back to an older checkpoint when the newest is damaged."""
import os

import pytest
import tensorflow as tf

from common.errors import CheckpointError
from training import checkpoints


class Run:
    """A one-variable graph whose value is the step, with a keeper over train_dir."""

    def __init__(self, train_dir, max_to_keep=3):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.var = tf.compat.v1.get_variable("w", initializer=tf.constant(-1.0))
            self.value = tf.compat.v1.placeholder(tf.float32, [])
            self.assign = self.var.assign(self.value)
            saver = tf.compat.v1.train.Saver([self.var], max_to_keep=None, save_relative_paths=True)
            self.keeper = checkpoints.CheckpointKeeper(str(train_dir), saver, ["w"], max_to_keep)
            self.session = tf.compat.v1.Session(graph=self.graph)
            self.session.run(tf.compat.v1.global_variables_initializer())

    def save(self, step):
        with self.graph.as_default():  # the Saver works in graph mode
            self.session.run(self.assign, {self.value: float(step)})
            return self.keeper.save(self.session, step)

    def restore(self):
        with self.graph.as_default():
            prefix = self.keeper.restore_latest(self.session)
            return prefix, self.session.run(self.var)


def test_saves_rotate_and_the_state_file_is_relative(tmp_path):
    run = Run(tmp_path)
    for step in (1, 2, 3, 4, 5):
        run.save(step)
    assert sorted(os.path.basename(p) for p in run.keeper.kept) == ["model.ckpt-3", "model.ckpt-4", "model.ckpt-5"]
    assert not any(name.startswith("model.ckpt-1.") or name.startswith("model.ckpt-2.")
                   for name in os.listdir(tmp_path))
    state = (tmp_path / "checkpoint").read_text()
    assert 'model_checkpoint_path: "model.ckpt-5"' in state and str(tmp_path) not in state
    assert tf.train.latest_checkpoint(str(tmp_path)) == str(tmp_path / "model.ckpt-5")
    again = Run(tmp_path)  # a restarted run sees the same list and restores the newest
    assert again.restore() == (str(tmp_path / "model.ckpt-5"), 5.0)
    assert checkpoints.checkpoint_step(again.keeper.latest) == 5


def test_a_save_that_fails_leaves_the_latest_pointer_alone(tmp_path, monkeypatch):
    run = Run(tmp_path)
    run.save(1)
    before = (tmp_path / "checkpoint").read_text()
    real_save = run.keeper.saver.save

    def save_then_lose_data(session, prefix, **kwargs):  # e.g. a disk that filled up mid-write
        path = real_save(session, prefix, **kwargs)
        for name in os.listdir(tmp_path):
            if name.startswith("model.ckpt-2.data"):
                os.remove(tmp_path / name)
        return path

    monkeypatch.setattr(run.keeper.saver, "save", save_then_lose_data)
    with pytest.raises(CheckpointError, match="no data file|unreadable"):
        run.save(2)
    assert (tmp_path / "checkpoint").read_text() == before
    assert Run(tmp_path).restore() == (str(tmp_path / "model.ckpt-1"), 1.0)

    def save_interrupted(session, prefix, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(run.keeper.saver, "save", save_interrupted)
    with pytest.raises(KeyboardInterrupt):
        run.save(3)
    assert (tmp_path / "checkpoint").read_text() == before


def test_verification_requires_every_variable(tmp_path):
    run = Run(tmp_path)
    path = run.save(1)
    checkpoints.verify_checkpoint(path, ["w"])
    with pytest.raises(CheckpointError, match="lacks 1 variables"):
        checkpoints.verify_checkpoint(path, ["w", "global_step"])


def test_restore_falls_back_to_an_older_checkpoint_when_the_newest_is_damaged(tmp_path):
    run = Run(tmp_path)
    run.save(1)
    run.save(2)
    data = [n for n in os.listdir(tmp_path) if n.startswith("model.ckpt-2.data")][0]
    (tmp_path / data).write_bytes(b"")  # damaged after it was written
    assert Run(tmp_path).restore() == (str(tmp_path / "model.ckpt-1"), 1.0)
    for name in os.listdir(tmp_path):
        if name.startswith("model.ckpt-1.data"):
            (tmp_path / name).write_bytes(b"")
    with pytest.raises(CheckpointError, match="no checkpoint restores"):
        Run(tmp_path).restore()
    assert Run(tmp_path / "empty").restore() == (None, -1.0)
