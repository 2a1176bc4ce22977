"""The Caffe SSD augmentation ops, against definitions written out here in NumPy and OpenCV."""
import cv2
import numpy as np
import pytest
import tensorflow as tf

from preprocessing import ssd_augmentation as aug


def np_iou(a, b):
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def random_boxes(rng, g):
    hw = rng.uniform(0.05, 0.9, (g, 2))
    yx = rng.uniform(0.0, 1.0 - hw)
    return np.concatenate([yx, yx + hw], axis=1).astype(np.float32)


def distortion_uniforms(seeds):
    return seeds.uniform(aug.DISTORTION_DRAW)


class Runner:
    """Builds fn(seed placeholder, *placeholders) once and runs it for many seeds."""

    def __init__(self, fn, *specs):
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.seed = tf.compat.v1.placeholder(tf.int64, [2])
            self.inputs = [tf.compat.v1.placeholder(dtype, shape) for dtype, shape in specs]
            self.outputs = fn(aug.SeedStream(self.seed), *self.inputs)
        self.sess = tf.compat.v1.Session(graph=self.graph)

    def __call__(self, seed, *values):
        feed = {self.seed: [seed, 17]}
        feed.update(zip(self.inputs, values))
        return self.sess.run(self.outputs, feed)


# ---------------------------------------------------------------------------------------------------------
# Batch sampler

@pytest.fixture(scope="module")
def sampler_run():
    return Runner(lambda seeds, boxes: aug.generate_samples(boxes, seeds.uniform(aug.sampler_draw_shape())),
                  (tf.float32, [None, 4]))


def test_each_sampler_satisfies_its_constraint(sampler_run):
    rng = np.random.default_rng(0)
    found_count = np.zeros(len(aug.SSD_BATCH_SAMPLERS))
    for seed in range(150):
        boxes = random_boxes(rng, rng.integers(1, 5))
        crops, found = sampler_run(seed, boxes)
        assert crops.shape == (7, 4) and found.shape == (7,)
        found_count += found
        for sampler, crop, ok in zip(aug.SSD_BATCH_SAMPLERS, crops, found):
            if not ok:
                continue
            h, w = crop[2] - crop[0], crop[3] - crop[1]
            assert crop.min() >= -1e-6 and crop.max() <= 1 + 1e-6
            scale, ratio = np.sqrt(h * w), w / h
            assert sampler.min_scale - 1e-4 <= scale <= sampler.max_scale + 1e-4
            # Caffe SampleBBox: ratio in [max(min_ar, scale^2), min(max_ar, 1 / scale^2)].
            assert max(sampler.min_aspect_ratio, scale ** 2) - 1e-3 <= ratio
            assert ratio <= min(sampler.max_aspect_ratio, 1 / scale ** 2) + 1e-3
            ious = [np_iou(crop, b) for b in boxes]
            if sampler.min_jaccard_overlap is not None:
                assert max(ious) >= sampler.min_jaccard_overlap - 1e-5, (sampler, crop, boxes)
            if sampler.max_jaccard_overlap is not None:
                assert min(ious) <= sampler.max_jaccard_overlap + 1e-5
    assert found_count[0] == 150  # the whole image, always
    np.testing.assert_allclose(crops[0], [0, 0, 1, 1], atol=1e-6)  # TF's vectorised sqrt is within an ulp
    assert found_count[1] > 100 and found_count[-1] == 150  # loose constraints nearly always succeed
    assert 0 < found_count[5] < 150  # IoU 0.9 sometimes fails within 50 trials


def test_samplers_without_boxes_give_only_the_whole_image(sampler_run):
    for seed in range(5):
        crops, found = sampler_run(seed, np.zeros([0, 4], np.float32))
        assert found.tolist() == [True] + [False] * 6
    # Caffe's last sampler (max_jaccard_overlap 1.0) still needs a box to compare with.


