"""Dataset names and splits -> record files, sizes and classes (datasets/dataset_factory.py)."""
import dataclasses
import json
import os

import pytest
import tensorflow as tf

from voc_testdata import SAMPLES, SPLITS, image_bytes, write_voc_dir
from common.errors import DatasetError
from datasets import dataset_factory, tfrecord_decoder, voc_to_tfrecords
from datasets.voc_classes import VOC_CLASSES
from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml

YEAR_SPLITS = {2007: ("train", "val", "trainval", "test"), 2012: ("train", "val", "trainval")}
CUSTOM_CLASSES = ("tvmonitor", "sofa", "person", "dog", "cat", "car", "bird", "chair")


@pytest.fixture(scope="module")
def records(tmp_path_factory):
    """Records of every VOC split name, all from the small test folder, plus a custom-class record set."""
    root = tmp_path_factory.mktemp("factory")
    voc_dir = write_voc_dir(root / "VOC")
    out = str(root / "records")
    for year, splits in YEAR_SPLITS.items():
        for split in splits:
            voc_to_tfrecords.convert_voc(voc_dir, out, f"voc_{year}_{split}", split=split, samples_per_file=2,
                                         num_threads=1)
    voc_to_tfrecords.convert_voc(voc_dir, out, "my_set", class_names=CUSTOM_CLASSES, num_threads=1)
    return out


def _shards(out, output_name):
    with open(os.path.join(out, f"{output_name}_metadata.json")) as f:
        return [os.path.join(out, s) for s in json.load(f)["shards"]]


@pytest.mark.parametrize("year,split", [(y, s) for y, splits in YEAR_SPLITS.items() for s in splits])
def test_voc_splits(records, year, split):
    dataset = dataset_factory.get_dataset(f"pascalvoc_{year}", split, records)
    assert dataset.name == f"pascalvoc_{year}" and dataset.split_name == split
    assert dataset.record_sets == (f"voc_{year}_{split}",)
    assert dataset.files == tuple(_shards(records, f"voc_{year}_{split}"))
    assert len(dataset.files) == (len(SPLITS[split]) + 1) // 2
    assert dataset.num_samples == len(SPLITS[split])
    assert dataset.num_objects == sum(len(SAMPLES[i][5]) for i in SPLITS[split])
    assert dataset.class_names == VOC_CLASSES and dataset.num_classes == 21
    assert dataset.decode_fn is tfrecord_decoder.parse_example
    assert dataset.decode_no_image_fn is tfrecord_decoder.parse_example_no_image
    assert set(dataset.items_to_descriptions) >= {"image", "shape", "boxes", "labels", "difficult"}


def test_0712_is_the_union_of_both_trainvals(records):
    dataset = dataset_factory.get_dataset("pascalvoc_0712", "trainval", records)
    assert dataset.record_sets == ("voc_2007_trainval", "voc_2012_trainval")
    assert dataset.files == tuple(_shards(records, "voc_2007_trainval") + _shards(records, "voc_2012_trainval"))
    assert dataset.num_samples == 2 * len(SPLITS["trainval"])
    with tf.Graph().as_default():  # the files and the decoder work together, and the count is right
        dataset_ops = tf.data.TFRecordDataset(list(dataset.files)).map(dataset.decode_no_image_fn)
        count = dataset_ops.reduce(0, lambda n, _: n + 1)
        with tf.compat.v1.Session() as sess:
            assert sess.run(count) == dataset.num_samples
    with pytest.raises(dataclasses.FrozenInstanceError):
        dataset.num_samples = 1


