"""Running an SSD checkpoint over an evaluation split: detections as VOC pixel boxes, with the ground truth
of exactly the images evaluated.

One tf.compat.v1 graph per ModelEvaluator: datasets/input_pipeline.eval_dataset (records in file order,
batched) -> inference/detector.detection_outputs (the shared post-processing, Caffe's DetectionOutput). Each
checkpoint is restored into the same graph and session, and the records are read once per checkpoint.

Detections leave the graph as relative [ymin, xmin, ymax, xmax] boxes. As Caffe SSD's OutputBBox, they are
clipped to the image ([0, 1]) and then scaled to each image's own original size; the scaling is
datasets/pixel_boxes.relative_to_voc (1-based inclusive pixels: xmin = x * W + 1, xmax = x * W). The ground
truth comes from the same batches (the records' boxes, labels, difficult flags, image ids and sizes)
through the same conversion as evaluation/ground_truth.ground_truth_from_records, so a run limited to a
few batches is scored against the images it saw. All per-detection work is NumPy array operations.
"""
import dataclasses
import os
import time

import numpy as np
import tensorflow as tf

from common.errors import CheckpointError, ConfigError, DatasetError
from datasets import input_pipeline
from datasets.pixel_boxes import relative_to_voc
from evaluation.ground_truth import round_near_integers
from evaluation.voc_metric import GroundTruth, detections_by_class
from inference.detector import detection_outputs


@dataclasses.dataclass(frozen=True)
class ModelEvalResult:
    """One checkpoint over a split.

    ground_truth: GroundTruth of the images evaluated (record order). detections: {class name:
    ClassDetections}, VOC pixel boxes, per image in score order. seconds: wall time of the pass over the
    records (restore excluded).
    """
    checkpoint: str
    global_step: object  # int or None
    ground_truth: GroundTruth
    detections: dict
    num_images: int
    num_batches: int
    seconds: float

    @property
    def images_per_second(self):
        return self.num_images / self.seconds if self.seconds > 0 else float("nan")


def check_class_names(model_class_names, dataset_class_names, config_file, dataset_source=None):
    """Raises ConfigError unless the model's class names (its ssd_config.json) equal the dataset's."""
    model_class_names = tuple(model_class_names or ())
    dataset_class_names = tuple(dataset_class_names)
    if not model_class_names:
        raise ConfigError(config_file, "the model configuration names no classes (class_names); they are needed "
                                       "to check them against the dataset's")
    if model_class_names != dataset_class_names:
        differ = next((i for i, (a, b) in enumerate(zip(model_class_names, dataset_class_names)) if a != b),
                      min(len(model_class_names), len(dataset_class_names)))
        where = f" ({dataset_source})" if dataset_source else ""
        raise ConfigError(config_file, f"the model's {len(model_class_names)} classes differ from the dataset's "
                                       f"{len(dataset_class_names)}{where} from label {differ + 1} on: model "
                                       f"{list(model_class_names[differ:differ + 3])}, dataset "
                                       f"{list(dataset_class_names[differ:differ + 3])}")


def checkpoint_global_step(checkpoint):
    """The checkpoint's `global_step` variable, else the N of a `<prefix>-N` name, else None."""
    try:
        reader = tf.train.load_checkpoint(checkpoint)
        if reader.has_tensor("global_step"):
            return int(reader.get_tensor("global_step"))
    except (tf.errors.OpError, ValueError):
        pass
    tail = os.path.basename(checkpoint).rsplit("-", 1)
    return int(tail[1]) if len(tail) == 2 and tail[1].isdigit() else None


def decode_image_ids(filenames):
    """[B] bytes (records' image/filename) -> [B] str."""
    return np.char.decode(np.asarray(filenames).astype(np.bytes_), "utf-8")


def pixel_detections(boxes, scores, classes, num_detections, heights, widths):
    """A batch of DetectionOutput results -> flat VOC detections, image by image in score order.

    boxes [B, K, 4] relative [ymin, xmin, ymax, xmax], scores [B, K], classes [B, K], num_detections [B]
    (rows beyond it are padding), heights/widths [B] original image sizes.
    Returns (image_index [D] int64 into the batch, labels [D] int64, scores [D] float64, boxes [D, 4]
    float64 pixel [xmin, ymin, xmax, ymax]): clipped to the image, then relative_to_voc at each image's size.
    """
    boxes = np.asarray(boxes, dtype=np.float64)
    num_detections = np.asarray(num_detections, dtype=np.int64)
    valid = np.arange(boxes.shape[1])[None, :] < num_detections[:, None]  # a prefix of each row
    pixels = relative_to_voc(np.clip(boxes, 0.0, 1.0), np.asarray(heights, np.float64),
                             np.asarray(widths, np.float64))
    image_index = np.repeat(np.arange(len(num_detections)), num_detections)
    return (image_index, np.asarray(classes, np.int64)[valid], np.asarray(scores, np.float64)[valid],
            pixels[valid])


