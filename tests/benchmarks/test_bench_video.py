"""benchmarks/bench_video.py: a smoke run in-process, its figures consistent with each other."""
import json

import pytest

from benchmarks import bench_video
from common.errors import ConfigError


def test_smoke_run(capsys):
    assert bench_video.main(["--smoke"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.strip().splitlines()]
    assert len(lines) == 1
    (result,) = lines
    assert result["model_name"] == "ssd_300_vgg_lite" and result["clip"] == "160x96" and result["frames"] == 8
    assert result["frames_per_second"] > 0 and result["images_per_second"] > 0
    assert result["pipeline_cost"] == pytest.approx(1 - result["frames_per_second"] / result["images_per_second"],
                                                    abs=1e-3)
    assert set(result["busy_seconds"]) == {"decode", "detect", "encode"}
    assert sum(result["busy_seconds"].values()) > 0 and result["codec"] in ("libx264", "mpeg4")
    # The drawing threshold is set so that about --boxes_drawn (5) boxes are drawn per frame.
    assert 1 <= result["boxes_drawn_per_frame"] <= 20


def test_bad_flags():
    with pytest.raises(ConfigError, match="--sizes: expected WIDTHxHEIGHT"):
        bench_video.parse_args(["--sizes=300"])
    with pytest.raises(ConfigError, match="--num_frames >= --batch_size"):
        bench_video.parse_args(["--num_frames=4", "--batch_size=8"])
