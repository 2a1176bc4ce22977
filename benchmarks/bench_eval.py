"""Times the VOC metric on a VOC2007-test-sized synthetic split (goal: under 2 s).

4,952 images, 20 classes, ~2.4 objects per image (about 1 in 8 difficult), 200 detections per image: a
mix of boxes near ground-truth objects (several per object: duplicates) and random boxes, scores with
ties. Prints one JSON line {"images", "detections", "seconds", ...}: `seconds` is the best of 3 runs of
evaluate_detections (ranking, matching, precision/recall and both APs for every class);
`read_seconds` (with --files) is the best of 3 readings of the 20 results files written from it.

    python benchmarks/bench_eval.py [--files]
"""
import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

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


def best_of(n, fn):
    times = []
    for _ in range(n):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", action="store_true", help="also time reading the written results files")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
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
