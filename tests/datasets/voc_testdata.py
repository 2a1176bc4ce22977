"""Test data for tests/datasets: a small VOC-layout folder, and the bad-input cases of INTERFACES.md.

SAMPLES is the truth: the XML files are written from it, and the tests compare decoded records with it.
"""
import io
import os
import re
import struct

import numpy as np
from PIL import Image, ImageOps

from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml

# id -> (width, height, file name in JPEGImages, Pillow format, Pillow mode, objects)
SAMPLES = {
    "000001": (64, 48, "000001.jpg", "JPEG", "RGB", (
        VOCObject("dog", 10, 5, 40, 30),
        VOCObject("person", 1, 1, 64, 48, difficult=1),          # the whole image
        VOCObject("cat", 12.5, 7.25, 30.75, 20))),                # fractional, as a few VOC2012 boxes
    "000002": (50, 40, "000002.jpg", "JPEG", "RGB", (
        VOCObject("car", 3, 4, 3, 4, truncated=1),                # a legal one-pixel box
        VOCObject("bird", 20, 10, 50, 40))),                      # touching the right and bottom edges
    "000003": (40, 30, "000003.jpg", "JPEG", "RGB", ()),          # no objects
    "000004": (45, 35, "000004.jpg", "JPEG", "L", (               # grayscale JPEG
        VOCObject("chair", 5, 6, 20, 30, difficult=1, truncated=1),)),
    "000005": (48, 36, "img_five.jpg", "JPEG", "RGB", (           # <filename> differs from the id;
        VOCObject("tvmonitor", 2, 3, 47, 35),)),                  # its XML has no difficult/truncated tags
    "000006": (30, 20, "000006.png", "PNG", "RGB", (
        VOCObject("sofa", 1, 1, 30, 20),)),
}
SPLITS = {
    "train": ["000001", "000003", "000005"],
    "val": ["000002", "000004", "000006"],
    "trainval": ["000001", "000003", "000005", "000002", "000004", "000006"],
    "test": ["000006", "000002"],
}
NO_FLAG_TAGS = {"000005"}


