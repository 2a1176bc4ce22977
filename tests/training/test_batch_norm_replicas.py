"""The trainer runs batch norm's moving-average updates with each step, under tf.distribute too: every
moving average moves, and over two replicas the first layer's moving mean equals one replica's on the same
global batch (tests/training/batch_norm_replicas.py, in a subprocess for the logical CPU devices)."""
import pytest

from tests.training.fixtures import run_json_script


@pytest.mark.slow
def test_moving_averages_update_under_one_and_two_replicas():
    result = run_json_script("batch_norm_replicas.py", timeout=900)
    assert result["replicas"] == 2 and result["num_moving"] > 100
    assert result["unchanged_one"] == [] and result["unchanged_two"] == []
    assert result["finite"]
    assert result["first_layer_update"] > 1e-5  # (1 - decay 0.997) x the batch mean
    assert result["first_layer_diff"] < 1e-3 * result["first_layer_update"], result
