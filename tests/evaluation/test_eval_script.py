"""eval_ssd_network.py in scoring mode, end to end (subprocess), and its bad-input behaviour."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import eval_ssd_network
from common.errors import ConfigError, DatasetError
from datasets.voc_classes import VOC_CLASSES
from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml
from evaluation.ground_truth import ground_truth_from_voc
from evaluation.plots import SUMMARY_FILENAME, class_plot_filename
from evaluation.voc_metric import evaluate_detections
from evaluation.voc_results import read_results

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "eval_ssd_network.py")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """A small VOC2007-layout split (20 VOC classes, a few present) and results files for it."""
    root = tmp_path_factory.mktemp("split")
    rng = np.random.default_rng(3)
    voc = root / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    present = ("car", "cat", "dog", "person")
    images = {}
    for i in range(12):
        image_id = f"{i:06d}"
        objs = []
        for _ in range(rng.integers(0, 4)):
            x, y = rng.integers(1, 200, 2)
            objs.append(VOCObject(str(rng.choice(present)), int(x), int(y), int(x + rng.integers(20, 200)),
                                  int(y + rng.integers(20, 150)), difficult=int(rng.random() < 0.2)))
        images[image_id] = objs
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            voc_annotation_xml(VOCAnnotation(f"{image_id}.jpg", 500, 375, 3, tuple(objs))))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in images))
    results = root / "results"
    results.mkdir()
    for name in present + ("bird",):
        lines = []
        for image_id, objs in images.items():
            for o in objs:
                if o.name == name and rng.random() < 0.8:
                    j = rng.normal(0, 4, 4)
                    lines.append(f"{image_id} {rng.random():.4f} {o.xmin + j[0]:.1f} {o.ymin + j[1]:.1f} "
                                 f"{o.xmax + j[2]:.1f} {o.ymax + j[3]:.1f}")
            if rng.random() < 0.5:
                lines.append(f"{image_id} {rng.random() * 0.5:.4f} 10 10 80 90")
        (results / f"comp4_det_test_{name}.txt").write_text("\n".join(lines) + "\n")
    return voc, results


def run_script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], cwd=ROOT, capture_output=True, text=True, timeout=300)


def expected_json(voc, results):
    gt = ground_truth_from_voc(str(voc), VOC_CLASSES, "test")
    ev = evaluate_detections(gt, read_results(str(results), "test", VOC_CLASSES)[0])
    return ev


def test_scoring_mode_end_to_end(split, tmp_path):
    voc, results = split
    eval_dir, out_json = tmp_path / "eval", tmp_path / "out" / "metrics.json"
    proc = run_script(f"--detections_path={results}", f"--voc_dir={voc}", "--dataset_split_name=test",
                      f"--eval_dir={eval_dir}", f"--output_json={out_json}", "--global_step=7")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(out_json.read_text())
    ev = expected_json(voc, results)
    assert set(doc) == {"num_images", "mAP_VOC07", "mAP_VOC12", "AP_VOC07", "AP_VOC12"}
    assert doc["num_images"] == 12
    assert doc["mAP_VOC07"] == pytest.approx(ev.map_voc07) and doc["mAP_VOC12"] == pytest.approx(ev.map_voc12)
    assert list(doc["AP_VOC07"]) == list(VOC_CLASSES)
    for c in ev.classes:
        if c.num_positives:
            assert doc["AP_VOC07"][c.name] == pytest.approx(c.ap_voc07)
            assert doc["AP_VOC12"][c.name] == pytest.approx(c.ap_voc12)
        else:  # no object of the class in the split: no AP, not in the mAP
            assert doc["AP_VOC07"][c.name] is None and doc["AP_VOC12"][c.name] is None
    assert doc["AP_VOC12"]["car"] is not None and doc["AP_VOC12"]["bird"] is None
    # The table on stdout, the notes on stderr.
    assert "mAP VOC07 (11-point)" in proc.stdout and "person" in proc.stdout
    assert f"{doc['mAP_VOC12']:.4f}" in proc.stdout
    assert "no results file (no detections) for: aeroplane" in proc.stderr
    # Plots: one per class and the summary; TensorBoard scalars at the step given.
    for name in VOC_CLASSES:
        assert (eval_dir / class_plot_filename(name)).read_bytes()[:8] == PNG_SIGNATURE
    assert (eval_dir / SUMMARY_FILENAME).read_bytes()[:8] == PNG_SIGNATURE
    assert not [f for f in os.listdir(eval_dir) if ".tmp" in f]
    events = [f for f in os.listdir(eval_dir) if f.startswith("events.out.tfevents")]
    assert len(events) == 1
    import tensorflow as tf
    scalars = {v.tag: (e.step, v.simple_value)
               for e in tf.compat.v1.train.summary_iterator(str(eval_dir / events[0])) for v in e.summary.value}
    assert scalars["eval/mAP_VOC12"] == (7, pytest.approx(doc["mAP_VOC12"], abs=1e-6))
    assert scalars["eval/AP_VOC07/car"] == (7, pytest.approx(doc["AP_VOC07"]["car"], abs=1e-6))
    assert "eval/AP_VOC07/bird" not in scalars


def test_malformed_results_file_exits_1_naming_the_file_and_writes_nothing(split, tmp_path):
    voc, results = split
    bad = tmp_path / "results"
    bad.mkdir()
    for f in os.listdir(results):
        (bad / f).write_text((results / f).read_text())
    (bad / "comp4_det_test_dog.txt").write_text("000001 0.5 1 2 3 4\n000002 0.5 1 2 3\n")
    eval_dir, out_json = tmp_path / "eval", tmp_path / "metrics.json"
    proc = run_script(f"--detections_path={bad}", f"--voc_dir={voc}", "--dataset_split_name=test",
                      f"--eval_dir={eval_dir}", f"--output_json={out_json}")
    assert proc.returncode == 1
    lines = proc.stderr.strip().splitlines()
    assert lines[-1].startswith(f"error: {bad / 'comp4_det_test_dog.txt'}: line 2: 5 fields")
    assert not out_json.exists() and not eval_dir.exists()


def test_records_ground_truth_gives_the_same_scores(split, tmp_path):
    """Scoring against the converter's records (through dataset_factory) equals scoring the VOC folder."""
    from PIL import Image

    from datasets.voc_to_tfrecords import convert_voc

    voc, results = split
    (voc / "JPEGImages").mkdir(exist_ok=True)
    for image_id in (voc / "ImageSets" / "Main" / "test.txt").read_text().split():
        Image.new("RGB", (500, 375), (90, 120, 60)).save(voc / "JPEGImages" / f"{image_id}.jpg")
    records = tmp_path / "tfrecords"
    convert_voc(str(voc), str(records), "voc_2007_test", split="test", samples_per_file=5, num_threads=1)
    out_json = tmp_path / "metrics.json"
    assert eval_ssd_network.main([f"--detections_path={results}", f"--dataset_dir={records}",
                                  "--dataset_name=pascalvoc_2007", "--dataset_split_name=test",
                                  f"--output_json={out_json}"]) == 0
    doc = json.loads(out_json.read_text())
    ev = expected_json(voc, results)
    assert doc["num_images"] == 12
    assert doc["mAP_VOC07"] == pytest.approx(ev.map_voc07, abs=1e-12)
    assert doc["mAP_VOC12"] == pytest.approx(ev.map_voc12, abs=1e-12)

    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(reversed(VOC_CLASSES)) + "\n")
    with pytest.raises(DatasetError, match="differ from those the records were written with"):
        eval_ssd_network.main([f"--detections_path={results}", f"--dataset_dir={records}",
                               "--dataset_split_name=test", f"--labels_file={labels}"])
    with pytest.raises(DatasetError, match="voc_2007_val"):
        eval_ssd_network.main([f"--detections_path={results}", f"--dataset_dir={records}",
                               "--dataset_split_name=val"])
    with pytest.raises(ConfigError, match="unknown"):
        eval_ssd_network.main([f"--detections_path={results}", f"--dataset_dir={records}",
                               "--dataset_name=imagenet", "--dataset_split_name=test"])


