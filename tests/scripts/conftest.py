"""One reduced quickstart run (200 training images, a quickstart-sized 300-image test split, 300 steps) shared
by the tests that need a briefly trained model: the end-to-end quickstart test and the int8 export test."""
import collections
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
QuickstartRun = collections.namedtuple("QuickstartRun", "out stdout num_train num_test num_detect_images")


@pytest.fixture(scope="session")
def reduced_quickstart(tmp_path_factory):
    out = tmp_path_factory.mktemp("quickstart") / "qs"
    run = QuickstartRun(out, None, 200, 300, 2)
    proc = subprocess.run(
        [sys.executable, "quickstart.py", f"--output_dir={out}", f"--num_train={run.num_train}",
         f"--num_test={run.num_test}", "--max_number_of_steps=300", "--batch_size=8",
         f"--num_detect_images={run.num_detect_images}"],
        cwd=ROOT, capture_output=True, text=True, timeout=1500)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return run._replace(stdout=proc.stdout)