def image_bytes(width, height, fmt="JPEG", mode="RGB", seed=0):
    """A smooth random image (so that JPEG keeps it recognisable) encoded by Pillow."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, size=(height // 4 + 2, width // 4 + 2, 3), dtype=np.uint8)
    image = Image.fromarray(coarse).resize((width, height), Image.BILINEAR).convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


def write_voc_dir(root, samples=SAMPLES, splits=SPLITS, no_flag_tags=NO_FLAG_TAGS):
    """Writes Annotations/, JPEGImages/ and ImageSets/Main/ under `root`; returns `root` as a string."""
    root = str(root)
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for seed, (image_id, (width, height, filename, fmt, mode, objects)) in enumerate(samples.items()):
        with open(os.path.join(root, "JPEGImages", filename), "wb") as f:
            f.write(image_bytes(width, height, fmt, mode, seed))
        xml = voc_annotation_xml(VOCAnnotation(filename, width, height, 3, objects))
        if image_id in no_flag_tags:
            xml = re.sub(r"\s*<(difficult|truncated)>\d</\1>", "", xml)
        with open(os.path.join(root, "Annotations", f"{image_id}.xml"), "w") as f:
            f.write(xml)
    for split, ids in splits.items():
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in ids))
    return root


def _edit(path, old, new):
    with open(path) as f:
        text = f.read()
    assert old in text, (old, path)
    with open(path, "w") as f:
        f.write(text.replace(old, new, 1))


def _cut(path, keep):
    """Keeps the first `keep` bytes of a file (`keep` < 0: all but the last -keep)."""
    with open(path, "rb") as f:
        data = f.read()
    with open(path, "wb") as f:
        f.write(data[:keep])


def turned_by_exif(path):
    """Re-saves a JPEG as cameras store a photo taken turned: the pixels a quarter turn counterclockwise
    (sides swapped), and EXIF orientation 6 telling viewers to turn them back clockwise to the picture as it was."""
    with Image.open(path) as image:
        image.load()
        picture = image.copy()
    exif = Image.Exif()
    exif[0x0112] = 6
    picture.transpose(Image.Transpose.ROTATE_90).save(path, "JPEG", quality=95, exif=exif.tobytes())
    with Image.open(path) as stored:  # what viewers show: the picture again, at its own size
        assert stored.size == picture.size[::-1] and ImageOps.exif_transpose(stored).size == picture.size


# case -> (damage(voc_dir), the file the error must name (relative to voc_dir), a word of the reason).
# Each damages image 000002, which is listed after valid images (so shards were already being written).
BAD_CASES = {
    "truncated_jpeg": (lambda d: _cut(f"{d}/JPEGImages/000002.jpg", -150),
                       "JPEGImages/000002.jpg", "truncated"),
    "truncated_jpeg_end_marker": (lambda d: _cut(f"{d}/JPEGImages/000002.jpg", -2),
                                  "JPEGImages/000002.jpg", "truncated"),
    "truncated_png": (lambda d: _cut(f"{d}/JPEGImages/000006.png", -5),
                      "JPEGImages/000006.png", "truncated"),
    "not_an_image": (lambda d: open(f"{d}/JPEGImages/000002.jpg", "wb").write(b"<html>oops</html>"),
                     "JPEGImages/000002.jpg", "not a JPEG"),
    "malformed_xml": (lambda d: _edit(f"{d}/Annotations/000002.xml", "</annotation>", ""),
                      "Annotations/000002.xml", "malformed XML"),
    "unknown_class": (lambda d: _edit(f"{d}/Annotations/000002.xml", "<name>bird<", "<name>spaceship<"),
                      "Annotations/000002.xml", "unknown class 'spaceship'"),
    "xmin_greater_than_xmax": (lambda d: _edit(f"{d}/Annotations/000002.xml", "<xmin>20<", "<xmin>21<")
                               or _edit(f"{d}/Annotations/000002.xml", "<xmax>50<", "<xmax>20<"),
                               "Annotations/000002.xml", "invalid box"),
    "box_outside_image": (lambda d: _edit(f"{d}/Annotations/000002.xml", "<ymax>40<", "<ymax>41<"),
                          "Annotations/000002.xml", "invalid box"),
    "box_at_zero": (lambda d: _edit(f"{d}/Annotations/000002.xml", "<xmin>3<", "<xmin>0<"),
                    "Annotations/000002.xml", "invalid box"),
    "size_mismatch": (lambda d: _edit(f"{d}/Annotations/000002.xml", "<height>40<", "<height>41<")
                      or _edit(f"{d}/Annotations/000002.xml", "<ymax>40<", "<ymax>41<"),
                      "Annotations/000002.xml", "<size> is 50x41"),
    # Boxes drawn on the picture as viewers show it: the hint says so.
    "turned_by_exif": (lambda d: turned_by_exif(f"{d}/JPEGImages/000002.jpg"),
                       "Annotations/000002.xml", "EXIF orientation (6) turns it to 50x40"),
    "missing_image": (lambda d: os.remove(f"{d}/JPEGImages/000002.jpg"),
                      "JPEGImages/000002.jpg", "missing image"),
    "missing_annotation": (lambda d: os.remove(f"{d}/Annotations/000002.xml"),
                           "Annotations/000002.xml", "missing annotation"),
}


def split_records(data):
    """The serialized records of TFRecord file contents, split with the format written out here, not
    with TF: uint64 length, uint32 masked CRC of the length, the data, uint32 masked CRC of the data."""
    records, pos = [], 0
    while pos < len(data):
        (length,) = struct.unpack("<Q", data[pos:pos + 8])
        records.append(data[pos + 12:pos + 12 + length])
        pos += 12 + length + 4
    assert pos == len(data)
    return records


def read_records(path):
    with open(path, "rb") as f:
        return split_records(f.read())


def pixel_boxes(image_id):
    """[G, 4] float64 VOC pixel boxes [xmin, ymin, xmax, ymax] of a sample, as written in its XML."""
    objects = SAMPLES[image_id][5]
    return np.array([[o.xmin, o.ymin, o.xmax, o.ymax] for o in objects], np.float64).reshape(-1, 4)