def pixel_ground_truth(boxes, labels, difficult, num_boxes, heights, widths):
    """A batch's padded ground truth -> flat objects, image by image in annotation order.

    boxes [B, M, 4] relative, labels [B, M], difficult [B, M], num_boxes [B]. Returns (object_image [T]
    int64 into the batch, pixel boxes [T, 4] float64 [xmin, ymin, xmax, ymax], labels [T], difficult [T]
    bool), with ground_truth_from_records' conversion (relative_to_voc, near-integers rounded).
    """
    boxes = np.asarray(boxes, dtype=np.float32).reshape(len(num_boxes), -1, 4)
    num_boxes = np.asarray(num_boxes, dtype=np.int64)
    valid = np.arange(boxes.shape[1])[None, :] < num_boxes[:, None]
    pixels = round_near_integers(relative_to_voc(boxes, np.asarray(heights, np.float64),
                                                 np.asarray(widths, np.float64)))
    object_image = np.repeat(np.arange(len(num_boxes)), num_boxes)
    return (object_image, pixels[valid], np.asarray(labels, np.int64).reshape(valid.shape)[valid],
            np.asarray(difficult).reshape(valid.shape)[valid].astype(bool))


class _Collector:
    """Accumulates the per-batch arrays; builds GroundTruth and the per-class detections at the end."""

    def __init__(self):
        self.image_ids = []
        self.gt = []   # (object_image, boxes, labels, difficult) with global image indices
        self.dets = []  # (image_index, labels, scores, boxes) with global image indices
        self.num_images = 0

    def add(self, batch, outputs):
        ids = decode_image_ids(batch["filename"])
        heights, widths = batch["shape"][:, 0], batch["shape"][:, 1]
        obj_image, gt_boxes, gt_labels, gt_difficult = pixel_ground_truth(
            batch["boxes"], batch["labels"], batch["difficult"], batch["num_boxes"], heights, widths)
        det_image, det_labels, det_scores, det_boxes = pixel_detections(
            outputs["boxes"], outputs["scores"], outputs["classes"], outputs["num_detections"], heights, widths)
        offset = self.num_images
        self.image_ids.append(ids)
        self.gt.append((obj_image + offset, gt_boxes, gt_labels, gt_difficult))
        self.dets.append((det_image + offset, det_labels, det_scores, det_boxes))
        self.num_images += len(ids)

    def result(self, class_names, source):
        def cat(parts, k, empty):
            return np.concatenate([p[k] for p in parts]) if parts else empty

        image_ids = np.concatenate(self.image_ids) if self.image_ids else np.zeros(0, str)
        ground_truth = GroundTruth(class_names, image_ids, cat(self.gt, 0, np.zeros(0, np.int64)),
                                   cat(self.gt, 1, np.zeros((0, 4))), cat(self.gt, 2, np.zeros(0, np.int64)),
                                   cat(self.gt, 3, np.zeros(0, bool)), source=source)
        det_image = cat(self.dets, 0, np.zeros(0, np.int64))
        detections = detections_by_class(class_names, image_ids[det_image], cat(self.dets, 1, np.zeros(0, np.int64)),
                                         cat(self.dets, 2, np.zeros(0)), cat(self.dets, 3, np.zeros((0, 4))))
        return ground_truth, detections


def _progress_line(batches, images, total_images, seconds):
    rate = images / seconds if seconds > 0 else float("nan")
    left = f", {(total_images - images) / rate:.0f} s left" if total_images and rate > 0 else ""
    total = f"/{total_images}" if total_images else ""
    return f"batch {batches}: {images}{total} images, {rate:.1f} images/s{left}"


