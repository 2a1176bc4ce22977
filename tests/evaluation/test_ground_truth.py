"""Ground truth from a VOC folder and from TFRecords (written here with tf.train.Example)."""
import numpy as np
import pytest

from common.errors import DatasetError
from datasets.pixel_boxes import voc_to_relative
from datasets.voc_xml import VOCAnnotation, VOCObject, voc_annotation_xml
from evaluation.ground_truth import ground_truth_from_records, ground_truth_from_voc, round_near_integers

CLASSES = ("cat", "dog", "cow")

# image id -> (width, height, [(class, xmin, ymin, xmax, ymax, difficult)])
IMAGES = {
    "000005": (500, 375, [("cat", 1, 1, 500, 375, 0), ("dog", 48, 240, 195, 371, 1), ("cat", 8, 12, 352, 498, 0)]),
    "000007": (353, 500, [("cow", 141, 50, 353, 500, 0)]),
    "000009": (500, 333, []),
    "000012": (480, 364, [("horse", 10, 10, 100, 100, 0), ("dog", 2, 3, 479, 364, 0)]),
}


def make_voc(root, images=IMAGES, split_ids=None):
    (root / "Annotations").mkdir(parents=True)
    (root / "ImageSets" / "Main").mkdir(parents=True)
    for image_id, (w, h, objs) in images.items():
        ann = VOCAnnotation(f"{image_id}.jpg", w, h, 3,
                            tuple(VOCObject(n, x0, y0, x1, y1, difficult=d) for n, x0, y0, x1, y1, d in objs))
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_annotation_xml(ann))
    if split_ids is not None:
        (root / "ImageSets" / "Main" / "test.txt").write_text("".join(f"{i}\n" for i in split_ids))
    return root


def expected_objects(image_id, class_names=CLASSES):
    _, _, objs = IMAGES[image_id]
    kept = [o for o in objs if o[0] in class_names]
    return ([list(o[1:5]) for o in kept], [class_names.index(o[0]) + 1 for o in kept], [bool(o[5]) for o in kept])


def objects_of(gt, image_id):
    i = gt.image_ids.tolist().index(image_id)
    sel = gt.object_image == i
    return gt.boxes[sel].tolist(), gt.labels[sel].tolist(), gt.difficult[sel].tolist()


def test_voc_folder_with_a_split(tmp_path):
    voc = make_voc(tmp_path / "VOC2007", split_ids=["000007", "000005", "000009", "000012"])
    gt = ground_truth_from_voc(str(voc), CLASSES, "test")
    assert gt.image_ids.tolist() == ["000007", "000005", "000009", "000012"]  # the split's order
    for image_id in IMAGES:
        assert objects_of(gt, image_id) == expected_objects(image_id)
    assert gt.num_positives().tolist() == [2, 1, 1]
    assert len(gt.notes) == 1 and "horse (1)" in gt.notes[0]


def test_voc_folder_without_a_split_uses_every_annotation(tmp_path):
    voc = make_voc(tmp_path / "VOC")
    gt = ground_truth_from_voc(str(voc), CLASSES)
    assert gt.image_ids.tolist() == sorted(IMAGES)


def test_voc_folder_errors_name_the_file(tmp_path):
    with pytest.raises(DatasetError, match="Annotations"):
        ground_truth_from_voc(str(tmp_path), CLASSES, "test")
    voc = make_voc(tmp_path / "VOC", split_ids=["000005", "999999"])
    with pytest.raises(DatasetError, match="999999.xml"):
        ground_truth_from_voc(str(voc), CLASSES, "test")
    with pytest.raises(DatasetError, match="val.txt"):
        ground_truth_from_voc(str(voc), CLASSES, "val")
    (voc / "Annotations" / "000005.xml").write_text("<annotation><size>")
    with pytest.raises(DatasetError, match="000005.xml: malformed XML"):
        ground_truth_from_voc(str(voc), CLASSES)


def test_split_listing_an_image_twice_is_an_error(tmp_path):
    voc = make_voc(tmp_path / "VOC", split_ids=["000005", "000007", "000005"])
    with pytest.raises(DatasetError, match="test.txt: line 3: image id '000005' listed twice"):
        ground_truth_from_voc(str(voc), CLASSES, "test")


def test_round_near_integers():
    values = np.array([10.0004, 9.9991, 10.5, 3.0011, -0.0002])
    np.testing.assert_array_equal(round_near_integers(values), [10, 10, 10.5, 3.0011, 0])


# ----------------------------------------------------------------------------------------------------------
# Records

