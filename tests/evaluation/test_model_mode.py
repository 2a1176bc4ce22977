"""eval_ssd_network.py in model mode and evaluation/model_eval.py.

The central fixture is a ssd_300_vgg_lite checkpoint whose detections are known: every convolution
weight is zero, so every feature map is zero and each head outputs its biases. Only the four anchors of
the last layer (block11, 1x1) get foreground scores, and their location biases place them on chosen boxes,
the same relative boxes in every image. The records hold images of different sizes (non-square, mixed
within a batch) with ground truth placed so that only the right mapping back to pixels (clip to the image,
scale by each image's own size, 1-based inclusive pixels) gives the expected AP:

  box A [.25, .25, .75, .75]   cat 0.55, dog 0.40   cat object there in every image; no dog there
  box B [.5, .5, .505, .505]   cat 0.50             1 or 2 pixels wide: a cat object exactly there (the one in
                                                    image 4 difficult); without the +1 of 1-based pixels IoU < 0.5
  box C [-.2, -.2, .3, .3]     cat 0.45             sticks out of the image; a cat object on its clipped part:
                                                    unclipped, IoU = 0.36
  box E [.6, .1, .9, .4]       dog 0.25             dog object there in every image
  plus a cat never detected (image 3) and a dog never detected (image 5).
"""
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import eval_ssd_network
from common.errors import ConfigError, run_main
from datasets import dataset_factory
from datasets.voc_to_tfrecords import convert_voc
from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml
from evaluation import model_eval
from evaluation.ground_truth import ground_truth_from_records
from evaluation.plots import SUMMARY_FILENAME, class_plot_filename
from evaluation.voc_results import read_results_file
from nets import model_config, nets_factory
from inference.detector import load_model
from training.checkpoints import save_initial_model

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "eval_ssd_network.py")
MODEL = "ssd_300_vgg_lite"
CLASSES = ("cat", "dog")
SPLIT = "fixed_test"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"

# The block11 anchors' boxes (relative [ymin, xmin, ymax, xmax]) and class probabilities [bg, cat, dog].
BOX_A, BOX_B, BOX_C, BOX_E = (.25, .25, .75, .75), (.5, .5, .505, .505), (-.2, -.2, .3, .3), (.6, .1, .9, .4)
FIXED_BOXES = np.array([BOX_A, BOX_B, BOX_C, BOX_E])
FIXED_PROBS = np.array([[.05, .55, .40], [.5, .5, 1e-6], [.55, .45, 1e-6], [.75, 1e-6, .25]])
# (image id, height, width): sizes 200 and 400 make every box above land on whole pixels.
IMAGES = (("000001", 200, 400), ("000002", 400, 200), ("000003", 200, 200), ("000004", 400, 400),
          ("000005", 200, 400))


def voc_pixels(box, height, width):
    """Relative [ymin, xmin, ymax, xmax] clipped to the image -> VOC 1-based inclusive [xmin, ymin, xmax,
    ymax], written out here (pixel i covers [i - 1, i]), rounded: the test boxes land on whole pixels."""
    y0, x0, y1, x1 = np.clip(box, 0.0, 1.0)
    return [int(round(x0 * width + 1)), int(round(y0 * height + 1)), int(round(x1 * width)),
            int(round(y1 * height))]


def fixed_objects(image_id, height, width):
    objects = [VOCObject("cat", *voc_pixels(BOX_A, height, width)),
               VOCObject("cat", *voc_pixels(BOX_B, height, width), difficult=int(image_id == "000004")),
               VOCObject("cat", *voc_pixels(BOX_C, height, width)),
               VOCObject("dog", *voc_pixels(BOX_E, height, width))]
    if image_id == "000003":
        objects.append(VOCObject("cat", *voc_pixels((.8, .8, .95, .95), height, width)))
    if image_id == "000005":
        objects.append(VOCObject("dog", *voc_pixels((.05, .6, .2, .95), height, width)))
    return objects


def write_voc(root, images):
    """A VOC-layout folder: (image id, height, width, objects) -> flat grey JPEGs and annotations."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for image_id, height, width, objects in images:
        Image.new("RGB", (width, height), (120, 110, 100)).save(os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
        with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(voc_annotation_xml(VOCAnnotation(f"{image_id}.jpg", width, height, 3, tuple(objects))))
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("".join(f"{image[0]}\n" for image in images))


def center_size_offsets(boxes, anchors, variances):
    """Caffe's CENTER_SIZE encoding, written out: [dx, dy, dw, dh] that decode to `boxes` on `anchors`."""
    def center_size(b):
        return (b[:, 0] + b[:, 2]) / 2, (b[:, 1] + b[:, 3]) / 2, b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]

    cy, cx, h, w = center_size(np.asarray(boxes, np.float64))
    acy, acx, ah, aw = center_size(np.asarray(anchors, np.float64))
    return np.stack([(cx - acx) / aw / variances[0], (cy - acy) / ah / variances[1],
                     np.log(w / aw) / variances[2], np.log(h / ah) / variances[3]], axis=-1)


