"""The VOC reader, its checks and the sharded TFRecord writer (datasets/voc_to_tfrecords.py).

Records are read back with a TFRecord reader written in the test (voc_testdata.read_records) and parsed
with the tf.train.Example protobuf, so the writer is checked against the XML, not against our decoder.
"""
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from voc_testdata import BAD_CASES, SAMPLES, SPLITS, pixel_boxes, read_records, split_records, write_voc_dir
from common.errors import DatasetError
from datasets import tfrecord_writer, voc_to_tfrecords
from datasets.pixel_boxes import relative_to_voc
from datasets.voc_classes import VOC_CLASSES
from datasets.voc_xml import read_voc_annotation


@pytest.fixture
def voc_dir(tmp_path):
    return write_voc_dir(tmp_path / "VOC")


def _examples(output_dir, metadata):
    out = []
    for shard in metadata["shards"]:
        out.append([tf.train.Example.FromString(r) for r in read_records(os.path.join(output_dir, shard))])
    return out


def _feature(example, key):
    f = example.features.feature[key]
    return list(f.bytes_list.value or f.float_list.value or f.int64_list.value)


def _check_example(example, image_id, voc_dir, class_names=VOC_CLASSES):
    width, height, filename, fmt, mode, objects = SAMPLES[image_id]
    xml = read_voc_annotation(os.path.join(voc_dir, "Annotations", f"{image_id}.xml"))
    assert xml.objects == objects  # the XML says what SAMPLES says (absent flag tags read as 0)
    with open(os.path.join(voc_dir, "JPEGImages", filename), "rb") as f:
        assert _feature(example, "image/encoded") == [f.read()]  # the original bytes, not re-encoded
    assert _feature(example, "image/format") == [fmt.lower().encode()]
    assert _feature(example, "image/filename") == [image_id.encode()]
    assert _feature(example, "image/height") == [height]
    assert _feature(example, "image/width") == [width]
    assert _feature(example, "image/channels") == [1 if mode == "L" else 3]
    rel = np.stack([_feature(example, f"image/object/bbox/{k}") for k in ("ymin", "xmin", "ymax", "xmax")],
                   axis=-1).reshape(-1, 4)
    np.testing.assert_allclose(relative_to_voc(rel, height, width), pixel_boxes(image_id), atol=1e-3)
    assert _feature(example, "image/object/bbox/label") == [class_names.index(o.name) + 1 for o in objects]
    assert _feature(example, "image/object/bbox/label_text") == [o.name.encode() for o in objects]
    assert _feature(example, "image/object/bbox/difficult") == [o.difficult for o in objects]
    assert _feature(example, "image/object/bbox/truncated") == [o.truncated for o in objects]


def test_records_decode_to_the_xml_values(voc_dir, tmp_path):
    out = str(tmp_path / "records")
    metadata = voc_to_tfrecords.convert_voc(voc_dir, out, "all", samples_per_file=4, num_threads=2)
    ids = sorted(SAMPLES)  # no split: every annotation, sorted
    shards = _examples(out, metadata)
    assert [len(s) for s in shards] == [4, 2]
    for example, image_id in zip(shards[0] + shards[1], ids):
        _check_example(example, image_id, voc_dir)
    objects = [o for s in SAMPLES.values() for o in s[5]]
    assert metadata["num_examples"] == 6 and metadata["num_objects"] == len(objects) == 8
    assert metadata["num_difficult"] == 2 and metadata["num_truncated"] == 2
    assert metadata["objects_per_class"]["dog"] == 1 and metadata["objects_per_class"]["cow"] == 0
    assert metadata["class_names"] == list(VOC_CLASSES) and metadata["num_classes"] == 21
    assert metadata["shards"] == ["all_000.tfrecord", "all_001.tfrecord"]
    assert metadata["shard_sizes"] == [4, 2] and metadata["split"] is None and metadata["skipped"] == []
    assert metadata["source_dir"] == os.path.abspath(voc_dir)
    with open(os.path.join(out, "all_metadata.json")) as f:
        assert json.load(f) == metadata
    assert sorted(os.listdir(out)) == ["all_000.tfrecord", "all_001.tfrecord", "all_metadata.json"]
    assert not [n for n in os.listdir(tmp_path) if "staging" in n]


def test_split_order_and_shards_do_not_depend_on_threads(voc_dir, tmp_path):
    outputs = {}
    for threads in (1, 3):
        out = str(tmp_path / f"t{threads}")
        metadata = voc_to_tfrecords.convert_voc(voc_dir, out, "tv", split="trainval", samples_per_file=2,
                                                num_threads=threads)
        outputs[threads] = [open(os.path.join(out, s), "rb").read() for s in metadata["shards"]]
        assert metadata["split"] == "trainval" and metadata["shard_sizes"] == [2, 2, 2]
    assert outputs[1] == outputs[3]
    names = [tf.train.Example.FromString(r).features.feature["image/filename"].bytes_list.value[0].decode()
             for shard in outputs[1] for r in split_records(shard)]
    assert names == SPLITS["trainval"]


