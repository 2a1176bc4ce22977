"""Matplotlib drawing for the notebook: detections, ground truth and anchors over an image.

Boxes are the library's [ymin, xmin, ymax, xmax] relative to the image. An image is shown with
`extent=(0, W, H, 0)`, so pixel i covers the continuous interval [i, i + 1] and a relative coordinate r sits
at r * W: the convention of datasets/pixel_boxes.py, where a relative box is a pixel extent over the size.

Detections are the records detect_ssd.py writes to JSON (and `detect_ssd.image_record` returns):
{"label": int, "class": str, "score": float, "bbox": [ymin, xmin, ymax, xmax]}, so a JSON file from
detect_ssd.py draws the same way. Colours are tab10 by label, as in detect_ssd.py's annotated PNGs.
"""
import matplotlib
import matplotlib.patches as patches
import numpy as np


def label_colour(label):
    """The RGBA colour of a class label (tab10, label modulo 10), the one detect_ssd.py draws with."""
    return matplotlib.colormaps["tab10"](int(label) % 10)


def show_image(ax, image, title=None):
    """imshow with extent (0, W, H, 0) (see the module docstring); returns (height, width)."""
    height, width = image.shape[:2]
    ax.imshow(image, extent=(0, width, height, 0), interpolation="bilinear")
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=10)
    return height, width


def box_patch(bbox, height, width, colour, linewidth=2.0, linestyle="-"):
    """A matplotlib Rectangle for a relative [ymin, xmin, ymax, xmax] box on an image of that size."""
    ymin, xmin, ymax, xmax = (float(v) for v in bbox)
    return patches.Rectangle((xmin * width, ymin * height), (xmax - xmin) * width, (ymax - ymin) * height,
                             fill=False, edgecolor=colour, linewidth=linewidth, linestyle=linestyle)


def _label(ax, x, y, text, colour, fontsize, height):
    """A filled caption above (x, y), or just inside the box when there is no room above."""
    inside = y < 0.04 * height
    ax.text(x, y, text, color="white", fontsize=fontsize, va="top" if inside else "bottom", ha="left",
            bbox=dict(facecolor=colour, edgecolor="none", alpha=0.85, pad=1.5), clip_on=True)


def draw_detections(ax, image, detections, min_score=0.5, title=None, ground_truth=(), fontsize=9):
    """Shows `image` with the detections scoring at least `min_score`: box, class name and score.

    image: uint8 [H, W, 3]. detections: detect_ssd records (see the module docstring), any order.
    ground_truth: (class name, relative box) pairs, drawn dashed white under the detections.
    Returns the number of detections drawn.
    """
    height, width = show_image(ax, image, title)
    for name, bbox in ground_truth:
        ax.add_patch(box_patch(bbox, height, width, "white", linewidth=1.5, linestyle="--"))
    shown = sorted((d for d in detections if d["score"] >= min_score), key=lambda d: d["score"])
    for det in shown:  # the best drawn last, on top
        colour = label_colour(det["label"])
        ax.add_patch(box_patch(det["bbox"], height, width, colour))
        ymin, xmin = (float(v) for v in det["bbox"][:2])
        _label(ax, max(xmin, 0.0) * width, max(ymin, 0.0) * height, f"{det['class']} {det['score']:.2f}",
               colour, fontsize, height)
    return len(shown)


def anchor_caption(anchor, img_shape):
    """'w x h' of a relative anchor in the network's input pixels, e.g. '60x60' or '85x42'."""
    ymin, xmin, ymax, xmax = (float(v) for v in anchor)
    return f"{(xmax - xmin) * img_shape[1]:.0f}x{(ymax - ymin) * img_shape[0]:.0f}"


def draw_anchors(ax, image, layer_anchors, feat_shape, location, num_anchors, img_shape, title=None):
    """Shows the anchors of one location of a feature layer and the centres of all its locations.

    layer_anchors: float32 [H * W * A, 4] relative boxes of ONE feature layer in Caffe's order (location
    row-major, then anchor), as box_ops.anchors.prior_box returns them. feat_shape: (H, W). location: (y, x)
    cell whose A = num_anchors anchors are drawn. img_shape: the network's input (H, W), for the legend's
    pixel sizes. image: what to draw on (any size; anchors are relative).
    """
    height, width = show_image(ax, image, title)
    fh, fw = feat_shape
    boxes = np.asarray(layer_anchors, dtype=np.float64).reshape(fh, fw, num_anchors, 4)
    centres = (boxes[..., 0, :2] + boxes[..., 0, 2:]) / 2.0  # [H, W, 2] (cy, cx), the same for every anchor
    dot_size = float(np.clip(150.0 / max(fh, fw), 2.0, 40.0))
    ax.scatter(centres[..., 1].ravel() * width, centres[..., 0].ravel() * height, s=dot_size, c="yellow",
               edgecolors="black", linewidths=0.3, zorder=3)
    y, x = location
    colours = matplotlib.colormaps["tab10"]
    for a in range(num_anchors):
        patch = box_patch(boxes[y, x, a], height, width, colours(a % 10), linewidth=2.0)
        patch.set_label(anchor_caption(boxes[y, x, a], img_shape))
        ax.add_patch(patch)
    ax.scatter([centres[y, x, 1] * width], [centres[y, x, 0] * height], s=40, c="red", marker="x", zorder=4)
    ax.legend(loc="lower left", fontsize=7, framealpha=0.8, title="w x h (px)", title_fontsize=7)
