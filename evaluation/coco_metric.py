"""COCO box AP: the official cocoapi's COCOeval (bbox), wrapped so that bad input gets the project's errors.

    evaluation = evaluate_coco("instances_val2017.json", "detections_val2017.json")
    evaluation.stats["AP"], evaluation.per_class_ap["person"], evaluation.precision_curve("person", 0.5)

The numbers are COCOeval's own: `evaluate` runs COCOeval.evaluate / accumulate / summarize of the chosen
backend on the ground-truth file and the results, unchanged (images without ground truth or detections,
crowd regions, area ranges and maxDets 1/10/100 are COCOeval's business). Backends: "pycocotools" (the
cocoapi) and "faster_coco_eval" (its C++ re-implementation, whose 12 statistics and precision arrays
tests/evaluation/test_coco_metric.py checks against pycocotools on cases built to hit COCOeval's
corners); "auto" is faster_coco_eval when installed, else pycocotools.

What is checked before COCOeval sees anything (DatasetError naming the file, and the entry):
- ground truth: readable, well-formed JSON with "images", "annotations" and "categories" lists; every
  annotation with an id, a known image and category id, a bbox of 4 numbers, and area / iscrowd;
- results: a JSON list (COCO's results format) of {"image_id", "category_id", "bbox": [x, y, w, h],
  "score"} with image and category ids of the ground truth (COCOeval would silently drop an unknown
  category) and finite numbers.

Per-class AP is COCOeval's AP (IoU 0.50:0.95, all areas, 100 detections) of one category: the mean of
`eval["precision"][:, :, k, 0, 2]` over its defined entries, as summarize() averages over all. No
TensorFlow here.
"""
import contextlib
import dataclasses
import importlib.util
import io
import json
import math
import multiprocessing

import numpy as np

from common.errors import DatasetError

STAT_NAMES = ("AP", "AP50", "AP75", "APs", "APm", "APl", "AR1", "AR10", "AR100", "ARs", "ARm", "ARl")
STAT_DESCRIPTIONS = (
    "IoU=0.50:0.95 area=all maxDets=100", "IoU=0.50 area=all maxDets=100", "IoU=0.75 area=all maxDets=100",
    "IoU=0.50:0.95 area=small maxDets=100", "IoU=0.50:0.95 area=medium maxDets=100",
    "IoU=0.50:0.95 area=large maxDets=100", "IoU=0.50:0.95 area=all maxDets=1",
    "IoU=0.50:0.95 area=all maxDets=10", "IoU=0.50:0.95 area=all maxDets=100",
    "IoU=0.50:0.95 area=small maxDets=100", "IoU=0.50:0.95 area=medium maxDets=100",
    "IoU=0.50:0.95 area=large maxDets=100")
BACKENDS = ("auto", "pycocotools", "faster_coco_eval")
MAX_DETECTIONS_PER_IMAGE = 100  # what COCO counts (the challenge's rule, COCOeval's largest maxDets)


@dataclasses.dataclass(frozen=True)
class CocoEvaluation:
    """stats: {name: value} of the 12 COCOeval statistics (-1 where COCOeval has no data);
    per_class_ap: {category name: AP or NaN (no ground truth)}; precision: COCOeval's eval["precision"]
    [T, R, K, A, M]; iou_thresholds [T], recall_thresholds [R]; categories ((id, name), ...) in K order."""
    stats: dict
    per_class_ap: dict
    precision: np.ndarray
    iou_thresholds: np.ndarray
    recall_thresholds: np.ndarray
    categories: tuple
    num_images: int
    num_detections: int
    backend: str

    def precision_curve(self, name, iou):
        """Precision at each of COCOeval's 101 recall thresholds, for `name` at IoU threshold `iou`
        (all areas, 100 detections); -1 where undefined (as COCOeval)."""
        t = int(np.argmin(np.abs(self.iou_thresholds - iou)))
        k = [n for _, n in self.categories].index(name)
        return self.precision[t, :, k, 0, -1]


