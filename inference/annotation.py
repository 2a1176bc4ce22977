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
    scores = np.asarray(result["scores"], np.float64)  # exact for float32: the same order
    order = np.argsort(-scores, kind="stable")
    labels = np.asarray(result["classes"])[order].astype(int).tolist()
    # np.round on float64 gives what Python's round(v, 6) gives (tests/inference/test_annotation.py), for the
    # whole array at once.
    scores = np.round(scores[order], 6).tolist()
    boxes = np.round(np.clip(np.asarray(result["boxes"], np.float64)[order], 0.0, 1.0), 6).tolist()
    names = [class_names[label - 1] if 0 < label <= len(class_names) else str(label) for label in labels]
    return [{"label": label, "class": name, "score": score, "bbox": box}
            for label, name, score, box in zip(labels, names, scores, boxes)]


@functools.lru_cache(maxsize=8)
def _font(size):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        return ImageFont.load_default()


@functools.lru_cache(maxsize=None)
def _colour(label):
    return tuple(int(255 * c) for c in matplotlib.colormaps["tab10"](label % 10)[:3])


_MEASURE = ImageDraw.Draw(Image.new("L", (1, 1)))  # measures text only
WHITE = (255, 255, 255)


def _layout(detections, min_score, height, width):
    """What a picture of the detections scoring >= min_score shows, one tuple per drawn detection, the best last
    (on top): (box, colour, line, label, text_xy, text, font). box and label are PIL's inclusive pixel rectangles
    [x0, y0, x1, y1]: the box is outlined `line` pixels wide inside its rectangle, the label rectangle is filled
    with the colour and `text` is written on it in white at text_xy. The one layout of both renderings:
    annotate (RGB pictures) and annotate_yuv420 (a video's decoded planes)."""
    shown = [det for det in reversed(detections) if det["score"] >= min_score]
    if not shown:
        return []
    line = max(1, round(max(height, width) / 300))
    font = _font(max(11, 4 * line + 8))
    # VOC's 1-based inclusive pixels (the project's one conversion), shifted to PIL's 0-based ones.
    pixels = np.rint(relative_to_voc([det["bbox"] for det in shown], height, width)).astype(int) - 1
    items = []
    for det, (x0, y0, x1, y1) in zip(shown, pixels.tolist()):
        box = [x0, y0, max(x0, x1), max(y0, y1)]  # a box thinner than a pixel still gets its line
        text = f"{det['class']} {det['score']:.2f}"
        _, (left, top, right, bottom) = _text(text, font)
        text_height = bottom - top
        top_y = box[1] - text_height - 2 if box[1] - text_height - 2 >= 0 else box[1]
        label = [box[0], top_y, box[0] + right - left + 4, top_y + text_height + 2]
        items.append((box, _colour(det["label"]), line, label, (box[0] + 2, top_y), text, font))
    return items


@functools.lru_cache(maxsize=4096)  # a class name and a two-digit score: a few thousand texts at most
def _text(text, font):
    """`text` as draw.text writes it at (0, 0): (its coverage, float32 [h, w] in 0..1, and its extent (left, top,
    right, bottom), the textbbox)."""
    left, top, right, bottom = _MEASURE.textbbox((0, 0), text, font=font)
    mask = Image.new("L", (max(right - left, 1), max(bottom - top, 1)))
    ImageDraw.Draw(mask).text((-left, -top), text, fill=255, font=font)
    return np.asarray(mask, np.float32) / 255, (left, top, right, bottom)


def annotate(image, detections, min_score):
    """A PIL image of uint8 [H, W, 3] `image` with the detections scoring >= min_score drawn: box, class name
    and score, in the label's tab10 colour (notebooks/visualization.py uses the same colours)."""
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    for box, colour, line, label, text_xy, text, font in _layout(detections, min_score, *image.shape[:2]):
        draw.rectangle(box, outline=colour, width=line)
        draw.rectangle(label, fill=colour)
        draw.text(text_xy, text, fill=WHITE, font=font)
    return canvas


# Y'CbCr of ITU-R BT.601 and BT.709: (Kr, Kb) of Y' = Kr R + (1 - Kr - Kb) G + Kb B. FFmpeg's swscale uses BT.601
# in limited range for frames that are not tagged otherwise (and for the RGB frames the video writer encodes).
_KR_KB = {"bt601": (0.299, 0.114), "bt709": (0.2126, 0.0722)}


