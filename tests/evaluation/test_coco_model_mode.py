"""eval_ssd_network.py --metric=coco: model mode (COCO records -> detections_<split>.json -> COCOeval) and
scoring mode (anyone's results JSON, no TensorFlow graph).

The models are test_model_mode's ssd_300_vgg_lite checkpoints: the known-detections one (every image gets
the same relative boxes, whose pixel [x, y, w, h] are checked by their definition) and a randomly
initialised one (hundreds of detections per image, so the 100-per-image cut of COCO counts). The
statistics the script prints and writes must be what pycocotools, run here on the file it wrote, gives.
"""
import contextlib
import io
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from tests.evaluation.coco_cases import coco_case
from tests.evaluation.test_model_mode import BOX_A, BOX_E, FIXED_BOXES, FIXED_PROBS, save_checkpoint
import eval_ssd_network
from common.errors import run_main
from datasets.coco_to_tfrecords import convert_coco
from evaluation.coco_metric import STAT_NAMES

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SPLIT = "coco_fixed"
CATEGORIES = [{"id": 17, "name": "cat"}, {"id": 18, "name": "dog"}]  # the models' classes, COCO's ids
# (COCO image id, height, width): boxes land on whole pixels at sizes 200 and 400.
IMAGES = ((101, 200, 400), (7, 400, 200), (2024, 200, 200), (55, 400, 400), (300, 200, 400))


def coco_pixels(box, height, width):
    """Relative [ymin, xmin, ymax, xmax], clipped -> COCO [x, y, w, h], by the definition."""
    y0, x0, y1, x1 = np.clip(box, 0.0, 1.0)
    return [x0 * width, y0 * height, (x1 - x0) * width, (y1 - y0) * height]


@pytest.fixture(scope="module")
def coco_records(tmp_path_factory):
    root = tmp_path_factory.mktemp("coco_eval")
    os.makedirs(root / "images")
    images, annotations = [], []
    for image_id, height, width in IMAGES:
        name = f"{image_id:012d}.jpg"
        Image.new("RGB", (width, height), (120, 110, 100)).save(root / "images" / name)
        images.append({"id": image_id, "file_name": name, "width": width, "height": height})
        objects = [(17, BOX_A, 0), (18, BOX_E, 0), (17, (.8, .8, .95, .95), 0)]
        if image_id == 55:
            objects.append((18, (0.0, 0.0, 0.5, 0.5), 1))  # a crowd region
        for cat, box, crowd in objects:
            bbox = coco_pixels(box, height, width)
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat, "bbox": bbox,
                                "area": bbox[2] * bbox[3] * 0.8, "iscrowd": crowd})
    gt = {"images": images, "annotations": annotations, "categories": CATEGORIES}
    path = str(root / "instances_fixed.json")
    with open(path, "w") as f:
        json.dump(gt, f)
    convert_coco(path, str(root / "images"), str(root / "records"), SPLIT, samples_per_file=3, num_threads=1)
    return str(root / "records"), path


def pycocotools_stats(gt_path, results_path, image_ids=None):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        e = COCOeval(gt, gt.loadRes(results_path), "bbox")
        if image_ids is not None:
            e.params.imgIds = image_ids
        e.evaluate()
        e.accumulate()
        e.summarize()
    return dict(zip(STAT_NAMES, e.stats))


def printed_stats(stdout):
    stats = {}
    for line in stdout.splitlines():
        name = line.split(" ", 1)[0]
        if name in STAT_NAMES and "=" in line:
            stats[name] = float(line.rsplit("=", 1)[1])
    return stats


def model_argv(checkpoint, records, annotations, eval_dir, *extra):
    return [f"--checkpoint_path={checkpoint}", f"--dataset_dir={records}", "--dataset_name=coco",
            f"--dataset_split_name={SPLIT}", "--metric=coco", f"--coco_annotations={annotations}",
            f"--eval_dir={eval_dir}", "--batch_size=2", *extra]


def test_model_mode_writes_coco_results_and_the_pycocotools_figures(coco_records, tmp_path, capsys):
    records, annotations = coco_records
    checkpoint = save_checkpoint(str(tmp_path / "ckpt"), step=77)
    eval_dir, out_json = tmp_path / "eval", tmp_path / "metrics.json"
    assert eval_ssd_network.main(model_argv(checkpoint, records, annotations, eval_dir,
                                            f"--output_json={out_json}")) == 0
    stdout = capsys.readouterr().out
    results = json.loads((eval_dir / f"detections_{SPLIT}.json").read_text())
    # Every anchor's box, in each image's own pixels, with COCO's category id and the model's score.
    expected = sorted((i, cid, round(float(FIXED_PROBS[a, label]), 4), tuple(np.round(coco_pixels(FIXED_BOXES[a], h, w), 2)))
                      for label, cid in ((1, 17), (2, 18)) for a in np.flatnonzero(FIXED_PROBS[:, label] > 0.01)
                      for i, h, w in IMAGES)
    got = sorted((d["image_id"], d["category_id"], round(d["score"], 4), tuple(np.round(d["bbox"], 2)))
                 for d in results)
    assert got == expected
    assert [d["image_id"] for d in results] == sorted(d["image_id"] for d in results)
    # The figures: pycocotools on the file written, on all its images.
    reference = pycocotools_stats(annotations, str(eval_dir / f"detections_{SPLIT}.json"))
    doc = json.loads(out_json.read_text())
    assert set(doc) == {"COCO", "COCO_per_class"}
    assert doc["COCO"] == pytest.approx(reference, abs=1e-4)
    assert printed_stats(stdout) == pytest.approx(reference, abs=1e-6)
    assert 0 < reference["AP"] < 1 and reference["AP50"] >= reference["AP75"] > 0
    assert set(doc["COCO_per_class"]) == {"cat", "dog"}
    assert sorted(f for f in os.listdir(eval_dir) if f.endswith(".png")) == ["ap_summary.png", "pr_cat.png",
                                                                             "pr_dog.png"]


