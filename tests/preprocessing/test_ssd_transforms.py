"""The reference augmentation (ssd_transforms): seed streams per transform, and the transforms against
definitions written out here in NumPy and OpenCV."""
import zlib

import cv2
import numpy as np
import pytest
import tensorflow as tf

from preprocessing import ssd_augmentation as aug
from preprocessing import ssd_transforms as T

MEAN = (123.0, 117.0, 104.0)
NEVER = aug.DistortionParams(brightness_prob=0.0, contrast_prob=0.0, saturation_prob=0.0, hue_prob=0.0)


def scene(rng, height=60, width=80):
    image = rng.integers(0, 256, (height, width, 3)).astype(np.uint8)
    boxes = np.array([[0.1, 0.2, 0.6, 0.7], [0.5, 0.0, 1.0, 0.4], [0.0, 0.6, 0.3, 1.0]], np.float32)
    return image, boxes, np.array([4, 8, 15]), np.array([0, 1, 0])


def run(sess, sample):
    """A Sample's tensors, evaluated, as a Sample of arrays."""
    return T.Sample(**sess.run({f: getattr(sample, f) for f in T.Sample.__dataclass_fields__}))


def test_named_stream_is_its_definition():
    """The k-th draw of transform `name` uses stateless_fold_in(stateless_fold_in(seed, index), k), where
    index is the low 31 bits of the name's CRC-32, whatever else was drawn before."""
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        seed = tf.constant([5, 9], tf.int64)
        fold = tf.random.experimental.stateless_fold_in
        index = zlib.crc32(b"flip") & 0x7FFFFFFF
        expected = [tf.random.stateless_uniform([3], fold(fold(seed, index), k)) for k in (1, 2)]
        seeds = aug.SeedStream(seed)
        seeds.named("expand").uniform((4,))  # another transform's draw first
        flip = seeds.named("flip")
        got = [flip.uniform((3,)), flip.uniform((3,))]
        other = aug.SeedStream(seed).named("flop").uniform((3,))
        got, expected, other = sess.run([got, expected, other])
    np.testing.assert_array_equal(got, expected)
    assert not np.array_equal(got[0], other)


def test_adding_a_transform_changes_no_other_transforms_numbers():
    """A transform inserted anywhere in the list draws from its own stream: every other transform's numbers
    stay the same bit for bit, and a transform that changes nothing leaves the output unchanged."""
    image, boxes, labels, difficult = scene(np.random.default_rng(0))
    transforms = T.ssd_transforms((30, 40), MEAN)
    longer = [T.Distort(NEVER, name="extra")] + transforms[:3] + [T.Flip(0.0, name="no_flip")] + transforms[3:]
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        seed = tf.compat.v1.placeholder(tf.int64, [2])
        numbers = [T.Compose(t).draw(seed) for t in (transforms, longer)]
        outputs = [T.Compose(t)(T.Sample.of(image, boxes, labels, difficult), seed) for t in (transforms, longer)]
        outputs = [(s.image, s.boxes, s.labels, s.difficult) for s in outputs]
        for s in range(5):
            (short_numbers, long_numbers), (short_out, long_out) = sess.run([numbers, outputs], {seed: [s, 2]})
            assert set(long_numbers) == set(short_numbers) | {"extra", "no_flip"}
            for name, value in short_numbers.items():
                tf.nest.map_structure(np.testing.assert_array_equal, long_numbers[name], value)
            for a, b in zip(short_out, long_out):
                np.testing.assert_array_equal(a, b)


def test_transform_names_must_be_unique():
    with pytest.raises(ValueError, match="unique"):
        T.Compose([T.Flip(), T.Flip(0.3)])