def example(image_id, width, height, objs, class_names=CLASSES, label_text=True, drop=()):
    import tensorflow as tf

    objs = [o for o in objs if o[0] in class_names]
    rel = voc_to_relative(np.array([o[1:5] for o in objs], dtype=np.float64).reshape(-1, 4), height, width)
    floats = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=list(v)))  # noqa: E731
    ints = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=list(v)))  # noqa: E731
    byts = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))  # noqa: E731
    feature = {
        "image/encoded": byts([b"\xff\xd8 not decoded"]),
        "image/format": byts([b"jpeg"]),
        "image/filename": byts([image_id.encode()]),
        "image/height": ints([height]), "image/width": ints([width]), "image/channels": ints([3]),
        "image/object/bbox/ymin": floats(rel[:, 0]), "image/object/bbox/xmin": floats(rel[:, 1]),
        "image/object/bbox/ymax": floats(rel[:, 2]), "image/object/bbox/xmax": floats(rel[:, 3]),
        "image/object/bbox/label": ints([class_names.index(o[0]) + 1 for o in objs]),
        "image/object/bbox/difficult": ints([o[5] for o in objs]),
        "image/object/bbox/truncated": ints([0] * len(objs)),
    }
    if label_text:
        feature["image/object/bbox/label_text"] = byts([o[0].encode() for o in objs])
    for key in drop:
        del feature[key]
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def write_records(path, examples):
    import tensorflow as tf

    with tf.io.TFRecordWriter(str(path)) as writer:
        for e in examples:
            writer.write(e)
    return str(path)


def test_records_recover_the_devkit_pixel_boxes_exactly(tmp_path):
    ids = sorted(IMAGES)
    shard0 = write_records(tmp_path / "voc_test_000.tfrecord", [example(i, *IMAGES[i]) for i in ids[:3]])
    shard1 = write_records(tmp_path / "voc_test_001.tfrecord", [example(i, *IMAGES[i]) for i in ids[3:]])
    gt = ground_truth_from_records([shard0, shard1], CLASSES)
    assert gt.image_ids.tolist() == ids
    for image_id in ids:
        boxes, labels, difficult = objects_of(gt, image_id)
        exp_boxes, exp_labels, exp_difficult = expected_objects(image_id)
        assert boxes == exp_boxes  # exactly the integers, after the float32 round trip
        assert (labels, difficult) == (exp_labels, exp_difficult)
    # And the same ground truth as from the VOC folder.
    voc_gt = ground_truth_from_voc(str(make_voc(tmp_path / "VOC")), CLASSES)
    np.testing.assert_array_equal(gt.boxes, voc_gt.boxes)


def test_records_keep_non_integer_coordinates(tmp_path):
    objs = [("dog", 10.5, 20.25, 300.75, 200.5, 0)]
    path = write_records(tmp_path / "x_test_000.tfrecord", [example("a", 500, 375, objs)])
    gt = ground_truth_from_records([path], CLASSES)
    np.testing.assert_allclose(gt.boxes[0], [10.5, 20.25, 300.75, 200.5], atol=1e-4)


def test_records_label_text_must_agree_with_the_class_list(tmp_path):
    path = write_records(tmp_path / "x_test_000.tfrecord", [example(i, *IMAGES[i]) for i in sorted(IMAGES)])
    with pytest.raises(DatasetError, match="label 1 is 'cat' in the record but 'dog'"):
        ground_truth_from_records([path], ("dog", "cat", "cow"))


def test_records_errors_name_the_file(tmp_path):
    path = write_records(tmp_path / "a_test_000.tfrecord",
                         [example("000005", *IMAGES["000005"], drop=("image/object/bbox/difficult",))])
    with pytest.raises(DatasetError, match=f"{path}: record 0 has no feature 'image/object/bbox/difficult'"):
        ground_truth_from_records([path], CLASSES)

    good = example("000005", *IMAGES["000005"])
    corrupt = tmp_path / "b_test_000.tfrecord"
    write_records(corrupt, [good, good])
    data = corrupt.read_bytes()
    corrupt.write_bytes(data[:-7])  # truncated
    with pytest.raises(DatasetError, match=f"{corrupt}: corrupt TFRecord"):
        ground_truth_from_records([str(corrupt)], CLASSES)

    with pytest.raises(DatasetError, match="outside 1..1"):
        ground_truth_from_records([write_records(tmp_path / "c_test_000.tfrecord", [good])], ("cat",))
    with pytest.raises(DatasetError, match="does not exist"):
        ground_truth_from_records([str(tmp_path / "missing.tfrecord")], CLASSES)
    with pytest.raises(DatasetError, match="'000005' appears twice"):
        ground_truth_from_records([write_records(tmp_path / "d_test_000.tfrecord", [good, good])], CLASSES)