def test_impossible_constraint_is_never_found():
    tiny = np.array([[0.5, 0.5, 0.51, 0.51]], np.float32)  # IoU with any crop of scale >= 0.3 is < 0.002
    samplers = (aug.BatchSampler(0.3, 1.0, 0.5, 2.0, min_jaccard_overlap=0.1, max_trials=50),)
    run = Runner(lambda seeds, boxes: aug.generate_samples(
        boxes, seeds.uniform(aug.sampler_draw_shape(samplers)), samplers), (tf.float32, [None, 4]))
    for seed in range(10):
        assert not run(seed, tiny)[1].any()


def test_choose_sample_is_uniform_over_found_candidates():
    crops = np.arange(28, dtype=np.float32).reshape(7, 4)
    found = np.array([True, False, True, True, False, False, True])
    run = Runner(lambda seeds, c, f: aug.choose_sample(c, f, seeds.uniform()), (tf.float32, [7, 4]), (tf.bool, [7]))
    picks = [int(run(seed, crops, found)[0]) // 4 for seed in range(800)]
    counts = np.bincount(picks, minlength=7)
    assert counts[~found].sum() == 0
    assert np.all(np.abs(counts[found] - 200) < 60), counts
    np.testing.assert_array_equal(run(0, crops, np.zeros(7, bool)), [0, 0, 1, 1])


# ---------------------------------------------------------------------------------------------------------
# Boxes

def test_flip_twice_is_identity_and_flip_mirrors():
    boxes = random_boxes(np.random.default_rng(1), 6)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        once, twice = sess.run([aug.flip_boxes(boxes), aug.flip_boxes(aug.flip_boxes(boxes))])
    np.testing.assert_allclose(twice, boxes, atol=1e-6)
    np.testing.assert_allclose(once[:, [0, 2]], boxes[:, [0, 2]])
    np.testing.assert_allclose(once[:, 1], 1 - boxes[:, 3], atol=1e-6)
    np.testing.assert_allclose(once[:, 3], 1 - boxes[:, 1], atol=1e-6)


def test_crop_boxes_keeps_centres_in_crop_clips_and_stays_aligned():
    rng = np.random.default_rng(2)
    boxes = rng.uniform(-0.6, 1.6, (200, 2, 2)).astype(np.float32)
    boxes = np.concatenate([boxes.min(1), boxes.max(1)], axis=1)  # ymin, xmin, ymax, xmax
    boxes[:5, 2] = boxes[:5, 0]  # degenerate boxes are dropped
    labels = np.arange(200, dtype=np.int64)
    difficult = labels % 3
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out, out_labels, out_difficult = sess.run(aug.crop_boxes(tf.constant(boxes), labels, difficult))
    expected = []
    for i, b in enumerate(boxes):
        cy, cx = (b[0] + b[2]) / 2, (b[1] + b[3]) / 2
        c = np.clip(b, 0, 1)
        if 0 <= cy <= 1 and 0 <= cx <= 1 and c[2] > c[0] and c[3] > c[1]:
            expected.append(i)
    assert out_labels.tolist() == expected
    np.testing.assert_array_equal(out_difficult, difficult[expected])
    np.testing.assert_allclose(out, np.clip(boxes[expected], 0, 1))


def test_expand_geometry():
    run = Runner(lambda seeds, size: aug.sample_expand(size, seeds.uniform(aug.EXPAND_DRAW)), (tf.int32, [2]))
    expanded = 0
    for seed in range(100):
        (ch, cw), (oy, ox) = run(seed, [375, 500])
        assert 375 <= ch <= 4 * 375 and 500 <= cw <= 4 * 500
        assert 0 <= oy <= ch - 375 and 0 <= ox <= cw - 500
        # The same ratio on both sides (Caffe: int(h * r), int(w * r)).
        assert abs(ch / 375 - cw / 500) < 2 / 375
        expanded += ch > 375
    assert 30 < expanded < 70


# ---------------------------------------------------------------------------------------------------------
# Photometric distortion, against OpenCV's float HSV (H in degrees, S and V in [0, 1]) as Caffe's
# im_transforms.cpp uses it (there on uint8).

def cv_saturation_hue(image, saturation, hue_delta):
    hsv = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2HSV)
    hsv[..., 1] = np.clip(hsv[..., 1] * saturation, 0.0, 1.0)
    hsv[..., 0] = np.mod(hsv[..., 0] + 2.0 * hue_delta, 360.0)  # OpenCV 8-bit hue units are 2 degrees
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255.0