def resolve_backend(backend="auto"):
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if backend == "auto":
        return "faster_coco_eval" if importlib.util.find_spec("faster_coco_eval") else "pycocotools"
    return backend


def _api(backend):
    if backend == "faster_coco_eval":
        from faster_coco_eval import COCO, COCOeval_faster
        return COCO, COCOeval_faster
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    return COCO, COCOeval


def _read_json(path, what):
    try:
        with open(path, "rb") as f:
            return json.load(f)
    except OSError as err:
        raise DatasetError(path, f"cannot read the {what} ({err.strerror or err})") from None
    except (ValueError, RecursionError) as err:
        raise DatasetError(path, f"malformed JSON ({err})") from None


def _is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def read_ground_truth(path):
    """An instances JSON -> its dict, checked enough that COCOeval cannot fail on it."""
    data = _read_json(path, "annotations")
    if not isinstance(data, dict):
        raise DatasetError(path, "not a COCO annotations file (the top level is not a JSON object)")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(path, f"not a COCO annotations file (no '{key}' list)")
    image_ids, category_ids = set(), set()
    for kind, entries, ids in (("image", data["images"], image_ids), ("category", data["categories"], category_ids)):
        for i, entry in enumerate(entries):
            if not isinstance(entry, dict) or not _is_int(entry.get("id")):
                raise DatasetError(path, f"{kind} {i}: no int 'id'")
            if entry["id"] in ids:
                raise DatasetError(path, f"{kind} id {entry['id']} listed twice")
            ids.add(entry["id"])
    for i, ann in enumerate(data["annotations"]):
        where = f"annotation {ann.get('id', i) if isinstance(ann, dict) else i}"
        if not isinstance(ann, dict) or not _is_int(ann.get("id")):
            raise DatasetError(path, f"{where}: no int 'id'")
        if not _is_int(ann.get("image_id")) or ann["image_id"] not in image_ids:
            raise DatasetError(path, f"{where}: unknown image id {ann.get('image_id')!r}")
        if not _is_int(ann.get("category_id")) or ann["category_id"] not in category_ids:
            raise DatasetError(path, f"{where}: unknown category id {ann.get('category_id')!r}")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            raise DatasetError(path, f"{where}: bbox is not 4 finite numbers")
        if not _is_number(ann.get("area")):
            raise DatasetError(path, f"{where}: no numeric 'area' (COCOeval's area ranges need it)")
        if ann.get("iscrowd", 0) not in (0, 1):
            raise DatasetError(path, f"{where}: iscrowd is not 0 or 1")
    return data


def _first_bad_result(results, image_ids, category_ids, source):
    """The DatasetError of the first invalid detection (the slow path, run only when one is invalid)."""
    for i, det in enumerate(results):
        if not isinstance(det, dict):
            return DatasetError(source, f"detection {i}: not a JSON object")
        image_id, category_id, bbox, score = (det.get(k) for k in ("image_id", "category_id", "bbox", "score"))
        if not _is_int(image_id) or image_id not in image_ids:
            return DatasetError(source, f"detection {i}: unknown image id {image_id!r} (not in the annotations)")
        if not _is_int(category_id) or category_id not in category_ids:
            return DatasetError(source, f"detection {i}: unknown category id {category_id!r} (not in the annotations)")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            return DatasetError(source, f"detection {i}: bbox is not 4 finite numbers [x, y, w, h]")
        if not _is_number(score):
            return DatasetError(source, f"detection {i}: score is not a finite number")
    return None