def save_checkpoint(directory, class_names=CLASSES, fixed=True, step=0, seed=0, write_config=True):
    """A ssd_300_vgg_lite checkpoint (model.ckpt-<step>) and its ssd_config.json in `directory`.

    fixed: the known-detections model of the module docstring; otherwise the seeded random initialisation.
    """
    def fixed_values(sess, model, variables):
        num_classes = model.num_classes
        for v in variables:
            value = np.zeros(v.shape, np.float32)
            if v.op.name.endswith("conv_cls/biases"):  # background wins everywhere ...
                value = np.tile(np.r_[0.0, np.full(num_classes - 1, -30.0)], len(value) // num_classes)
            if v.op.name == f"{MODEL}/block11_box/conv_cls/biases":  # ... but on the last 4 anchors
                value = np.log(FIXED_PROBS).reshape(-1)
            if v.op.name == f"{MODEL}/block11_box/conv_loc/biases":
                assert len(value) == 16
                value = center_size_offsets(FIXED_BOXES, model.anchors[-4:], model.variances).reshape(-1)
            v.load(value.astype(np.float32), sess)

    return save_initial_model(directory, MODEL, class_names, seed=seed, load_values=fixed_values if fixed else None,
                      global_step=step, write_config=write_config)


@pytest.fixture(scope="module")
def fixed_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("fixed")
    write_voc(str(root / "voc"), [(i, h, w, fixed_objects(i, h, w)) for i, h, w in IMAGES])
    convert_voc(str(root / "voc"), str(root / "records"), SPLIT, split="test", class_names=CLASSES,
                samples_per_file=3, num_threads=1)
    return str(root / "records")


@pytest.fixture(scope="module")
def fixed_checkpoint(tmp_path_factory):
    directory = str(tmp_path_factory.mktemp("fixed_ckpt"))
    return save_checkpoint(directory, step=1234)


def ap_by_definition(true_positive, num_positives):
    """VOC07 11-point and VOC2010+ AP of detections in rank order (True = TP, False = FP), written out:
    precision/recall after each detection; AP07 = mean over t in 0, 0.1, .., 1 of the best precision at
    recall >= t; AP12 = sum over the recall steps of the step times the best precision at or after it."""
    tp = np.cumsum(true_positive)
    precision = tp / np.arange(1, len(tp) + 1)
    recall = tp / num_positives
    ap07 = np.mean([max([p for p, r in zip(precision, recall) if r >= t - 1e-12] or [0.0])
                    for t in np.linspace(0, 1, 11)])
    ap12, previous = 0.0, 0.0
    for i in range(len(tp)):
        if recall[i] > previous:
            ap12 += (recall[i] - previous) * precision[i:].max()
            previous = recall[i]
    return ap07, ap12


def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def model_args(checkpoint, records, eval_dir, *extra):
    return [f"--checkpoint_path={checkpoint}", f"--dataset_dir={records}", "--dataset_name=voc_custom",
            f"--dataset_split_name={SPLIT}", f"--eval_dir={eval_dir}", "--batch_size=2", *extra]


def test_known_detections_give_the_expected_ap(fixed_records, fixed_checkpoint, tmp_path):
    eval_dir, out_json = tmp_path / "eval", tmp_path / "metrics.json"
    proc = run_script(*model_args(os.path.dirname(fixed_checkpoint), fixed_records, eval_dir,
                                  f"--output_json={out_json}", "--log_every_n_batches=1"))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out_json.read_text())
    assert doc["num_images"] == 5
    # cat, in rank order: box A in 5 images (TP), box B in 5 (4 TP, image 4's object difficult: ignored),
    # box C in 5 (TP); 15 non-difficult cats (one never detected). dog: box A in 5 images (FP), then box E
    # in 5 (TP); 6 dogs (one never detected).
    cat07, cat12 = ap_by_definition([True] * 14, 15)
    dog07, dog12 = ap_by_definition([False] * 5 + [True] * 5, 6)
    assert (cat07, cat12) == pytest.approx((10 / 11, 14 / 15)) and (dog07, dog12) == pytest.approx((4.5 / 11, 5 / 12))
    assert doc["AP_VOC07"] == pytest.approx({"cat": cat07, "dog": dog07}, abs=1e-9)
    assert doc["AP_VOC12"] == pytest.approx({"cat": cat12, "dog": dog12}, abs=1e-9)
    assert doc["mAP_VOC07"] == pytest.approx((cat07 + dog07) / 2, abs=1e-9)
    assert doc["mAP_VOC12"] == pytest.approx((cat12 + dog12) / 2, abs=1e-9)

    # The results files: every detection, in pixels of its own image, with the model's scores.
    results = eval_dir / "results"
    assert sorted(os.listdir(results)) == [f"comp4_det_{SPLIT}_cat.txt", f"comp4_det_{SPLIT}_dog.txt"]
    for label, name in enumerate(CLASSES, start=1):
        dets = read_results_file(str(results / f"comp4_det_{SPLIT}_{name}.txt"))
        anchors = np.flatnonzero(FIXED_PROBS[:, label] > 0.01)
        expected = sorted((i, -FIXED_PROBS[a, label], voc_pixels(FIXED_BOXES[a], h, w))
                          for a in anchors for i, h, w in IMAGES)
        got = sorted(zip(dets.image_ids, -dets.scores, dets.boxes.tolist()))
        assert len(got) == len(expected) == 5 * len(anchors)
        for (i, s, b), (ei, es, eb) in zip(got, expected):
            assert i == ei and s == pytest.approx(es, rel=1e-5) and b == pytest.approx(eb, abs=2e-3)
        assert np.all(np.diff(dets.scores) <= 0)  # rank order

    # Progress lines, the table, the plots and TensorBoard scalars at the checkpoint's step.
    assert "batch 2: 4/5 images" in proc.stdout and "images/s" in proc.stdout and "s left" in proc.stdout
    assert "mAP VOC07 (11-point)" in proc.stdout and "global step 1234" in proc.stdout
    for name in CLASSES:
        assert (eval_dir / class_plot_filename(name)).read_bytes()[:8] == PNG_SIGNATURE
    assert (eval_dir / SUMMARY_FILENAME).read_bytes()[:8] == PNG_SIGNATURE
    events = [f for f in os.listdir(eval_dir) if f.startswith("events.out.tfevents")]
    scalars = {v.tag: (e.step, v.simple_value)
               for e in tf.compat.v1.train.summary_iterator(str(eval_dir / events[0])) for v in e.summary.value}
    assert scalars["eval/mAP_VOC07"] == (1234, pytest.approx(doc["mAP_VOC07"], abs=1e-6))
    assert scalars["eval/AP_VOC12/dog"] == (1234, pytest.approx(dog12, abs=1e-6))
    assert not [f for f in os.listdir(eval_dir) if ".tmp" in f or "staging" in f]


