"""The Caffe SSD training augmentation as a list of transforms applied in turn: the specification.

One transform per step of Caffe's AnnotatedDataLayer with ssd_pascal.py's transform_param and
batch_sampler, in its order (ssd_transforms() builds the list):

    Distort       DistortImage: brightness, contrast, saturation, hue, on the original image
    Expand        ExpandImage: the zoom-out onto a canvas filled with the mean
    BatchSample   GenerateBatchSamples (one candidate per sampler) and the uniform choice among them
    Resize        the crop (emit constraint CENTER, projection, clipping) and the WARP resize with a
                  random interpolation
    Flip          the horizontal mirror, image and boxes
    SubtractMean

A transform is a frozen dataclass with a `name`, that of its own seed stream (SeedStream.named), draw(seeds)
-> its random numbers, drawn from that stream only, and __call__(sample, numbers) -> the next Sample.
Compose(transforms)(sample, seed) draws every transform's numbers from its stream and applies the list top
to bottom. Numbers are tied to names, not to positions: adding, removing or moving a transform changes no
other transform's numbers.

This is plain TensorFlow on whole images (the expand canvas is built: up to 16x the image), slow and
simple. The fast path, ssd_vgg_preprocessing.preprocess_for_train, is held to it by
tests/preprocessing/test_augmentation_equivalence.py: it calls these transforms' draw() and their geometry
methods (Expand.geometry, BatchSample.choose, Resize.geometry, Flip.happens, Distort.amounts) and only
reorders the pixel work.
"""
import dataclasses

import tensorflow as tf

from preprocessing import ssd_augmentation as aug


@dataclasses.dataclass(frozen=True)
class Sample:
    """One training example between two transforms.

    image float32 [H, W, 3] RGB (in [0, 255] until SubtractMean); boxes float32 [G, 4] relative to image;
    labels [G]; difficult [G]; content int32 [4] (y0, x0, y1, x1): the pixels of image that come from the
    photo (the rest is the Expand canvas, of colour fill float32 [3]); crop float32 [4]: the region, relative
    to image, that Resize warps to the output (BatchSample's choice).
    """
    image: tf.Tensor
    boxes: tf.Tensor
    labels: tf.Tensor
    difficult: tf.Tensor
    content: tf.Tensor
    fill: tf.Tensor
    crop: tf.Tensor

    @classmethod
    def of(cls, image, boxes, labels, difficult):
        """An image (uint8 or float [H, W, 3] in [0, 255]) and its annotations, before any transform."""
        image = tf.cast(tf.convert_to_tensor(image), tf.float32)
        size = tf.shape(image)[:2]
        return cls(image, tf.reshape(tf.cast(boxes, tf.float32), [-1, 4]), tf.convert_to_tensor(labels),
                   tf.convert_to_tensor(difficult), tf.concat([[0, 0], size], 0), tf.zeros([3]),
                   tf.constant([0.0, 0.0, 1.0, 1.0]))

    def replace(self, **changes):
        return dataclasses.replace(self, **changes)


class Transform:
    """One step. Subclasses are frozen dataclasses with a `name` field (their seed stream's name)."""

    def draw(self, seeds):
        """This transform's random numbers, from its own stream `seeds`; None if it draws none."""
        return None

    def __call__(self, sample, numbers):
        raise NotImplementedError


@dataclasses.dataclass(frozen=True)
class Distort(Transform):
    """Caffe DistortImage (aug.distort_color): per pixel, on the image as it is."""
    params: aug.DistortionParams = aug.DistortionParams()
    name: str = "distort"

    def draw(self, seeds):
        return seeds.uniform(aug.DISTORTION_DRAW)

    def amounts(self, u):
        return aug.distortion_amounts(u, self.params)

    def __call__(self, sample, u):
        return sample.replace(image=aug.apply_distortion(sample.image, self.amounts(u)))


@dataclasses.dataclass(frozen=True)
class Expand(Transform):
    """Caffe ExpandImage (aug.sample_expand): the image on a canvas of colour `fill` (Caffe's mean_value),
    up to max_ratio times its size, with probability prob."""
    prob: float = 0.5
    max_ratio: float = 4.0
    fill: tuple = (0.0, 0.0, 0.0)
    name: str = "expand"

    def draw(self, seeds):
        return seeds.uniform(aug.EXPAND_DRAW)

    def geometry(self, size, u):
        """int32 size [2] -> int32 (canvas [2], offset [2])."""
        return aug.sample_expand(size, u, self.max_ratio, self.prob)

    def __call__(self, sample, u):
        size = tf.shape(sample.image)[:2]
        canvas, offset = self.geometry(size, u)
        padding = tf.concat([tf.stack([offset, canvas - size - offset], axis=1), [[0, 0]]], 0)
        photo = tf.pad(tf.ones_like(sample.image[..., :1]), padding) > 0
        fill = tf.constant(self.fill, tf.float32)
        return sample.replace(image=tf.where(photo, tf.pad(sample.image, padding), fill),
                              boxes=aug.boxes_to_canvas(sample.boxes, size, canvas, offset),
                              content=sample.content + tf.tile(offset, [2]), fill=fill)


