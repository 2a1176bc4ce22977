"""The tf.data input pipelines, on small TFRecords written here with the project's feature names."""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from datasets import input_pipeline
from datasets import tfrecord_decoder as decoder
from nets import nets_factory
from box_ops.box_coding import encode_targets
from preprocessing import ssd_vgg_preprocessing

# (height, width, format[-Pillow mode], boxes [ymin, xmin, ymax, xmax] relative, labels, difficult)
RECORDS = [
    (120, 160, "JPEG", [[0.1, 0.1, 0.6, 0.5], [0.5, 0.4, 0.9, 0.95]], [3, 7], [0, 1]),
    (100, 100, "PNG", [[0.2, 0.3, 0.5, 0.6]], [12], [0]),
    (90, 140, "JPEG-L", [], [], []),  # a grayscale JPEG without objects
    (130, 110, "JPEG", [[0.0, 0.0, 1.0, 1.0], [0.3, 0.3, 0.4, 0.45], [0.6, 0.1, 0.8, 0.3]], [15, 1, 2], [0, 0, 1]),
    (110, 150, "PNG", [[0.05, 0.6, 0.5, 0.98]], [20], [1]),
    (140, 120, "JPEG", [[0.3, 0.2, 0.7, 0.8], [0.1, 0.1, 0.2, 0.2]], [9, 4], [0, 0]),
    (100, 130, "JPEG", [[0.4, 0.4, 0.6, 0.6]], [5], [0]),
]


