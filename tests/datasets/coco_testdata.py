"""Test data for the COCO converter: a small COCO-format split with the quirks of the real files, and
the bad-input cases of the issue.

COCO is the truth: the JSON is written from it, and the tests compare the records with it. It has
non-contiguous category ids listed out of id order, non-contiguous image ids, an image without
annotations, crowd objects, float boxes (one touching the border, one up to a pixel outside),
annotations listed out of image order, a grayscale JPEG and a PNG, and segmentations (dropped).
"""
import copy
import json
import os

from voc_testdata import image_bytes, turned_by_exif

CATEGORIES = [
    {"id": 18, "name": "dog", "supercategory": "animal"},
    {"id": 1, "name": "person", "supercategory": "person"},
    {"id": 90, "name": "toothbrush", "supercategory": "indoor"},
    {"id": 3, "name": "car", "supercategory": "vehicle"},
]
# (id, file_name, width, height, Pillow format, mode)
IMAGES = [
    (397133, "000000397133.jpg", 64, 48, "JPEG", "RGB"),
    (42, "000000000042.jpg", 50, 40, "JPEG", "L"),
    (7, "000000000007.png", 30, 20, "PNG", "RGB"),
    (1000001, "000001000001.jpg", 40, 30, "JPEG", "RGB"),   # no annotations
]
# (annotation id, image id, category id, [x, y, w, h], iscrowd, area)
ANNOTATIONS = [
    (5, 42, 3, [3.25, 4.5, 20.12, 10.01], 0, 150.5),
    (11, 397133, 18, [10.0, 5.0, 30.0, 25.0], 0, 600.0),
    (12, 397133, 1, [0.0, 0.0, 64.0, 48.0], 1, 2500.25),     # crowd, the whole image
    (13, 397133, 1, [40.73, 20.11, 23.27, 27.89], 0, 400.0),  # touching the right and bottom edges
    (900, 7, 90, [-0.5, 2.33, 12.4, 18.17], 0, 100.0),         # half a pixel outside on the left
    (14, 397133, 18, [1.5, 30.25, 5.5, 3.75], 0, 15.0),
    (6, 42, 3, [30.0, 20.0, 20.5, 20.5], 1, 300.0),            # crowd, half a pixel outside bottom-right
]


def coco_json(images=IMAGES, annotations=ANNOTATIONS, categories=CATEGORIES):
    return {
        "info": {"description": "test"}, "licenses": [],
        "images": [{"id": i, "file_name": f, "width": w, "height": h, "license": 1} for i, f, w, h, _, _ in images],
        "annotations": [{"id": a, "image_id": i, "category_id": c, "bbox": list(b), "iscrowd": z, "area": ar,
                         "segmentation": ({"counts": [0, 5], "size": [10, 10]} if z else [[1.0, 2.0, 3.0, 4.0]])}
                        for a, i, c, b, z, ar in annotations],
        "categories": copy.deepcopy(categories),
    }


def write_coco(root, data=None, images=IMAGES):
    """Writes `root`/annotations.json and `root`/images/; returns (annotations path, images dir)."""
    root = str(root)
    images_dir = os.path.join(root, "images")
    os.makedirs(images_dir, exist_ok=True)
    for seed, (_, file_name, width, height, fmt, mode) in enumerate(images):
        with open(os.path.join(images_dir, file_name), "wb") as f:
            f.write(image_bytes(width, height, fmt, mode, seed))
    path = os.path.join(root, "annotations.json")
    with open(path, "w") as f:
        json.dump(coco_json() if data is None else data, f)
    return path, images_dir


def _edited(edit):
    def apply(path, images_dir):
        with open(path) as f:
            data = json.load(f)
        edit(data)
        with open(path, "w") as f:
            json.dump(data, f)
    return apply


def _annotation(ann_id, **changes):
    def edit(data):
        ann = next(a for a in data["annotations"] if a["id"] == ann_id)
        ann.update(changes)
    return _edited(edit)


def _cut(name, keep):
    def apply(path, images_dir):
        file = os.path.join(images_dir, name)
        with open(file, "rb") as f:
            data = f.read()
        with open(file, "wb") as f:
            f.write(data[:keep])
    return apply


def _malformed(path, images_dir):
    with open(path) as f:
        text = f.read()
    with open(path, "w") as f:
        f.write(text[:-40])


def _duplicate_image(data):
    data["images"].append(dict(data["images"][1]))


def _resized(data):
    data["images"][1]["height"] = 41


# name -> (edit(annotations path, images dir), what the error names, words of the reason, what
# --skip_invalid leaves out: "annotation <id>" or "image <id>" entries, None when the run cannot continue)
BAD_CASES = {
    "malformed_json": (_malformed, "annotations.json", "malformed JSON", None),
    "missing_image": (lambda p, d: os.remove(os.path.join(d, "000000000042.jpg")),
                      "images/000000000042.jpg", "missing image", ["image 42"]),
    "truncated_image": (_cut("000000397133.jpg", 400), "images/000000397133.jpg", "", ["image 397133"]),
    "not_an_image": (lambda p, d: open(os.path.join(d, "000000000007.png"), "wb").write(b"GIF89a junk"),
                     "images/000000000007.png", "not a JPEG or PNG", ["image 7"]),
    "unknown_image_id": (_annotation(13, image_id=55), "annotation 13", "unknown image id 55", ["annotation 13"]),
    "unknown_category_id": (_annotation(5, category_id=2), "annotation 5", "unknown category id 2",
                            ["annotation 5"]),
    "zero_width_box": (_annotation(14, bbox=[1.5, 30.25, 0.0, 3.75]), "annotation 14", "non-positive size",
                       ["annotation 14"]),
    "negative_height_box": (_annotation(900, bbox=[1.0, 2.0, 3.0, -1.0]), "annotation 900", "non-positive size",
                            ["annotation 900"]),
    "box_outside": (_annotation(11, bbox=[10.0, 5.0, 55.5, 25.0]), "annotation 11", "outside image 397133",
                    ["annotation 11"]),
    "box_above": (_annotation(6, bbox=[1.0, -1.25, 5.0, 5.0]), "annotation 6", "outside image 42",
                  ["annotation 6"]),
    "duplicate_image_id": (_edited(_duplicate_image), "annotations.json", "image id 42 listed 2 times",
                           ["image 42"]),
    "size_mismatch": (_edited(_resized), "images/000000000042.jpg", "says 50x41", ["image 42"]),
    "turned_by_exif": (lambda p, d: turned_by_exif(os.path.join(d, "000000000042.jpg")), "images/000000000042.jpg",
                       "EXIF orientation (6) turns it to 50x40", ["image 42"]),
    "bad_bbox": (_annotation(12, bbox=[0, 0, "wide", 3]), "annotation 12", "bbox is not 4 finite numbers",
                 ["annotation 12"]),
    "no_categories": (_edited(lambda d: d.pop("categories")), "annotations.json", "no 'categories' list", None),
}
