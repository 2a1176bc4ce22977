"""benchmarks/bench_inference.py: the smoke run of the script, and the side-by-side run with OpenCV's DNN on
the real face SSD (the Caffe model and its conversion)."""
import json
import os
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest

from benchmarks import bench_inference
from common.errors import CaffeModelError, CheckpointError, ConfigError
from inference import session_options
from tests.caffe_converter import reference
from training.checkpoints import save_initial_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
GRACE_HOPPER = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    """A randomly initialised ssd_300_vgg_lite with its ssd_config.json."""
    out = str(tmp_path_factory.mktemp("lite"))
    save_initial_model(out, class_names=["a", "b", "c"], seed=0)
    return out


def _check_figures(result, batch_size):
    assert result["images_per_second"] > 0 and result["ms_per_batch"] > 0
    # images/s and ms/batch describe the same (median) batch time.
    assert result["images_per_second"] == pytest.approx(1000.0 * batch_size / result["ms_per_batch"], rel=0.01)
    assert result["ms_per_batch_min"] <= result["ms_per_batch"] + 1e-6


def test_smoke_run_of_the_script(lite_checkpoint):
    proc = subprocess.run([sys.executable, os.path.join("benchmarks", "bench_inference.py"),
                           f"--checkpoint_path={lite_checkpoint}", "--model_name=ssd_300_vgg_lite", "--smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [l for l in proc.stdout.splitlines() if l.strip()]
    assert len(lines) == 1  # one JSON line
    result = json.loads(lines[0])
    assert result["model_name"] == "ssd_300_vgg_lite" and result["precision"] == "float32"
    assert result["batch_size"] == 1 and result["num_batches"] == 1 and result["image_size"] == [300, 300]
    assert result["schedule"] == "blocks"  # the default
    assert result["device"].startswith(("CPU: ", "GPU: "))
    assert isinstance(result["cpu_bf16"], bool) and len(result["load_average"]) == 2
    _check_figures(result, 1)
    assert "opencv" not in result


def test_runtimes_side_by_side(lite_checkpoint):
    """--runtime: ONNX Runtime, OpenVINO and LiteRT on the exports of the same network, both paths timed, the
    ratios consistent with the figures, and the float32 exports reproducing TensorFlow's top-100 detections.

    In a process of its own: with OpenVINO's CPU plugin loaded, a later TensorFlow training graph in the same
    process (tests/training/test_trainer.py) crashed with SIGSEGV, reproducibly."""
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "bench_inference.py"),
                           f"--checkpoint_path={lite_checkpoint}", "--batch_size=2", "--num_batches=1",
                           "--warmup_batches=1", "--runtime=onnxruntime,openvino", "--runtime=tflite"],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert sorted(result["runtimes"]) == ["onnxruntime", "openvino", "tflite"]
    _check_figures(result["network"], 2)
    assert result["float32_top100"] == 1.0
    for name, runtime in result["runtimes"].items():
        for path in ("full", "network"):
            _check_figures(runtime[path], 2)
            ours = result if path == "full" else result["network"]
            assert result["ratios"][f"tf_vs_{name}_{path}"] == pytest.approx(
                ours["images_per_second"] / runtime[path]["images_per_second"], rel=0.01)
        assert runtime["float32_top100"] >= 0.98, name
    with pytest.raises(ConfigError, match="unknown --runtime 'tensorrt'"):  # exit status 1 under run_main
        bench_inference.parse_args([f"--checkpoint_path={lite_checkpoint}", "--runtime=tensorrt"])


def test_side_by_side_with_opencv_on_the_face_model(face_checkpoint, face_model, capsys):
    """The real res10 face SSD: converted, then timed against OpenCV's DNN on the Caffe original; the same
    process, the same image, and our detections reproduce OpenCV's."""
    out, paths = face_checkpoint, face_model
    capsys.readouterr()
    assert bench_inference.main([f"--checkpoint_path={out}", "--batch_size=2", "--num_batches=2",
                                 "--warmup_batches=1", f"--image={GRACE_HOPPER}", "--schedule=alternate",
                                 "--compare_opencv", paths[0], paths[1]]) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["model_name"] == "caffe_ssd" and result["batch_size"] == 2
    assert result["schedule"] == "alternate"
    _check_figures(result, 2)
    _check_figures(result["opencv"], 2)
    assert result["speedup_vs_opencv"] == pytest.approx(
        result["images_per_second"] / result["opencv"]["images_per_second"], rel=0.01)
    assert result["opencv"]["detections"] >= 1
    assert result["opencv_agreement"] >= 0.95


