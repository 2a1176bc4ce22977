"""The synthetic VOC dataset: layout, boxes checked against the decoded pixels, flags, determinism, atomicity.

Box tightness is checked independently of the generator: the JPEG is decoded and converted to HSV by
Pillow, and the pixels of each class's colour family (the specification written out in HUES below) must
lie inside that class's boxes and reach every side of each box.
"""
import collections
import filecmp
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from common.errors import ConfigError
from datasets import synthetic_voc
from datasets.synthetic_voc import SYNTHETIC_CLASSES, generate_synthetic_voc
from datasets.voc_xml import read_voc_annotation

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# The specification: each class's colour family, as a hue in degrees.
HUES = {"ellipse": 0, "cross": 55, "triangle": 125, "rectangle": 220, "star": 295}
NUM_TRAIN, NUM_TEST, SEED = 120, 40, 7


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = str(tmp_path_factory.mktemp("synthetic") / "voc")
    summary = generate_synthetic_voc(out, num_train=NUM_TRAIN, num_test=NUM_TEST, seed=SEED)
    return out, summary


def _ids(root, split):
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt")) as f:
        return f.read().split()


def _annotations(root):
    return {i: read_voc_annotation(os.path.join(root, "Annotations", i + ".xml"))
            for i in _ids(root, "train") + _ids(root, "test")}


def _objects(root):
    return [o for a in _annotations(root).values() for o in a.objects]


def _files(root):
    return sorted(os.path.relpath(os.path.join(d, f), root) for d, _, fs in os.walk(root) for f in fs)


def test_voc_layout(dataset):
    root, summary = dataset
    train, test = _ids(root, "train"), _ids(root, "test")
    assert len(train) == NUM_TRAIN and len(test) == NUM_TEST
    assert _ids(root, "trainval") == train
    assert not set(train) & set(test)
    assert all(len(i) == 6 and i.isdigit() for i in train + test)
    with open(os.path.join(root, "labels.txt")) as f:
        assert f.read().splitlines() == list(SYNTHETIC_CLASSES)
    expected = {os.path.join("Annotations", i + ".xml") for i in train + test}
    expected |= {os.path.join("JPEGImages", i + ".jpg") for i in train + test}
    expected |= {os.path.join("ImageSets", "Main", s + ".txt") for s in ("train", "trainval", "test")}
    assert set(_files(root)) == expected | {"labels.txt"}
    for image_id, ann in _annotations(root).items():
        with Image.open(os.path.join(root, "JPEGImages", image_id + ".jpg")) as im:
            assert im.format == "JPEG" and im.mode == "RGB"
            assert (ann.width, ann.height) == im.size == (300, 300)
        assert ann.filename == image_id + ".jpg" and ann.depth == 3
    assert summary["num_objects"] == len(_objects(root))
    assert sum(summary["objects"]["train"].values()) + sum(summary["objects"]["test"].values()) \
        == summary["num_objects"]


def test_boxes_are_integer_pixels_inside_the_image(dataset):
    root, _ = dataset
    for ann in _annotations(root).values():
        assert 1 <= len(ann.objects) <= 4
        for o in ann.objects:
            assert all(float(v).is_integer() for v in (o.xmin, o.ymin, o.xmax, o.ymax))
            assert 1 <= o.xmin <= o.xmax <= ann.width and 1 <= o.ymin <= o.ymax <= ann.height
            assert o.name in SYNTHETIC_CLASSES


def _class_pixels(path):
    """{class: [H, W] bool} pixels of strong colour within 20 degrees of the class's hue."""
    hsv = np.asarray(Image.open(path).convert("HSV"), dtype=np.float32)
    hue, sat, val = hsv[..., 0] * 360.0 / 256.0, hsv[..., 1] / 255.0, hsv[..., 2] / 255.0
    strong = (sat > 0.45) & (val > 0.35)
    return {name: strong & (np.abs((hue - h + 180) % 360 - 180) < 20) for name, h in HUES.items()}