def test_labels_from_a_custom_class_list(voc_dir, tmp_path):
    classes = ("tvmonitor", "sofa", "person", "dog", "cat", "car", "bird", "chair")
    out = str(tmp_path / "custom")
    metadata = voc_to_tfrecords.convert_voc(voc_dir, out, "custom", split="val", class_names=classes)
    assert metadata["class_names"] == list(classes) and metadata["num_classes"] == 9
    for example, image_id in zip(_examples(out, metadata)[0], SPLITS["val"]):
        _check_example(example, image_id, voc_dir, classes)
    with pytest.raises(DatasetError, match="unknown class 'dog'"):
        voc_to_tfrecords.convert_voc(voc_dir, out, "custom", class_names=("person", "cat"))


def test_list_image_ids(voc_dir):
    path = os.path.join(voc_dir, "ImageSets", "Main", "odd.txt")
    with open(path, "w") as f:
        f.write("000004\n\n000001  -1\n  000002 1\n")  # per-class lists carry a second column
    assert voc_to_tfrecords.list_image_ids(voc_dir, "odd") == ["000004", "000001", "000002"]
    assert voc_to_tfrecords.list_image_ids(voc_dir) == sorted(SAMPLES)
    with open(path, "a") as f:
        f.write("000001\n")
    with pytest.raises(DatasetError, match="line 5: image id '000001' listed twice") as err:
        voc_to_tfrecords.list_image_ids(voc_dir, "odd")
    assert err.value.path == path
    with pytest.raises(DatasetError, match="cannot read split list") as err:
        voc_to_tfrecords.list_image_ids(voc_dir, "nope")
    assert err.value.path.endswith(os.path.join("ImageSets", "Main", "nope.txt"))


def test_read_labels_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("# my classes\n\nred car\n  bus  # a comment\nperson\n")
    assert voc_to_tfrecords.read_labels_file(path) == ("red car", "bus", "person")
    for text, reason in (("bus\ncar\nbus\n", "line 3: duplicate class name 'bus' \\(first on line 1\\)"),
                         ("background\nbus\n", "line 1: label 0 is the implicit background"),
                         ("# nothing\n\n", "no class names")):
        path.write_text(text)
        with pytest.raises(DatasetError, match=reason) as err:
            voc_to_tfrecords.read_labels_file(path)
        assert err.value.path == str(path)


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_strict_run_stops_at_the_bad_file_and_writes_nothing(case, tmp_path):
    voc_dir = write_voc_dir(tmp_path / "VOC")
    damage, bad_file, word = BAD_CASES[case]
    damage(voc_dir)
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as err:
        voc_to_tfrecords.convert_voc(voc_dir, str(out), "x", split="trainval", samples_per_file=1,
                                     num_threads=2)
    assert err.value.path == os.path.join(voc_dir, bad_file)
    assert word in err.value.reason
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["VOC"]  # no staging directory left behind


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_skip_invalid_converts_the_rest(case, tmp_path):
    voc_dir = write_voc_dir(tmp_path / "VOC")
    damage, bad_file, word = BAD_CASES[case]
    damage(voc_dir)
    out = str(tmp_path / "out")
    metadata = voc_to_tfrecords.convert_voc(voc_dir, out, "x", split="trainval", samples_per_file=4,
                                            skip_invalid=True, num_threads=2)
    [skipped] = metadata["skipped"]
    assert skipped["file"] == os.path.join(voc_dir, bad_file) and word in skipped["reason"]
    bad_id = os.path.splitext(os.path.basename(bad_file))[0]
    kept = [i for i in SPLITS["trainval"] if i != bad_id]
    examples = [e for shard in _examples(out, metadata) for e in shard]
    assert [_feature(e, "image/filename")[0].decode() for e in examples] == kept
    for example, image_id in zip(examples, kept):
        _check_example(example, image_id, voc_dir)
    assert metadata["num_examples"] == 5 and metadata["shard_sizes"] == [4, 1]


def test_strict_failure_keeps_an_earlier_output(voc_dir, tmp_path):
    out = str(tmp_path / "out")
    voc_to_tfrecords.convert_voc(voc_dir, out, "x", split="train")
    before = {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)}
    BAD_CASES["malformed_xml"][0](voc_dir)
    with pytest.raises(DatasetError):
        voc_to_tfrecords.convert_voc(voc_dir, out, "x", split="trainval", samples_per_file=1)
    assert {n: open(os.path.join(out, n), "rb").read() for n in os.listdir(out)} == before


def test_nothing_valid_is_an_error(voc_dir, tmp_path):
    for name in os.listdir(os.path.join(voc_dir, "JPEGImages")):
        os.remove(os.path.join(voc_dir, "JPEGImages", name))
    with pytest.raises(DatasetError, match="none of the 2 listed images is valid"):
        voc_to_tfrecords.convert_voc(voc_dir, str(tmp_path / "out"), "x", split="test", skip_invalid=True)
    assert not (tmp_path / "out").exists()