def test_split_inferred_from_the_results_files_and_a_labels_file(split, tmp_path, capsys):
    voc, results = split
    out_json = tmp_path / "metrics.json"
    assert eval_ssd_network.main([f"--detections_path={results}", f"--voc_dir={voc}",
                                  f"--output_json={out_json}"]) == 0
    assert json.loads(out_json.read_text())["num_images"] == 12
    # A labels file scores a subset of the classes; the other objects are left out with a note.
    labels = tmp_path / "labels.txt"
    labels.write_text("dog\ncat\n")
    assert eval_ssd_network.main([f"--detections_path={results}", f"--voc_dir={voc}", f"--labels_file={labels}",
                                  "--dataset_split_name=test", f"--output_json={out_json}"]) == 0
    doc = json.loads(out_json.read_text())
    ev = expected_json(voc, results)
    assert list(doc["AP_VOC12"]) == ["dog", "cat"]
    assert doc["AP_VOC12"]["cat"] == pytest.approx({c.name: c.ap_voc12 for c in ev.classes}["cat"], abs=1e-12)
    assert "ignored ground-truth objects of classes not evaluated" in capsys.readouterr().err


@pytest.mark.parametrize("argv, message", [
    (["--checkpoint_path=ckpt"], "model mode needs --dataset_dir"),
    ([], "exactly one of --detections_path"),
    (["--detections_path=r", "--checkpoint_path=c"], "exactly one of --detections_path"),
    (["--detections_path=r"], "exactly one of --voc_dir and --dataset_dir"),
    (["--detections_path=r", "--voc_dir=v", "--matching_threshold=0"], "--matching_threshold"),
    (["--detections_path=r", "--voc_dir=v", "--no_such_flag=1"], "unrecognized arguments"),
])
def test_bad_arguments_are_config_errors(argv, message):
    with pytest.raises(ConfigError, match=message):
        eval_ssd_network.main(argv)


def test_help_exits_0(capsys):
    with pytest.raises(SystemExit) as info:
        eval_ssd_network.main(["--help"])
    assert info.value.code == 0
    assert "--detections_path" in capsys.readouterr().out