def test_boxes_are_tight_around_the_objects_colour(dataset):
    root, _ = dataset
    gaps = []
    for image_id, ann in _annotations(root).items():
        pixels = _class_pixels(os.path.join(root, "JPEGImages", image_id + ".jpg"))
        for name, mask in pixels.items():
            # Every pixel of the colour is inside a box of its class (2 px slack for JPEG and anti-aliasing):
            # no object is left out and no box is too small. A few stray pixels from noise are tolerated.
            allowed = np.zeros_like(mask)
            for o in ann.objects:
                if o.name == name:
                    allowed[max(int(o.ymin) - 3, 0):int(o.ymax) + 2, max(int(o.xmin) - 3, 0):int(o.xmax) + 2] = True
            assert (mask & ~allowed).sum() <= 12, (image_id, name)
        for o in ann.objects:
            if o.difficult:
                continue
            inside = pixels[o.name][int(o.ymin) - 1:int(o.ymax), int(o.xmin) - 1:int(o.xmax)]
            rows, cols = np.flatnonzero(inside.any(1)), np.flatnonzero(inside.any(0))
            assert rows.size, (image_id, o)
            # The colour reaches every side of the box: the box is no larger than the object.
            side_gaps = [cols[0], rows[0], inside.shape[1] - 1 - cols[-1], inside.shape[0] - 1 - rows[-1]]
            assert max(side_gaps) <= 4, (image_id, o, side_gaps)
            gaps += side_gaps
    assert np.mean(gaps) <= 1.0


def test_truncated_objects_touch_the_border_and_others_do_not(dataset):
    root, _ = dataset
    anns = _annotations(root)
    for ann in anns.values():
        for o in ann.objects:
            touches = o.xmin == 1 or o.ymin == 1 or o.xmax == ann.width or o.ymax == ann.height
            assert touches == bool(o.truncated), o
    objects = _objects(root)
    assert 0.08 <= np.mean([o.truncated for o in objects]) <= 0.35


def test_difficult_objects_are_the_tiny_ones(dataset):
    root, _ = dataset
    objects = _objects(root)
    for o in objects:
        longer = max(o.xmax - o.xmin + 1, o.ymax - o.ymin + 1)
        assert bool(o.difficult) == (longer < 16), o
    assert 0.02 <= np.mean([o.difficult for o in objects]) <= 0.2


def test_sizes_and_aspect_ratios_cover_the_anchors(dataset):
    root, _ = dataset
    objects = [o for o in _objects(root) if not o.difficult]
    w = np.array([o.xmax - o.xmin + 1 for o in objects], dtype=np.float64)
    h = np.array([o.ymax - o.ymin + 1 for o in objects], dtype=np.float64)
    scale = np.sqrt(w * h) / 300.0
    assert np.mean(scale >= 0.1) >= 0.85
    assert scale.max() <= 0.75 and np.mean(scale >= 0.4) >= 0.1
    whole = np.array([not o.truncated for o in objects])
    ratio = (w / h)[whole]
    assert ratio.min() >= 0.4 and ratio.max() <= 2.5
    assert np.mean(ratio < 0.75) >= 0.1 and np.mean(ratio > 1.33) >= 0.1


def test_classes_are_balanced(dataset):
    root, summary = dataset
    counts = collections.Counter(o.name for o in _objects(root))
    mean = sum(counts.values()) / len(SYNTHETIC_CLASSES)
    for name in SYNTHETIC_CLASSES:
        assert 0.6 * mean <= counts[name] <= 1.4 * mean, counts
        assert summary["objects"]["test"][name] > 0
    assert dict(counts) == {n: summary["objects"]["train"][n] + summary["objects"]["test"][n]
                            for n in SYNTHETIC_CLASSES}