def test_saturation_hue_matches_opencv_hsv():
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 255, (40, 50, 3)).astype(np.float32)
    image[0, :10] = 128.0  # grey pixels have no hue
    image[1, :10] = [200.0, 200.0, 10.0]  # ties between the maximum channels
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        for saturation, delta in [(1.0, 0.0), (1.5, 0.0), (0.5, 0.0), (0.9, 0.0), (3.0, 0.0), (1.0, 18.0),
                                  (1.0, -18.0), (1.3, -7.5)]:
            out = sess.run(aug.adjust_saturation_hue(tf.constant(image), saturation, delta))
            np.testing.assert_allclose(out, cv_saturation_hue(image, saturation, delta), atol=0.05)


def np_distort(image, order, b=None, c=None, s=1.0, h=0.0):
    x = image.astype(np.float32)
    if b is not None:
        x = np.clip(x + b, 0, 255)
    if c is not None and order == "bcsh":
        x = np.clip(x * c, 0, 255)
    x = cv_saturation_hue(x, s, h)
    if c is not None and order == "bshc":
        x = np.clip(x * c, 0, 255)
    return x


def test_distortion_amounts_are_caffes_numbers():
    """Each step on with its probability, its amount in Caffe's range, neutral when off; both orders."""
    p = aug.DistortionParams()
    run = Runner(lambda seeds: aug.distortion_amounts(distortion_uniforms(seeds), p))
    draws = [run(seed) for seed in range(400)]
    b = np.array([d["brightness"] for d in draws])
    c_before, c_after = np.array([d["contrast_before"] for d in draws]), np.array([d["contrast_after"] for d in draws])
    s, h = np.array([d["saturation"] for d in draws]), np.array([d["hue"] for d in draws])
    assert np.all(np.abs(b) <= p.brightness_delta) and np.all(np.abs(h) <= p.hue_delta)
    for factor in (c_before, c_after, s):
        assert np.all((factor >= 0.5) & (factor <= 1.5))
    assert not np.any((c_before != 1) & (c_after != 1))  # contrast happens once, before or after the HSV step
    for on in (b != 0, (c_before != 1) | (c_after != 1), s != 1, h != 0):
        assert 160 < on.sum() < 240  # probability 0.5
    assert 60 < (c_before != 1).sum() < 140 and 60 < (c_after != 1).sum() < 140  # each order half the time
    np.testing.assert_array_equal([d["hsv"] for d in draws], (s != 1) | (h != 0))


def test_distort_color_follows_one_of_caffes_two_orders():
    rng = np.random.default_rng(4)
    image = rng.uniform(0, 255, (20, 30, 3)).astype(np.float32)
    always = aug.DistortionParams(brightness_prob=1.0, contrast_prob=1.0, saturation_prob=1.0, hue_prob=1.0)
    run = Runner(lambda seeds, x: aug.distort_color(x, distortion_uniforms(seeds), always),
                 (tf.float32, [None, None, 3]))
    # The numbers distort_color draws for a seed, drawn again.
    draws = Runner(lambda seeds: aug.distortion_amounts(distortion_uniforms(seeds), always))
    orders = set()
    for seed in range(40):
        out = run(seed, image)
        d = draws(seed)
        order = "bcsh" if d["contrast_after"] == 1.0 else "bshc"
        orders.add(order)
        contrast = d["contrast_before"] if order == "bcsh" else d["contrast_after"]
        expected = np_distort(image, order, b=d["brightness"], c=contrast, s=d["saturation"], h=d["hue"])
        np.testing.assert_allclose(out, expected, atol=0.1)
    assert orders == {"bcsh", "bshc"}


