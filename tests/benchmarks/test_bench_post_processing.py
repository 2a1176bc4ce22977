"""benchmarks/bench_post_processing.py: one JSON line; both formulations and a reference module agree."""
import json

from benchmarks import bench_post_processing
from box_ops import post_processing


def test_one_json_line_with_identical_detections(capsys):
    # The module itself as the "reference": the comparison must find it identical, run by run.
    assert bench_post_processing.main(["--batch_size=1", "--runs=1", f"--reference={post_processing.__file__}"]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["per_class_identical"] is True and result["reference_identical"] is True
    assert set(result["ms"]) == {"combined", "per_class", "reference"} and min(result["ms"].values()) > 0
    assert 0 < result["num_detections"][0] <= 200
