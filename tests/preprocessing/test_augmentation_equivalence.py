"""The fused training transform (ssd_vgg_preprocessing.preprocess_for_train, preprocess_encoded_for_train)
against its specification, the plain list of transforms (ssd_transforms.reference_preprocess_for_train),
seed by seed.

Geometry (boxes, labels, difficult) must agree to 1e-5. Pixels: both resize the same window of the photo
with the same interpolation, so without distortion they agree to float rounding. With the distortion they
differ by design: the reference distorts the original image (Caffe's order), the fused path the resized
window, and the distortion's clipping and HSV steps do not commute with interpolation. They do commute
exactly with nearest-neighbour resizing, and wherever an interpolation's support lies inside one
constant-coloured region: there the two agree to float rounding (the fused path runs the distortion
under XLA, which reorders the HSV arithmetic: 1e-2 grey levels, far below one 8-bit step).
"""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from preprocessing import ssd_augmentation as aug
from preprocessing import ssd_transforms as T
from nets.ssd_vgg_300 import VGG_MEAN_RGB
from preprocessing import ssd_vgg_preprocessing as prep

OUT = (48, 64)  # not square: the two axes are not mixed up
MEAN = np.array(VGG_MEAN_RGB, np.float32)
NUM_SEEDS = 60
GREY = (90, 90, 90)
COLOURS = [(230, 20, 20), (20, 220, 20), (20, 20, 230), (230, 230, 20)]
PALETTE = np.array([GREY, *COLOURS, VGG_MEAN_RGB], np.float32) - MEAN  # every flat colour of an output
# Samplers that all need an IoU of at least 0.9 with a box (no whole-image sampler): with a tiny box no
# sampler ever finds a crop, and Caffe keeps the whole (expanded) image.
NO_CROP_SAMPLERS = (aug.BatchSampler(0.3, 1.0, 0.5, 2.0, min_jaccard_overlap=0.9, max_trials=50),)


def rectangles(height, width, rects):
    """A grey image with filled rectangles (pixel rows/cols [y0, y1) x [x0, x1)), their relative boxes."""
    image = np.empty((height, width, 3), np.uint8)
    image[:] = GREY
    boxes = []
    for i, (y0, y1, x0, x1) in enumerate(rects):
        image[y0:y1, x0:x1] = COLOURS[i % len(COLOURS)]
        boxes.append([y0 / height, x0 / width, y1 / height, x1 / width])
    return image, np.array(boxes, np.float32).reshape(-1, 4)


def case(name):
    """(image uint8, boxes, labels, difficult, options) of the named test case."""
    if name == "objects":
        image, boxes = rectangles(90, 120, [(8, 40, 6, 50), (45, 88, 15, 45), (15, 80, 70, 90), (60, 88, 95, 118)])
        return image, boxes, np.arange(1, 5), np.array([0, 1, 0, 1]), {}
    if name == "edges":  # boxes on the image's borders and corners, a thin one across it
        image, boxes = rectangles(100, 80, [(0, 30, 0, 25), (70, 100, 55, 80), (45, 52, 0, 80), (0, 100, 76, 80)])
        return image, boxes, np.array([7, 3, 12, 5]), np.array([1, 0, 0, 1]), {}
    if name == "no crop":
        image, boxes = rectangles(70, 90, [(30, 32, 40, 42)])
        return image, boxes, np.array([9]), np.array([1]), {"samplers": NO_CROP_SAMPLERS}
    if name == "no boxes":
        image, _ = rectangles(64, 64, [(10, 30, 10, 50)])
        return image, np.zeros([0, 4], np.float32), np.zeros([0], np.int64), np.zeros([0], np.int64), {}
    raise KeyError(name)


CASES = ["objects", "edges", "no crop", "no boxes"]


