"""The mAP of a random detector on a VOC-layout split: the floor that a model which learnt nothing reaches."""
import os

import numpy as np

from datasets.voc_xml import read_voc_annotation
from evaluation import ground_truth, voc_metric


def random_detector_map(voc_dir, class_names, per_image=50, seed=0):
    """mAP VOC07 of boxes and scores drawn at random (uniform centre, size and class) on every test image."""
    gt = ground_truth.ground_truth_from_voc(voc_dir, class_names, split="test")
    rng = np.random.default_rng(seed)
    sizes = {}
    for image_id in gt.image_ids:
        ann = read_voc_annotation(os.path.join(voc_dir, "Annotations", f"{image_id}.xml"))
        sizes[image_id] = (ann.height, ann.width)
    ids, labels, scores, boxes = [], [], [], []
    for image_id, (h, w) in sizes.items():
        cx, cy = rng.uniform(1, w, per_image), rng.uniform(1, h, per_image)
        bw, bh = rng.uniform(0.05, 0.7, per_image) * w, rng.uniform(0.05, 0.7, per_image) * h
        boxes.append(np.stack([np.clip(cx - bw / 2, 1, w), np.clip(cy - bh / 2, 1, h),
                               np.clip(cx + bw / 2, 1, w), np.clip(cy + bh / 2, 1, h)], axis=1))
        ids += [image_id] * per_image
        labels.append(rng.integers(1, len(class_names) + 1, per_image))
        scores.append(rng.uniform(size=per_image))
    dets = voc_metric.detections_by_class(class_names, np.array(ids), np.concatenate(labels),
                                          np.concatenate(scores), np.concatenate(boxes))
    return voc_metric.evaluate_detections(gt, dets).map_voc07
