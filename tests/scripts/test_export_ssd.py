"""export_ssd.py: the SavedModel, ONNX and TFLite exports run in a fresh Python without this project (TensorFlow,
ONNX Runtime, the LiteRT interpreter) and detect what detect_ssd.py detects; bad inputs leave nothing behind."""
import json
import os
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

import detect_ssd
import export_ssd
from common.errors import CheckpointError, ConfigError, DatasetError
from training.checkpoints import save_initial_model

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

# The same in ONNX Runtime and in LiteRT, as a user would write them: images grouped by size, each group one
# batch (ONNX; the TFLite models are batch 1, resized to each image), class names from inside the model.
EXPORT_CLIENT = r"""
import collections, importlib.util, io, json, sys, zipfile
import numpy as np
from PIL import Image
assert all(importlib.util.find_spec(name) is None for name in ("nets", "common", "export_ssd", "inference")), sys.path
model_path, paths = sys.argv[1], sys.argv[2:]
images = {p: np.asarray(Image.open(p).convert("RGB")) for p in paths}
by_size = collections.defaultdict(list)
for p in paths:
    by_size[images[p].shape].append(p)
result = {"batches": [], "detections": {}}
if model_path.endswith(".onnx"):
    import onnx, onnxruntime as ort
    session = ort.InferenceSession(model_path, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    result["class_names"] = json.loads(session.get_modelmeta().custom_metadata_map["class_names"])
    result["inputs"] = [[i.name, i.type, i.shape] for i in session.get_inputs()]
    result["opset"] = [o.version for o in onnx.load(model_path).opset_import if o.domain in ("", "ai.onnx")]
    result["ops"] = sorted({n.op_type for n in onnx.load(model_path).graph.node})
    def run(batch):
        return dict(zip(names, session.run(None, {"images": batch})))
else:
    from ai_edge_litert.interpreter import Interpreter
    interpreter = Interpreter(model_path=model_path)
    inp = interpreter.get_input_details()[0]
    outs = {d["name"]: d["index"] for d in interpreter.get_output_details()}
    result["class_names"] = zipfile.ZipFile(model_path).read("labels.txt").decode().splitlines()
    result["inputs"] = [[inp["name"], str(np.dtype(inp["dtype"])), inp["shape_signature"].tolist()]]
    def run(batch):
        interpreter.resize_tensor_input(inp["index"], batch.shape)
        interpreter.allocate_tensors()
        interpreter.set_tensor(inp["index"], batch)
        interpreter.invoke()
        return {k: interpreter.get_tensor(i) for k, i in outs.items()}
for shape, group in by_size.items():
    batches = [group] if model_path.endswith(".onnx") else [[p] for p in group]
    for members in batches:
        out = run(np.stack([images[p] for p in members]))
        assert out["boxes"].dtype == np.float32 and out["classes"].dtype == np.int32, out
        result["batches"].append(len(members))
        for b, p in enumerate(members):
            n = int(out["num_detections"][b])
            result["detections"][p] = {"boxes": out["boxes"][b, :n].tolist(), "scores": out["scores"][b, :n].tolist(),
                                       "classes": out["classes"][b, :n].tolist(),
                                       "padding": float(np.abs(out["scores"][b, n:]).sum())}
print(json.dumps(result))
"""


@pytest.fixture(scope="module")
def lite_checkpoint(tmp_path_factory):
    """A randomly initialised ssd_300_vgg_lite with the VOC class names."""
    out = str(tmp_path_factory.mktemp("lite"))
    save_initial_model(out, seed=4)
    return out


def _iou(a, b):
    ih = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iw = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - ih * iw
    return ih * iw / union if union > 0 else float(np.allclose(a, b))


