"""The tf.data input pipelines: TFRecord shards -> preprocessed, target-encoded batches.

Training (`train_dataset`): shard files shuffled, read interleaved, records shuffled, then in parallel:
parse, decode only the crop window, the Caffe SSD augmentation (preprocessing/ssd_vgg_preprocessing.py),
anchor targets (box_ops/box_coding.encode_targets), fixed-size padding of the ground truth; batches of static
shape, prefetched. With a seed the stream is reproducible: the shuffles use it, and each element's
augmentation uses a stateless seed made of the seed and the element's index, whatever the parallelism.

Evaluation (`eval_dataset`): records in file order, each image decoded exactly (as OpenCV/Caffe decode
it), resized and mean-subtracted, with its original size, id and ground truth; the last batch may be short.

Both are plain functions of their arguments, so a tf.distribute strategy can call them per input pipeline
(distribute_datasets_from_function, sharding with num_shards/shard_index) or wrap their result.
"""
import numpy as np
import tensorflow as tf

from datasets import tfrecord_decoder as decoder
from box_ops.box_coding import encode_targets
from preprocessing import preprocessing_factory

AUTOTUNE = tf.data.AUTOTUNE
DEFAULT_MAX_BOXES = 64      # more than any VOC image holds (a few dozen at most)
DEFAULT_SHUFFLE_BUFFER = 2048
CYCLE_LENGTH = 8            # shards read at once


def pad_boxes(tensor, max_boxes):
    """[G, ...] -> [max_boxes, ...]: the first max_boxes rows, zero-padded."""
    tensor = tensor[:max_boxes]
    paddings = [[0, max_boxes - tf.shape(tensor)[0]]] + [[0, 0]] * (tensor.shape.rank - 1)
    padded = tf.pad(tensor, paddings)
    padded.set_shape([max_boxes] + tensor.shape.as_list()[1:])
    return padded


def _options():
    options = tf.data.Options()
    # Each element is small work: one thread per op, parallelism across elements (tf.data's advice).
    options.threading.max_intra_op_parallelism = 1
    return options


def _records(files, shuffle, seed, num_epochs, shuffle_buffer, num_shards, shard_index, deterministic):
    files = list(files)
    if not files:
        raise ValueError("no record files given")
    if not 0 <= shard_index < num_shards:
        raise ValueError(f"shard_index {shard_index} not in [0, {num_shards})")
    record_seed = None if seed is None else seed + 1
    dataset = tf.data.Dataset.from_tensor_slices(tf.constant(files, tf.string))
    if len(files) < num_shards:
        # Fewer files than input pipelines: each reads every file in the same order and keeps every
        # num_shards-th record (tf.distribute's DATA auto-shard policy), shuffling only afterwards.
        dataset = dataset.flat_map(tf.data.TFRecordDataset).shard(num_shards, shard_index).repeat(num_epochs)
        return dataset.shuffle(shuffle_buffer, seed=record_seed) if shuffle else dataset
    dataset = dataset.shard(num_shards, shard_index)  # by file (the FILE policy)
    if shuffle:
        dataset = dataset.shuffle(len(files), seed=seed, reshuffle_each_iteration=True)
    dataset = dataset.repeat(num_epochs)
    if not shuffle:
        return dataset.flat_map(tf.data.TFRecordDataset)
    dataset = dataset.interleave(tf.data.TFRecordDataset, cycle_length=min(len(files), CYCLE_LENGTH),
                                 block_length=1, num_parallel_calls=AUTOTUNE, deterministic=deterministic)
    return dataset.shuffle(shuffle_buffer, seed=record_seed, reshuffle_each_iteration=True)


