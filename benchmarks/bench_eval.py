"""Times the VOC metric on a VOC2007-test-sized synthetic split (goal: under 2 s), or with --metric=coco
the COCO metric on a val2017-sized one (goal: at most 10 s on 2 cores).

4,952 images, 20 classes, ~2.4 objects per image (about 1 in 8 difficult), 200 detections per image: a
mix of boxes near ground-truth objects (several per object: duplicates) and random boxes, scores with
ties. Prints one JSON line {"images", "detections", "seconds", ...}: `seconds` is the best of 3 runs of
evaluate_detections (ranking, matching, precision/recall and both APs for every class);
`read_seconds` (with --files) is the best of 3 readings of the 20 results files written from it.

    python benchmarks/bench_eval.py [--files]
    python benchmarks/bench_eval.py --metric=coco [--backend=auto] [--no_reference]

COCO: 5,000 images of COCO's size range, 80 categories with COCO's (non-contiguous) ids, about 36,000
ground-truth boxes (1 in 100 a crowd region, `area` below the box's), 100 detections per image (half
jittered copies of the image's objects, half random; scores with ties), written as an instances JSON and
a results JSON. `seconds` is our scorer (evaluation/coco_metric.evaluate_coco: reading and checking both
files, then COCOeval's evaluate, accumulate and summarize) from the two file names to the statistics;
`pycocotools_seconds` the cocoapi's own on the same files (COCO(gt), loadRes, COCOeval bbox), one run;
`cpu_seconds_per_run` / `pycocotools_cpu_seconds` their CPU time (all threads, and the category workers' processes), which a shared
machine's load does not inflate as it does the wall time.
"""
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)

from datasets.voc_classes import VOC_CLASSES  # noqa: E402
from evaluation.voc_metric import GroundTruth, detections_by_class, evaluate_detections  # noqa: E402
from evaluation.voc_results import read_results, write_results  # noqa: E402


def synthetic_split(num_images=4952, num_classes=20, objects_per_image=2.4, dets_per_image=200, seed=0):
    """(GroundTruth, {class: ClassDetections}) of a random VOC-like split, built with array operations."""
    rng = np.random.default_rng(seed)
    image_ids = np.array([f"{i:06d}" for i in range(num_images)])
    counts = np.maximum(rng.poisson(objects_per_image - 1, num_images) + 1, 1)
    object_image = np.repeat(np.arange(num_images), counts)
    num_objects = len(object_image)
    width, height = 500, 375
    wh = rng.uniform(20, 300, (num_objects, 2))
    xy = rng.uniform(1, 1, (num_objects, 2)) + rng.uniform(0, 1, (num_objects, 2)) * ([width, height] - wh)
    gt_boxes = np.round(np.concatenate([xy, xy + wh], axis=1))
    labels = rng.integers(1, num_classes + 1, num_objects)
    difficult = rng.random(num_objects) < 0.12
    gt = GroundTruth(VOC_CLASSES[:num_classes], image_ids, object_image, gt_boxes, labels, difficult)

    # Detections: per image, 40% jittered copies of its objects (with the object's class, or another),
    # the rest random boxes of random classes.
    det_image = np.repeat(np.arange(num_images), dets_per_image)
    num_dets = len(det_image)
    first_object = np.cumsum(counts) - counts
    source = first_object[det_image] + (rng.random(num_dets) * counts[det_image]).astype(np.int64)
    near = rng.random(num_dets) < 0.4
    size = gt_boxes[source, 2:] - gt_boxes[source, :2]
    jitter = rng.normal(0, 0.12, (num_dets, 4)) * np.tile(size, 2)
    random_xy = rng.uniform(1, [width - 20, height - 20], (num_dets, 2))
    random_boxes = np.concatenate([random_xy, random_xy + rng.uniform(10, 250, (num_dets, 2))], axis=1)
    boxes = np.where(near[:, None], gt_boxes[source] + jitter, random_boxes)
    det_labels = np.where(near & (rng.random(num_dets) < 0.8), labels[source],
                          rng.integers(1, num_classes + 1, num_dets))
    scores = np.round(np.where(near, rng.beta(4, 2, num_dets), rng.beta(1, 5, num_dets)), 4)
    detections = detections_by_class(gt.class_names, image_ids[det_image], det_labels, scores, boxes)
    return gt, detections


