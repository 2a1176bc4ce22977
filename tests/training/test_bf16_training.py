"""Mixed bfloat16 training (train_ssd_network.py --precision=bf16, common/precision.py) follows float32: from
the same initial weights and batches, the losses of each step agree to bfloat16's precision and the weights
move the same way, and the rewrite did act (the runs are not bit-identical)."""
import numpy as np
import pytest
import tensorflow as tf

from common.errors import ConfigError
from common.precision import apply_precision, cpu_supports_bf16, onednn_enabled
from tests.training.test_trainer import BATCH, build, read_checkpoint
from tests.training.fixtures import memory_input_fn
from training import distribution, optimizers, trainer
from training.checkpoints import save_initial_model

STEPS = 3


def train(train_dir, precision, model, config, init):
    opts = trainer.TrainOptions(train_dir=str(train_dir), batch_size=BATCH, max_number_of_steps=STEPS,
                                log_every_n_steps=1, save_interval_secs=1e9, save_summaries_secs=1e9, seed=7)
    return trainer.train(
        model, memory_input_fn(model, BATCH),
        lambda step: optimizers.learning_rate_schedule(step, 1e-3, "fixed"),
        lambda rate: optimizers.configure_optimizer("momentum", rate),
        distribution.make_distribution("mirrored", ["/cpu:0"], precision=precision), opts,
        warm_start=trainer.WarmStart(init), model_config=config)


def test_bf16_training_follows_float32(tmp_path):
    if not (onednn_enabled() and cpu_supports_bf16()):
        pytest.skip("no native bfloat16 here (AVX512_BF16 / AMX and oneDNN): grappler's rewrite would run "
                    "emulated kernels or nothing, so there is no bf16 path to compare")
    model, config = build(6)
    init_prefix = save_initial_model(str(tmp_path / "init"), config=config, seed=3)
    runs = {p: train(tmp_path / p, p, model, config, init_prefix) for p in ("float32", "bf16")}
    losses = {p: np.array([r["total_loss"] for r in run.records]) for p, run in runs.items()}
    assert len(losses["bf16"]) == STEPS and np.all(np.isfinite(losses["bf16"]))
    np.testing.assert_allclose(losses["bf16"], losses["float32"], rtol=0.03)
    init = read_checkpoint(init_prefix)
    final = {p: read_checkpoint(run.checkpoint) for p, run in runs.items()}
    kernels = [n for n in final["float32"] if n.endswith("/weights") and final["float32"][n].size > 1000]
    assert kernels
    differs = False
    for name in kernels:
        a, b = final["float32"][name], final["bf16"][name]
        assert a.dtype == b.dtype == np.float32  # variables stay float32
        differs |= not np.array_equal(a, b)
        da, db = (a - init[name]).ravel(), (b - init[name]).ravel()
        cosine = float(da @ db / (np.linalg.norm(da) * np.linalg.norm(db) + 1e-30))
        assert cosine > 0.9, (name, cosine)
    assert differs, "bf16 and float32 runs are bit-identical: the rewrite did not act"


def test_unknown_precision_is_a_config_error():
    with pytest.raises(ConfigError, match="unknown precision 'int4'"):
        apply_precision(tf.compat.v1.ConfigProto(), "int4", name="--precision")
