"""The COCO converter (datasets/coco_to_tfrecords.py) and tf_convert_data.py --dataset_name=coco.

Records are split with the TFRecord format written out in voc_testdata and parsed with the Example
protobuf; every field is compared with the JSON the test wrote (coco_testdata), not with our decoder.
"""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from coco_testdata import ANNOTATIONS, BAD_CASES, CATEGORIES, IMAGES, write_coco
from voc_testdata import read_records
import tf_convert_data
from common.errors import DatasetError, run_main
from datasets import coco_to_tfrecords, dataset_factory


def _examples(output_dir, metadata):
    return [tf.train.Example.FromString(r) for shard in metadata["shards"]
            for r in read_records(os.path.join(output_dir, shard))]


def _feature(example, key):
    f = example.features.feature[key]
    return list(f.bytes_list.value or f.float_list.value or f.int64_list.value)


def _check_records(examples, images_dir, images=IMAGES, annotations=ANNOTATIONS):
    """Each record equals its JSON image and annotations, field by field; returns the image ids."""
    label = {c["id"]: i + 1 for i, c in enumerate(CATEGORIES)}
    name = {c["id"]: c["name"] for c in CATEGORIES}
    by_id = {i[0]: i for i in images}
    ids = []
    for ex in examples:
        (image_id,) = _feature(ex, "image/id")
        ids.append(image_id)
        _, file_name, width, height, fmt, mode = by_id[image_id]
        anns = [a for a in annotations if a[1] == image_id]  # in file order
        with open(os.path.join(images_dir, file_name), "rb") as f:
            assert _feature(ex, "image/encoded") == [f.read()]
        assert _feature(ex, "image/format") == [fmt.lower().encode()]
        assert _feature(ex, "image/filename") == [str(image_id).encode()]
        assert _feature(ex, "image/height") == [height] and _feature(ex, "image/width") == [width]
        assert _feature(ex, "image/channels") == [1 if mode == "L" else 3]
        rel = {k: np.array(_feature(ex, f"image/object/bbox/{k}"), np.float64) for k in ("xmin", "ymin", "xmax", "ymax")}
        # COCO's float [x, y, w, h] back from the relative box, by the definition x = xmin * W, w = xmax * W - x.
        xywh = np.stack([rel["xmin"] * width, rel["ymin"] * height, (rel["xmax"] - rel["xmin"]) * width,
                         (rel["ymax"] - rel["ymin"]) * height], axis=-1).reshape(-1, 4)
        expected = np.array([a[3] for a in anns], np.float64).reshape(-1, 4)
        np.testing.assert_allclose(xywh, expected, atol=2e-5)  # float32 of a value < 100
        np.testing.assert_array_equal(np.round(xywh, 2), expected)  # COCO's two decimals, exactly
        assert _feature(ex, "image/object/bbox/label") == [label[a[2]] for a in anns]
        assert _feature(ex, "image/object/bbox/label_text") == [name[a[2]].encode() for a in anns]
        assert _feature(ex, "image/object/category_id") == [a[2] for a in anns]
        assert _feature(ex, "image/object/iscrowd") == [a[4] for a in anns]
        assert _feature(ex, "image/object/bbox/difficult") == [a[4] for a in anns]  # Caffe: difficult = iscrowd
        assert _feature(ex, "image/object/bbox/truncated") == [0] * len(anns)
        np.testing.assert_allclose(_feature(ex, "image/object/area"), [a[5] for a in anns], rtol=1e-7)
    return ids


@pytest.fixture
def coco(tmp_path):
    return write_coco(tmp_path / "coco")


def test_records_equal_the_json_field_by_field(coco, tmp_path):
    path, images_dir = coco
    out = str(tmp_path / "out")
    metadata = coco_to_tfrecords.convert_coco(path, images_dir, out, "coco_test", samples_per_file=3, num_threads=2)
    examples = _examples(out, metadata)
    assert _check_records(examples, images_dir) == [i[0] for i in IMAGES]  # the JSON's order, empty image kept
    assert metadata["shard_sizes"] == [3, 1]
    assert metadata["num_examples"] == 4 and metadata["num_objects"] == len(ANNOTATIONS)
    assert metadata["num_crowd"] == 2 and metadata["num_images_without_objects"] == 1
    assert metadata["class_names"] == [c["name"] for c in CATEGORIES] and metadata["num_classes"] == 5
    assert metadata["coco_category_ids"] == [18, 1, 90, 3]
    assert metadata["categories"][2] == {"label": 3, "id": 90, "name": "toothbrush"}
    assert metadata["objects_per_class"] == {"dog": 2, "person": 2, "toothbrush": 1, "car": 2}
    assert metadata["skipped"] == []
    with open(os.path.join(out, "coco_test_metadata.json")) as f:
        assert json.load(f) == metadata


def test_output_is_the_same_whatever_the_thread_count(coco, tmp_path):
    path, images_dir = coco
    contents = []
    for threads in (1, 3):
        out = str(tmp_path / f"out{threads}")
        metadata = coco_to_tfrecords.convert_coco(path, images_dir, out, "c", samples_per_file=2, num_threads=threads)
        contents.append([open(os.path.join(out, s), "rb").read() for s in metadata["shards"]])
    assert contents[0] == contents[1]


