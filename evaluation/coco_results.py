"""Detections of a model run (evaluation/model_eval.ModelEvalResult) -> COCO's results format.

    [{"image_id": int, "category_id": int, "bbox": [x, y, w, h], "score": float}, ...]

image_id: the COCO image id (the COCO records' image/filename, datasets/coco_to_tfrecords.py);
category_id: COCO's id of the label (the dataset's category_ids); bbox: float pixels of the original
image, the continuous extent of the clipped VOC pixel box that model_eval gives (datasets/pixel_boxes
.voc_to_coco); at most MAX_DETECTIONS_PER_IMAGE per image, the highest scores (ties: class order, then
the detection output's order), as COCO counts them. Sorted by image id, then score.
"""
import json

import numpy as np

from common.errors import ConfigError
from common.fileio import write_text
from datasets.pixel_boxes import voc_to_coco
from evaluation.coco_metric import MAX_DETECTIONS_PER_IMAGE


def results_filename(split):
    return f"detections_{split}.json"


def model_detections(detections, class_names, category_ids, max_per_image=MAX_DETECTIONS_PER_IMAGE):
    """{class name: voc_metric.ClassDetections} -> list of COCO result dicts (see the module docstring)."""
    if category_ids is None or len(category_ids) != len(class_names):
        raise ConfigError(None, "COCO results need the COCO category id of every class: evaluate COCO records "
                                "(--dataset_name=coco, coco_2017 or coco_2014)")
    image_ids, cats, scores, boxes = [], [], [], []
    for name, cid in zip(class_names, category_ids):
        d = detections[name]
        image_ids.append(np.asarray(d.image_ids).astype(np.int64))
        cats.append(np.full(len(d), cid, np.int64))
        scores.append(np.asarray(d.scores, np.float64))
        boxes.append(voc_to_coco(np.asarray(d.boxes, np.float64).reshape(-1, 4)))
    image_ids, cats, scores, boxes = (np.concatenate(x) for x in (image_ids, cats, scores, boxes))
    order = np.lexsort((-scores, image_ids))  # stable: ties keep class order, then detection order
    starts = np.r_[0, np.flatnonzero(np.diff(image_ids[order])) + 1] if len(order) else np.zeros(0, np.int64)
    rank = np.arange(len(order)) - np.repeat(starts, np.diff(np.r_[starts, len(order)]))
    keep = order[rank < max_per_image]
    return [{"image_id": int(image_ids[k]), "category_id": int(cats[k]), "bbox": [float(v) for v in boxes[k]],
             "score": float(scores[k])} for k in keep]


def write_results(path, results):
    """Writes a results list as JSON (atomically)."""
    write_text(path, json.dumps(results) + "\n")