def _example(index, height, width, fmt, boxes, labels, difficult):
    rng = np.random.default_rng(index)
    coarse = rng.integers(0, 256, (height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    buf = io.BytesIO()
    fmt, _, mode = fmt.partition("-")
    Image.fromarray(coarse).resize((width, height), Image.BILINEAR).convert(mode or "RGB").save(buf, fmt)
    boxes = np.array(boxes, np.float32).reshape(-1, 4)
    f = lambda v: tf.train.Feature(float_list=tf.train.FloatList(value=v))  # noqa: E731
    n = lambda v: tf.train.Feature(int64_list=tf.train.Int64List(value=v))  # noqa: E731
    b = lambda v: tf.train.Feature(bytes_list=tf.train.BytesList(value=v))  # noqa: E731
    return tf.train.Example(features=tf.train.Features(feature={
        decoder.ENCODED: b([buf.getvalue()]), decoder.FORMAT: b([fmt.lower().encode()]),
        decoder.FILENAME: b([b"%06d" % index]), decoder.HEIGHT: n([height]), decoder.WIDTH: n([width]),
        decoder.CHANNELS: n([3]), decoder.YMIN: f(boxes[:, 0]), decoder.XMIN: f(boxes[:, 1]),
        decoder.YMAX: f(boxes[:, 2]), decoder.XMAX: f(boxes[:, 3]), decoder.LABEL: n(labels),
        decoder.LABEL_TEXT: b([b"c%d" % label for label in labels]), decoder.DIFFICULT: n(difficult),
        decoder.TRUNCATED: n([0] * len(labels))})).SerializeToString()


@pytest.fixture(scope="module")
def record_files(tmp_path_factory):
    directory = tmp_path_factory.mktemp("records")
    files = [str(directory / f"test_{i:03d}.tfrecord") for i in range(3)]
    writers = [tf.io.TFRecordWriter(p) for p in files]
    for i, record in enumerate(RECORDS):  # shard-major order below: file 0 gets 0, 3, 6; file 1 gets 1, 4; ...
        writers[i % 3].write(_example(i, *record))
    for w in writers:
        w.close()
    return files


FILE_ORDER = [0, 3, 6, 1, 4, 2, 5]  # record indices in file order


@pytest.fixture(scope="module")
def model():
    return nets_factory.build_model(nets_factory.default_config("ssd_300_vgg", num_classes=21))


def take(dataset, count):
    with tf.Graph().as_default():
        next_batch = tf.compat.v1.data.make_one_shot_iterator(dataset()).get_next()
        with tf.compat.v1.Session() as sess:
            out = []
            for _ in range(count):
                try:
                    out.append(sess.run(next_batch))
                except tf.errors.OutOfRangeError:
                    break
            return out


def test_training_batches_have_static_shapes_and_consistent_targets(record_files, model):
    n = len(model.anchors)
    with tf.Graph().as_default():
        dataset = input_pipeline.train_dataset(record_files, model, batch_size=4, seed=3, max_boxes=5,
                                               shuffle_buffer=16)
        spec = dataset.element_spec
        assert spec["image"].shape.as_list() == [4, 300, 300, 3] and spec["image"].dtype == tf.float32
        assert spec["gclasses"].shape.as_list() == [4, n] and spec["gclasses"].dtype == tf.int64
        assert spec["glocalisations"].shape.as_list() == [4, n, 4] and spec["glocalisations"].dtype == tf.float32
        assert spec["gscores"].shape.as_list() == [4, n] and spec["gscores"].dtype == tf.float32
        assert spec["boxes"].shape.as_list() == [4, 5, 4] and spec["labels"].shape.as_list() == [4, 5]
        assert spec["labels"].dtype == tf.int64 and spec["num_boxes"].dtype == tf.int32
    batches = take(lambda: input_pipeline.train_dataset(record_files, model, batch_size=4, seed=3, max_boxes=5,
                                                        shuffle_buffer=16), 4)
    assert len(batches) == 4  # repeats forever
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        boxes_in = tf.compat.v1.placeholder(tf.float32, [None, 4])
        labels_in = tf.compat.v1.placeholder(tf.int64, [None])
        targets = encode_targets(labels_in, boxes_in, model.anchors, model.variances, 0.5)
        for batch in batches:
            image = batch["image"] + np.array(model.mean_rgb, np.float32)
            assert image.min() >= -1e-3 and image.max() <= 255 + 1e-3
            for i in range(4):
                k = batch["num_boxes"][i]
                boxes, labels = batch["boxes"][i, :k], batch["labels"][i, :k]
                assert (batch["boxes"][i, k:] == 0).all() and (batch["labels"][i, k:] == 0).all()
                assert (boxes >= 0).all() and (boxes <= 1).all() and (labels >= 1).all()
                # The targets are those of the augmented boxes (none of these images has more than 5).
                expected = sess.run(targets, {boxes_in: boxes, labels_in: labels})
                np.testing.assert_array_equal(batch["gclasses"][i], expected[0])
                np.testing.assert_allclose(batch["glocalisations"][i], expected[1], atol=1e-4)
                np.testing.assert_allclose(batch["gscores"][i], expected[2], atol=1e-6)


def test_without_augmentation_targets_equal_encode_targets(record_files, model):
    batches = take(lambda: input_pipeline.train_dataset(record_files, model, batch_size=3, is_training=False,
                                                        num_epochs=1), 10)
    assert [len(b["num_boxes"]) for b in batches] == [3, 3, 1]  # in order, the remainder kept
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        dataset = tf.data.TFRecordDataset(record_files).map(decoder.parse_example)
        example = tf.compat.v1.data.make_one_shot_iterator(dataset).get_next()
        image = ssd_vgg_preprocessing.preprocess_for_eval(example["image"], model.image_size, model.mean_rgb)
        targets = encode_targets(example["labels"], example["boxes"], model.anchors, model.variances, 0.5)
        for j, record in enumerate(FILE_ORDER):
            got = {key: value[j % 3] for key, value in batches[j // 3].items()}
            expected_image, (gclasses, glocalisations, gscores), ex = sess.run([image, targets, example])
            assert len(ex["labels"]) == len(RECORDS[record][4])
            np.testing.assert_array_equal(got["image"], expected_image)
            np.testing.assert_array_equal(got["gclasses"], gclasses)
            np.testing.assert_allclose(got["glocalisations"], glocalisations, atol=1e-5)
            np.testing.assert_allclose(got["gscores"], gscores, atol=1e-6)
            k = got["num_boxes"]
            assert k == len(ex["labels"])
            np.testing.assert_array_equal(got["boxes"][:k], ex["boxes"])
            np.testing.assert_array_equal(got["labels"][:k], ex["labels"])
            if k:  # difficult boxes are positives too (Caffe's use_difficult_gt)
                assert set(np.unique(gclasses[gclasses > 0])) == set(ex["labels"].tolist())


def test_max_boxes_truncates_the_padded_copy_only(record_files, model):
    batches = take(lambda: input_pipeline.train_dataset(record_files, model, batch_size=7, is_training=False,
                                                        num_epochs=1, max_boxes=2), 1)
    batch = batches[0]
    i = FILE_ORDER.index(3)  # the record with 3 boxes
    assert batch["num_boxes"][i] == 2 and batch["boxes"].shape == (7, 2, 4)
    assert 2 in batch["gclasses"][i]  # its third box (label 2) still has anchors


def test_seed_reproduces_the_stream(record_files, model):
    def run(seed):
        return take(lambda: input_pipeline.train_dataset(record_files, model, batch_size=2, seed=seed,
                                                         shuffle_buffer=8), 4)
    first, second, other = run(11), run(11), run(12)
    for a, b in zip(first, second):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])
    assert any(not np.array_equal(a["image"], b["image"]) for a, b in zip(first, other))


def test_unseeded_stream_runs_eagerly(record_files, model):
    dataset = input_pipeline.train_dataset(record_files, model, batch_size=2, shuffle_buffer=8)
    batch = next(iter(dataset))
    assert batch["image"].shape == (2, 300, 300, 3)


@pytest.mark.parametrize("shuffle", [False, True])
def test_shards_split_the_records(record_files, shuffle):
    def filenames(num_shards, shard_index):
        return take(lambda: input_pipeline._records(record_files, shuffle, None, 1, 4, num_shards, shard_index, False)
                    .map(lambda s: decoder.parse_example_no_image(s)["filename"]), 10)
    whole = sorted(b"%06d" % i for i in range(len(RECORDS)))
    for num_shards in (2, 4):  # 3 files: by file, then by record
        parts = [filenames(num_shards, k) for k in range(num_shards)]
        assert sorted(sum(parts, [])) == whole and all(parts)


def test_sharded_training_pipeline(record_files, model):
    batches = take(lambda: input_pipeline.train_dataset(record_files, model, batch_size=1, num_epochs=1,
                                                        num_shards=4, shard_index=3), 10)
    assert len(batches) == 1  # record 3 of 7
    with pytest.raises(ValueError):
        input_pipeline.train_dataset(record_files, model, batch_size=1, num_shards=2, shard_index=2)


def test_eval_dataset(record_files, model):
    batches = take(lambda: input_pipeline.eval_dataset(record_files, model, batch_size=3), 10)
    assert [len(b["filename"]) for b in batches] == [3, 3, 1]
    filenames = [f.decode() for b in batches for f in b["filename"]]
    assert filenames == ["%06d" % i for i in FILE_ORDER]
    for j, record in enumerate(FILE_ORDER):
        batch = batches[j // 3]
        height, width, _, boxes, labels, difficult = RECORDS[record]
        i = j % 3
        assert batch["image"].shape[1:] == (300, 300, 3) and batch["image"].dtype == np.float32
        np.testing.assert_array_equal(batch["shape"][i], [height, width, 3])
        k = batch["num_boxes"][i]
        assert k == len(labels)
        np.testing.assert_allclose(batch["boxes"][i, :k], np.array(boxes, np.float32).reshape(-1, 4))
        np.testing.assert_array_equal(batch["labels"][i, :k], labels)
        np.testing.assert_array_equal(batch["difficult"][i, :k], difficult)
        assert (batch["labels"][i, k:] == 0).all()


def test_no_files_is_an_error(model):
    with pytest.raises(ValueError):
        input_pipeline.train_dataset([], model, batch_size=2)