def test_backgrounds_are_textured(dataset):
    root, _ = dataset
    for image_id, ann in list(_annotations(root).items())[:40]:
        grey = np.asarray(Image.open(os.path.join(root, "JPEGImages", image_id + ".jpg")).convert("L"),
                          dtype=np.float64)
        free = np.ones(grey.shape, bool)
        for o in ann.objects:
            free[int(o.ymin) - 1:int(o.ymax), int(o.xmin) - 1:int(o.xmax)] = False
        assert grey[free].std() >= 4.0, image_id
        # Structure beyond pixel noise: 10x10 block means still vary where no object is.
        blocks = grey.reshape(30, 10, 30, 10).mean(axis=(1, 3))
        free_blocks = free.reshape(30, 10, 30, 10).all(axis=(1, 3))
        if free_blocks.sum() >= 20:
            assert blocks[free_blocks].std() >= 2.0, image_id


def test_same_seed_same_bytes_and_image_i_depends_only_on_its_index(dataset, tmp_path):
    root, _ = dataset
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    generate_synthetic_voc(a, num_train=6, num_test=3, seed=SEED)
    generate_synthetic_voc(b, num_train=6, num_test=3, seed=SEED)
    assert _files(a) == _files(b)
    match, mismatch, errors = filecmp.cmpfiles(a, b, _files(a), shallow=False)
    assert not mismatch and not errors
    # Train image i is the same whatever the size of the splits.
    for i in range(1, 7):
        name = os.path.join("JPEGImages", f"{i:06d}.jpg")
        assert filecmp.cmp(os.path.join(a, name), os.path.join(root, name), shallow=False)
    c = str(tmp_path / "c")
    generate_synthetic_voc(c, num_train=6, num_test=3, seed=SEED + 1)
    for i in range(1, 10):
        name = os.path.join("JPEGImages", f"{i:06d}.jpg")
        assert not filecmp.cmp(os.path.join(a, name), os.path.join(c, name), shallow=False)


def test_image_size_range(tmp_path):
    out = str(tmp_path / "voc")
    generate_synthetic_voc(out, num_train=10, num_test=2, image_size=((200, 320), (240, 360)), seed=1,
                           class_names=("star", "ellipse"))
    sizes = set()
    for image_id, ann in _annotations(out).items():
        with Image.open(os.path.join(out, "JPEGImages", image_id + ".jpg")) as im:
            assert im.size == (ann.width, ann.height)
        assert 200 <= ann.height <= 320 and 240 <= ann.width <= 360
        assert all(o.name in ("star", "ellipse") and o.xmax <= ann.width and o.ymax <= ann.height
                   for o in ann.objects)
        sizes.add(im.size)
    assert len(sizes) >= 5
    with open(os.path.join(out, "labels.txt")) as f:
        assert f.read() == "star\nellipse\n"


def test_names_rename_the_classes_and_nothing_else(tmp_path):
    """names= writes other class names (e.g. Pascal VOC's) for the same drawings and boxes."""
    shapes, names = ("hexagon", "star", "ellipse"), ("dog", "cat", "bird")
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    generate_synthetic_voc(a, num_train=8, num_test=2, image_size=(160, 200), seed=3, class_names=shapes)
    summary = generate_synthetic_voc(b, num_train=8, num_test=2, image_size=(160, 200), seed=3,
                                     class_names=shapes, names=names)
    assert summary["classes"] == list(names) and set(summary["objects"]["train"]) == set(names)
    rename = dict(zip(shapes, names))
    seen = set()
    for (ia, ann_a), (ib, ann_b) in zip(sorted(_annotations(a).items()), sorted(_annotations(b).items())):
        assert ia == ib and filecmp.cmp(os.path.join(a, "JPEGImages", ia + ".jpg"),
                                        os.path.join(b, "JPEGImages", ib + ".jpg"), shallow=False)
        assert [rename[o.name] for o in ann_a.objects] == [o.name for o in ann_b.objects]
        assert [(o.xmin, o.ymin, o.xmax, o.ymax, o.difficult) for o in ann_a.objects] == \
            [(o.xmin, o.ymin, o.xmax, o.ymax, o.difficult) for o in ann_b.objects]
        seen.update(o.name for o in ann_a.objects)
    assert "hexagon" in seen
    with open(os.path.join(b, "labels.txt")) as f:
        assert f.read() == "dog\ncat\nbird\n"
    for bad in (("dog", "cat"), ("dog", "dog", "cat")):
        with pytest.raises(ConfigError, match="names must be 3 distinct names"):
            generate_synthetic_voc(str(tmp_path / "c"), num_train=2, num_test=1, class_names=shapes, names=bad)