def test_rerun_replaces_the_shards_of_the_same_name(voc_dir, tmp_path):
    out = str(tmp_path / "out")
    voc_to_tfrecords.convert_voc(voc_dir, out, "x", samples_per_file=1)
    voc_to_tfrecords.convert_voc(voc_dir, out, "y", samples_per_file=1)
    metadata = voc_to_tfrecords.convert_voc(voc_dir, out, "x", samples_per_file=4)
    assert metadata["shards"] == ["x_000.tfrecord", "x_001.tfrecord"]
    left = sorted(os.listdir(out))
    assert [n for n in left if n.startswith("x_")] == ["x_000.tfrecord", "x_001.tfrecord", "x_metadata.json"]
    assert len([n for n in left if n.startswith("y_")]) == 7  # another output name is left alone


def _encoded(fmt, mode="RGB"):
    # With this seed and quality, Pillow 13 still loads the JPEG cut by 1 or 2 bytes (the missing EOI
    # marker is what gives it away), and the PNG cut inside its IEND chunk.
    rng = np.random.default_rng(0)
    image = Image.fromarray((rng.random((60, 80, 3)) * 255).astype(np.uint8)).convert(mode)
    buf = io.BytesIO()
    image.save(buf, fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return buf.getvalue()


@pytest.mark.parametrize("fmt,cuts", [("JPEG", (1, 2, 3, 50, 2000)), ("PNG", (1, 4, 8, 12, 13, 5000))])
def test_every_truncation_is_detected(fmt, cuts):
    data = _encoded(fmt)
    assert voc_to_tfrecords.inspect_image("a", data) == (fmt.lower(), 80, 60, 3)
    assert voc_to_tfrecords.inspect_image("a", data + b"\0" * 16)[0] == fmt.lower()  # padding after the end
    for cut in cuts:
        with pytest.raises(DatasetError, match="truncated") as err:
            voc_to_tfrecords.inspect_image("img", data[:-cut])
        assert err.value.path == "img"


def test_image_kinds():
    assert voc_to_tfrecords.inspect_image("g", _encoded("JPEG", "L"))[3] == 1
    assert voc_to_tfrecords.inspect_image("p", _encoded("PNG", "RGBA"))[3] == 4
    with pytest.raises(DatasetError, match="unsupported image format BMP"):
        voc_to_tfrecords.inspect_image("b", _encoded("BMP"))
    with pytest.raises(DatasetError, match="not a JPEG or PNG image"):
        voc_to_tfrecords.inspect_image("e", b"")


@pytest.mark.parametrize("orientation,annotated,hinted", [
    (6, (60, 80), True), (8, (60, 80), True), (None, (60, 80), False),  # no EXIF: nothing to say
    (3, (60, 80), False),   # half a turn keeps the sides: this cannot be why the sizes differ
    (6, (80, 61), False)])  # not the turned size either
def test_a_size_mismatch_names_an_exif_turn_only_where_it_explains_it(orientation, annotated, hinted):
    """The image is stored 80x60; the annotation says `annotated` (width, height)."""
    image = Image.fromarray(np.zeros((60, 80, 3), np.uint8))
    buf = io.BytesIO()
    exif = Image.Exif()
    if orientation:
        exif[0x0112] = orientation
    image.save(buf, "JPEG", exif=exif.tobytes())
    hint = tfrecord_writer.turned_by_exif_hint(buf.getvalue(), 80, 60, *annotated)
    assert (f"EXIF orientation ({orientation}) turns it to 60x80" in hint) if hinted else hint == ""


def test_filename_of_the_xml_is_used_when_present(voc_dir):
    sample = voc_to_tfrecords.load_sample(voc_dir, "000005", VOC_CLASSES)
    assert sample.image_path == os.path.join(voc_dir, "JPEGImages", "img_five.jpg")
    os.remove(sample.image_path)
    with pytest.raises(DatasetError, match="missing image file \\(nor .*img_five.jpg") as err:
        voc_to_tfrecords.load_sample(voc_dir, "000005", VOC_CLASSES)
    assert err.value.path == os.path.join(voc_dir, "JPEGImages", "000005.jpg")


def test_arguments_are_checked(voc_dir, tmp_path):
    for kwargs in ({"samples_per_file": 0}, {"num_threads": 0}, {"class_names": ("a", "a")}):
        with pytest.raises(ValueError):
            voc_to_tfrecords.convert_voc(voc_dir, str(tmp_path / "o"), "x", **kwargs)
    with pytest.raises(ValueError, match="plain file name"):
        voc_to_tfrecords.convert_voc(voc_dir, str(tmp_path / "o"), "a/b")
    with pytest.raises(DatasetError, match="does not exist"):
        voc_to_tfrecords.convert_voc(str(tmp_path / "none"), str(tmp_path / "o"), "x")