def coco_split(num_images=5000, gt_per_image=7.3, dets_per_image=100, seed=0):
    """(instances dict, results list) of a random val2017-sized COCO split, built with array operations."""
    rng = np.random.default_rng(seed)
    category_ids = [i for i in range(1, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)]  # COCO's 80
    image_ids = np.sort(rng.choice(600000, num_images, replace=False)) + 1
    widths, heights = rng.integers(300, 641, num_images), rng.integers(240, 481, num_images)
    counts = rng.poisson(gt_per_image, num_images)
    obj_image = np.repeat(np.arange(num_images), counts)
    g = len(obj_image)
    wh = np.exp(rng.uniform(np.log(4), np.log(400), (g, 2)))
    size = np.stack([widths[obj_image], heights[obj_image]], axis=1)
    wh = np.minimum(wh, size - 1)
    xy = rng.uniform(0, 1, (g, 2)) * (size - wh)
    gt_cat = rng.choice(category_ids, g)
    crowd = rng.random(g) < 0.01
    area = wh[:, 0] * wh[:, 1] * rng.uniform(0.4, 1.0, g)
    images = [{"id": int(i), "file_name": f"{i:012d}.jpg", "width": int(w), "height": int(h)}
              for i, w, h in zip(image_ids, widths, heights)]
    annotations = [{"id": k + 1, "image_id": int(image_ids[obj_image[k]]), "category_id": int(gt_cat[k]),
                    "bbox": [round(float(v), 2) for v in (*xy[k], *wh[k])], "area": round(float(area[k]), 2),
                    "iscrowd": int(crowd[k])} for k in range(g)]
    d = num_images * dets_per_image
    det_image = np.repeat(np.arange(num_images), dets_per_image)
    first = np.cumsum(counts) - counts
    has = counts[det_image] > 0
    source = first[det_image] + (rng.random(d) * np.maximum(counts[det_image], 1)).astype(np.int64)
    source = np.where(has, np.minimum(source, g - 1), 0)
    near = has & (rng.random(d) < 0.5)
    jitter = rng.normal(0, 0.1, (d, 4)) * np.tile(wh[source], 2)
    dsize = np.stack([widths[det_image], heights[det_image]], axis=1)
    rwh = rng.uniform(5, 300, (d, 2))
    rwh = np.minimum(rwh, dsize - 1)
    rxy = rng.uniform(0, 1, (d, 2)) * (dsize - rwh)
    boxes = np.where(near[:, None], np.concatenate([xy[source], wh[source]], 1) + jitter,
                     np.concatenate([rxy, rwh], 1))
    boxes[:, 2:] = np.maximum(boxes[:, 2:], 1.0)
    det_cat = np.where(near & (rng.random(d) < 0.8), gt_cat[source], rng.choice(category_ids, d))
    scores = np.round(np.where(near, rng.beta(4, 2, d), rng.beta(1, 5, d)), 3)
    results = [{"image_id": int(image_ids[det_image[k]]), "category_id": int(det_cat[k]),
                "bbox": [round(float(v), 2) for v in boxes[k]], "score": float(scores[k])} for k in range(d)]
    categories = [{"id": c, "name": f"category{c}", "supercategory": "x"} for c in category_ids]
    return {"images": images, "annotations": annotations, "categories": categories}, results


def cpu_seconds():
    """CPU time of this process and of its finished children (the category workers), user + system."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def pycocotools_own(gt_path, results_path):
    """The cocoapi's own run, as its README shows it: the 12 statistics."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(gt_path)
        e = COCOeval(gt, gt.loadRes(results_path), "bbox")
        e.evaluate()
        e.accumulate()
        e.summarize()
    return list(e.stats)


def coco_main(args):
    from evaluation.coco_metric import STAT_NAMES, evaluate_coco

    gt, results = coco_split()
    with tempfile.TemporaryDirectory() as tmp:
        gt_path, res_path = os.path.join(tmp, "instances.json"), os.path.join(tmp, "results.json")
        with open(gt_path, "w") as f:
            json.dump(gt, f)
        with open(res_path, "w") as f:
            json.dump(results, f)
        cpu = cpu_seconds()
        seconds, evaluation = best_of(args.repeats, lambda: evaluate_coco(gt_path, res_path, backend=args.backend,
                                                                         workers=args.workers))
        cpu_per_run = (cpu_seconds() - cpu) / args.repeats
        out = {"metric": "coco", "backend": evaluation.backend, "images": len(gt["images"]),
               "detections": len(results), "objects": len(gt["annotations"]), "categories": len(gt["categories"]),
               "seconds": round(seconds, 3), "cpu_seconds_per_run": round(cpu_per_run, 3),
               "AP": round(evaluation.stats["AP"], 4)}
        if not args.no_reference:
            start, cpu = time.perf_counter(), cpu_seconds()
            stats = pycocotools_own(gt_path, res_path)
            out["pycocotools_seconds"] = round(time.perf_counter() - start, 3)
            out["pycocotools_cpu_seconds"] = round(cpu_seconds() - cpu, 3)
            out["max_stat_difference"] = float(max(abs(a - evaluation.stats[n]) for a, n in zip(stats, STAT_NAMES)))
    out["cpus"] = os.cpu_count()
    out["load_average"] = round(os.getloadavg()[0], 2)
    print(json.dumps(out))


def best_of(n, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    parser = flags.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", action="store_true", help="also time reading the written results files")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--metric", default="voc", choices=["voc", "coco"])
    parser.add_argument("--backend", default="auto", help="coco: auto, pycocotools or faster_coco_eval")
    parser.add_argument("--no_reference", action="store_true", help="coco: skip timing pycocotools' own run")
    parser.add_argument("--workers", type=int, default=1, help="coco: processes evaluating the categories")
    args = parser.parse_args(argv)
    if args.metric == "coco":
        return coco_main(args)
    gt, detections = synthetic_split()
    seconds, evaluation = best_of(args.repeats, lambda: evaluate_detections(gt, detections))
    out = {"images": gt.num_images, "detections": int(sum(len(d) for d in detections.values())),
           "objects": int(len(gt.labels)), "seconds": round(seconds, 4),
           "mAP_VOC07": round(evaluation.map_voc07, 4), "mAP_VOC12": round(evaluation.map_voc12, 4)}
    if args.files:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            write_results(tmp, "test", detections, gt.class_names)
            out["write_seconds"] = round(time.perf_counter() - start, 4)
            read_seconds, _ = best_of(args.repeats, lambda: read_results(tmp, "test", gt.class_names))
            out["read_seconds"] = round(read_seconds, 4)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