def test_model_mode_keeps_the_100_best_per_image_and_max_num_batches(coco_records, tmp_path, capsys):
    records, annotations = coco_records
    checkpoint = save_checkpoint(str(tmp_path / "ckpt"), fixed=False, seed=3)
    eval_dir, out_json = tmp_path / "eval", tmp_path / "metrics.json"
    assert eval_ssd_network.main(model_argv(checkpoint, records, annotations, eval_dir, "--max_num_batches=2",
                                            "--keep_top_k=200", f"--output_json={out_json}")) == 0
    stdout = capsys.readouterr().out
    path = str(eval_dir / f"detections_{SPLIT}.json")
    results = json.load(open(path))
    per_image = {}
    for d in results:
        per_image.setdefault(d["image_id"], []).append(d["score"])
    assert sorted(per_image) == sorted(i for i, _, _ in IMAGES[:4])  # two batches of 2
    assert max(len(s) for s in per_image.values()) == 100
    assert all(s == sorted(s, reverse=True) for s in per_image.values())
    reference = pycocotools_stats(annotations, path, image_ids=[i for i, _, _ in IMAGES[:4]])
    assert json.loads(out_json.read_text())["COCO"] == pytest.approx(reference, abs=1e-4)
    assert printed_stats(stdout) == pytest.approx(reference, abs=1e-6)


def test_scoring_mode_builds_no_tensorflow_graph(tmp_path):
    gt, results = coco_case(7)
    gt_path, res_path, out_json = tmp_path / "gt.json", tmp_path / "res.json", tmp_path / "m.json"
    gt_path.write_text(json.dumps(gt))
    res_path.write_text(json.dumps(results))
    code = ("import sys, runpy; sys.argv = sys.argv[1:]; "
            "import eval_ssd_network as e; from common.errors import run_main\n"
            "try:\n    run_main(e.main)\nexcept SystemExit as x:\n"
            "    assert 'tensorflow' not in sys.modules; raise")
    proc = subprocess.run([sys.executable, "-c", code, "eval_ssd_network.py", "--metric=coco",
                           f"--coco_annotations={gt_path}", f"--detections_path={res_path}",
                           f"--output_json={out_json}"], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    reference = pycocotools_stats(str(gt_path), str(res_path))
    assert json.loads(out_json.read_text())["COCO"] == pytest.approx(reference, abs=1e-4)
    assert printed_stats(proc.stdout) == pytest.approx(reference, abs=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["--metric=coco", "--detections_path=r.json"], "--metric=coco needs --coco_annotations"),
    (["--metric=coco", "--coco_annotations={gt}", "--detections_path={missing}"], "missing.json: cannot read"),
    (["--metric=coco", "--coco_annotations={bad}", "--detections_path={missing}"], "bad.json: malformed JSON"),
    (["--metric=coco", "--coco_annotations={gt}", "--detections_path={res}", "--voc_dir=x"], "alone"),
    (["--coco_annotations={gt}", "--detections_path={res}"], "--coco_annotations goes with --metric=coco"),
])
def test_bad_coco_input_is_one_line(tmp_path, capsys, argv, message):
    gt, results = coco_case(0)
    results[5]["image_id"] = 3
    files = {"gt": tmp_path / "gt.json", "res": tmp_path / "res.json", "bad": tmp_path / "bad.json",
             "missing": tmp_path / "missing.json"}
    files["gt"].write_text(json.dumps(gt))
    files["res"].write_text(json.dumps(results))
    files["bad"].write_text("{")
    with pytest.raises(SystemExit) as info:
        run_main(eval_ssd_network.main, [a.format(**files) for a in argv])
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1 and message in err


def test_unknown_image_in_results_names_the_detection(tmp_path, capsys):
    gt, results = coco_case(0)
    results[5]["image_id"] = 3
    (tmp_path / "gt.json").write_text(json.dumps(gt))
    (tmp_path / "res.json").write_text(json.dumps(results))
    with pytest.raises(SystemExit) as info:
        run_main(eval_ssd_network.main, ["--metric=coco", f"--coco_annotations={tmp_path / 'gt.json'}",
                                         f"--detections_path={tmp_path / 'res.json'}"])
    assert info.value.code == 1
    assert capsys.readouterr().err == f"error: {tmp_path / 'res.json'}: detection 5: unknown image id 3 (not in the annotations)\n"


def test_annotations_of_another_split_are_a_one_line_error(coco_records, tmp_path, capsys):
    records, annotations = coco_records
    gt = json.load(open(annotations))
    gt["images"] = [i for i in gt["images"] if i["id"] != 7]
    gt["annotations"] = [a for a in gt["annotations"] if a["image_id"] != 7]
    other = tmp_path / "instances_other.json"
    other.write_text(json.dumps(gt))
    checkpoint = save_checkpoint(str(tmp_path / "ckpt"))
    with pytest.raises(SystemExit) as info:
        run_main(eval_ssd_network.main, model_argv(checkpoint, records, other, tmp_path / "eval"))
    err = capsys.readouterr().err
    assert info.value.code == 1 and err.count("\n") == 1
    assert err.startswith(f"error: {other}: has no image id 7 (1 of the evaluated images missing")