def _isolated(script, *args, cwd):
    """Runs `script` in a fresh isolated interpreter (-I) in `cwd`, outside the project; its last line as JSON."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", script, *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


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
    served = _isolated(SERVING_CLIENT, saved, image_path, cwd=elsewhere)
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


@pytest.fixture(scope="module")
def test_images(tmp_path_factory):
    """Real photos (matplotlib's samples) and synthetic images: four of one size (an ONNX batch of four) and
    three of odd sizes of their own."""
    from tests.training.fixtures import scene_images
    root = tmp_path_factory.mktemp("images")
    real = [np.asarray(Image.open(matplotlib.cbook.get_sample_data(name, asfileobj=False)).convert("RGB"))
            for name in ("grace_hopper.jpg", "Minduka_Present_Blue_Pack.png", "logo2.png")]
    rng = np.random.default_rng(7)
    scene = np.clip(scene_images((240, 320))[0][0] + np.array([123.0, 117.0, 104.0]), 0, 255).astype(np.uint8)
    images = {"a_grace.png": real[0], "b_present.png": real[1], "c_noise.png": rng.integers(0, 256, (240, 320, 3)),
              "d_scene.png": scene}
    paths = []
    for name, image in images.items():  # the batch: all 320 x 240
        image = Image.fromarray(np.asarray(image, np.uint8)).resize((320, 240))
        image.save(root / name)
        paths.append(root / name)
    Image.fromarray(real[0]).resize((333, 411)).save(root / "e_grace_odd.png")
    Image.fromarray(real[2]).save(root / "f_logo.png")
    Image.fromarray(scene).resize((151, 97)).save(root / "g_scene_small.png")
    paths += [root / "e_grace_odd.png", root / "f_logo.png", root / "g_scene_small.png"]
    return root, [str(p) for p in paths]


def _tf_detections(checkpoint, image_dir, tmp_path, extra):
    out_json = tmp_path / "tf_detect.json"
    assert detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={image_dir}", f"--output_json={out_json}",
                            *extra]) == 0
    with open(out_json) as f:
        return {r["path"]: r["detections"] for r in json.load(f)["images"]}


@pytest.mark.parametrize("fmt,file_name", [("onnx", "model.onnx"), ("tflite", "model.tflite")])
def test_onnx_and_tflite_exports_detect_what_tensorflow_does(lite_checkpoint, test_images, tmp_path, fmt,
                                                             file_name):
    from datasets.voc_classes import VOC_CLASSES
    image_dir, paths = test_images
    out = tmp_path / "export"
    assert export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={out}", f"--format={fmt}",
                            "--keep_top_k=50"]) == 0
    assert os.listdir(out) == [file_name] and os.listdir(tmp_path) == ["export"]
    (tmp_path / "client").mkdir()
    served = _isolated(EXPORT_CLIENT, out / file_name, *paths, cwd=tmp_path / "client")
    assert served["class_names"] == list(VOC_CLASSES)
    if fmt == "onnx":
        (name, dtype, shape), = served["inputs"]
        assert (name, dtype, len(shape), shape[3]) == ("images", "tensor(uint8)", 4, 3)
        assert not any(isinstance(d, int) for d in shape[:3])  # batch, height and width free
        assert served["opset"] == [17] and "NonMaxSuppression" in served["ops"]
        assert sorted(served["batches"]) == [1, 1, 1, 4]
    else:
        assert served["inputs"] == [["images", "uint8", [1, -1, -1, 3]]]
    expected = _tf_detections(lite_checkpoint, image_dir, tmp_path, ["--keep_top_k=50"])
    assert sorted(expected) == sorted(paths)
    for path in paths:
        assert served["detections"][path]["padding"] == 0.0
        _assert_same_detections(served["detections"][path], expected[path])


def test_detect_ssd_model_runs_each_export_with_the_same_json(lite_checkpoint, test_images, tmp_path):
    """detect_ssd.py --model (inference/runtimes.py): the JSON of each export equals the checkpoint's
    (scores within 1e-4, boxes IoU >= 0.99), and the annotated pictures are written the same way."""
    from datasets.voc_classes import VOC_CLASSES
    image_dir, paths = test_images
    expected = _tf_detections(lite_checkpoint, image_dir, tmp_path, ["--keep_top_k=30"])
    for fmt, name in (("saved_model", ""), ("onnx", "model.onnx"), ("tflite", "model.tflite")):
        out = tmp_path / fmt
        export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={out}", f"--format={fmt}",
                         "--keep_top_k=30"])
        json_path, pictures = tmp_path / f"{fmt}.json", tmp_path / f"{fmt}_png"
        assert detect_ssd.main([f"--model={out / name if name else out}", f"--image={image_dir}",
                                f"--output_json={json_path}", f"--output_dir={pictures}"]) == 0
        records = json.loads(json_path.read_text())["images"]
        assert [r["path"] for r in records] == sorted(expected)
        assert sorted(os.listdir(pictures)) == sorted(os.path.basename(p) for p in paths)
        for record in records:
            dets = record["detections"]
            served = {"boxes": [d["bbox"] for d in dets], "scores": [d["score"] for d in dets],
                      "classes": [d["label"] for d in dets]}
            _assert_same_detections(served, expected[record["path"]])
            # The class names come from inside the export (labels.txt, metadata_props, the zip).
            assert all(d["class"] == VOC_CLASSES[d["label"] - 1] for d in dets) and dets


def test_export_refuses_what_it_cannot_export(lite_checkpoint, tmp_path):
    target = tmp_path / "out"
    cases = [(["--format=pb"], ConfigError, "unknown format 'pb'"),
             (["--format=onnx", "--precision=int8"], ConfigError, "only --format=tflite"),
             (["--format=tflite", "--precision=int8"], ConfigError, "needs --calibration_dataset_dir"),
             (["--format=tflite", "--precision=int4"], ConfigError, "unknown precision"),
             (["--format=onnx", "--optimize"], ConfigError, "only with --format=saved_model")]
    for extra, error, message in cases:
        with pytest.raises(error, match=message):
            export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={target}", *extra])
    # A checkpoint without its configuration (ssd_config.json), for each format.
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in os.listdir(lite_checkpoint):
        if name.startswith("model.ckpt"):
            (bare / name).write_bytes((open(os.path.join(lite_checkpoint, name), "rb")).read())
    (bare / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    for fmt in ("saved_model", "onnx", "tflite"):
        with pytest.raises(CheckpointError, match="no model configuration"):
            export_ssd.main([f"--checkpoint_path={bare}", f"--output_dir={target}", f"--format={fmt}"])
    # A calibration split that is not there: refused before anything is built.
    with pytest.raises(DatasetError, match="metadata"):
        export_ssd.main([f"--checkpoint_path={lite_checkpoint}", f"--output_dir={target}", "--format=tflite",
                         "--precision=int8", f"--calibration_dataset_dir={tmp_path}", "--calibration_split=nope"])
    assert sorted(os.listdir(tmp_path)) == ["bare"]  # no output folder, no temporary beside it


@pytest.mark.slow
def test_int8_tflite_keeps_the_map_of_float_at_under_30_percent_of_the_size(reduced_quickstart, tmp_path):
    """A reduced quickstart (300 training steps) scored on a quickstart-sized test split (300 synthetic images):
    the float32 TFLite export scores TensorFlow's own mAP (eval_ssd_network.py), the int8 one (calibrated on
    the training split, 200 images) within 0.03 of it, in at most 30% of the file. About 5 minutes on 2 cores."""
    from benchmarks import bench_export_map
    from datasets import dataset_factory
    from evaluation.ground_truth import ground_truth_from_records
    from inference import runtimes
    out = reduced_quickstart.out  # 300 steps, scored on 300 test images (tests/scripts/conftest.py)
    tf_map = json.loads((out / "eval" / "results.json").read_text())["mAP_VOC07"]
    assert tf_map > 0.05, tf_map  # trained enough for the comparison to mean something
    records, train = out / "tfrecords", out / "train"
    float_path = export_ssd.main([f"--checkpoint_path={train}", f"--output_dir={tmp_path / 'f32'}",
                                  "--format=tflite"]) == 0 and tmp_path / "f32" / "model.tflite"
    int8_path = export_ssd.main([f"--checkpoint_path={train}", f"--output_dir={tmp_path / 'int8'}", "--format=tflite",
                                 "--precision=int8", f"--calibration_dataset_dir={records}",
                                 "--calibration_split=synthetic_train", "--num_calibration_images=200"]) == 0 \
        and tmp_path / "int8" / "model_int8.tflite"
    dataset = dataset_factory.get_dataset("voc_custom", "synthetic_test", str(records))
    ground_truth = ground_truth_from_records(list(dataset.files), dataset.class_names)
    images = list(bench_export_map.split_images(dataset))
    assert len(images) == 300
    maps = {}
    for name, path in (("float32", float_path), ("int8", int8_path)):
        with runtimes.open_model(str(path)) as detector:
            maps[name] = bench_export_map.export_map(detector, images, ground_truth)[0].map_voc07
    print(f"mAP_VOC07: TensorFlow {tf_map:.4f}, TFLite float32 {maps['float32']:.4f}, int8 {maps['int8']:.4f}; "
          f"size int8/float32 {os.path.getsize(int8_path) / os.path.getsize(float_path):.3f}")
    assert maps["float32"] == pytest.approx(tf_map, abs=2e-3)
    assert abs(maps["int8"] - maps["float32"]) <= 0.03, maps
    assert os.path.getsize(int8_path) <= 0.30 * os.path.getsize(float_path)
