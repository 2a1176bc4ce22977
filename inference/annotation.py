"""Detections as detect_ssd.py writes them (JSON records) and draws them (boxes, class names and scores),
shared by its still images and its video frames.

A detection record: {"label": int, "class": str, "score": float, "bbox": [ymin, xmin, ymax, xmax]}, the box
relative to the image and clipped to it; a frame's records are sorted by score, best first.
"""
import functools

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from datasets.pixel_boxes import relative_to_voc


def detection_records(result, class_names):
    """A detector's dict(boxes [K, 4], scores [K], classes [K]) -> the image's detection records."""
    order = np.argsort(-result["scores"], kind="stable")
    records = []
    for i in order:
        label = int(result["classes"][i])
        box = np.clip(result["boxes"][i], 0.0, 1.0)
        records.append({"label": label,
                        "class": class_names[label - 1] if 0 < label <= len(class_names) else str(label),
                        "score": round(float(result["scores"][i]), 6),
                        "bbox": [round(float(v), 6) for v in box]})
    return records


@functools.lru_cache(maxsize=8)
def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


def _colour(label):
    return tuple(int(255 * c) for c in matplotlib.colormaps["tab10"](label % 10)[:3])


def annotate(image, detections, min_score):
    """A PIL image of uint8 [H, W, 3] `image` with the detections scoring >= min_score drawn: box, class name
    and score, in the label's tab10 colour (notebooks/visualization.py uses the same colours)."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    line = max(1, round(max(height, width) / 300))
    font = _font(max(11, 4 * line + 8))
    for det in reversed(detections):  # the best drawn last, on top
        if det["score"] < min_score:
            continue
        # VOC's 1-based inclusive pixels (the project's one conversion), shifted to PIL's 0-based ones.
        x0, y0, x1, y1 = (int(round(v)) - 1 for v in relative_to_voc(det["bbox"], height, width))
        box = [x0, y0, max(x0, x1), max(y0, y1)]  # a box thinner than a pixel still gets its line
        colour = _colour(det["label"])
        draw.rectangle(box, outline=colour, width=line)
        text = f"{det['class']} {det['score']:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text, font=font)
        top_y = box[1] - (bottom - top) - 2 if box[1] - (bottom - top) - 2 >= 0 else box[1]
        draw.rectangle([box[0], top_y, box[0] + right - left + 4, top_y + bottom - top + 2], fill=colour)
        draw.text((box[0] + 2, top_y), text, fill=(255, 255, 255), font=font)
    return canvas


def drawn(detections, min_score):
    """Whether annotate() would draw anything."""
    return any(det["score"] >= min_score for det in detections)
