"""Dataset name + split -> a description of converted TFRecords, in the manner of TF-Slim's dataset_factory.

    dataset = dataset_factory.get_dataset("pascalvoc_0712", "trainval", "./tfrecords")
    records = tf.data.TFRecordDataset(list(dataset.files)).map(dataset.decode_fn)

Names (`datasets_map`): pascalvoc_2007 (train, val, trainval, test), pascalvoc_2012 (train, val, trainval),
pascalvoc_0712 (trainval = voc_2007_trainval + voc_2012_trainval) and voc_custom (the split name is the
converter's --output_name; classes from its metadata); coco (any converted COCO split by its output name),
coco_2017 and coco_2014 (datasets/coco.py). Sizes and class names are read from the
converter's metadata files (datasets/voc_to_tfrecords.py), never from constants.
"""
import dataclasses
import json
import os
import types
import typing

from common.errors import DatasetError
from datasets import coco, pascalvoc
from datasets.tfrecord_decoder import parse_example, parse_example_no_image
from datasets.tfrecord_writer import metadata_name
from datasets.voc_to_tfrecords import read_labels_file

datasets_map = {d.name: d for d in (
    pascalvoc.pascalvoc_2007, pascalvoc.pascalvoc_2012, pascalvoc.pascalvoc_0712, pascalvoc.voc_custom,
    coco.coco, coco.coco_2017, coco.coco_2014)}

ITEMS_TO_DESCRIPTIONS = types.MappingProxyType({
    "image": "A color image of varying height and width, uint8 RGB [H, W, 3].",
    "shape": "The image shape [H, W, 3], int32.",
    "filename": "The image id, e.g. 000005.",
    "boxes": "The ground-truth boxes, float32 [G, 4] = [ymin, xmin, ymax, xmax] relative to the image.",
    "labels": "The class of each box, int64 [G], 1..N (0 is background).",
    "label_text": "The class name of each box, string [G].",
    "difficult": "The VOC `difficult` flag of each box, int64 [G].",
    "truncated": "The VOC `truncated` flag of each box, int64 [G].",
})

_REQUIRED = {"output_name": str, "num_examples": int, "num_objects": int, "class_names": list,
             "num_classes": int, "shards": list}


@dataclasses.dataclass(frozen=True)
class DatasetDescription:
    """A converted split: its record files in order and what the metadata says about them."""
    name: str
    split_name: str
    dataset_dir: str
    record_sets: tuple      # the converter output names joined in this split
    files: tuple            # shard paths, record set by record set, shard order
    num_samples: int        # images, summed over the record sets
    num_objects: int
    num_classes: int        # len(class_names) + 1: label 0 is background
    class_names: tuple      # names of labels 1..N
    items_to_descriptions: typing.Mapping
    decode_fn: typing.Callable = parse_example                    # serialized Example -> dict, with image
    decode_no_image_fn: typing.Callable = parse_example_no_image  # ... ground truth only
    category_ids: typing.Optional[tuple] = None  # COCO records: the COCO category id of labels 1..N


def read_metadata(dataset_dir, output_name):
    """`<dataset_dir>/<output_name>_metadata.json` -> dict, checked; its shards must all exist."""
    path = os.path.join(dataset_dir, metadata_name(output_name))
    if not os.path.isfile(path):
        raise DatasetError(path, f"missing metadata of the records {output_name!r} (tf_convert_data.py "
                                 f"writes them, with output name {output_name!r} into {dataset_dir})")
    try:
        with open(path, encoding="utf-8") as f:
            metadata = json.load(f)
    except (OSError, ValueError) as err:
        raise DatasetError(path, f"unreadable metadata ({err})") from None
    if not isinstance(metadata, dict):
        raise DatasetError(path, "metadata is not a JSON object")
    for key, kind in _REQUIRED.items():
        if not isinstance(metadata.get(key), kind):
            raise DatasetError(path, f"metadata field {key!r} missing or not a {kind.__name__}")
    if metadata["num_classes"] != len(metadata["class_names"]) + 1:
        raise DatasetError(path, f"num_classes {metadata['num_classes']} is not len(class_names) + 1")
    sizes = metadata.get("shard_sizes")
    if sizes is not None and sum(sizes) != metadata["num_examples"]:
        raise DatasetError(path, f"shard sizes sum to {sum(sizes)}, not num_examples {metadata['num_examples']}")
    if not metadata["shards"]:
        raise DatasetError(path, "no shards listed")
    for shard in metadata["shards"]:
        if not os.path.isfile(os.path.join(dataset_dir, shard)):
            raise DatasetError(os.path.join(dataset_dir, shard), f"missing shard listed in {path}")
    return metadata