def test_max_num_batches_scores_only_the_images_evaluated(fixed_records, fixed_checkpoint, tmp_path):
    out_json = tmp_path / "metrics.json"
    assert eval_ssd_network.main(model_args(fixed_checkpoint, fixed_records, tmp_path / "eval",
                                            "--max_num_batches=1", f"--output_json={out_json}")) == 0
    doc = json.loads(out_json.read_text())
    assert doc["num_images"] == 2
    # Images 1 and 2: cat A, B, C all TP (6 cats); dog: A twice FP, then E twice TP (2 dogs).
    cat07, cat12 = ap_by_definition([True] * 6, 6)
    dog07, dog12 = ap_by_definition([False, False, True, True], 2)
    assert doc["AP_VOC07"] == pytest.approx({"cat": cat07, "dog": dog07}, abs=1e-9)
    assert doc["AP_VOC12"] == pytest.approx({"cat": cat12, "dog": dog12}, abs=1e-9)
    dets = read_results_file(str(tmp_path / "eval" / "results" / f"comp4_det_{SPLIT}_dog.txt"))
    assert sorted(set(dets.image_ids)) == ["000001", "000002"]


@pytest.fixture(scope="module")
def synthetic_records(tmp_path_factory):
    """A few synthetic images of varying sizes, converted by the project's converter."""
    from datasets.synthetic_voc import generate_synthetic_voc

    root = tmp_path_factory.mktemp("synthetic")
    summary = generate_synthetic_voc(str(root / "voc"), num_train=1, num_test=7,
                                     image_size=((150, 260), (140, 280)), seed=5)
    convert_voc(str(root / "voc"), str(root / "records"), "synthetic_test", split="test",
                class_names=summary["classes"], samples_per_file=4, num_threads=1)
    return str(root / "records"), tuple(summary["classes"])


