"""Two replicas under MirroredStrategy give the update of one replica on the same global batch.

Runs tests/training/replica_equivalence.py in a subprocess (logical CPU devices must be configured before
TensorFlow starts). Plain SGD, so the update is the learning rate times the summed gradient; weight decay
and a bias learning-rate multiplier are on, so their per-replica shares are checked too.
"""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_two_replicas_match_one_replica_on_the_global_batch():
    script = os.path.join(ROOT, "tests", "training", "replica_equivalence.py")
    proc = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == [1, 2]
    assert result["max_start_diff"] == 0.0
    # The update is large enough for a wrong normalisation (per-replica positives: ~0.7) to show.
    assert result["max_update"] > 1e-2
    assert result["max_update_diff"] < 1e-5, result
    one, two = result["one"], result["two"]
    assert one["num_positives"] == two["num_positives"] > 0
    for key in ("total_loss", "cross_entropy_pos", "cross_entropy_neg", "localization", "regularization"):
        assert abs(one[key] - two[key]) <= 1e-5 * max(1.0, abs(one[key])), key