def test_dataset_factory_reads_the_records(coco, tmp_path):
    path, images_dir = coco
    out = str(tmp_path / "out")
    coco_to_tfrecords.convert_coco(path, images_dir, out, "coco_mine", num_threads=1)
    dataset = dataset_factory.get_dataset("coco", "coco_mine", out)
    assert dataset.num_samples == 4 and dataset.num_classes == 5
    assert dataset.class_names == tuple(c["name"] for c in CATEGORIES)
    records = list(tf.data.TFRecordDataset(list(dataset.files)).map(dataset.decode_no_image_fn))
    assert [r["filename"].numpy() for r in records] == [str(i[0]).encode() for i in IMAGES]
    assert list(records[0]["difficult"].numpy()) == [0, 1, 0, 0]


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_bad_input_stops_a_strict_run_and_writes_nothing(case, coco, tmp_path):
    path, images_dir = coco
    edit, named, words, _ = BAD_CASES[case]
    edit(path, images_dir)
    out = tmp_path / "out"
    with pytest.raises(DatasetError) as info:
        coco_to_tfrecords.convert_coco(path, images_dir, str(out), "c", num_threads=2)
    message = str(info.value)
    assert (named in message) and (words in message), message
    assert "\n" not in message
    assert not out.exists() or not os.listdir(out)
    assert not [n for n in os.listdir(tmp_path) if "staging" in n]


@pytest.mark.parametrize("case", sorted(c for c, v in BAD_CASES.items() if v[3]))
def test_skip_invalid_converts_the_rest_and_lists_what_it_skipped(case, coco, tmp_path):
    path, images_dir = coco
    edit, named, words, left_out = BAD_CASES[case]
    edit(path, images_dir)
    out = str(tmp_path / "out")
    metadata = coco_to_tfrecords.convert_coco(path, images_dir, out, "c", num_threads=2, skip_invalid=True)
    assert len(metadata["skipped"]) == 1
    entry = metadata["skipped"][0]
    assert named in f"{entry['file']}: {entry['reason']}" and words in entry["reason"]
    gone_images = {int(x.split()[1]) for x in left_out if x.startswith("image")}
    gone_anns = {int(x.split()[1]) for x in left_out if x.startswith("annotation")}
    images = [i for i in IMAGES if i[0] not in gone_images]
    anns = [a for a in ANNOTATIONS if a[0] not in gone_anns and a[1] not in gone_images]
    ids = _check_records(_examples(out, metadata), images_dir, images, anns)
    assert ids == [i[0] for i in images]
    assert metadata["num_objects"] == len(anns)


def test_script_converts_and_reports(coco, tmp_path, capsys):
    path, images_dir = coco
    out = str(tmp_path / "out")
    with pytest.raises(SystemExit) as exit_info:
        run_main(tf_convert_data.main, ["--dataset_name=coco", f"--annotations_file={path}",
                                        f"--images_dir={images_dir}", "--output_name=coco_x", f"--output_dir={out}",
                                        "--num_threads=1"])
    assert exit_info.value.code == 0
    stdout = capsys.readouterr().out
    assert "4/4 images processed" in stdout and "images/s" in stdout and "s left" in stdout
    assert "wrote 4 images (7 objects, 2 crowd) of 4 classes" in stdout
    assert sorted(os.listdir(out)) == ["coco_x_000.tfrecord", "coco_x_metadata.json"]


@pytest.mark.parametrize("case", ["unknown_category_id", "missing_image"])
def test_script_strict_error_is_one_line_with_exit_1(case, coco, tmp_path, capsys):
    path, images_dir = coco
    edit, named, words, _ = BAD_CASES[case]
    edit(path, images_dir)
    out = tmp_path / "out"
    argv = ["--dataset_name=coco", f"--annotations_file={path}", f"--images_dir={images_dir}",
            "--output_name=c", f"--output_dir={out}"]
    with pytest.raises(SystemExit) as exit_info:
        run_main(tf_convert_data.main, argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 1 and err.startswith("error: ") and err.count("\n") == 1
    assert named in err and words in err
    assert not out.exists()
    with pytest.raises(SystemExit) as exit_info:
        run_main(tf_convert_data.main, argv + ["--skip_invalid"])
    assert exit_info.value.code == 0
    assert "skipped: " in capsys.readouterr().out


@pytest.mark.parametrize("argv, message", [
    (["--dataset_name=coco", "--images_dir=x"], "--annotations_file: required"),
    (["--dataset_name=coco", "--annotations_file=a.json", "--images_dir=x", "--split=train"], "--split: does not"),
    (["--dataset_name=pascalvoc", "--dataset_dir=d", "--annotations_file=a.json"], "--annotations_file: does not"),
])
def test_script_flag_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        run_main(tf_convert_data.main, argv + ["--output_name=c"])
    assert exit_info.value.code == 1 and message in capsys.readouterr().err


def test_images_are_streamed_a_few_at_a_time(tmp_path, monkeypatch):
    """Bounded memory: however many images, at most a few per thread are read ahead of the writer."""
    images = [(i + 1, f"{i + 1}.jpg", 16, 12, "JPEG", "RGB") for i in range(60)]
    data = {"images": [{"id": i, "file_name": f, "width": w, "height": h} for i, f, w, h, _, _ in images],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1.0, 1.0, 5.0, 5.0], "area": 20.0,
                             "iscrowd": 0} for i in range(1, 61)],
            "categories": [{"id": 1, "name": "person"}]}
    path, images_dir = write_coco(tmp_path / "many", data, images)
    started, written, ahead = [0], [0], []
    original = coco_to_tfrecords.image_example

    def counting(*args):
        started[0] += 1
        ahead.append(started[0] - written[0])
        return original(*args)

    def progress(done, total):
        written[0] = done

    monkeypatch.setattr(coco_to_tfrecords, "image_example", counting)
    metadata = coco_to_tfrecords.convert_coco(path, images_dir, str(tmp_path / "out"), "m", num_threads=2,
                                              progress_fn=progress)
    assert metadata["num_examples"] == 60 and started[0] == 60
    assert max(ahead) <= 4 * 2 + 1