def test_custom_dataset_takes_its_classes_from_the_metadata(records, tmp_path):
    dataset = dataset_factory.get_dataset("voc_custom", "my_set", records)
    assert dataset.class_names == CUSTOM_CLASSES and dataset.num_classes == 9
    assert dataset.num_samples == len(SAMPLES) and dataset.record_sets == ("my_set",)
    labels = tmp_path / "labels.txt"
    labels.write_text("# custom\n" + "\n".join(CUSTOM_CLASSES) + "\n")
    assert dataset_factory.get_dataset("voc_custom", "my_set", records, labels_file=str(labels)) == dataset
    labels.write_text("\n".join(reversed(CUSTOM_CLASSES)))
    with pytest.raises(DatasetError, match="differ from those the records were written with") as err:
        dataset_factory.get_dataset("voc_custom", "my_set", records, labels_file=str(labels))
    assert err.value.path == str(labels)
    # The VOC definitions insist on the 20 VOC classes.
    os.makedirs(tmp_path / "r")
    for name in os.listdir(records):
        if name.startswith("my_set"):
            target = name.replace("my_set", "voc_2007_test")
            os.symlink(os.path.join(records, name), tmp_path / "r" / target)
    with open(tmp_path / "r" / "voc_2007_test_metadata.json") as f:
        metadata = json.load(f)
    metadata["shards"] = [s.replace("my_set", "voc_2007_test") for s in metadata["shards"]]
    os.remove(tmp_path / "r" / "voc_2007_test_metadata.json")
    (tmp_path / "r" / "voc_2007_test_metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(DatasetError, match="use voc_custom"):
        dataset_factory.get_dataset("pascalvoc_2007", "test", str(tmp_path / "r"))


def test_unknown_names_and_splits(records):
    with pytest.raises(ValueError, match="Name of dataset unknown imagenet"):
        dataset_factory.get_dataset("imagenet", "train", records)
    with pytest.raises(DatasetError, match="unknown split 'test' of pascalvoc_2012 \\(splits: train, val, trainval\\)"):
        dataset_factory.get_dataset("pascalvoc_2012", "test", records)
    with pytest.raises(DatasetError, match="unknown split 'train' of pascalvoc_0712"):
        dataset_factory.get_dataset("pascalvoc_0712", "train", records)
    with pytest.raises(DatasetError, match="missing metadata of the records 'nothing'") as err:
        dataset_factory.get_dataset("voc_custom", "nothing", records)
    assert err.value.path == os.path.join(records, "nothing_metadata.json")
    with pytest.raises(DatasetError, match="split name must be a converter output name"):
        dataset_factory.get_dataset("voc_custom", "../my_set", records)


def test_missing_and_inconsistent_files(records, tmp_path):
    copy = tmp_path / "copy"
    os.makedirs(copy)
    for name in os.listdir(records):
        if name.startswith(("voc_2007_trainval", "voc_2012_trainval")):
            os.symlink(os.path.join(records, name), copy / name)
    assert dataset_factory.get_dataset("pascalvoc_0712", "trainval", str(copy)).num_samples == 12
    os.remove(copy / "voc_2012_trainval_001.tfrecord")
    with pytest.raises(DatasetError, match="missing shard listed in") as err:
        dataset_factory.get_dataset("pascalvoc_0712", "trainval", str(copy))
    assert err.value.path == str(copy / "voc_2012_trainval_001.tfrecord")
    os.remove(copy / "voc_2012_trainval_metadata.json")
    with pytest.raises(DatasetError, match="missing metadata") as err:
        dataset_factory.get_dataset("pascalvoc_0712", "trainval", str(copy))
    assert err.value.path == str(copy / "voc_2012_trainval_metadata.json")
    metadata_path = copy / "voc_2007_trainval_metadata.json"
    metadata = json.loads(metadata_path.read_text())
    os.remove(metadata_path)
    for field, value, reason in (("num_examples", 5, "shard sizes sum to 6, not num_examples 5"),
                                 ("num_classes", 20, "num_classes 20 is not len\\(class_names\\) \\+ 1"),
                                 ("shards", None, "metadata field 'shards' missing")):
        metadata_path.write_text(json.dumps(dict(metadata, **{field: value})))
        with pytest.raises(DatasetError, match=reason) as err:
            dataset_factory.get_dataset("pascalvoc_2007", "trainval", str(copy))
        assert err.value.path == str(metadata_path)
    metadata_path.write_text("{not json")
    with pytest.raises(DatasetError, match="unreadable metadata"):
        dataset_factory.get_dataset("pascalvoc_2007", "trainval", str(copy))


# VOC's official sizes, used only here: the sizes must come out of the listing and the metadata.
VOC_SIZES = {2007: {"train": 2501, "val": 2510, "trainval": 5011, "test": 4952},
             2012: {"train": 5717, "val": 5823, "trainval": 11540}}


def _voc_sized_folder(root, year, linked_split):
    """A VOC-layout folder with the official split lists; the images of `linked_split` are links to one
    tiny JPEG and its annotation (the other ids are only listed)."""
    for sub in ("Annotations", "JPEGImages", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub))
    sizes = VOC_SIZES[year]
    ids = [f"{year}_{i:06d}" for i in range(sizes["trainval"] + sizes.get("test", 0))]
    lists = {"train": ids[:sizes["train"]], "val": ids[sizes["train"]:sizes["trainval"]],
             "trainval": ids[:sizes["trainval"]], "test": ids[sizes["trainval"]:]}
    for split in sizes:
        with open(os.path.join(root, "ImageSets", "Main", f"{split}.txt"), "w") as f:
            f.write("".join(f"{i}\n" for i in lists[split]))
    if linked_split:
        jpeg, xml = os.path.join(root, "one.jpg"), os.path.join(root, "one.xml")
        with open(jpeg, "wb") as f:
            f.write(image_bytes(8, 6))
        with open(xml, "w") as f:
            f.write(voc_annotation_xml(VOCAnnotation("", 8, 6, 3, (VOCObject("person", 2, 1, 8, 6),))))
        for image_id in lists[linked_split]:
            os.link(jpeg, os.path.join(root, "JPEGImages", f"{image_id}.jpg"))
            os.link(xml, os.path.join(root, "Annotations", f"{image_id}.xml"))
    return root


