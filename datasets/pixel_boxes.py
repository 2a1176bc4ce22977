"""The one conversion between pixel boxes (VOC and COCO) and the library's relative boxes.

VOC pixel boxes are 1-based and inclusive: pixel i covers the continuous interval [i-1, i]. The relative
box is that continuous extent divided by the image size:

    ymin_rel = (ymin - 1) / height     xmin_rel = (xmin - 1) / width
    ymax_rel = ymax / height           xmax_rel = xmax / width

so that `relative_to_voc(voc_to_relative(b))` returns the devkit's pixel boxes (exactly, after rounding,
for VOC's integer coordinates). Detections leave the library through `relative_to_voc` for the VOC results
files. Arrays are [..., 4]: pixel boxes in VOC order [xmin, ymin, xmax, ymax], relative boxes in the
library's order [ymin, xmin, ymax, xmax].
"""
import numpy as np


def voc_to_relative(boxes_xyxy, height, width):
    """[..., 4] VOC pixel boxes [xmin, ymin, xmax, ymax] -> [..., 4] float32 [ymin, xmin, ymax, xmax]."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    out = np.stack([(b[..., 1] - 1.0) / height, (b[..., 0] - 1.0) / width,
                    b[..., 3] / height, b[..., 2] / width], axis=-1)
    return out.astype(np.float32)


def relative_to_voc(boxes_yxyx, height, width):
    """[..., 4] relative [ymin, xmin, ymax, xmax] -> [..., 4] float64 VOC pixel boxes [xmin, ymin, xmax, ymax]."""
    b = np.asarray(boxes_yxyx, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)[..., None] if np.ndim(height) else float(height)
    width = np.asarray(width, dtype=np.float64)[..., None] if np.ndim(width) else float(width)
    return np.stack([b[..., 1] * width + 1.0, b[..., 0] * height + 1.0,
                     b[..., 3] * width, b[..., 2] * height], axis=-1)


# COCO boxes are float pixel [x, y, width, height] of the continuous extent (no 1-based offset): the
# relative box is x / width ... (x + w) / width, and the VOC pixel box of the same extent is
# [x + 1, y + 1, x + w, y + h].

def coco_to_relative(boxes_xywh, height, width):
    """[..., 4] COCO [x, y, w, h] pixels -> [..., 4] float32 relative [ymin, xmin, ymax, xmax]."""
    b = np.asarray(boxes_xywh, dtype=np.float64)
    out = np.stack([b[..., 1] / height, b[..., 0] / width,
                    (b[..., 1] + b[..., 3]) / height, (b[..., 0] + b[..., 2]) / width], axis=-1)
    return out.astype(np.float32)


def relative_to_coco(boxes_yxyx, height, width):
    """[..., 4] relative [ymin, xmin, ymax, xmax] -> [..., 4] float64 COCO [x, y, w, h] pixels."""
    b = np.asarray(boxes_yxyx, dtype=np.float64)
    height = np.asarray(height, dtype=np.float64)[..., None] if np.ndim(height) else float(height)
    width = np.asarray(width, dtype=np.float64)[..., None] if np.ndim(width) else float(width)
    x0, y0 = b[..., 1] * width, b[..., 0] * height
    return np.stack([x0, y0, b[..., 3] * width - x0, b[..., 2] * height - y0], axis=-1)


def voc_to_coco(boxes_xyxy):
    """[..., 4] VOC pixel boxes [xmin, ymin, xmax, ymax] -> [..., 4] float64 COCO [x, y, w, h] (same extent)."""
    b = np.asarray(boxes_xyxy, dtype=np.float64)
    return np.stack([b[..., 0] - 1.0, b[..., 1] - 1.0, b[..., 2] - b[..., 0] + 1.0, b[..., 3] - b[..., 1] + 1.0],
                    axis=-1)
