"""A synthetic detection dataset in Pascal VOC layout, generated from a seed (the quickstart's data).

Each image is a textured, low-saturation background (value noise, wood grain, brick, gravel) with 1-4
objects. Every class is a shape with its own colour family, jittered in hue, saturation and value and
shaded by a light gradient and surface noise. Objects span about 10%-70% of the image side (log-uniform,
so all of SSD-300's anchor scales are used), aspect ratios 0.5-2, and never occlude each other (masks keep
a gap; boxes may overlap up to IoU 0.3). About one object in five is cut by the border (truncated=1, box
clipped to the visible part), one in twelve is tiny (longer side < 16 px: difficult=1).

Written as VOC expects (see ../shared/INTERFACES.md, tf_convert_data.py):

    OUTPUT_DIR/Annotations/<id>.xml          boxes: 1-based inclusive pixels of the visible extent
    OUTPUT_DIR/JPEGImages/<id>.jpg
    OUTPUT_DIR/ImageSets/Main/{train,trainval,test}.txt   (trainval = train)
    OUTPUT_DIR/labels.txt                    one class name a line, label i+1 = line i

The visible extent is the pixels the (anti-aliased) object covers at least half. The same seed gives the
same bytes; image i of a split depends only on (seed, split, i). Built in a staging directory, then moved.

    python -m datasets.synthetic_voc --output_dir=DIR --num_train=N --num_test=M --seed=S
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys
import time

import numpy as np
from PIL import Image

from common.errors import ArgumentParser, ConfigError, run_main
from common.fileio import staging_dir
from datasets.synthetic_drawing import coverage, hsv, texture_tiles
from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml

# name -> (shape, hue of the colour family in degrees). The quickstart's five families are >= 55 degrees
# apart; the hexagon (cyan, for sets of other shapes than the quickstart's) sits 47 degrees from its neighbours.
CLASS_STYLES = {
    "ellipse": ("ellipse", 0.0),      # red
    "cross": ("cross", 55.0),         # yellow
    "triangle": ("triangle", 125.0),  # green
    "hexagon": ("hexagon", 172.0),    # cyan
    "rectangle": ("rectangle", 220.0),  # blue
    "star": ("star", 295.0),          # magenta
}
SYNTHETIC_CLASSES = ("ellipse", "cross", "triangle", "rectangle", "star")  # the default set

HUE_JITTER = 10.0             # degrees, each side
DIFFICULT_MAX_SIZE = 16       # a visible box whose longer side is below this is difficult
TINY_PROBABILITY = 0.08       # objects drawn tiny (longer side 6-15 px)
TRUNCATE_PROBABILITY = 0.2    # objects placed across the border
SCALE_RANGE = (0.10, 0.70)    # sqrt(w * h) relative to the image's shorter side, log-uniform
ASPECT_RANGE = (0.5, 2.0)     # w / h, log-uniform
MAX_OBJECTS = 4
MAX_BOX_IOU = 0.3
MASK_GAP = 2                  # pixels kept free around every object
JPEG_QUALITY = 90
_LAYOUT = ("Annotations", "JPEGImages", "ImageSets", "labels.txt")


def _object_size(rng, height, width):
    """(w, h) in pixels: tiny with TINY_PROBABILITY, else log-uniform scale; log-uniform aspect ratio."""
    ratio = np.exp(rng.uniform(*np.log(ASPECT_RANGE)))
    if rng.random() < TINY_PROBABILITY:
        longer = rng.uniform(6, 15.5)
        w, h = (longer, longer / ratio) if ratio >= 1 else (longer * ratio, longer)
        return max(int(round(w)), 4), max(int(round(h)), 4)
    s = np.exp(rng.uniform(*np.log(SCALE_RANGE))) * min(height, width)
    w = min(s * np.sqrt(ratio), 0.95 * width)
    h = min(s / np.sqrt(ratio), 0.95 * height)
    return int(round(w)), int(round(h))


def _position(rng, w, h, height, width, truncate):
    """Top-left (x, y) of a w x h box: inside with a 1-px margin, or across one side or one corner."""
    x = int(rng.integers(1, max(width - w, 2)))
    y = int(rng.integers(1, max(height - h, 2)))
    if truncate:
        sides = [rng.integers(4)] if rng.random() < 0.8 else [rng.integers(2), 2 + rng.integers(2)]
        for side in sides:
            cut_w, cut_h = int(rng.uniform(0.15, 0.5) * w), int(rng.uniform(0.15, 0.5) * h)
            if side == 0:
                x = -cut_w
            elif side == 1:
                x = width - w + cut_w
            elif side == 2:
                y = -cut_h
            else:
                y = height - h + cut_h
    return x, y


def _iou(a, b):
    """IoU of two 0-based inclusive pixel boxes [x0, y0, x1, y1]."""
    inter = max(min(a[2], b[2]) - max(a[0], b[0]) + 1, 0) * max(min(a[3], b[3]) - max(a[1], b[1]) + 1, 0)
    return inter / ((a[2] - a[0] + 1) * (a[3] - a[1] + 1) + (b[2] - b[0] + 1) * (b[3] - b[1] + 1) - inter)


def _extents(solid):
    """Per row and per column of a bool mask: first and last True index (w / -1 where none)."""
    h, w = solid.shape
    rows_any, cols_any = solid.any(1), solid.any(0)
    row_min = np.where(rows_any, solid.argmax(1), w)
    row_max = np.where(rows_any, w - 1 - solid[:, ::-1].argmax(1), -1)
    col_min = np.where(cols_any, solid.argmax(0), h)
    col_max = np.where(cols_any, h - 1 - solid[::-1].argmax(0), -1)
    return row_min, row_max, col_min, col_max


def _place(rng, shape, height, width, occupied, boxes):
    """Finds a spot for one object. Returns (x, y, coverage, box, truncated) or None after 30 tries.

    `box` is the 0-based inclusive [x0, y0, x1, y1] of the visible pixels covered at least half.
    """
    w, h = _object_size(rng, height, width)
    truncate = rng.random() < TRUNCATE_PROBABILITY and min(w, h) >= 20
    cover = np.asarray(coverage(rng, shape, w, h))
    solid = cover >= 128
    if not solid.any():
        return None
    row_min, row_max, col_min, col_max = _extents(solid)
    rows, cols = np.flatnonzero(row_max >= 0), np.flatnonzero(col_max >= 0)
    full = (cols[0], rows[0], cols[-1], rows[-1])  # local extent of the whole object
    for _ in range(30):
        x, y = _position(rng, w, h, height, width, truncate)
        # The image as a window [cx0, cx1) x [cy0, cy1) in local coordinates. An object is never wider
        # than the image, so at most one side per axis is cut and a row (column) reaches into the window
        # exactly when its extent does.
        cx0, cy0, cx1, cy1 = max(-x, 0), max(-y, 0), min(width - x, w), min(height - y, h)
        vis_rows = np.flatnonzero((row_max[cy0:cy1] >= cx0) & (row_min[cy0:cy1] < cx1))
        vis_cols = np.flatnonzero((col_max[cx0:cx1] >= cy0) & (col_min[cx0:cx1] < cy1))
        if vis_rows.size == 0 or vis_cols.size == 0:
            continue
        box = (int(x + cx0 + vis_cols[0]), int(y + cy0 + vis_rows[0]),
               int(x + cx0 + vis_cols[-1]), int(y + cy0 + vis_rows[-1]))
        truncated = full[0] < cx0 or full[1] < cy0 or full[2] >= cx1 or full[3] >= cy1
        touches = box[0] == 0 or box[1] == 0 or box[2] == width - 1 or box[3] == height - 1
        if touches != truncated or any(_iou(box, b) > MAX_BOX_IOU for b in boxes):
            continue
        if np.any(occupied[y + cy0:y + cy1, x + cx0:x + cx1] & (cover[cy0:cy1, cx0:cx1] > 0)):
            continue
        return x, y, cover, box, bool(truncated)
    return None


def paint_object(rng, image, noise, x, y, cover, hue):
    """Pastes one shaded, noisy, jittered object of colour family `hue` onto the PIL `image` at (x, y),
    blended by its anti-aliased coverage (clipped at the border by the paste)."""
    h, w = cover.shape
    colour = hsv(hue + rng.uniform(-HUE_JITTER, HUE_JITTER), rng.uniform(0.6, 0.95), rng.uniform(0.6, 0.95))
    # A linear light gradient across the object (Lambertian-looking), surface grain and pixel noise.
    angle, strength = rng.uniform(0, 2 * np.pi), rng.uniform(0.1, 0.3)
    scale = np.float32(strength / (max(w, h) / 2))
    gx = (np.arange(w, dtype=np.float32) - w / 2) * (scale * np.float32(np.cos(angle)))
    gy = (np.arange(h, dtype=np.float32) - h / 2) * (scale * np.float32(np.sin(angle)))
    oy, ox = rng.integers(0, noise.shape[0] - h + 1), rng.integers(0, noise.shape[1] - w + 1)
    grain = noise[oy:oy + h, ox:ox + w]
    shade = grain[..., 0] * np.float32(0.01) + (gy[:, None] + gx[None, :] + np.float32(1.0))
    pixels = shade[..., None] * colour
    pixels += grain
    np.clip(pixels + np.float32(0.5), 0, 255, out=pixels)
    image.paste(Image.fromarray(pixels.astype(np.uint8)), (x, y), Image.fromarray(cover))


def _grow(mask, r):
    """Binary dilation of a bool [h, w] mask by a (2r+1)-pixel square (separable max), same shape."""
    h, w = mask.shape
    padded = np.pad(mask, r)
    across = np.zeros((h + 2 * r, w), bool)
    for d in range(2 * r + 1):
        across |= padded[:, d:d + w]
    out = np.zeros((h, w), bool)
    for d in range(2 * r + 1):
        out |= across[d:d + h]
    return out


def _render(rng, height, width, class_names, tiles, noise):
    """One image: an RGB PIL image and its VOCObjects (1-based inclusive pixel boxes)."""
    tile = tiles[rng.integers(len(tiles))]
    oy, ox = int(rng.integers(0, tile.height - height + 1)), int(rng.integers(0, tile.width - width + 1))
    crop = tile.crop((ox, oy, ox + width, oy + height))
    for flip in (Image.FLIP_LEFT_RIGHT, Image.FLIP_TOP_BOTTOM):
        if rng.random() < 0.5:
            crop = crop.transpose(flip)
    # Lighting: a blend towards a random dull colour changes brightness, contrast and cast at once.
    haze = tuple(int(c) for c in hsv(rng.uniform(0, 360), rng.uniform(0, 0.15), rng.uniform(0, 1)))
    image = Image.blend(Image.new("RGB", (width, height), haze), crop, float(rng.uniform(0.7, 1.0)))
    occupied = np.zeros((height, width), bool)
    objects, boxes = [], []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        name = class_names[rng.integers(len(class_names))]
        shape, hue = CLASS_STYLES[name]
        placed = _place(rng, shape, height, width, occupied, boxes)
        if placed is None:
            continue
        x, y, cover, box, truncated = placed
        paint_object(rng, image, noise, x, y, cover, hue)
        grown = _grow(cover > 0, MASK_GAP)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + cover.shape[1], width), min(y + cover.shape[0], height)
        occupied[y0:y1, x0:x1] |= grown[y0 - y:y1 - y, x0 - x:x1 - x]
        boxes.append(box)
        difficult = max(box[2] - box[0] + 1, box[3] - box[1] + 1) < DIFFICULT_MAX_SIZE
        objects.append(VOCObject(name, box[0] + 1, box[1] + 1, box[2] + 1, box[3] + 1,
                                 difficult=int(difficult), truncated=int(truncated)))
    return image, tuple(objects)


# ---------------------------------------------------------------- the dataset

def _size_range(image_size):
    """(300, 300) -> ((300, 300), (300, 300)); ((h0, h1), (w0, w1)) kept. Heights first."""
    try:
        h, w = image_size
        rh = (int(h), int(h)) if np.isscalar(h) else (int(h[0]), int(h[1]))
        rw = (int(w), int(w)) if np.isscalar(w) else (int(w[0]), int(w[1]))
    except (TypeError, ValueError, IndexError):
        raise ConfigError(None, f"image_size must be (height, width) or ((hmin, hmax), (wmin, wmax)), "
                                f"got {image_size!r}") from None
    if min(rh[0], rw[0]) < 64 or rh[0] > rh[1] or rw[0] > rw[1]:
        raise ConfigError(None, f"image_size {image_size!r}: sides must be >= 64 and ranges ordered")
    return rh, rw


def generate_synthetic_voc(output_dir, num_train=800, num_test=200, image_size=(300, 300), seed=0,
                           class_names=SYNTHETIC_CLASSES, overwrite=False, names=None):
    """Writes a synthetic VOC-layout dataset into `output_dir` and returns a summary dict.

    image_size: (height, width), or ((hmin, hmax), (wmin, wmax)) to draw each image's size uniformly.
    class_names: names from CLASS_STYLES (the drawn shapes), in the label order written to labels.txt.
    names: the class names written to the XML files and labels.txt instead of the shape names, one per
      entry of class_names (for example Pascal VOC names, so that the set converts with VOC's labels).
    Train ids are 000001..num_train, test ids follow. An existing dataset in `output_dir` is an error
    unless `overwrite`; it is then replaced only once the new one is complete.
    """
    class_names = tuple(class_names)
    unknown = [c for c in class_names if c not in CLASS_STYLES]
    if not class_names or unknown or len(set(class_names)) != len(class_names):
        raise ConfigError(None, f"class_names must be distinct names from {tuple(CLASS_STYLES)}, "
                                f"got {class_names!r}")
    names = tuple(names) if names is not None else class_names
    if len(names) != len(class_names) or len(set(names)) != len(names) or not all(names):
        raise ConfigError(None, f"names must be {len(class_names)} distinct names, one per class, got {names!r}")
    written = dict(zip(class_names, names))
    if int(num_train) < 1 or int(num_test) < 0 or int(seed) < 0:
        raise ConfigError(None, "num_train must be >= 1, num_test >= 0 and seed >= 0")
    (h0, h1), (w0, w1) = _size_range(image_size)
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        raise ConfigError(output_dir, "exists and is not a directory")
    existing = [n for n in _LAYOUT if os.path.exists(os.path.join(output_dir, n))]
    if existing and not overwrite:
        raise ConfigError(output_dir, f"already holds {', '.join(existing)}; use overwrite to replace it")

    start = time.perf_counter()
    tiles, noise = texture_tiles(np.random.default_rng([seed, 0]), max(h1, w1))
    counts = {"train": dict.fromkeys(names, 0), "test": dict.fromkeys(names, 0)}
    truncated = difficult = 0
    with staging_dir(output_dir) as stage:
        for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
            os.makedirs(os.path.join(stage, sub))
        ids = {"train": [], "test": []}
        for split, code, number in (("train", 1, int(num_train)), ("test", 2, int(num_test))):
            for i in range(number):
                image_id = f"{len(ids['train']) + len(ids['test']) + 1:06d}"
                rng = np.random.default_rng([seed, code, i])
                height, width = int(rng.integers(h0, h1 + 1)), int(rng.integers(w0, w1 + 1))
                image, objects = _render(rng, height, width, class_names, tiles, noise)
                objects = tuple(dataclasses.replace(o, name=written[o.name]) for o in objects)
                # 4:4:4 chroma keeps colour edges where the boxes say they are.
                image.save(os.path.join(stage, "JPEGImages", image_id + ".jpg"), quality=JPEG_QUALITY,
                           subsampling=0)
                ann = VOCAnnotation(image_id + ".jpg", width, height, 3, objects)
                with open(os.path.join(stage, "Annotations", image_id + ".xml"), "w") as f:
                    f.write(voc_annotation_xml(ann, folder="SyntheticVOC"))
                ids[split].append(image_id)
                for obj in objects:
                    counts[split][obj.name] += 1
                    truncated += obj.truncated
                    difficult += obj.difficult
        lists = {"train": ids["train"], "trainval": ids["train"], "test": ids["test"]}
        for name, entries in lists.items():
            with open(os.path.join(stage, "ImageSets", "Main", name + ".txt"), "w") as f:
                f.write("".join(e + "\n" for e in entries))
        with open(os.path.join(stage, "labels.txt"), "w") as f:
            f.write("".join(c + "\n" for c in names))
        for name in existing:  # the new dataset is complete: only now let the old one go
            path = os.path.join(output_dir, name)
            shutil.rmtree(path) if os.path.isdir(path) else os.remove(path)
    seconds = time.perf_counter() - start
    total = int(num_train) + int(num_test)
    return {"output_dir": os.path.abspath(output_dir), "seed": int(seed), "classes": list(names),
            "num_train": int(num_train), "num_test": int(num_test),
            "objects": {split: dict(c) for split, c in counts.items()},
            "num_objects": sum(sum(c.values()) for c in counts.values()),
            "num_truncated": truncated, "num_difficult": difficult,
            "seconds": round(seconds, 3), "images_per_second": round(total / max(seconds, 1e-9), 1)}


def _parse_size(text):
    """'300,300' -> (300, 300); '240-400,260-400' -> ((240, 400), (260, 400)). Height first."""
    try:
        parts = [tuple(int(v) for v in side.split("-")) for side in text.split(",")]
        if len(parts) != 2 or any(len(p) not in (1, 2) for p in parts):
            raise ValueError
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W or HMIN-HMAX,WMIN-WMAX, got {text!r}") from None
    return tuple(p[0] if len(p) == 1 else p for p in parts)


def main(argv=None):
    parser = ArgumentParser(description="Generate the synthetic VOC-layout dataset.")
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--num_train", type=int, default=800)
    parser.add_argument("--num_test", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--image_size", type=_parse_size, default=(300, 300),
                        help="H,W or HMIN-HMAX,WMIN-WMAX (default 300,300)")
    parser.add_argument("--classes", default=",".join(SYNTHETIC_CLASSES),
                        help=f"comma-separated shapes from {','.join(CLASS_STYLES)}")
    parser.add_argument("--names", default=None,
                        help="comma-separated class names written instead of the shape names, one per --classes "
                             "entry (e.g. Pascal VOC names, to convert with VOC's labels)")
    parser.add_argument("--overwrite", action="store_true", help="replace a dataset already in --output_dir")
    args = parser.parse_args(argv)
    summary = generate_synthetic_voc(args.output_dir, args.num_train, args.num_test, args.image_size,
                                     args.seed, tuple(c for c in args.classes.split(",") if c),
                                     overwrite=args.overwrite,
                                     names=args.names.split(",") if args.names else None)
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    run_main(main, sys.argv[1:])