def test_interrupted_run_leaves_nothing(tmp_path, monkeypatch):
    out = str(tmp_path / "voc")
    calls = []

    def failing(annotation, folder="VOC"):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return "<annotation/>\n"

    monkeypatch.setattr(synthetic_voc, "voc_annotation_xml", failing)
    with pytest.raises(KeyboardInterrupt):
        generate_synthetic_voc(out, num_train=6, num_test=2)
    assert not os.path.exists(out) or not os.listdir(out)
    assert os.listdir(tmp_path) in ([], ["voc"])  # no staging directory left behind


def test_existing_dataset_is_kept_unless_overwrite(tmp_path, monkeypatch):
    out = str(tmp_path / "voc")
    generate_synthetic_voc(out, num_train=3, num_test=1, seed=0)
    before = {f: open(os.path.join(out, f), "rb").read() for f in _files(out)}
    with pytest.raises(ConfigError, match="already holds"):
        generate_synthetic_voc(out, num_train=3, num_test=1, seed=5)
    # A failing overwrite keeps the old dataset whole.
    monkeypatch.setattr(synthetic_voc, "voc_annotation_xml", lambda *a, **k: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        generate_synthetic_voc(out, num_train=3, num_test=1, seed=5, overwrite=True)
    assert {f: open(os.path.join(out, f), "rb").read() for f in _files(out)} == before
    monkeypatch.undo()
    generate_synthetic_voc(out, num_train=2, num_test=2, seed=5, overwrite=True)
    assert _ids(out, "train") == ["000001", "000002"] and _ids(out, "test") == ["000003", "000004"]
    assert len(_files(out)) == 4 * 2 + 4 and os.listdir(tmp_path) == ["voc"]


@pytest.mark.parametrize("kwargs", [dict(class_names=("ellipse", "blob")), dict(class_names=()),
                                    dict(num_train=0), dict(image_size=(40, 300)),
                                    dict(image_size=((300, 200), 300))])
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ConfigError):
        generate_synthetic_voc(str(tmp_path / "voc"), **{"num_train": 2, "num_test": 1, **kwargs})
    assert not os.path.exists(tmp_path / "voc")


def test_command_line(tmp_path):
    out = str(tmp_path / "voc")
    cmd = [sys.executable, "-m", "datasets.synthetic_voc", f"--output_dir={out}", "--num_train=3",
           "--num_test=2", "--seed=4", "--image_size=200-260,300"]
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["num_train"] == 3 and summary["num_test"] == 2 and summary["seed"] == 4
    assert len(_ids(out, "train")) == 3 and all(a.width == 300 and 200 <= a.height <= 260
                                                 for a in _annotations(out).values())
    bad = subprocess.run(cmd[:3] + [f"--output_dir={tmp_path / 'x'}", "--classes=ellipse,blob"],
                         cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 1 and bad.stderr.startswith("error:") and len(bad.stderr.splitlines()) == 1
    assert not os.path.exists(tmp_path / "x")
    # argparse's own complaints end the same way: one line and status 1, not its usage text and status 2.
    for flag in ("--num_train=many", "--image_size=300", "--no_such_flag=1"):
        bad = subprocess.run(cmd[:3] + [f"--output_dir={tmp_path / 'x'}", flag],
                             cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert bad.returncode == 1 and bad.stderr.startswith("error:"), (flag, bad.stderr)
        assert len(bad.stderr.splitlines()) == 1, (flag, bad.stderr)
        assert not os.path.exists(tmp_path / "x")