class ModelEvaluator:
    """Builds the evaluation graph and session once; `evaluate(checkpoint)` runs one checkpoint over the records.

    Args:
      model: nets_factory.SSDModel (inference/detector.load_model). files: the split's TFRecord shards, in order.
      class_names: the N class names (labels 1..N); must equal model.class_names (check_class_names).
      batch_size: images per batch (the last batch holds the remainder). max_num_batches: None, or only the
        first batches (the ground truth is then that of their images).
      select_threshold, nms_threshold, top_k, keep_top_k: DetectionOutput parameters, None: the model's
        configuration (Caffe's 0.01, 0.45, 400, 200 for the VOC models).
      num_examples: the split's size (for the progress lines' time left), if known.
    """

    def __init__(self, model, files, class_names, batch_size, max_num_batches=None, select_threshold=None,
                 nms_threshold=None, top_k=None, keep_top_k=None, num_examples=None, session_config=None):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if max_num_batches is not None and max_num_batches < 1:
            raise ValueError(f"max_num_batches must be >= 1, got {max_num_batches}")
        check_class_names(model.class_names, class_names, f"the {model.name} model")
        self.model = model
        self.class_names = tuple(class_names)
        self.batch_size = int(batch_size)
        self.max_num_batches = max_num_batches
        self.num_images_expected = num_examples
        if num_examples is not None and max_num_batches is not None:
            self.num_images_expected = min(int(num_examples), int(max_num_batches) * self.batch_size)
        self.graph = tf.Graph()
        with self.graph.as_default():
            dataset = input_pipeline.eval_dataset(list(files), model, self.batch_size)
            if max_num_batches is not None:
                dataset = dataset.take(int(max_num_batches))
            self._iterator = tf.compat.v1.data.make_initializable_iterator(dataset)
            batch = self._iterator.get_next()
            outputs = detection_outputs(model, batch["image"], select_threshold, nms_threshold, top_k, keep_top_k)
            self._fetch = {
                "batch": {k: batch[k] for k in ("shape", "filename", "boxes", "labels", "difficult", "num_boxes")},
                "outputs": {k: outputs[k] for k in ("boxes", "scores", "classes", "num_detections")},
            }
            self._variables = tf.compat.v1.global_variables()
            self._saver = tf.compat.v1.train.Saver(self._variables)
            self.session = tf.compat.v1.Session(graph=self.graph, config=session_config)
        self.graph.finalize()

    def restore(self, checkpoint):
        """Loads `checkpoint` (a prefix) into the session; CheckpointError naming what does not fit."""
        try:
            with self.graph.as_default():  # a v1 Saver restores only in graph mode
                self._saver.restore(self.session, checkpoint)
        except ValueError as err:  # not a checkpoint
            raise CheckpointError(checkpoint, str(err).splitlines()[0]) from None
        except tf.errors.NotFoundError as err:
            raise CheckpointError(checkpoint, f"does not hold every variable of the {self.model.name} model "
                                              f"({err.message.splitlines()[0][:200]})") from None
        except tf.errors.OpError as err:  # shape mismatch, corrupt data
            raise CheckpointError(checkpoint, f"cannot be restored into the {self.model.name} model "
                                              f"({err.message.splitlines()[0][:200]})") from None

    def evaluate(self, checkpoint, log_fn=None, log_every_n_batches=10):
        """Restores `checkpoint` and runs it over the records. Returns ModelEvalResult.

        log_fn(str), if given, receives a progress line every `log_every_n_batches` batches.
        """
        self.restore(checkpoint)
        collector = _Collector()
        self.session.run(self._iterator.initializer)
        start = time.perf_counter()
        batches = 0
        while True:
            try:
                res = self.session.run(self._fetch)
            except tf.errors.OutOfRangeError:
                break
            except tf.errors.OpError as err:  # a record that cannot be decoded
                raise DatasetError(None, f"reading the records failed after {collector.num_images} images: "
                                         f"{err.message.splitlines()[0][:300]}") from None
            collector.add(res["batch"], res["outputs"])
            batches += 1
            if log_fn is not None and log_every_n_batches and batches % log_every_n_batches == 0:
                log_fn(_progress_line(batches, collector.num_images, self.num_images_expected,
                                      time.perf_counter() - start))
        seconds = time.perf_counter() - start
        ground_truth, detections = collector.result(self.class_names, source=checkpoint)
        return ModelEvalResult(checkpoint=checkpoint, global_step=checkpoint_global_step(checkpoint),
                               ground_truth=ground_truth, detections=detections, num_images=collector.num_images,
                               num_batches=batches, seconds=seconds)

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

