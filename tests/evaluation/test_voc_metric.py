"""The VOC metric against hand-worked cases and a plain-loop reference scorer written from the devkit.

The reference (`devkit_class_ap`) is VOCevaldet.m / VOCap.m statement by statement, one detection and
one box at a time; it shares no code with evaluation/.
"""
import math
import os

import numpy as np
import pytest

from common.errors import DatasetError
from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml
from evaluation import voc_metric
from evaluation.ground_truth import ground_truth_from_voc
from evaluation.voc_metric import ClassDetections, GroundTruth, ap_voc07, ap_voc12, evaluate_detections
from evaluation.voc_results import read_results, write_results


# ----------------------------------------------------------------------------------------------------------
# Reference scorer: the devkit's loop.
def matlab_colon(a, d, b):
    """MATLAB's a:d:b: first half a + k*d, second half b - k*d, the middle (a+b)/2 (MathWorks' colonop.m)."""
    n = int(math.floor((b - a) / d + 1e-10))
    out = [0.0] * (n + 1)
    for k in range(n // 2 + 1):
        out[k] = a + k * d
        out[n - k] = b - k * d
    if n % 2 == 0:
        out[n // 2] = (a + b) / 2
    return out


def devkit_class_ap(gt, detections, iou_threshold=0.5):
    """gt: {image_id: [(box, difficult), ...]} of one class, every image of the split present (possibly
    empty); detections: [(image_id, score, box), ...] in file order; boxes [xmin, ymin, xmax, ymax].
    Returns (ap_voc07, ap_voc12, tp list, fp list) with tp/fp in rank order; AP None if no positives."""
    npos = sum(1 for objs in gt.values() for _, diff in objs if not diff)
    detected = {image_id: [False] * len(objs) for image_id, objs in gt.items()}
    # [sc,si]=sort(-confidence): MATLAB's sort is stable; so is Python's.
    order = sorted(range(len(detections)), key=lambda k: -detections[k][1])
    tp, fp = [], []
    for k in order:
        image_id, _, bb = detections[k]
        if image_id not in gt:
            raise KeyError(f"unrecognized image {image_id}")
        ovmax, jmax = -math.inf, None
        for j, (bbgt, _) in enumerate(gt[image_id]):
            bi = [max(bb[0], bbgt[0]), max(bb[1], bbgt[1]), min(bb[2], bbgt[2]), min(bb[3], bbgt[3])]
            iw = bi[2] - bi[0] + 1
            ih = bi[3] - bi[1] + 1
            if iw > 0 and ih > 0:
                ua = ((bb[2] - bb[0] + 1) * (bb[3] - bb[1] + 1) + (bbgt[2] - bbgt[0] + 1) * (bbgt[3] - bbgt[1] + 1)
                      - iw * ih)
                ov = iw * ih / ua
                if ov > ovmax:
                    ovmax, jmax = ov, j
        t = f = 0
        if ovmax >= iou_threshold:
            if not gt[image_id][jmax][1]:
                if not detected[image_id][jmax]:
                    t = 1
                    detected[image_id][jmax] = True
                else:
                    f = 1
        else:
            f = 1
        tp.append(t)
        fp.append(f)
    if npos == 0:
        return None, None, tp, fp
    rec, prec = [], []
    ctp = cfp = 0
    for t, f in zip(tp, fp):
        ctp += t
        cfp += f
        rec.append(ctp / npos)
        prec.append(ctp / (ctp + cfp) if ctp + cfp else math.nan)
    ap07 = 0.0
    for thr in matlab_colon(0.0, 0.1, 1.0):
        candidates = [p for r, p in zip(rec, prec) if r >= thr and not math.isnan(p)]
        ap07 += (max(candidates) if candidates else 0.0) / 11
    mrec = [0.0] + rec + [1.0]
    mpre = [0.0] + prec + [0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = mpre[i + 1] if math.isnan(mpre[i]) else max(mpre[i], mpre[i + 1])
    ap12 = sum((mrec[i] - mrec[i - 1]) * mpre[i] for i in range(1, len(mrec)) if mrec[i] != mrec[i - 1])
    return ap07, ap12, tp, fp


# ----------------------------------------------------------------------------------------------------------
# Helpers: a one-class split described by hand.

def one_class_gt(images, class_names=("thing",)):
    """images: {image_id: [(box, label, difficult), ...]} -> GroundTruth."""
    return GroundTruth.from_images(class_names, [
        (image_id, [o[0] for o in objs], [o[1] for o in objs], [o[2] for o in objs])
        for image_id, objs in images.items()])


def dets(rows):
    """[(image_id, score, box), ...] -> ClassDetections in that (file) order."""
    if not rows:
        return ClassDetections.empty()
    return ClassDetections([r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows])


A = [11, 11, 60, 60]
B = [101, 101, 150, 150]
C = [201, 21, 240, 90]


def evaluate_one(images, rows, **kw):
    return evaluate_detections(one_class_gt(images), {"thing": dets(rows)}, **kw).classes[0]


# ----------------------------------------------------------------------------------------------------------
# Hand-worked cases.

def test_perfect_detector_has_ap_one():
    images = {"a": [(A, 1, False), (B, 1, False)], "b": [(C, 1, False)], "c": []}
    rows = [("a", 0.9, A), ("b", 0.8, C), ("a", 0.7, B)]
    r = evaluate_one(images, rows)
    assert r.ap_voc07 == pytest.approx(1.0) and r.ap_voc12 == pytest.approx(1.0)
    assert (r.num_true_positives, r.num_false_positives, r.num_positives) == (3, 0, 3)


def test_duplicate_detection_is_a_false_positive():
    # TP on A, duplicate on A (FP), TP on B: recall .5 .5 1, precision 1 .5 2/3.
    # VOC12: envelope 1, 2/3, 2/3 -> .5*1 + .5*2/3 = 5/6.
    # VOC07: t = 0 .. .5 reach recall .5 with precision 1 (6 points), t = .6 .. 1 get 2/3 (5 points): 28/33.
    images = {"a": [(A, 1, False), (B, 1, False)]}
    rows = [("a", 0.9, A), ("a", 0.8, [12, 12, 60, 61]), ("a", 0.7, B)]
    r = evaluate_one(images, rows)
    np.testing.assert_allclose(r.precision, [1, 0.5, 2 / 3])
    np.testing.assert_allclose(r.recall, [0.5, 0.5, 1])
    assert r.ap_voc12 == pytest.approx(5 / 6, abs=1e-12)
    assert r.ap_voc07 == pytest.approx(28 / 33, abs=1e-12)


def test_no_fall_back_to_the_second_best_box():
    # Two overlapping boxes; the second detection overlaps the matched one most and the other >= .5 too:
    # the devkit calls it a false positive rather than matching it to the other box.
    first, second = [1, 1, 100, 100], [11, 1, 110, 100]
    det = [6, 1, 103, 100]  # IoU with first 95/105, with second 93/105
    images = {"a": [(first, 1, False), (second, 1, False)]}
    r = evaluate_one(images, [("a", 0.9, first), ("a", 0.8, det)])
    assert (r.num_true_positives, r.num_false_positives) == (1, 1)


def test_detection_on_a_difficult_box_counts_as_neither():
    # The first detection hits the difficult box: not a TP, not a FP; precision stays 1 after the second.
    images = {"a": [(A, 1, False), (B, 1, True)]}
    r = evaluate_one(images, [("a", 0.9, B), ("a", 0.8, B), ("a", 0.7, A)])
    assert r.num_positives == 1 and r.num_difficult == 1
    assert (r.num_true_positives, r.num_false_positives, r.num_ignored) == (1, 0, 2)
    assert r.ap_voc07 == pytest.approx(1.0) and r.ap_voc12 == pytest.approx(1.0)
    assert np.isnan(r.precision[:2]).all()  # the devkit's 0/0 before anything counted


def test_equal_overlaps_go_to_the_first_box_in_annotation_order():
    # Two identical boxes: the best overlap ties, the devkit keeps the first (ov > ovmax). The second
    # detection then finds that same box already matched: a false positive, not the twin box.
    images = {"a": [(A, 1, False), (A, 1, False)]}
    r = evaluate_one(images, [("a", 0.9, A), ("a", 0.8, A)])
    assert (r.num_true_positives, r.num_false_positives) == (1, 1)
    # When the first of the twins is difficult, every detection on them is ignored.
    images = {"a": [(A, 1, True), (A, 1, False)]}
    r = evaluate_one(images, [("a", 0.9, A), ("a", 0.8, A)])
    assert (r.num_true_positives, r.num_false_positives, r.num_ignored) == (0, 0, 2)


def test_iou_of_exactly_one_half_is_a_match():
    # 10x10 box and its upper 10x5 half: IoU 50/100 = 0.5 exactly; VOCevaldet.m has ovmax >= minoverlap.
    images = {"a": [([1, 1, 10, 10], 1, False)]}
    r = evaluate_one(images, [("a", 0.9, [1, 1, 10, 5])])
    assert r.num_true_positives == 1
    r = evaluate_one(images, [("a", 0.9, [1, 1, 10, 4])])  # 40/100
    assert r.num_false_positives == 1


def test_a_class_without_detections_scores_zero_and_a_class_without_objects_is_left_out():
    gt = GroundTruth.from_images(("cat", "dog", "cow"), [
        ("a", [A, B], [1, 2], [False, False]),
        ("b", [C], [3], [True]),  # cows: only a difficult one
    ])
    ev = evaluate_detections(gt, {"cat": dets([("a", 0.5, A)]), "cow": dets([("b", 0.5, C)])})
    cat, dog, cow = ev.classes
    assert cat.ap_voc12 == pytest.approx(1.0) and cat.ap_voc07 == pytest.approx(1.0)
    assert dog.ap_voc12 == 0.0 and dog.ap_voc07 == 0.0 and dog.num_detections == 0
    assert np.isnan(cow.ap_voc07) and np.isnan(cow.ap_voc12) and cow.num_positives == 0
    assert ev.map_voc07 == pytest.approx(0.5) and ev.map_voc12 == pytest.approx(0.5)


def test_ties_in_score_keep_file_order():
    # Same score for a false and a true positive: the devkit's stable sort keeps the file order.
    images = {"a": [(A, 1, False)]}
    fp_first = evaluate_one(images, [("a", 0.5, B), ("a", 0.5, A)])
    tp_first = evaluate_one(images, [("a", 0.5, A), ("a", 0.5, B)])
    np.testing.assert_allclose(fp_first.precision, [0, 0.5])
    assert fp_first.ap_voc12 == pytest.approx(0.5) and fp_first.ap_voc07 == pytest.approx(0.5)
    assert tp_first.ap_voc12 == pytest.approx(1.0) and tp_first.ap_voc07 == pytest.approx(1.0)
    # Many ties: the order is exactly the stable one.
    scores = np.array([0.3, 0.7, 0.3, 0.7, 0.7, 0.1, 0.3])
    assert voc_metric.rank_detections(scores).tolist() == [1, 3, 4, 0, 2, 6, 5]


def test_eleven_point_and_area_differ_as_worked_by_hand():
    # Three objects; ranks TP, FP, TP; the third object is never found.
    # recall 1/3 1/3 2/3, precision 1 1/2 2/3.
    # VOC12: envelope 1, 2/3, 2/3: 1/3 * 1 + 1/3 * 2/3 = 5/9.
    # VOC07: t = 0 .1 .2 .3 -> 1 (4 points); t = .4 .5 .6 -> 2/3 (3 points); t >= .7 -> 0: (4 + 2)/11 = 6/11.
    images = {"a": [(A, 1, False), (B, 1, False)], "b": [(C, 1, False)]}
    r = evaluate_one(images, [("a", 0.9, A), ("b", 0.8, B), ("a", 0.7, B)])
    assert r.ap_voc12 == pytest.approx(5 / 9, abs=1e-12)
    assert r.ap_voc07 == pytest.approx(6 / 11, abs=1e-12)


def test_eleven_point_thresholds_are_matlabs_colon():
    # Ten objects, ranks TP TP TP FP FP FP TP: recall .3 (precision 1), then .4 (precision 4/7).
    # MATLAB's 0:0.1:1 holds 3*0.1 = 0.30000000000000004, so a recall of exactly 3/10 does not reach it:
    # t = 0 .1 .2 -> 1; t = 0.3000..04 and .4 -> 4/7; t >= .5 -> 0: (3 + 8/7)/11 = 29/77 (not 32/77).
    recall = np.array([1, 2, 3, 3, 3, 3, 4]) / 10
    precision = np.array([1, 1, 1, 3 / 4, 3 / 5, 3 / 6, 4 / 7])
    assert ap_voc07(recall, precision) == pytest.approx(29 / 77, abs=1e-12)
    assert voc_metric.VOC07_RECALL_THRESHOLDS.tolist() == matlab_colon(0.0, 0.1, 1.0)
    # VOC12 on the same curve: .3 * 1 + .1 * 4/7.
    assert ap_voc12(recall, precision) == pytest.approx(0.3 + 0.4 / 7, abs=1e-12)


def test_ap_functions_on_empty_curves_are_zero():
    assert ap_voc07(np.zeros(0), np.zeros(0)) == 0.0
    assert ap_voc12(np.zeros(0), np.zeros(0)) == 0.0


def test_detection_on_an_unknown_image_is_an_error():
    with pytest.raises(DatasetError, match="'zzz'.*not in the ground truth"):
        evaluate_one({"a": [(A, 1, False)]}, [("a", 0.9, A), ("zzz", 0.8, A)])


def test_detections_for_an_unknown_class_are_an_error():
    with pytest.raises(DatasetError, match="'horse'"):
        evaluate_detections(one_class_gt({"a": []}), {"horse": dets([("a", 0.9, A)])})


def test_duplicate_image_ids_in_ground_truth_are_an_error():
    with pytest.raises(DatasetError, match="appears twice"):
        GroundTruth.from_images(("thing",), [("a", [], [], []), ("a", [], [], [])])


def test_detections_by_class_keeps_order_within_each_class():
    out = voc_metric.detections_by_class(("x", "y"), ["a", "b", "c", "d"], [2, 1, 2, 2], [0.1, 0.2, 0.3, 0.4],
                                         np.arange(16).reshape(4, 4))
    assert out["x"].image_ids.tolist() == ["b"]
    assert out["y"].image_ids.tolist() == ["a", "c", "d"]
    np.testing.assert_array_equal(out["y"].boxes[:, 0], [0, 8, 12])


# ----------------------------------------------------------------------------------------------------------
# Random splits against the reference.

def random_split(rng, num_images, class_names, num_dets_per_image):
    """A random split (integer VOC boxes, some difficult, clustered objects) and random detections mixing
    near-object boxes (float and integer, duplicates, on difficult boxes), random boxes and score ties."""
    images = []
    for i in range(num_images):
        objs = []
        for _ in range(rng.integers(0, 5)):
            x, y = rng.integers(1, 300, 2)
            w, h = rng.integers(5, 150, 2)
            objs.append((f"{class_names[rng.integers(len(class_names))]}", [x, y, x + w, y + h],
                         bool(rng.random() < 0.2)))
        if objs and rng.random() < 0.3:  # a near-twin of an object: equal/close overlaps
            name, box, _ = objs[0]
            objs.append((name, [box[0] + 1, box[1], box[2] + 1, box[3]], bool(rng.random() < 0.5)))
        images.append((f"{i:06d}", objs))
    detections = []
    for image_id, objs in images:
        for _ in range(num_dets_per_image):
            if objs and rng.random() < 0.6:
                name, box, _ = objs[rng.integers(len(objs))]
                jitter = rng.normal(0, 0.15, 4) * (box[2] - box[0])
                det = np.asarray(box, float) + jitter
                if rng.random() < 0.5:
                    det = np.round(det)
            else:
                name = class_names[rng.integers(len(class_names))]
                x, y = rng.uniform(1, 350, 2)
                det = np.array([x, y, x + rng.uniform(-5, 150), y + rng.uniform(-5, 150)])
            score = float(np.round(rng.random(), 2))  # two decimals: plenty of ties
            detections.append((name, image_id, score, det.tolist()))
    return images, detections


def reference_scores(images, detections, class_names):
    out = {}
    for name in class_names:
        gt = {image_id: [(box, diff) for n, box, diff in objs if n == name] for image_id, objs in images}
        rows = [(image_id, score, box) for n, image_id, score, box in detections if n == name]
        out[name] = devkit_class_ap(gt, rows)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vectorised_matching_equals_the_reference_loop(seed):
    rng = np.random.default_rng(seed)
    class_names = ("cat", "dog", "cow")
    images, detections = random_split(rng, 40, class_names, 12)
    label = {n: i + 1 for i, n in enumerate(class_names)}
    gt = GroundTruth.from_images(class_names, [
        (image_id, [o[1] for o in objs], [label[o[0]] for o in objs], [o[2] for o in objs])
        for image_id, objs in images])
    by_class = {n: dets([(d[1], d[2], d[3]) for d in detections if d[0] == n]) for n in class_names}
    ev = evaluate_detections(gt, by_class)
    expected = reference_scores(images, detections, class_names)
    for result in ev.classes:
        ap07, ap12, tp, fp = expected[result.name]
        assert result.num_true_positives == sum(tp) and result.num_false_positives == sum(fp)
        assert result.ap_voc07 == pytest.approx(ap07, abs=1e-12)
        assert result.ap_voc12 == pytest.approx(ap12, abs=1e-12)


def test_scoring_files_of_a_generated_voc_split_equals_the_reference(tmp_path):
    """A VOC-layout split on disk (Annotations/, ImageSets/Main/test.txt) and comp4 results files:
    the project's whole scoring path (XML ground truth, results reader, metric) against the reference."""
    rng = np.random.default_rng(7)
    class_names = ("aeroplane", "bicycle", "bird", "boat")
    images, detections = random_split(rng, 60, class_names, 10)
    voc = tmp_path / "VOC2007"
    (voc / "Annotations").mkdir(parents=True)
    (voc / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, objs in images:
        ann = VOCAnnotation(f"{image_id}.jpg", 500, 400, 3, tuple(
            VOCObject(n, *box, difficult=int(d)) for n, box, d in objs))
        (voc / "Annotations" / f"{image_id}.xml").write_text(voc_annotation_xml(ann))
    (voc / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i, _ in images))
    # Results files in the devkit's format, written here by hand (not by the project's writer).
    results = tmp_path / "results"
    results.mkdir()
    for name in class_names:
        with open(results / f"comp4_det_test_{name}.txt", "w") as f:
            for n, image_id, score, box in detections:
                if n == name:
                    f.write(f"{image_id} {score:.2f} {box[0]:.3f} {box[1]:.3f} {box[2]:.3f} {box[3]:.3f}\n")
    # The reference reads back the same rounded text.
    detections = [(n, i, float(f"{s:.2f}"), [float(f"{v:.3f}") for v in b]) for n, i, s, b in detections]

    gt = ground_truth_from_voc(str(voc), class_names, "test")
    read, notes = read_results(str(results), "test", class_names)
    ev = evaluate_detections(gt, read)
    expected = reference_scores(images, detections, class_names)
    assert notes == []
    for result in ev.classes:
        ap07, ap12, _, _ = expected[result.name]
        assert abs(result.ap_voc07 - ap07) < 1e-6 and abs(result.ap_voc12 - ap12) < 1e-6
    scored = [expected[n] for n in class_names if expected[n][0] is not None]
    assert ev.map_voc07 == pytest.approx(np.mean([s[0] for s in scored]), abs=1e-6)
    assert ev.map_voc12 == pytest.approx(np.mean([s[1] for s in scored]), abs=1e-6)

    # Writing with the project's writer and reading back scores the same.
    write_results(str(tmp_path / "rewritten"), "test", read, class_names)
    again, _ = read_results(str(tmp_path / "rewritten"), "test", class_names)
    ev2 = evaluate_detections(gt, again)
    assert [c.ap_voc12 for c in ev2.classes] == pytest.approx([c.ap_voc12 for c in ev.classes], abs=1e-12)
    assert os.path.isdir(tmp_path / "rewritten")