def _all_valid(results, image_ids, category_ids):
    """True when every detection is valid, checked with C-level loops and NumPy (the fast path)."""
    try:
        ids = [d["image_id"] for d in results]
        cats = [d["category_id"] for d in results]
        boxes = [d["bbox"] for d in results]
        scores = [d["score"] for d in results]
    except (TypeError, KeyError):
        return False
    if not (set(map(type, ids)) <= {int} and set(map(type, cats)) <= {int} and set(map(type, boxes)) <= {list}
            and set(map(type, scores)) <= {int, float}):
        return False
    if not (set(ids) <= image_ids and set(cats) <= category_ids):
        return False
    try:
        boxes = np.array(boxes) if boxes else np.zeros((0, 4))
    except ValueError:  # lists of different lengths
        return False
    return (boxes.ndim == 2 and boxes.shape[1] == 4 and boxes.dtype.kind in "if" and bool(np.isfinite(boxes).all())
            and bool(np.isfinite(np.array(scores, np.float64)).all()))


def check_results(results, ground_truth, source, copy=True):
    """Checks a results list against the ground-truth dict -> the results' annotations, as the cocoapi's
    loadRes makes them for boxes (area = w * h, id = index + 1, iscrowd 0): fresh dicts, or with
    copy=False the given ones, completed in place."""
    if not isinstance(results, list):
        raise DatasetError(source, "not a COCO results file (a JSON list of detections expected)")
    image_ids = {i["id"] for i in ground_truth["images"]}
    category_ids = {c["id"] for c in ground_truth["categories"]}
    if not _all_valid(results, image_ids, category_ids):
        raise _first_bad_result(results, image_ids, category_ids, source)
    if not copy:
        for i, d in enumerate(results):
            bbox = d["bbox"]
            d["area"], d["id"], d["iscrowd"] = bbox[2] * bbox[3], i + 1, 0
        return results
    return [{"image_id": d["image_id"], "category_id": d["category_id"], "bbox": d["bbox"], "score": d["score"],
             "area": d["bbox"][2] * d["bbox"][3], "id": i + 1, "iscrowd": 0} for i, d in enumerate(results)]


def read_results(path, ground_truth):
    """A results JSON -> its checked detections (check_results)."""
    return check_results(_read_json(path, "results"), ground_truth, path, copy=False)


def _coco(api_coco, dataset):
    coco = api_coco()
    coco.dataset = dataset
    coco.createIndex()
    return coco


def _cocoeval(backend, gt_data, detections, image_ids, cat_ids=None):
    """The backend's COCOeval (bbox) on the ground-truth dict and checked detections (check_results)."""
    api_coco, api_eval = _api(backend)
    gt = _coco(api_coco, gt_data)
    # What gt.loadRes(results) builds for boxes, less the polygon it adds to each detection, which bbox
    # evaluation never reads (a third of loadRes' time); it also takes an empty list, where loadRes fails.
    dt = _coco(api_coco, {"images": list(gt_data["images"]), "categories": gt_data["categories"],
                          "annotations": detections})
    cocoeval = api_eval(gt, dt, "bbox")
    if image_ids is not None:
        cocoeval.params.imgIds = sorted(set(int(i) for i in image_ids))
    if cat_ids is not None:
        cocoeval.params.catIds = list(cat_ids)
    return cocoeval


def _num_workers(workers, num_categories):
    return max(1, min(int(workers), num_categories))


_PART_INPUT = None  # (backend, gt_data, detections, image_ids), inherited by the forked workers


def _evaluate_part(cat_ids):
    """In a worker: COCOeval's evaluate + accumulate on some categories -> (precision, recall) arrays."""
    cocoeval = _cocoeval(*_PART_INPUT, cat_ids=cat_ids)
    with contextlib.redirect_stdout(io.StringIO()):
        cocoeval.evaluate()
        cocoeval.accumulate()
    return np.asarray(cocoeval.eval["precision"]), np.asarray(cocoeval.eval["recall"])


