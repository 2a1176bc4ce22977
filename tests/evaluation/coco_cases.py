"""Generated COCO ground truth and results designed to hit COCOeval's corners.

- crowd regions (iscrowd 1) with detections inside them (COCOeval matches those to the crowd: ignored);
- objects of all three area ranges, with `area` (the segmentation's) differing from the box's w * h, as in
  COCO, so the ranges follow `area`;
- images with more than 100 detections (maxDets 100 cuts), several objects per image (maxDets 1 and 10);
- scores rounded to one decimal: many ties;
- images without ground truth, images without detections, a category without ground truth (but with
  detections), non-contiguous image and category ids.
"""
import numpy as np

CATEGORY_IDS = (1, 3, 8, 15, 44, 90)
NO_GT_CATEGORY = 44


def coco_case(seed=0, num_images=24):
    """-> (ground-truth dict, results list)."""
    rng = np.random.default_rng(seed)
    categories = [{"id": c, "name": f"class{c}", "supercategory": "x"} for c in CATEGORY_IDS]
    gt_categories = [c for c in CATEGORY_IDS if c != NO_GT_CATEGORY]
    images, annotations, results = [], [], []
    for n in range(num_images):
        image_id = int(1000 + 37 * n + rng.integers(0, 30))
        width, height = int(rng.integers(200, 641)), int(rng.integers(200, 481))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": width, "height": height})
        kind = n % 6  # 0: no ground truth; 1: no detections; 5: a crowd image with > 100 detections
        objects = []
        if kind != 0:
            for _ in range(int(rng.integers(1, 12))):
                scale = rng.choice([10.0, 30.0, 60.0, 150.0])  # small, small/medium, medium, large
                w, h = (float(np.clip(scale * rng.uniform(0.5, 1.6), 2, width - 1)),
                        float(np.clip(scale * rng.uniform(0.5, 1.6), 2, height - 1)))
                x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
                objects.append((round(x, 2), round(y, 2), round(w, 2), round(h, 2), int(rng.choice(gt_categories)), 0))
            if kind in (3, 5):
                cw, ch = width * 0.5, height * 0.5
                objects.append((10.0, 10.0, round(cw, 2), round(ch, 2), int(rng.choice(gt_categories)), 1))
        for x, y, w, h, cat, crowd in objects:
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": cat,
                                "bbox": [x, y, w, h], "area": round(w * h * float(rng.uniform(0.4, 1.0)), 2),
                                "iscrowd": crowd})
        if kind == 1:
            continue
        num_dets = 130 if kind == 5 else int(rng.integers(3, 40))
        for _ in range(num_dets):
            if objects and rng.random() < 0.6:
                x, y, w, h, cat, crowd = objects[int(rng.integers(len(objects)))]
                if crowd:  # a small box inside the crowd region
                    x, y, w, h = x + w * rng.uniform(0, 0.5), y + h * rng.uniform(0, 0.5), w * 0.3, h * 0.3
                jitter = rng.normal(0, 0.08, 4) * [w, h, w, h]
                x, y, w, h = x + jitter[0], y + jitter[1], max(w + jitter[2], 1.0), max(h + jitter[3], 1.0)
                if rng.random() < 0.15:
                    cat = int(rng.choice(CATEGORY_IDS))
            else:
                w, h = float(rng.uniform(5, width / 2)), float(rng.uniform(5, height / 2))
                x, y = float(rng.uniform(0, width - w)), float(rng.uniform(0, height - h))
                cat = int(rng.choice(CATEGORY_IDS))
            score = round(float(rng.random()), 1)  # ties
            results.append({"image_id": image_id, "category_id": cat,
                            "bbox": [round(float(v), 2) for v in (x, y, w, h)], "score": score})
    gt = {"info": {}, "licenses": [], "images": images, "annotations": annotations, "categories": categories}
    return gt, results