@functools.lru_cache(maxsize=None)
def _ycbcr(rgb, matrix="bt601", full_range=False):
    """An RGB colour (0..255) -> (Y, Cb, Cr), floats, in limited (16..235, 16..240) or full (0..255) range."""
    kr, kb = _KR_KB[matrix]
    r, g, b = rgb
    luma = kr * r + (1 - kr - kb) * g + kb * b
    cb, cr = (b - luma) / (2 * (1 - kb)), (r - luma) / (2 * (1 - kr))
    if full_range:
        return luma, 128 + cb, 128 + cr
    return 16 + luma * 219 / 255, 128 + cb * 224 / 255, 128 + cr * 224 / 255


def _blend(plane, top, left, alpha, value):
    """plane[top:, left:] <- plane * (1 - alpha) + value * alpha, in place, over alpha's extent (alpha: float
    [h, w] in 0..1) clipped to the plane; top and left may be negative."""
    y0, x0 = max(top, 0), max(left, 0)
    y1, x1 = min(top + alpha.shape[0], plane.shape[0]), min(left + alpha.shape[1], plane.shape[1])
    if y1 > y0 and x1 > x0:
        region = plane[y0:y1, x0:x1]
        region[...] = np.rint(region + (value - region) * alpha[y0 - top:y1 - top, x0 - left:x1 - left])


def _fill(planes, rect, ycbcr):
    """Fills the inclusive pixel rectangle [x0, y0, x1, y1], clipped to the frame, and every chroma sample it
    touches (a 4:2:0 sample spans 2x2 pixels, so colour edges are the nearest even pixel, as 4:2:0 allows)."""
    y, u, v = planes
    x0, y0 = max(rect[0], 0), max(rect[1], 0)
    x1, y1 = min(rect[2], y.shape[1] - 1), min(rect[3], y.shape[0] - 1)
    if x1 >= x0 and y1 >= y0:
        y[y0:y1 + 1, x0:x1 + 1] = round(ycbcr[0])
        u[y0 // 2:y1 // 2 + 1, x0 // 2:x1 // 2 + 1] = round(ycbcr[1])
        v[y0 // 2:y1 // 2 + 1, x0 // 2:x1 // 2 + 1] = round(ycbcr[2])


def _write(planes, text, font, top, left, ycbcr):
    """Writes `text` in colour ycbcr as draw.text writes it at (left, top): blended by its coverage, which for
    4:2:0 chroma is the mean over each 2x2 block."""
    alpha, (text_left, text_top, _, _) = _text(text, font)
    top, left = top + text_top, left + text_left
    _blend(planes[0], top, left, alpha, ycbcr[0])
    chroma = _chroma_coverage(text, font, top % 2, left % 2)
    _blend(planes[1], top // 2, left // 2, chroma, ycbcr[1])
    _blend(planes[2], top // 2, left // 2, chroma, ycbcr[2])


@functools.lru_cache(maxsize=4096)
def _chroma_coverage(text, font, odd_top, odd_left):
    alpha = _text(text, font)[0]
    h, w = alpha.shape
    blocks = np.zeros(((odd_top + h + 1) // 2 * 2, (odd_left + w + 1) // 2 * 2), np.float32)
    blocks[odd_top:odd_top + h, odd_left:odd_left + w] = alpha
    return blocks.reshape(blocks.shape[0] // 2, 2, blocks.shape[1] // 2, 2).mean(axis=(1, 3))


def annotate_yuv420(planes, detections, min_score, matrix="bt601", full_range=False):
    """Draws what annotate() draws straight into a 4:2:0 video frame, in place: planes = (Y [H, W], U and V
    [ceil(H / 2), ceil(W / 2)]) uint8 arrays of Y'CbCr `matrix` ("bt601" or "bt709"), limited or full range.
    No RGB round trip: a fraction of a millisecond per box on a 1280x720 frame, where converting to RGB,
    drawing with Pillow and converting back take several."""
    white = _ycbcr(WHITE, matrix, full_range)
    for box, colour, line, label, (text_x, text_y), text, font in _layout(detections, min_score,
                                                                           *planes[0].shape):
        ycbcr = _ycbcr(colour, matrix, full_range)
        x0, y0, x1, y1 = box
        for side in ([x0, y0, x1, min(y0 + line - 1, y1)], [x0, max(y1 - line + 1, y0), x1, y1],
                     [x0, y0, min(x0 + line - 1, x1), y1], [max(x1 - line + 1, x0), y0, x1, y1], label):
            _fill(planes, side, ycbcr)
        _write(planes, text, font, text_y, text_x, white)


def drawn(detections, min_score):
    """Whether annotate() would draw anything."""
    return any(det["score"] >= min_score for det in detections)