def test_bad_inputs_are_one_line_errors(lite_checkpoint, tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint"):
        bench_inference.main([f"--checkpoint_path={tmp_path}", "--smoke"])
    bad = tmp_path / "bad.prototxt"
    bad.write_text("this is not a prototxt {")
    with pytest.raises(CaffeModelError, match="OpenCV cannot load"):
        bench_inference.main([f"--checkpoint_path={lite_checkpoint}", "--smoke",
                              "--compare_opencv", str(bad), str(tmp_path / "missing.caffemodel")])
    if session_options.onednn_enabled():
        # The lite VGG's --optimize graph is XLA-compiled: the bfloat16 rewrite would not reach it.
        with pytest.raises(ConfigError, match="compiled by XLA"):
            bench_inference.main([f"--checkpoint_path={lite_checkpoint}", "--smoke", "--optimize",
                                  "--precision=bf16"])
    proc = subprocess.run([sys.executable, os.path.join("benchmarks", "bench_inference.py"),
                           f"--checkpoint_path={tmp_path / 'nothing'}", "--smoke"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def test_matched_fraction_against_a_written_out_case():
    boxes = np.array([[0.1, 0.1, 0.5, 0.5], [0.2, 0.3, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]])
    ref = (np.array([1, 2, 2]), np.array([0.9, 0.8, 0.3]), boxes)
    assert bench_inference.matched_fraction(ref, ref) == 1.0
    # The second box shifted (IoU 2/3 < 0.9), the third's score off by 0.05, the first one kept.
    moved = boxes.copy()
    moved[1] += [0.0, 0.1, 0.0, 0.1]
    ours = (np.array([1, 2, 2]), np.array([0.9, 0.8, 0.35]), moved)
    assert bench_inference.matched_fraction(ref, ours) == pytest.approx(1 / 3)
    # One-to-one: two identical references cannot both match one detection.
    twice = (np.array([1, 1]), np.array([0.9, 0.9]), boxes[[0, 0]])
    assert bench_inference.matched_fraction(twice, (np.array([1]), np.array([0.9]), boxes[:1])) == 0.5


def test_make_caffe_vgg_ssd_writes_a_model_opencv_and_the_project_both_run(tmp_path):
    """benchmarks/make_caffe_vgg_ssd.py: the Caffe VGG SSD-300 it writes loads in OpenCV's DNN, and its
    conversion is a checkpoint the Detector runs (what bench_inference --compare_opencv then times)."""
    from benchmarks import make_caffe_vgg_ssd
    from inference.detector import Detector
    out = tmp_path / "vgg300"
    assert make_caffe_vgg_ssd.main(["--model_name=ssd_300_vgg", f"--output_dir={out}"]) == 0
    prototxt, caffemodel = str(out / "deploy.prototxt"), str(out / "model.caffemodel")
    with open(out / "checkpoint" / "ssd_config.json") as f:
        assert json.load(f)["model_name"] == "ssd_300_vgg"
    from PIL import Image
    with Image.open(GRACE_HOPPER) as photo:
        image = np.asarray(photo.convert("RGB").resize((300, 300), Image.BILINEAR))
    det_out = reference.opencv_forward(prototxt, caffemodel, image, (104.0, 117.0, 123.0), ["detection_out"])[0]
    with Detector(str(out / "checkpoint")) as det:
        ours = det.detect(image)
    labels, scores, boxes = reference.opencv_detections(det_out)
    assert len(scores) >= 50
    assert reference.matched_fraction((labels[:50], scores[:50], boxes[:50]),
                                      (ours["classes"], ours["scores"], ours["boxes"]), 0.9, 0.01) >= 0.95
