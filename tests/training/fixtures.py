"""Small training data for the training tests: an in-memory batch stream and a tiny TFRecord set.

`memory_input_fn` draws coloured rectangles on a noisy grey background at the model's input size and
encodes the anchor targets with the SSD core (box_ops/box_coding.encode_targets), giving the dict batches of
datasets/input_pipeline.train_dataset without files or augmentation. `tiny_record_set` writes a synthetic
VOC folder and converts it with the project's converter, for the command-line tests.
"""
import json
import os
import subprocess
import sys

import numpy as np
import tensorflow as tf

from box_ops import box_coding

# Per image: boxes [ymin, xmin, ymax, xmax] relative and their labels (1-based). Images 0-1 hold more
# objects than 2-3, so that the halves of a batch of 4 have different numbers of positives.
SCENES = (
    (((0.10, 0.10, 0.55, 0.45), 1), ((0.50, 0.55, 0.95, 0.95), 2), ((0.05, 0.60, 0.30, 0.90), 3)),
    (((0.20, 0.15, 0.80, 0.60), 2), ((0.60, 0.60, 0.90, 0.85), 1)),
    (((0.30, 0.30, 0.70, 0.70), 3),),
    (((0.05, 0.05, 0.40, 0.35), 4),),
)
COLORS = {1: (230, 40, 40), 2: (40, 200, 60), 3: (50, 80, 230), 4: (230, 220, 40), 5: (200, 60, 200)}
MAX_BOXES = 4


def scene_images(image_size, scenes=SCENES, mean_rgb=(123.0, 117.0, 104.0), seed=0):
    """float32 [len(scenes), H, W, 3] mean-subtracted images, boxes [S, MAX_BOXES, 4], labels [S, MAX_BOXES]."""
    rng = np.random.default_rng(seed)
    h, w = image_size
    images = rng.normal(110.0, 20.0, size=(len(scenes), h, w, 3)).astype(np.float32)
    boxes = np.zeros((len(scenes), MAX_BOXES, 4), np.float32)
    labels = np.zeros((len(scenes), MAX_BOXES), np.int64)
    for i, scene in enumerate(scenes):
        for j, (box, label) in enumerate(scene):
            y0, x0, y1, x1 = int(box[0] * h), int(box[1] * w), int(box[2] * h), int(box[3] * w)
            images[i, y0:y1, x0:x1] = np.asarray(COLORS[label], np.float32) + rng.normal(0, 8, (y1 - y0, x1 - x0, 3))
            boxes[i, j] = box
            labels[i, j] = label
    return images - np.asarray(mean_rgb, np.float32), boxes, labels


def memory_input_fn(model, batch_size, scenes=SCENES, seed=0):
    """() -> tf.data.Dataset of dict batches (the structure of input_pipeline.train_dataset), repeating the
    scenes in order, so that every run sees the same batches."""
    images, boxes, labels = scene_images(model.image_size, scenes, model.mean_rgb, seed)
    counts = np.array([len(s) for s in scenes], np.int32)

    def input_fn():
        def targets(image, b, lab, n):
            gclasses, glocalisations, gscores = box_coding.encode_targets(lab[:n], b[:n], model.anchors,
                                                                         model.variances, 0.5)
            return {"image": image, "gclasses": gclasses, "glocalisations": glocalisations, "gscores": gscores,
                    "boxes": b, "labels": lab, "num_boxes": n}

        ds = tf.data.Dataset.from_tensor_slices((images, boxes, labels, counts)).map(targets).cache()
        return ds.repeat().batch(batch_size, drop_remainder=True)

    return input_fn


def tiny_record_set(root, num_train=8, class_names=None, seed=1, image_size=(96, 128)):
    """A synthetic VOC folder converted to TFRecords: returns (records dir, output name, class names)."""
    from datasets.synthetic_voc import SYNTHETIC_CLASSES, generate_synthetic_voc
    from datasets.voc_to_tfrecords import convert_voc
    class_names = tuple(class_names or SYNTHETIC_CLASSES)
    voc = os.path.join(root, "voc")
    generate_synthetic_voc(voc, num_train=num_train, num_test=1, image_size=image_size, seed=seed,
                           class_names=class_names)
    records = os.path.join(root, "records")
    convert_voc(voc, records, "tiny_train", split="train", class_names=class_names, samples_per_file=4,
                num_threads=1)
    return records, "tiny_train", class_names


def run_json_script(name, timeout):
    """Runs tests/training/<name> in a fresh Python process and returns the JSON object of its last stdout line
    (for checks that need their own TensorFlow runtime: logical devices, several replicas)."""
    root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    proc = subprocess.run([sys.executable, os.path.join(root, "tests", "training", name)], cwd=root,
                          capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])