@dataclasses.dataclass(frozen=True)
class BatchSample(Transform):
    """Caffe GenerateBatchSamples with the SSD's batch samplers, then one of the samples drawn uniformly
    (aug.generate_samples, aug.choose_sample): sets the sample's crop."""
    samplers: tuple = aug.SSD_BATCH_SAMPLERS
    name: str = "batch_sample"

    def draw(self, seeds):
        return seeds.uniform(aug.sampler_draw_shape(self.samplers)), seeds.uniform()

    def choose(self, boxes, numbers, valid=None):
        """float32 boxes [G, 4] (valid: bool [G] or None, see generate_samples) -> the crop float32 [4]."""
        trials, choice = numbers
        crops, found = aug.generate_samples(boxes, trials, self.samplers, valid)
        return aug.choose_sample(crops, found, choice)

    def __call__(self, sample, numbers):
        return sample.replace(crop=self.choose(sample.boxes, numbers))


@dataclasses.dataclass(frozen=True)
class Resize(Transform):
    """The crop and Caffe's WARP resize to out_shape, the interpolation drawn uniformly from
    `interpolations` (aug.random_resize); boxes follow with Caffe's crop annotation transform
    (aug.crop_boxes: centre in the crop, clipped, positive area).

    The photo's part of the crop is snapped to whole pixels (geometry()): its window of the image rounded to
    whole pixels is resized to its place in the output rounded to whole pixels, the rest of the output is
    the canvas fill, and the boxes are mapped with that same rounded transform, so they follow the pixels
    exactly (at most half a pixel from the drawn crop).
    """
    out_shape: tuple = (300, 300)
    interpolations: tuple = aug.INTERPOLATIONS
    name: str = "resize"

    def draw(self, seeds):
        return seeds.uniform()

    def geometry(self, crop, canvas, offset, size):
        """The crop -> where the photo's pixels go in the output, both axes at once ([y, x] vectors).

        crop: [ymin, xmin, ymax, xmax] relative to the image (the canvas); canvas/offset/size: int32 [2]
        image size, the photo's offset in it and its size (pixels). Returns int32 (w0, w1) the photo's
        pixels to resize, (o0, o1) the output pixels they fill, bool ok (some pixel is visible), and float32
        (scale, shift) mapping a photo pixel coordinate p to the output coordinate shift + p * scale,
        consistent with the rounded window.
        """
        f = lambda v: tf.cast(v, tf.float32)  # noqa: E731
        out = tf.constant(self.out_shape, tf.float32)
        low, high = tf.split(crop, 2)
        c0, c1 = low * f(canvas), high * f(canvas)
        scale = out / tf.maximum(c1 - c0, 1e-6)
        shift = (f(offset) - c0) * scale
        v0 = tf.clip_by_value(c0 - f(offset), 0.0, f(size))
        v1 = tf.clip_by_value(c1 - f(offset), 0.0, f(size))
        w0, w1 = tf.cast(tf.round(v0), tf.int32), tf.cast(tf.round(v1), tf.int32)
        o0 = tf.cast(tf.round(tf.clip_by_value(shift + v0 * scale, 0.0, out)), tf.int32)
        o1 = tf.cast(tf.round(tf.clip_by_value(shift + v1 * scale, 0.0, out)), tf.int32)
        ok = tf.reduce_all((w1 > w0) & (o1 > o0))
        eff_scale = f(o1 - o0) / f(tf.maximum(w1 - w0, 1))
        return ((w0, w1), (o0, o1), ok, tf.where(ok, eff_scale, scale),
                tf.where(ok, f(o0) - f(w0) * eff_scale, shift))

    def __call__(self, sample, u):
        canvas = tf.shape(sample.image)[:2]
        offset, size = sample.content[:2], sample.content[2:] - sample.content[:2]
        (w0, w1), (o0, o1), ok, scale, shift = self.geometry(sample.crop, canvas, offset, size)
        height, width = self.out_shape

        def warp():
            window = tf.slice(sample.image, tf.concat([offset + w0, [0]], 0), tf.concat([w1 - w0, [3]], 0))
            resized = aug.random_resize(window, o1 - o0, u, self.interpolations)
            padding = tf.concat([tf.stack([o0, tf.constant([height, width]) - o1], axis=1), [[0, 0]]], 0)
            photo = tf.pad(tf.ones_like(resized[..., :1]), padding) > 0
            return tf.where(photo, tf.pad(resized, padding), sample.fill)

        image = tf.cond(ok, warp, lambda: tf.broadcast_to(sample.fill, [height, width, 3]))
        image.set_shape([height, width, 3])
        # Boxes: relative to the image -> photo pixels -> relative to the output.
        f = lambda v: tf.tile(tf.cast(v, tf.float32), [2])  # noqa: E731
        out = f(self.out_shape)
        mapped = ((sample.boxes * f(canvas) - f(offset)) * f(scale) + f(shift)) / out
        boxes, labels, difficult = aug.crop_boxes(mapped, sample.labels, sample.difficult)
        content = tf.where(ok, tf.concat([o0, o1], 0), tf.zeros([4], tf.int32))
        return sample.replace(image=image, boxes=boxes, labels=labels, difficult=difficult, content=content,
                              crop=tf.constant([0.0, 0.0, 1.0, 1.0]))