def test_model_mode_equals_scoring_mode_on_its_results_files(synthetic_records, tmp_path):
    """A randomly initialised model (up to keep_top_k detections per image, all over the images) scored in
    model mode equals scoring mode on the results files it wrote, against the records' ground truth."""
    records, classes = synthetic_records
    checkpoint = save_checkpoint(str(tmp_path / "ckpt"), class_names=classes, fixed=False, seed=3)
    eval_dir, model_json, score_json = tmp_path / "eval", tmp_path / "model.json", tmp_path / "score.json"
    common = [f"--dataset_dir={records}", "--dataset_name=voc_custom", "--dataset_split_name=synthetic_test"]
    assert eval_ssd_network.main([f"--checkpoint_path={checkpoint}", *common, f"--eval_dir={eval_dir}",
                                  "--batch_size=3", "--keep_top_k=50", f"--output_json={model_json}"]) == 0
    assert eval_ssd_network.main([f"--detections_path={eval_dir / 'results'}", *common,
                                  f"--output_json={score_json}"]) == 0
    model_doc, score_doc = json.loads(model_json.read_text()), json.loads(score_json.read_text())
    assert model_doc == score_doc and model_doc["num_images"] == 7
    lines = sum(len(read_results_file(str(eval_dir / "results" / f)))
                for f in os.listdir(eval_dir / "results"))
    assert 7 * 20 <= lines <= 7 * 50  # many detections per image, capped at keep_top_k


def test_ground_truth_from_the_batches_equals_the_records(synthetic_records, tmp_path):
    """The ground truth collected from eval_dataset's batches is ground_truth_from_records' (one definition)."""
    records, classes = synthetic_records
    checkpoint = save_checkpoint(str(tmp_path / "ckpt"), class_names=classes, fixed=False)
    dataset = dataset_factory.get_dataset("voc_custom", "synthetic_test", records)
    model, _ = load_model(checkpoint)
    reference = ground_truth_from_records(list(dataset.files), dataset.class_names)
    with model_eval.ModelEvaluator(model, dataset.files, dataset.class_names, batch_size=2) as evaluator:
        result = evaluator.evaluate(checkpoint)
        again = evaluator.evaluate(checkpoint)  # the same graph and session, a second pass over the records
    gt = result.ground_truth
    assert result.num_images == 7 and result.num_batches == 4 and result.global_step == 0
    assert reference.difficult.any() and len(reference.labels) > 7
    np.testing.assert_array_equal(gt.image_ids, reference.image_ids)
    np.testing.assert_array_equal(gt.object_image, reference.object_image)
    np.testing.assert_array_equal(gt.boxes, reference.boxes)
    np.testing.assert_array_equal(gt.labels, reference.labels)
    np.testing.assert_array_equal(gt.difficult, reference.difficult)
    for name in classes:
        assert len(result.detections[name])
        np.testing.assert_array_equal(again.detections[name].boxes, result.detections[name].boxes)
        np.testing.assert_array_equal(again.detections[name].image_ids, result.detections[name].image_ids)


def test_wait_for_checkpoints_evaluates_a_new_checkpoint_once_and_stops_at_the_timeout(fixed_records, tmp_path):
    train_dir, written = tmp_path / "train", tmp_path / "written"
    save_checkpoint(str(written), step=7, write_config=False)
    train_dir.mkdir()
    # The training run has written its configuration; its first checkpoint appears a little later: the data
    # and index files, then the state file naming them (as a Saver writes them).
    model_config.save_model_config(str(train_dir), nets_factory.default_config(MODEL, class_names=CLASSES))

    def appear():
        for name in os.listdir(written):
            if name.startswith("model.ckpt-7."):
                shutil.copy(written / name, train_dir / name)
        (train_dir / "checkpoint").write_text('model_checkpoint_path: "model.ckpt-7"\n'
                                              'all_model_checkpoint_paths: "model.ckpt-7"\n')

    writer = threading.Timer(1.0, appear)
    writer.start()
    eval_dir, out_json = tmp_path / "eval", tmp_path / "metrics.json"
    try:
        assert eval_ssd_network.main(model_args(train_dir, fixed_records, eval_dir, "--wait_for_checkpoints",
                                                "--timeout=4", f"--output_json={out_json}")) == 0
    finally:
        writer.join()
    assert json.loads(out_json.read_text())["num_images"] == 5
    events = [f for f in os.listdir(eval_dir) if f.startswith("events.out.tfevents")]
    steps = [e.step for f in events for e in tf.compat.v1.train.summary_iterator(str(eval_dir / f))
             if any(v.tag == "eval/mAP_VOC07" for v in e.summary.value)]
    assert steps == [7]  # evaluated once, at the checkpoint's global step


