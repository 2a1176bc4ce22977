"""COCO AP (evaluation/coco_metric.py) against pycocotools' COCOeval run directly here, on generated
cases built to hit COCOeval's corners (tests/evaluation/coco_cases.py), for both backends."""
import contextlib
import io
import json

import numpy as np
import pytest

from tests.evaluation.coco_cases import NO_GT_CATEGORY, coco_case
from common.errors import DatasetError
from evaluation import coco_metric


def pycocotools_reference(gt_path, results_path):
    """(stats [12], precision [T, R, K, A, M]) straight from the cocoapi, as its README runs it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        dt = gt.loadRes(results_path)
        e = COCOeval(gt, dt, "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return np.array(e.stats), np.array(e.eval["precision"]), list(e.params.catIds)


def write_case(tmp_path, seed):
    gt, results = coco_case(seed)
    gt_path, res_path = str(tmp_path / f"gt{seed}.json"), str(tmp_path / f"res{seed}.json")
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with open(res_path, "w") as f:
        json.dump(results, f)
    return gt, results, gt_path, res_path


@pytest.mark.parametrize("backend,workers", [("pycocotools", 1), ("faster_coco_eval", 1), ("faster_coco_eval", 3),
                                             ("pycocotools", 2)])
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_all_twelve_statistics_equal_pycocotools(tmp_path, seed, backend, workers):
    """Also with the categories split over worker processes (COCOeval accumulates each on its own)."""
    gt, results, gt_path, res_path = write_case(tmp_path, seed)
    # The case does hit the corners it is meant to.
    per_image = {}
    for d in results:
        per_image[d["image_id"]] = per_image.get(d["image_id"], 0) + 1
    assert max(per_image.values()) > 100
    assert len(per_image) < len(gt["images"])  # images without detections
    assert len({a["image_id"] for a in gt["annotations"]}) < len(gt["images"])  # ... and without ground truth
    assert any(a["iscrowd"] for a in gt["annotations"])
    assert len({d["score"] for d in results}) < len(results) / 10  # ties
    ref_stats, ref_precision, cat_ids = pycocotools_reference(gt_path, res_path)
    assert np.all(ref_stats > 0) and np.all(ref_stats < 1)  # no statistic degenerate

    ours = coco_metric.evaluate_coco(gt_path, res_path, backend=backend, workers=workers)
    assert ours.backend == backend
    np.testing.assert_allclose([ours.stats[n] for n in coco_metric.STAT_NAMES], ref_stats, atol=1e-4, rtol=0)
    np.testing.assert_allclose(ours.precision, ref_precision, atol=1e-4, rtol=0)
    # Per-class AP: one category's share of summarize()'s mean, by its definition.
    for k, cid in enumerate(cat_ids):
        p = ref_precision[:, :, k, 0, 2]
        name = f"class{cid}"
        if cid == NO_GT_CATEGORY:
            assert np.isnan(ours.per_class_ap[name])
        else:
            assert ours.per_class_ap[name] == pytest.approx(p[p > -1].mean(), abs=1e-4)
    np.testing.assert_allclose(ours.precision_curve("class3", 0.75), ref_precision[5, :, 1, 0, 2], atol=1e-4)


def test_restricted_to_some_images_equals_pycocotools_with_those_img_ids(tmp_path):
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    gt, results, gt_path, res_path = write_case(tmp_path, 5)
    some = [i["id"] for i in gt["images"][:10]]
    with contextlib.redirect_stdout(io.StringIO()):
        coco_gt = COCO(gt_path)
        e = COCOeval(coco_gt, coco_gt.loadRes(res_path), "bbox")
        e.params.imgIds = some
        e.evaluate()
        e.accumulate()
        e.summarize()
    for backend, workers in (("pycocotools", 1), ("faster_coco_eval", 1), ("faster_coco_eval", 2)):
        ours = coco_metric.evaluate_coco(gt_path, res_path, image_ids=some, backend=backend, workers=workers)
        np.testing.assert_allclose([ours.stats[n] for n in coco_metric.STAT_NAMES], e.stats, atol=1e-4, rtol=0)
        assert ours.num_images == 10


def test_no_detections_scores_zero(tmp_path):
    gt, _, gt_path, _ = write_case(tmp_path, 0)
    ours = coco_metric.evaluate_coco(gt_path, [])
    assert all(ours.stats[n] == 0 for n in coco_metric.STAT_NAMES)


def _bad_results(edit):
    def make(results):
        edit(results)
        return results
    return make


@pytest.mark.parametrize("edit, message", [
    (lambda r: r[3].update(image_id=5), "detection 3: unknown image id 5"),
    (lambda r: r[0].update(category_id=2), "detection 0: unknown category id 2"),
    (lambda r: r[1].update(bbox=[1, 2, 3]), "detection 1: bbox is not 4 finite numbers"),
    (lambda r: r[2].update(score=float("nan")), "detection 2: score is not a finite number"),
    (lambda r: r[4].pop("score"), "detection 4: score"),
])
def test_bad_results_name_the_file_and_the_detection(tmp_path, edit, message):
    gt, results, gt_path, res_path = write_case(tmp_path, 0)
    edit(results)
    with open(res_path, "w") as f:
        json.dump(results, f)
    with pytest.raises(DatasetError) as info:
        coco_metric.evaluate_coco(gt_path, res_path)
    assert str(info.value) == f"{res_path}: {message}" or str(info.value).startswith(f"{res_path}: {message}")


def test_bad_files(tmp_path):
    gt, results, gt_path, res_path = write_case(tmp_path, 0)
    with pytest.raises(DatasetError, match="cannot read the annotations"):
        coco_metric.evaluate_coco(str(tmp_path / "none.json"), res_path)
    with open(res_path, "w") as f:
        f.write('[{"image_id": 1')
    with pytest.raises(DatasetError, match="res0.json: malformed JSON"):
        coco_metric.evaluate_coco(gt_path, res_path)
    with open(res_path, "w") as f:
        json.dump({"annotations": []}, f)
    with pytest.raises(DatasetError, match="a JSON list of detections expected"):
        coco_metric.evaluate_coco(gt_path, res_path)
    gt["annotations"][0]["category_id"] = 7
    with open(gt_path, "w") as f:
        json.dump(gt, f)
    with pytest.raises(DatasetError, match="annotation 1: unknown category id 7"):
        coco_metric.evaluate_coco(gt_path, [])