class Pair:
    """The fused path and the reference built once for a case and options; run(seed) -> both outputs
    (image, labels, boxes, difficult), and the reference's without distortion (same seed, same geometry)."""

    def __init__(self, name, encoded=None, **options):
        image, boxes, labels, difficult, case_options = case(name)
        options = dict(case_options, **options)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.seed = tf.compat.v1.placeholder(tf.int64, [2])
            if encoded is None:
                self.fused = prep.preprocess_for_train(image, labels, boxes, difficult, OUT, VGG_MEAN_RGB, seed=self.seed, **options)
            else:
                data = io.BytesIO()
                Image.fromarray(image).save(data, encoded)
                self.fused = prep.preprocess_encoded_for_train(data.getvalue(), image.shape[0], image.shape[1], labels,
                                                               boxes, difficult, OUT, VGG_MEAN_RGB, seed=self.seed, **options)
            self.reference = T.reference_preprocess_for_train(image, labels, boxes, difficult, OUT, VGG_MEAN_RGB,
                                                              seed=self.seed, **options)
            self.undistorted = T.reference_preprocess_for_train(image, labels, boxes, difficult, OUT, VGG_MEAN_RGB,
                                                                seed=self.seed, **dict(options, distortion=None))
        self.sess = tf.compat.v1.Session(graph=self.graph)
        self.labels = labels

    def run(self, seed):
        return self.sess.run([self.fused, self.reference, self.undistorted], {self.seed: [seed, 11]})


def assert_same_geometry(fused, reference, seed):
    _, labels, boxes, difficult = fused
    _, ref_labels, ref_boxes, ref_difficult = reference
    assert labels.tolist() == ref_labels.tolist(), f"seed {seed}"
    assert difficult.tolist() == ref_difficult.tolist(), f"seed {seed}"
    np.testing.assert_allclose(boxes, ref_boxes, atol=1e-5, err_msg=f"seed {seed}")


@pytest.mark.parametrize("name", CASES)
def test_fused_path_equals_the_reference(name):
    """Caffe's settings (distortion, all five interpolations): the same boxes, labels and difficult flags;
    the same pixels wherever the output is flat (its undistorted value one of the scene's colours: the
    interpolation's support inside one region), the rest within the pixel range."""
    pair = Pair(name)
    flat_share, kept = [], 0
    for seed in range(NUM_SEEDS):
        fused, reference, undistorted = pair.run(seed)
        assert_same_geometry(fused, reference, seed)
        assert_same_geometry(undistorted, reference, seed)  # the distortion's numbers are its own
        kept += len(fused[1])
        flat = (np.abs(undistorted[0][:, :, None, :] - PALETTE).max(-1) < 1e-3).any(-1)
        np.testing.assert_allclose(fused[0][flat], reference[0][flat], atol=1e-2, err_msg=f"seed {seed}")
        assert (fused[0] + MEAN).min() >= -1e-3 and (fused[0] + MEAN).max() <= 255 + 1e-3
        flat_share.append(flat.mean())
    assert np.mean(flat_share) > 0.6  # most of each output was compared
    if name == "no crop":  # the whole (expanded) image: every box is kept
        assert kept == NUM_SEEDS * len(pair.labels)
    elif name != "no boxes":
        assert kept > NUM_SEEDS


@pytest.mark.parametrize("name", CASES)
def test_fused_path_equals_the_reference_pixel_for_pixel_without_distortion(name):
    pair = Pair(name, distortion=None)
    for seed in range(NUM_SEEDS):
        fused, reference, _ = pair.run(seed)
        assert_same_geometry(fused, reference, seed)
        np.testing.assert_allclose(fused[0], reference[0], atol=1e-4, err_msg=f"seed {seed}")


@pytest.mark.parametrize("name", ["objects", "edges"])
def test_fused_path_equals_the_reference_pixel_for_pixel_with_nearest_resize(name):
    """Nearest-neighbour resizing picks pixels, so distorting before it (the reference) or after it (the
    fused path) gives the same pixels."""
    pair = Pair(name, interpolations=("nearest",))
    for seed in range(NUM_SEEDS):
        fused, reference, _ = pair.run(seed)
        assert_same_geometry(fused, reference, seed)
        np.testing.assert_allclose(fused[0], reference[0], atol=1e-2, err_msg=f"seed {seed}")


def test_encoded_png_path_equals_the_reference():
    """preprocess_encoded_for_train (the input pipeline's function) decodes only the window it uses; PNG
    decoding is exact, so it equals the reference on the decoded image."""
    pair = Pair("objects", encoded="PNG", distortion=None)
    for seed in range(20):
        fused, reference, _ = pair.run(seed)
        assert_same_geometry(fused, reference, seed)
        np.testing.assert_allclose(fused[0], reference[0], atol=1e-4, err_msg=f"seed {seed}")