def run_main_status(argv, capsys):
    """eval_ssd_network as its command line runs it (run_main): (exit status, stderr lines)."""
    with pytest.raises(SystemExit) as info:
        run_main(eval_ssd_network.main, argv)
    return info.value.code, capsys.readouterr().err.strip().splitlines()


def test_missing_checkpoint_is_a_one_line_error(fixed_records, tmp_path, capsys):
    status, lines = run_main_status(model_args(tmp_path / "nothing_here", fixed_records, tmp_path / "eval"), capsys)
    assert (status, lines) == (1, [f"error: {tmp_path / 'nothing_here'}: no such checkpoint (expected <prefix>.index)"])
    status, lines = run_main_status(model_args(tmp_path, fixed_records, tmp_path / "eval"), capsys)
    assert (status, lines) == (1, [f"error: {tmp_path}: no checkpoint in this directory"])
    assert not (tmp_path / "eval").exists()


def test_class_names_must_agree_with_the_dataset(fixed_records, tmp_path, capsys):
    checkpoint = save_checkpoint(str(tmp_path / "ckpt"), class_names=("cat", "horse"))
    status, lines = run_main_status(model_args(checkpoint, fixed_records, tmp_path / "eval"), capsys)
    assert status == 1 and len(lines) == 1
    assert lines[0] == (f"error: {tmp_path / 'ckpt' / 'ssd_config.json'}: the model's 2 classes differ from the "
                        f"dataset's 2 (voc_custom {SPLIT}) from label 2 on: model ['horse'], dataset ['dog']")
    assert not (tmp_path / "eval").exists()
    # A configuration without class names cannot be checked: an error too.
    with pytest.raises(ConfigError, match="names no classes"):
        model_eval.check_class_names(None, CLASSES, "ssd_config.json")


@pytest.mark.parametrize("extra, message", [
    (["--batch_size=0"], "--batch_size: must be >= 1"),
    (["--max_num_batches=0"], "--max_num_batches: must be >= 1"),
    (["--nms_threshold=1.5"], "--nms_threshold: must be in"),
    (["--wait_for_checkpoints"], "--wait_for_checkpoints needs a training directory"),
    (["--timeout=5"], "--timeout and --eval_interval_secs go with --wait_for_checkpoints"),
])
def test_bad_model_mode_flags(fixed_records, fixed_checkpoint, tmp_path, extra, message):
    with pytest.raises(ConfigError, match=message):
        eval_ssd_network.main(model_args(fixed_checkpoint, fixed_records, tmp_path / "eval", *extra))


def test_model_mode_needs_an_eval_dir(fixed_records, fixed_checkpoint):
    with pytest.raises(ConfigError, match="model mode needs --eval_dir"):
        eval_ssd_network.main([f"--checkpoint_path={fixed_checkpoint}", f"--dataset_dir={fixed_records}",
                               "--dataset_name=voc_custom", f"--dataset_split_name={SPLIT}"])


def test_pixel_detections_map_each_image_with_its_own_size():
    """Padding rows dropped, boxes clipped, each image scaled by its own size (unit test, NumPy only)."""
    boxes = np.array([[[0.1, 0.2, 0.5, 0.6], [-0.1, 0.0, 0.5, 1.2], [9, 9, 9, 9]],
                      [[0.0, 0.0, 1.0, 1.0], [0, 0, 0, 0], [0, 0, 0, 0]]], np.float32)
    scores = np.array([[0.9, 0.8, 0.0], [0.7, 0.0, 0.0]], np.float32)
    classes = np.array([[1, 2, 0], [2, 0, 0]])
    image, labels, out_scores, pixels = model_eval.pixel_detections(boxes, scores, classes, [2, 1], [100, 300],
                                                                    [200, 50])
    np.testing.assert_array_equal(image, [0, 0, 1])
    np.testing.assert_array_equal(labels, [1, 2, 2])
    np.testing.assert_allclose(out_scores, [0.9, 0.8, 0.7], rtol=1e-6)
    np.testing.assert_allclose(pixels, [[41, 11, 120, 50], [1, 1, 200, 50], [1, 1, 50, 300]], atol=1e-4)