def train_dataset(files, model, batch_size, is_training=True, seed=None, num_epochs=None,
                  shuffle_buffer=DEFAULT_SHUFFLE_BUFFER, match_threshold=0.5, num_parallel_calls=AUTOTUNE,
                  max_boxes=DEFAULT_MAX_BOXES, num_shards=1, shard_index=0, dct_method="INTEGER_FAST",
                  augmentation=None):
    """Batches for training an SSDModel (nets_factory): images with their anchor targets.

    Args:
      files: TFRecord shard paths (dataset_factory's description.files). model: an SSDModel (anchors,
        variances, image_size, mean_rgb). batch_size: images per batch (in training, batches are full: the
        remainder of the stream is dropped, so shapes are static).
      is_training: True: shuffled, Caffe SSD augmentation. False: records in order, no augmentation (resize
        and mean subtraction only), e.g. for a validation loss.
      seed: None (fastest: nondeterministic order and augmentation) or an int: the same stream every run.
      num_epochs: None repeats forever. match_threshold: Caffe's overlap_threshold for matching.
      max_boxes: length of the padded `boxes`/`labels` (targets always use every box).
      num_shards, shard_index: this input pipeline's part of the data, one of num_shards: every
        num_shards-th file from shard_index (every num_shards-th record when there are fewer files).
      dct_method: JPEG IDCT for training decodes. augmentation: options for
        ssd_vgg_preprocessing.preprocess_for_train (samplers, expand_prob, ...), Caffe's by default.
    Returns:
      tf.data.Dataset of dicts: image float32 [B, H, W, 3] (model.image_size, minus model.mean_rgb);
      gclasses int64 [B, N]; glocalisations float32 [B, N, 4]; gscores float32 [B, N]; boxes float32
      [B, max_boxes, 4] and labels int64 [B, max_boxes], zero-padded; num_boxes int32 [B] (valid rows).
    """
    deterministic = seed is not None
    out_shape = tuple(model.image_size)
    anchors = np.asarray(model.anchors, np.float32)  # NumPy: its derived constants are made once
    augmentation = dict(augmentation or {})
    preprocess = preprocessing_factory.get_preprocessing(model.name, is_training, from_encoded=True)

    @tf.autograph.experimental.do_not_convert  # plain graph code: AutoGraph would only slow down tracing
    def prepare(serialized, element_seed):
        if is_training:
            example = decoder.parse_example_encoded(serialized)
            image, labels, boxes, _ = preprocess(
                example["encoded"], example["shape"][0], example["shape"][1], example["labels"],
                example["boxes"], example["difficult"], out_shape, model.mean_rgb, seed=element_seed,
                dct_method=dct_method, **augmentation)
        else:
            example = decoder.parse_example(serialized)
            image = preprocess(example["image"], out_shape, model.mean_rgb)
            labels, boxes = example["labels"], example["boxes"]
        image.set_shape(out_shape + (3,))
        # Difficult boxes stay positives (Caffe's use_difficult_gt: true in ssd_pascal.py).
        gclasses, glocalisations, gscores = encode_targets(labels, boxes, anchors, model.variances,
                                                           match_threshold)
        return {
            "image": image,
            "gclasses": gclasses,
            "glocalisations": glocalisations,
            "gscores": gscores,
            "boxes": pad_boxes(boxes, max_boxes),
            "labels": pad_boxes(tf.cast(labels, tf.int64), max_boxes),
            "num_boxes": tf.minimum(tf.shape(boxes)[0], max_boxes),
        }

    dataset = _records(files, is_training, seed, num_epochs, shuffle_buffer, num_shards, shard_index,
                       deterministic)
    if seed is None:
        dataset = dataset.map(lambda s: prepare(s, None), num_parallel_calls=num_parallel_calls,
                              deterministic=False)
    else:
        # Element i of shard k augments with the stateless seed [seed, i * num_shards + k]: distinct draws in
        # every input pipeline, the same ones at every run.
        dataset = dataset.enumerate().map(
            lambda i, s: prepare(s, tf.stack([tf.constant(seed, tf.int64), i * num_shards + shard_index])),
            num_parallel_calls=num_parallel_calls, deterministic=True)
    dataset = dataset.batch(batch_size, drop_remainder=is_training)
    return dataset.prefetch(AUTOTUNE).with_options(_options())


def eval_dataset(files, model, batch_size, num_parallel_calls=AUTOTUNE):
    """Batches for evaluating an SSDModel, every record once, in file order.

    Returns a tf.data.Dataset of dicts: image float32 [B, H, W, 3] (preprocess_for_eval); shape int32
    [B, 3] (original [height, width, 3]); filename string [B] (image ids); boxes float32 [B, M, 4],
    labels int64 [B, M], difficult int64 [B, M] zero-padded to the batch's largest M; num_boxes int32 [B].
    The last batch holds the remainder.
    """
    out_shape = tuple(model.image_size)
    preprocess = preprocessing_factory.get_preprocessing(model.name, is_training=False)

    @tf.autograph.experimental.do_not_convert
    def prepare(serialized):
        example = decoder.parse_example(serialized)
        image = preprocess(example["image"], out_shape, model.mean_rgb)
        image.set_shape(out_shape + (3,))
        return {
            "image": image,
            "shape": example["shape"],
            "filename": example["filename"],
            "boxes": example["boxes"],
            "labels": example["labels"],
            "difficult": example["difficult"],
            "num_boxes": tf.shape(example["boxes"])[0],
        }

    dataset = _records(files, False, None, 1, 0, 1, 0, True)
    dataset = dataset.map(prepare, num_parallel_calls=num_parallel_calls, deterministic=True)
    return dataset.padded_batch(batch_size, drop_remainder=False).prefetch(AUTOTUNE).with_options(_options())