@dataclasses.dataclass(frozen=True)
class Flip(Transform):
    """Caffe's mirror with probability prob: image and boxes."""
    prob: float = 0.5
    name: str = "flip"

    def draw(self, seeds):
        return seeds.uniform()

    def happens(self, u):
        return u < self.prob

    def __call__(self, sample, u):
        flip = self.happens(u)
        width = tf.shape(sample.image)[1]
        y0, x0, y1, x1 = tf.unstack(sample.content)
        return sample.replace(image=tf.where(flip, tf.reverse(sample.image, axis=[1]), sample.image),
                              boxes=tf.where(flip, aug.flip_boxes(sample.boxes), sample.boxes),
                              content=tf.where(flip, tf.stack([y0, width - x1, y1, width - x0]), sample.content))


@dataclasses.dataclass(frozen=True)
class SubtractMean(Transform):
    """Caffe's mean_value subtraction (the last step; a canvas filled with the mean becomes 0)."""
    mean_rgb: tuple = (0.0, 0.0, 0.0)
    name: str = "subtract_mean"

    def __call__(self, sample, numbers):
        return sample.replace(image=sample.image - tf.constant(self.mean_rgb, tf.float32))


class Compose:
    """Transforms applied top to bottom, each with the numbers of its own named seed stream."""

    def __init__(self, transforms):
        self.transforms = tuple(transforms)
        names = [t.name for t in self.transforms]
        if len(set(names)) != len(names):
            raise ValueError(f"transform names must be unique (they name the seed streams): {names}")

    def draw(self, seed):
        """seed (None, an int or an int tensor [2], as SeedStream) -> {transform name: its numbers}, for the
        transforms that draw some."""
        seeds = aug.SeedStream(seed)
        numbers = {t.name: t.draw(seeds.named(t.name)) for t in self.transforms}
        return {name: value for name, value in numbers.items() if value is not None}

    def __call__(self, sample, seed, numbers=None):
        """The Sample after every transform; numbers: those of draw(seed), if drawn already."""
        numbers = self.draw(seed) if numbers is None else numbers
        for t in self.transforms:
            sample = t(sample, numbers.get(t.name))
        return sample


def ssd_transforms(out_shape, mean_rgb, samplers=aug.SSD_BATCH_SAMPLERS, expand_prob=0.5, max_expand_ratio=4.0,
                   flip_prob=0.5, distortion=aug.DistortionParams(), interpolations=aug.INTERPOLATIONS):
    """The Caffe SSD data layer's transforms with ssd_vgg_preprocessing.preprocess_for_train's options
    (distortion None leaves Distort out)."""
    mean_rgb = tuple(float(m) for m in mean_rgb)
    return ([Distort(distortion)] if distortion is not None else []) + [
        Expand(float(expand_prob), float(max_expand_ratio), fill=mean_rgb),
        BatchSample(tuple(samplers)),
        Resize(tuple(int(s) for s in out_shape), tuple(interpolations)),
        Flip(float(flip_prob)),
        SubtractMean(mean_rgb),
    ]


def reference_preprocess_for_train(image, labels, boxes, difficult, out_shape, mean_rgb, seed=None, **options):
    """preprocess_for_train's contract (the same arguments, options and outputs: image, labels, boxes,
    difficult), computed by Compose(ssd_transforms(...)) on the whole image."""
    sample = Compose(ssd_transforms(out_shape, mean_rgb, **options))(Sample.of(image, boxes, labels, difficult), seed)
    return sample.image, sample.labels, sample.boxes, sample.difficult