def test_distort_color_saturation_without_hue():
    image = np.random.default_rng(9).uniform(0, 255, (20, 30, 3)).astype(np.float32)
    params = aug.DistortionParams(brightness_prob=0.0, contrast_prob=0.0, saturation_prob=1.0, hue_prob=0.0)
    run = Runner(lambda seeds, x: aug.distort_color(x, distortion_uniforms(seeds), params),
                 (tf.float32, [None, None, 3]))
    draws = Runner(lambda seeds: aug.distortion_amounts(distortion_uniforms(seeds), params))
    for seed in range(5):
        d = draws(seed)
        assert d["brightness"] == 0 and d["hue"] == 0 and d["contrast_before"] == d["contrast_after"] == 1
        np.testing.assert_allclose(run(seed, image), np_distort(image, "bcsh", s=d["saturation"]), atol=0.05)


def test_distort_color_keeps_pixel_range_and_varies():
    rng = np.random.default_rng(5)
    image = rng.uniform(0, 255, (16, 16, 3)).astype(np.float32)
    image[:4] = 255.0
    image[4:8] = 0.0
    run = Runner(lambda seeds, x: aug.distort_color(x, distortion_uniforms(seeds)),
                 (tf.float32, [None, None, 3]))
    unchanged = 0
    for seed in range(100):
        out = run(seed, image)
        assert out.min() >= 0.0 and out.max() <= 255.0 and np.isfinite(out).all()
        unchanged += np.abs(out - image).max() < 1e-3
    # Each of the four steps is skipped with probability 0.5: about 1 in 16 images is untouched.
    assert 1 <= unchanged <= 20


def test_no_distortion_when_probabilities_are_zero():
    never = aug.DistortionParams(brightness_prob=0.0, contrast_prob=0.0, saturation_prob=0.0, hue_prob=0.0)
    image = np.random.default_rng(6).uniform(0, 255, (8, 8, 3)).astype(np.float32)
    run = Runner(lambda seeds, x: aug.distort_color(x, distortion_uniforms(seeds), never),
                 (tf.float32, [None, None, 3]))
    np.testing.assert_array_equal(run(0, image), image)


@pytest.mark.parametrize("hsv", [False, True])
def test_apply_distortion_ends_both_branches_with_then(hsv):
    """`then` runs after the last step whichever branch is taken: the same as applying it afterwards."""
    image = np.random.default_rng(8).uniform(0, 255, (6, 7, 3)).astype(np.float32)
    amounts = dict(brightness=12.0, contrast_before=1.3, saturation=0.6, hue=-9.0, contrast_after=1.0)
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        d = {k: tf.constant(v) for k, v in amounts.items()}
        d["hsv"] = tf.constant(hsv)
        then = lambda x: x * 2.0 - 5.0  # noqa: E731
        fused, after = sess.run([aug.apply_distortion(image, d, then=then), then(aug.apply_distortion(image, d))])
        plain = sess.run(aug.apply_distortion(image, dict(d, hsv=tf.constant(not hsv))))
    np.testing.assert_array_equal(fused, after)
    assert np.abs(then(plain) - fused).max() > 1.0  # the branches differ, so each was checked


# ---------------------------------------------------------------------------------------------------------
# Random interpolation

def test_random_resize_uses_every_caffe_interpolation():
    image = np.random.default_rng(7).integers(0, 256, (37, 53, 3)).astype(np.uint8)
    run = Runner(lambda seeds, x: aug.random_resize(x, [20, 30], seeds.uniform()), (tf.uint8, [None, None, 3]))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        references = sess.run([tf.clip_by_value(tf.cast(tf.image.resize(image, [20, 30], method=m), tf.float32),
                                                0.0, 255.0) for m in aug.INTERPOLATIONS])
    references[aug.INTERPOLATIONS.index("nearest")] = cv2.resize(image, (30, 20), interpolation=cv2.INTER_NEAREST)
    used = set()
    for seed in range(60):
        out = run(seed, image)
        assert out.dtype == np.float32 and out.shape == (20, 30, 3)
        matches = [i for i, ref in enumerate(references) if np.array_equal(out, ref)]
        assert matches
        used.update(matches)
    assert used == set(range(len(aug.INTERPOLATIONS)))