def test_expand_puts_the_image_on_a_mean_canvas():
    image, boxes, labels, difficult = scene(np.random.default_rng(1))
    expand = T.Expand(prob=1.0, fill=MEAN)
    u = np.array([0.0, 0.5, 0.25, 0.75], np.float32)  # expand, ratio 2.5, offsets a quarter and 3/4 of the room
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = run(sess, expand(T.Sample.of(image, boxes, labels, difficult), u))
    height, width = 150, 200  # int(60 * 2.5), int(80 * 2.5)
    oy, ox = int(0.25 * (height - 60)), int(0.75 * (width - 80))
    expected = np.empty((height, width, 3), np.float32)
    expected[:] = MEAN
    expected[oy:oy + 60, ox:ox + 80] = image
    np.testing.assert_array_equal(out.image, expected)
    np.testing.assert_array_equal(out.content, [oy, ox, oy + 60, ox + 80])
    pixels = boxes * [60, 80, 60, 80] + [oy, ox, oy, ox]
    np.testing.assert_allclose(out.boxes * [height, width, height, width], pixels, atol=1e-4)


def test_whole_image_is_opencvs_resize_minus_the_mean():
    """Without expand, crop, flip and distortion, the reference is Caffe's WARP resize and mean: OpenCV's
    nearest-neighbour resize of the image, boxes unchanged."""
    image, boxes, labels, difficult = scene(np.random.default_rng(2))
    options = dict(samplers=(aug.BatchSampler(),), expand_prob=0.0, flip_prob=0.0, distortion=None,
                   interpolations=("nearest",))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        out = sess.run(T.reference_preprocess_for_train(image, labels, boxes, difficult, (45, 100), MEAN, seed=3,
                                                        **options))
    expected = cv2.resize(image, (100, 45), interpolation=cv2.INTER_NEAREST).astype(np.float32) - MEAN
    np.testing.assert_array_equal(out[0], expected)
    np.testing.assert_array_equal(out[1], labels)
    np.testing.assert_allclose(out[2], boxes, atol=1e-6)
    np.testing.assert_array_equal(out[3], difficult)


def test_flip_mirrors_image_boxes_and_content():
    image, boxes, labels, difficult = scene(np.random.default_rng(3))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        sample = T.Sample.of(image, boxes, labels, difficult).replace(content=tf.constant([5, 10, 50, 30]))
        flipped, kept = (run(sess, T.Flip(0.5)(sample, tf.constant(u))) for u in (0.2, 0.7))
    np.testing.assert_array_equal(flipped.image, image[:, ::-1].astype(np.float32))
    mirrored = np.stack([boxes[:, 0], 1 - boxes[:, 3], boxes[:, 2], 1 - boxes[:, 1]], axis=1)
    np.testing.assert_allclose(flipped.boxes, mirrored)
    np.testing.assert_array_equal(flipped.content, [5, 80 - 30, 50, 80 - 10])
    np.testing.assert_array_equal(kept.image, image)
    np.testing.assert_array_equal(kept.boxes, boxes)


def test_resize_warps_the_crop_and_keeps_the_boxes_centred_in_it():
    """A crop on whole pixels: the output is OpenCV's resize of that part of the image, and the boxes are
    Caffe's crop annotation transform written out (centre inside the crop, projected, clipped)."""
    image, boxes, labels, difficult = scene(np.random.default_rng(4))  # 60 x 80
    crop = np.array([0.0, 0.25, 0.5, 0.75], np.float32)  # rows 0-30, columns 20-60
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        sample = T.Sample.of(image, boxes, labels, difficult).replace(crop=tf.constant(crop))
        out = run(sess, T.Resize((45, 100), ("nearest",))(sample, tf.constant(0.3)))
    expected = cv2.resize(image[0:30, 20:60], (100, 45), interpolation=cv2.INTER_NEAREST).astype(np.float32)
    np.testing.assert_array_equal(out.image, expected)
    centre_y, centre_x = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    kept = (centre_y >= 0.0) & (centre_y <= 0.5) & (centre_x >= 0.25) & (centre_x <= 0.75)
    assert kept.any() and not kept.all()
    projected = np.clip((boxes[kept] - [0.0, 0.25, 0.0, 0.25]) / 0.5, 0.0, 1.0)  # the kept box is clipped
    np.testing.assert_allclose(out.boxes, projected, atol=1e-6)
    np.testing.assert_array_equal(out.labels, labels[kept])
    np.testing.assert_array_equal(out.difficult, difficult[kept])