def _evaluate_in_parts(backend, gt_data, detections, image_ids, workers):
    """COCOeval's evaluate + accumulate with the categories split over `workers` forked processes.

    COCOeval accumulates each category on its own (its precision [T, R, K, A, M] and recall [T, K, A, M] of
    category k depend on that category's ground truth and detections alone), so the parts' arrays,
    joined along K in COCOeval's sorted category order, are the whole run's; summarize() then reads them as
    it reads its own. Returns a COCOeval whose eval holds the joined arrays.
    """
    global _PART_INPUT
    cat_ids = sorted({c["id"] for c in gt_data["categories"]})
    parts = [list(p) for p in np.array_split(cat_ids, workers) if len(p)]
    _PART_INPUT = (backend, gt_data, detections, image_ids)
    try:
        with multiprocessing.get_context("fork").Pool(len(parts)) as pool:
            results = pool.map(_evaluate_part, [[int(c) for c in p] for p in parts])
    finally:
        _PART_INPUT = None
    cocoeval = _cocoeval(backend, gt_data, [], image_ids)
    cocoeval.params.catIds = cat_ids
    cocoeval.eval = {"params": cocoeval.params,
                     "precision": np.concatenate([p for p, _ in results], axis=2),
                     "recall": np.concatenate([r for _, r in results], axis=1)}
    cocoeval.matched = False  # faster_coco_eval's summarize asks whether its accumulate() matched extras
    return cocoeval


def evaluate_coco(annotations, results, image_ids=None, backend="auto", workers=1, source=None):
    """COCOeval (bbox) of `results` against `annotations` -> CocoEvaluation.

    annotations: an instances JSON path (or its loaded, checked dict: read_ground_truth). results: a
    results JSON path or a list of detection dicts. image_ids: evaluate only these images (default: all of
    the ground truth, as COCOeval). workers: processes evaluating the categories in parallel
    (_evaluate_in_parts; POSIX fork). On the shared 2-core machine 2 workers were slower than 1 on a
    val2017-sized file (docs/benchmarks.md), so 1 is the default. source: the annotations' file name for
    messages when `annotations` is a dict.
    """
    gt_source = annotations if isinstance(annotations, str) else source or "the annotations"
    gt_data = read_ground_truth(annotations) if isinstance(annotations, str) else annotations
    if image_ids is not None:
        known = {i["id"] for i in gt_data["images"]}
        unknown = [i for i in image_ids if i not in known]
        if unknown:
            raise DatasetError(gt_source, f"has no image id {unknown[0]} ({len(unknown)} of the evaluated images "
                                          f"missing: annotations of another split?)")
    if isinstance(results, str):
        detections = read_results(results, gt_data)
    else:
        detections = check_results(results, gt_data, "the detections")
    backend = resolve_backend(backend)
    workers = _num_workers(workers, len(gt_data["categories"]))
    with contextlib.redirect_stdout(io.StringIO()):  # the cocoapi's progress chatter
        if workers > 1:
            cocoeval = _evaluate_in_parts(backend, gt_data, detections, image_ids, workers)
        else:
            cocoeval = _cocoeval(backend, gt_data, detections, image_ids)
            cocoeval.evaluate()
            cocoeval.accumulate()
        cocoeval.summarize()
    precision = np.asarray(cocoeval.eval["precision"], np.float64)
    names = {c["id"]: c["name"] for c in gt_data["categories"]}
    categories = tuple((cid, names[cid]) for cid in cocoeval.params.catIds)
    per_class = {}
    for k, (_, name) in enumerate(categories):
        p = precision[:, :, k, 0, -1]
        per_class[name] = float(np.mean(p[p > -1])) if np.any(p > -1) else float("nan")
    return CocoEvaluation(
        stats={n: float(v) for n, v in zip(STAT_NAMES, cocoeval.stats)}, per_class_ap=per_class,
        precision=precision, iou_thresholds=np.asarray(cocoeval.params.iouThrs, np.float64),
        recall_thresholds=np.asarray(cocoeval.params.recThrs, np.float64), categories=categories,
        num_images=len(cocoeval.params.imgIds), num_detections=len(detections), backend=backend)
