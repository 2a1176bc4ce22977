"""The COCO datasets: which converter outputs (`tf_convert_data.py --dataset_name=coco --output_name`) make
up each split. Sizes, class names and COCO category ids come from the metadata files.

- `coco`: any converted split, named by its --output_name (`--dataset_split_name=coco_2017_val`).
- `coco_2017`: train (records coco_2017_train, from instances_train2017.json) and val (coco_2017_val);
  train2017 / val2017 are the same splits.
- `coco_2014`: train (coco_2014_train), val (coco_2014_val), and the Caffe SSD's splits: minival
  (coco_2014_minival, from instances_minival2014.json, 5k images of val2014) and trainval35k (train2014 +
  val2014 without minival: coco_2014_train + coco_2014_valminusminival, from
  instances_valminusminival2014.json), on which the Caffe COCO models were trained.
"""
import dataclasses
import types
import typing


@dataclasses.dataclass(frozen=True)
class COCODatasetDefinition:
    """As pascalvoc.VOCDatasetDefinition; the records must come from the COCO converter (their metadata
    keeps the COCO category ids), whatever their classes."""
    name: str
    splits: typing.Optional[typing.Mapping[str, tuple]]
    class_names: typing.Optional[tuple] = None
    description: str = ""
    coco: bool = True


coco = COCODatasetDefinition(
    "coco", None, description="Any COCO split converted by tf_convert_data.py: the split name is its --output_name")
coco_2017 = COCODatasetDefinition(
    "coco_2017", types.MappingProxyType({
        "train": ("coco_2017_train",), "val": ("coco_2017_val",),
        "train2017": ("coco_2017_train",), "val2017": ("coco_2017_val",)}),
    description="COCO 2017 (records coco_2017_train, coco_2017_val)")
coco_2014 = COCODatasetDefinition(
    "coco_2014", types.MappingProxyType({
        "train": ("coco_2014_train",), "val": ("coco_2014_val",),
        "train2014": ("coco_2014_train",), "val2014": ("coco_2014_val",),
        "minival": ("coco_2014_minival",),
        "trainval35k": ("coco_2014_train", "coco_2014_valminusminival")}),
    description="COCO 2014, with the Caffe SSD's trainval35k (train + valminusminival) and minival")
