"""Two replicas under MirroredStrategy give the update of one replica on the same global batch.

Runs tests/training/replica_equivalence.py in a subprocess (logical CPU devices must be configured before
TensorFlow starts). Plain SGD, so the update is the learning rate times the summed gradient; weight decay
and a bias learning-rate multiplier are on, so their per-replica shares are checked too.
"""
import pytest

from tests.training.fixtures import run_json_script


@pytest.mark.slow
def test_two_replicas_match_one_replica_on_the_global_batch():
    result = run_json_script("replica_equivalence.py", timeout=600)
    assert result["replicas"] == [1, 2]
    assert result["max_start_diff"] == 0.0
    # The update is large enough for a wrong normalisation (per-replica positives: ~0.7) to show.
    assert result["max_update"] > 1e-2
    assert result["max_update_diff"] < 1e-5, result
    one, two = result["one"], result["two"]
    assert one["num_positives"] == two["num_positives"] > 0
    for key in ("total_loss", "cross_entropy_pos", "cross_entropy_neg", "localization", "regularization"):
        assert abs(one[key] - two[key]) <= 1e-5 * max(1.0, abs(one[key])), key