def get_dataset(name, split_name, dataset_dir, labels_file=None):
    """-> DatasetDescription of `split_name` of dataset `name`, records and metadata in `dataset_dir`.

    Raises ValueError for an unknown dataset name (as TF-Slim), DatasetError for an unknown split, missing
    metadata or shards, records of different classes joined in one split, or a `labels_file` (or for the
    pascalvoc names, the 20 VOC classes) that disagrees with the classes the records were written with.
    """
    if name not in datasets_map:
        raise ValueError(f"Name of dataset unknown {name}; known: {', '.join(sorted(datasets_map))}")
    definition = datasets_map[name]
    if definition.splits is None:
        if not split_name or os.path.basename(split_name) != split_name:
            raise DatasetError(dataset_dir, f"{name} split name must be a converter output name, got {split_name!r}")
        record_sets = (split_name,)
    elif split_name in definition.splits:
        record_sets = tuple(definition.splits[split_name])
    else:
        raise DatasetError(dataset_dir, f"unknown split {split_name!r} of {name} "
                                        f"(splits: {', '.join(definition.splits)})")
    metadatas = [read_metadata(dataset_dir, output_name) for output_name in record_sets]
    class_names = tuple(metadatas[0]["class_names"])
    for output_name, metadata in zip(record_sets[1:], metadatas[1:]):
        if tuple(metadata["class_names"]) != class_names:
            raise DatasetError(os.path.join(dataset_dir, metadata_name(output_name)),
                               f"class names differ from those of {record_sets[0]}")
    first = os.path.join(dataset_dir, metadata_name(record_sets[0]))
    if definition.class_names is not None and class_names != tuple(definition.class_names):
        raise DatasetError(first, f"records were written with classes {list(class_names)}, not the "
                                  f"{len(definition.class_names)} classes of {name}; use voc_custom")
    if labels_file is not None:
        expected = read_labels_file(labels_file)
        if expected != class_names:
            raise DatasetError(labels_file, f"class names {list(expected)} differ from those the records were "
                                            f"written with ({first}: {list(class_names)})")
    category_ids = None
    if getattr(definition, "coco", False):
        category_ids = metadatas[0].get("coco_category_ids")
        for output_name, metadata in zip(record_sets, metadatas):
            if metadata.get("coco_category_ids") != category_ids or not isinstance(category_ids, list):
                raise DatasetError(os.path.join(dataset_dir, metadata_name(output_name)),
                                   f"not COCO records, or other COCO categories than {record_sets[0]}'s "
                                   f"(tf_convert_data.py converts COCO instances JSON)")
        category_ids = tuple(category_ids)
    files = tuple(os.path.join(dataset_dir, shard) for metadata in metadatas for shard in metadata["shards"])
    return DatasetDescription(
        name=name, split_name=split_name, dataset_dir=dataset_dir, record_sets=record_sets, files=files,
        num_samples=sum(m["num_examples"] for m in metadatas),
        num_objects=sum(m["num_objects"] for m in metadatas),
        num_classes=len(class_names) + 1, class_names=class_names,
        items_to_descriptions=ITEMS_TO_DESCRIPTIONS, category_ids=category_ids)
