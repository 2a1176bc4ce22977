"""The trainer runs batch norm's moving-average updates with each step, under tf.distribute too: every
moving average moves, and over two replicas the first layer's moving mean equals one replica's on the same
global batch (tests/training/batch_norm_replicas.py, in a subprocess for the logical CPU devices)."""
import json
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.mark.slow
def test_moving_averages_update_under_one_and_two_replicas():
    script = os.path.join(ROOT, "tests", "training", "batch_norm_replicas.py")
    proc = subprocess.run([sys.executable, script], cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["replicas"] == 2 and result["num_moving"] > 100
    assert result["unchanged_one"] == [] and result["unchanged_two"] == []
    assert result["finite"]
    assert result["first_layer_update"] > 1e-5  # (1 - decay 0.997) x the batch mean
    assert result["first_layer_diff"] < 1e-3 * result["first_layer_update"], result
