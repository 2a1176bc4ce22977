"""The Pascal VOC datasets: which converter outputs (`tf_convert_data.py --output_name`) make up each split.

A split is one or more record sets, each `<output_name>_NNN.tfrecord` + `<output_name>_metadata.json` in
the dataset directory; sizes and class names come from the metadata files, never from constants here.
The published SSD models train on `pascalvoc_0712` trainval (VOC2007 trainval + VOC2012 trainval) and are
tested on `pascalvoc_2007` test.
"""
import dataclasses
import types
import typing

from datasets.voc_classes import VOC_CLASSES


@dataclasses.dataclass(frozen=True)
class VOCDatasetDefinition:
    """name; splits: split name -> output names whose records it joins (None: any output name, as given);
    class_names: the classes its records must have been written with (None: whatever the metadata says)."""
    name: str
    splits: typing.Optional[typing.Mapping[str, tuple]]
    class_names: typing.Optional[tuple]
    description: str


def _splits(year, names):
    return types.MappingProxyType({s: (f"voc_{year}_{s}",) for s in names})


pascalvoc_2007 = VOCDatasetDefinition(
    "pascalvoc_2007", _splits(2007, ("train", "val", "trainval", "test")), VOC_CLASSES,
    "Pascal VOC 2007 (records voc_2007_<split>)")
pascalvoc_2012 = VOCDatasetDefinition(
    "pascalvoc_2012", _splits(2012, ("train", "val", "trainval")), VOC_CLASSES,
    "Pascal VOC 2012 (records voc_2012_<split>; its test set has no public annotations)")
pascalvoc_0712 = VOCDatasetDefinition(
    "pascalvoc_0712", types.MappingProxyType({"trainval": ("voc_2007_trainval", "voc_2012_trainval")}),
    VOC_CLASSES, "Pascal VOC 2007 trainval + 2012 trainval, the training set of the published SSD results")
voc_custom = VOCDatasetDefinition(
    "voc_custom", None, None,
    "Any VOC-format dataset: the split name is the converter's --output_name, the classes its labels file")