def test_voc_sized_listing(tmp_path):
    """Every official split's size comes out of its listing; one full-size split (2007 test, 4,952 images)
    is converted and its size reaches the dataset description through the metadata. (Joining 2007 and 2012
    trainval is checked on small record sets above; converting 16,551 images here would take ~20 s.)"""
    for year, sizes in VOC_SIZES.items():
        voc_dir = _voc_sized_folder(str(tmp_path / f"VOC{year}"), year, "test" if year == 2007 else None)
        for split, size in sizes.items():
            assert len(voc_to_tfrecords.list_image_ids(voc_dir, split)) == size
    out = str(tmp_path / "records")
    metadata = voc_to_tfrecords.convert_voc(str(tmp_path / "VOC2007"), out, "voc_2007_test", split="test",
                                            num_threads=2)
    assert metadata["num_examples"] == metadata["num_objects"] == 4952
    assert metadata["shard_sizes"] == [200] * 24 + [152]
    dataset = dataset_factory.get_dataset("pascalvoc_2007", "test", out)
    assert dataset.num_samples == 4952 and len(dataset.files) == 25


@pytest.fixture(scope="module")
def coco_records(tmp_path_factory):
    """The small COCO split converted under the output names of coco_2017 and coco_2014 (both halves of
    trainval35k from it, the second with one image fewer)."""
    from coco_testdata import write_coco
    from datasets import coco_to_tfrecords

    root = tmp_path_factory.mktemp("coco_factory")
    path, images_dir = write_coco(root / "coco")
    out = str(root / "records")
    for name in ("coco_2017_train", "coco_2017_val", "coco_2014_train", "coco_2014_minival"):
        coco_to_tfrecords.convert_coco(path, images_dir, out, name, num_threads=1)
    with open(path) as f:
        data = json.load(f)
    data["images"] = data["images"][:3]
    data["annotations"] = [a for a in data["annotations"] if a["image_id"] in {i["id"] for i in data["images"]}]
    with open(path, "w") as f:
        json.dump(data, f)
    coco_to_tfrecords.convert_coco(path, images_dir, out, "coco_2014_valminusminival", num_threads=1)
    return out


@pytest.mark.parametrize("name,split,record_sets,size", [
    ("coco", "coco_2017_val", ("coco_2017_val",), 4),
    ("coco_2017", "train", ("coco_2017_train",), 4),
    ("coco_2017", "val2017", ("coco_2017_val",), 4),
    ("coco_2014", "minival", ("coco_2014_minival",), 4),
    ("coco_2014", "trainval35k", ("coco_2014_train", "coco_2014_valminusminival"), 7),
])
def test_coco_splits(coco_records, name, split, record_sets, size):
    from coco_testdata import CATEGORIES

    dataset = dataset_factory.get_dataset(name, split, coco_records)
    assert dataset.record_sets == record_sets
    assert dataset.files == tuple(f for r in record_sets for f in _shards(coco_records, r))
    assert dataset.num_samples == size
    assert dataset.class_names == tuple(c["name"] for c in CATEGORIES)
    assert dataset.category_ids == tuple(c["id"] for c in CATEGORIES)
    assert dataset.num_classes == len(CATEGORIES) + 1


def test_coco_names_refuse_voc_records(records):
    with pytest.raises(DatasetError, match="not COCO records"):
        dataset_factory.get_dataset("coco", "my_set", records)
    with pytest.raises(DatasetError, match="unknown split 'test' of coco_2017"):
        dataset_factory.get_dataset("coco_2017", "test", records)
