"""The Caffe SSD's training augmentation, op by op (Caffe's im_transforms.cpp, sampler.cpp, bbox_util.cpp).

Boxes are [ymin, xmin, ymax, xmax] relative, float32. Randomness is stateless: every function takes a
`seeds` SeedStream and draws its numbers from seeds derived from one base seed, so that a run (and a
tf.data map running in parallel) is reproducible from that seed alone.

The pieces, in the order the Caffe data layer applies them (the caller, ssd_vgg_preprocessing, composes
them so that pixels are touched as late and as small as possible):
- distort_color: DistortImage (brightness, contrast, saturation, hue; each with probability 0.5, in one of
  two orders);
- sample_expand: ExpandImage, the zoom-out onto a mean-filled canvas up to 4x the image;
- generate_samples + choose_sample: GenerateBatchSamples (one candidate crop per BatchSampler, up to
  max_trials each, under the sampler's Jaccard constraint) and the uniform choice among the candidates;
- random_resize: the WARP resize with an interpolation drawn uniformly from Caffe's interp_mode list;
- crop_boxes / flip_boxes: the annotation transforms (emit constraint CENTER, projection, clipping).
"""
import dataclasses

import tensorflow as tf

from nets.box_coding import iou_matrix


class SeedStream:
    """Hands out stateless seeds (int [2] tensors) derived from one base seed.

    `seed`: None (a base seed drawn at random: not reproducible), a Python int, or an int tensor of shape
    [2] (e.g. [run seed, element index] in a tf.data pipeline).
    """

    def __init__(self, seed=None):
        if seed is None:
            seed = tf.random.uniform([2], 0, 2 ** 31 - 1, dtype=tf.int64)
        elif isinstance(seed, int):
            seed = tf.constant([seed, 0], tf.int64)
        self._base = tf.cast(tf.convert_to_tensor(seed), tf.int64)
        self._count = 0

    def __call__(self):
        self._count += 1
        return tf.random.experimental.stateless_fold_in(self._base, self._count)

    def uniform(self, shape=(), minval=0.0, maxval=1.0):
        """float32 uniform in [minval, maxval) (minval, maxval broadcast with shape)."""
        u = tf.random.stateless_uniform(list(shape), self(), dtype=tf.float32)
        return minval + u * (tf.cast(maxval, tf.float32) - minval)

    def bernoulli(self, prob):
        return self.uniform() < prob


# ---------------------------------------------------------------------------------------------------------
# Photometric distortion (Caffe DistortImage). Caffe works on uint8 images, so every step saturates to
# [0, 255]; here on float32 in [0, 255] with a clip after every step.

@dataclasses.dataclass(frozen=True)
class DistortionParams:
    """Caffe's DistortionParameter as the SSD prototxts set it."""
    brightness_prob: float = 0.5
    brightness_delta: float = 32.0
    contrast_prob: float = 0.5
    contrast_lower: float = 0.5
    contrast_upper: float = 1.5
    saturation_prob: float = 0.5
    saturation_lower: float = 0.5
    saturation_upper: float = 1.5
    hue_prob: float = 0.5
    hue_delta: float = 18.0  # in OpenCV's 8-bit hue units (2 degrees): +-18 is +-36 degrees


def _clip(image):
    return tf.clip_by_value(image, 0.0, 255.0)


def adjust_brightness(image, delta):
    """AdjustBrightness: x + delta, saturated."""
    return _clip(image + delta)


def adjust_contrast(image, factor):
    """AdjustContrast: Caffe's `convertTo(alpha=factor)`, i.e. x * factor (no centring on the mean)."""
    return _clip(image * factor)


def _planes(image):
    """[..., 3] -> [3, N]: TF's CPU kernels are an order of magnitude slower on interleaved RGB wherever a
    channel is addressed (tf.image.adjust_hue and adjust_saturation cost 2-3x the functions below on a
    300x300 image), so the HSV steps work on the three colour planes, one transpose each way."""
    return tf.transpose(tf.reshape(image, [-1, 3]))


def _interleave(planes, shape):
    return tf.reshape(tf.transpose(tf.stack(planes)), shape)


def adjust_saturation(image, factor):
    """AdjustSaturation, exactly in HSV: float32 [..., 3] RGB in [0, 255] -> the same.

    S = (max - min) / max is multiplied by `factor` and clipped to [0, 1] with H and V = max kept: every
    channel moves away from (or towards) the max by the same ratio, c' = max - (max - c) * k,
    k = min(factor, max / (max - min)).
    """
    r, g, b = tf.unstack(_planes(image))
    vmax = tf.maximum(tf.maximum(r, g), b)
    chroma = vmax - tf.minimum(tf.minimum(r, g), b)
    k = tf.minimum(tf.cast(factor, tf.float32), vmax / tf.maximum(chroma, 1e-6))
    return _interleave([vmax - (vmax - c) * k for c in (r, g, b)], tf.shape(image))


def adjust_saturation_hue(image, saturation=1.0, hue_delta=0.0):
    """AdjustSaturation then AdjustHue, exactly in HSV: float32 [..., 3] RGB in [0, 255] -> the same.

    S is multiplied by `saturation` and clipped to [0, 1]; H is shifted by `hue_delta` OpenCV hue units
    (180 per turn); V is kept. The two commute (they change different HSV components), so one pass does
    both. Computed with the hexcone formulas: V = max is kept, the chroma C = max - min = V * S is scaled,
    the hue h in [0, 6) (sextants) is shifted, and each channel is V - C + C * P(h), where P is the pure
    hue's channel: R = clip(|h - 3| - 1, 0, 1), G = clip(2 - |h - 2|, 0, 1), B = clip(2 - |h - 4|, 0, 1).
    The result stays in [0, 255] up to rounding. |hue_delta| <= 180. (OpenCV saturates H + delta at 0 where
    this wraps.)
    """
    shape = tf.shape(image)
    planes = _planes(image)
    r, g, b = planes[0], planes[1], planes[2]
    vmax = tf.maximum(tf.maximum(r, g), b)
    chroma = vmax - tf.minimum(tf.minimum(r, g), b)
    inv_chroma = 1.0 / tf.maximum(chroma, 1e-6)
    is_r, is_g = tf.equal(vmax, r), tf.equal(vmax, g)
    # Hue in sextants, in [-1, 5): (g - b) / C if R is the max, 2 + (b - r) / C if G, 4 + (r - g) / C if B.
    hue = tf.where(is_r, g - b, tf.where(is_g, b - r + 2.0 * chroma, r - g + 4.0 * chroma)) * inv_chroma
    hue = hue + tf.cast(hue_delta, tf.float32) / 30.0  # |shift| < 6: one wrap each way is enough
    hue = tf.where(hue < 0.0, hue + 6.0, tf.where(hue >= 6.0, hue - 6.0, hue))
    chroma = chroma * tf.minimum(tf.cast(saturation, tf.float32), vmax * inv_chroma)  # S * factor <= 1
    base = vmax - chroma
    red = tf.clip_by_value(tf.abs(hue - 3.0) - 1.0, 0.0, 1.0)
    green = tf.clip_by_value(2.0 - tf.abs(hue - 2.0), 0.0, 1.0)
    blue = tf.clip_by_value(2.0 - tf.abs(hue - 4.0), 0.0, 1.0)
    return _interleave([base + chroma * red, base + chroma * green, base + chroma * blue], shape)


def draw_distortion(seeds, params=DistortionParams()):
    """The numbers Caffe's DistortImage draws for one image, as a dict of scalar tensors (for
    apply_distortion): the order, and for each step whether it happens and its amount."""
    p = params
    contrast_first = seeds.bernoulli(0.5)
    do_b, delta_b = seeds.bernoulli(p.brightness_prob), seeds.uniform((), -p.brightness_delta, p.brightness_delta)
    do_c, factor_c = seeds.bernoulli(p.contrast_prob), seeds.uniform((), p.contrast_lower, p.contrast_upper)
    do_s, factor_s = seeds.bernoulli(p.saturation_prob), seeds.uniform((), p.saturation_lower, p.saturation_upper)
    do_h, delta_h = seeds.bernoulli(p.hue_prob), seeds.uniform((), -p.hue_delta, p.hue_delta)
    return dict(contrast_first=contrast_first, do_brightness=do_b, brightness=delta_b, do_contrast=do_c,
                contrast=factor_c, do_saturation=do_s, saturation=factor_s, do_hue=do_h, hue=delta_h)


def apply_distortion(image, d):
    """float32 [..., 3] RGB in [0, 255] -> the same, distorted with the numbers d of draw_distortion."""
    def maybe(cond, fn, x):
        return tf.cond(cond, lambda: fn(x), lambda: x)

    image = maybe(d["do_brightness"], lambda x: adjust_brightness(x, d["brightness"]), image)
    image = maybe(d["do_contrast"] & d["contrast_first"], lambda x: adjust_contrast(x, d["contrast"]), image)
    # Saturation and hue change different HSV components, so they are one step (one HSV round trip); the
    # cheaper saturation-only formula where the hue stays.
    image = tf.cond(d["do_hue"], lambda: _clip(adjust_saturation_hue(
        image, tf.where(d["do_saturation"], d["saturation"], 1.0), d["hue"])),
        lambda: maybe(d["do_saturation"], lambda x: _clip(adjust_saturation(x, d["saturation"])), image))
    image = maybe(d["do_contrast"] & ~d["contrast_first"], lambda x: adjust_contrast(x, d["contrast"]), image)
    return image


def distort_color(image, seeds, params=DistortionParams()):
    """float32 [..., 3] RGB in [0, 255] -> the same, photometrically distorted as Caffe's DistortImage.

    With probability 0.5 the order is brightness, contrast, saturation, hue; otherwise brightness,
    saturation, hue, contrast. Each step happens with its own probability (0.5). Caffe's random channel
    reordering has probability 0 in SSD and is left out. All per pixel: it commutes with cropping and
    flipping, and with resizing up to interpolation.
    """
    return apply_distortion(image, draw_distortion(seeds, params))


# ---------------------------------------------------------------------------------------------------------
# Zoom-out (Caffe ExpandImage).

def sample_expand(height, width, seeds, max_expand_ratio=4.0, prob=0.5):
    """Draws Caffe's ExpandImage geometry for an image of int height x width.

    With probability `prob` the image is placed on a canvas of int(size * r), r ~ U(1, max_expand_ratio),
    at an integer offset floor(U(0, canvas - size)); otherwise the canvas is the image.
    Returns int32 scalars (canvas_height, canvas_width, offset_y, offset_x).
    """
    height = tf.cast(height, tf.int32)
    width = tf.cast(width, tf.int32)
    expand = seeds.bernoulli(prob)
    ratio = tf.where(expand, seeds.uniform((), 1.0, max_expand_ratio), 1.0)
    canvas_h = tf.maximum(tf.cast(tf.cast(height, tf.float32) * ratio, tf.int32), height)
    canvas_w = tf.maximum(tf.cast(tf.cast(width, tf.float32) * ratio, tf.int32), width)
    off_y = tf.cast(tf.floor(seeds.uniform((), 0.0, tf.cast(canvas_h - height, tf.float32))), tf.int32)
    off_x = tf.cast(tf.floor(seeds.uniform((), 0.0, tf.cast(canvas_w - width, tf.float32))), tf.int32)
    return canvas_h, canvas_w, tf.minimum(off_y, canvas_h - height), tf.minimum(off_x, canvas_w - width)


def boxes_to_canvas(boxes, height, width, canvas_h, canvas_w, off_y, off_x):
    """Relative boxes of the image -> relative boxes of the expand canvas it sits on."""
    f = lambda v: tf.cast(v, tf.float32)  # noqa: E731
    size = tf.stack([f(height), f(width), f(height), f(width)])
    offset = tf.stack([f(off_y), f(off_x), f(off_y), f(off_x)])
    canvas = tf.stack([f(canvas_h), f(canvas_w), f(canvas_h), f(canvas_w)])
    return (boxes * size + offset) / canvas


# ---------------------------------------------------------------------------------------------------------
# The batch sampler (Caffe GenerateBatchSamples / SampleBBox / SatisfySampleConstraint).

@dataclasses.dataclass(frozen=True)
class BatchSampler:
    """Caffe's BatchSampler with max_sample 1. Defaults: the whole image (scale 1, aspect 1), one trial.

    min/max_jaccard_overlap None means the constraint is absent. With at least one of them set, a crop
    is accepted when SOME ground-truth box has min <= IoU <= max (so an image without boxes never
    satisfies a constrained sampler). Aspect ratio is w/h of the crop relative to the image.
    """
    min_scale: float = 1.0
    max_scale: float = 1.0
    min_aspect_ratio: float = 1.0
    max_aspect_ratio: float = 1.0
    min_jaccard_overlap: float = None
    max_jaccard_overlap: float = None
    max_trials: int = 1

    @property
    def constrained(self):
        return self.min_jaccard_overlap is not None or self.max_jaccard_overlap is not None


def _crop(min_iou=None, max_iou=None):
    return BatchSampler(0.3, 1.0, 0.5, 2.0, min_iou, max_iou, max_trials=50)


# The seven batch_sampler entries of the Caffe SSD training prototxts (ssd_pascal.py), in order.
SSD_BATCH_SAMPLERS = (
    BatchSampler(),
    _crop(min_iou=0.1), _crop(min_iou=0.3), _crop(min_iou=0.5), _crop(min_iou=0.7), _crop(min_iou=0.9),
    _crop(max_iou=1.0),
)


def generate_samples(boxes, seeds, samplers=SSD_BATCH_SAMPLERS):
    """One candidate crop per sampler, as Caffe's GenerateSamples with max_sample 1.

    Each sampler draws up to max_trials crops (SampleBBox: scale ~ U(min, max); aspect ratio ~
    U(max(min_ar, scale^2), min(max_ar, 1 / scale^2)); w = scale * sqrt(ar), h = scale / sqrt(ar);
    offsets ~ U(0, 1 - w), U(0, 1 - h)) and keeps the first that satisfies its constraint. All trials are
    drawn at once, which is the same distribution as drawing them one by one.

    Args: boxes float32 [G, 4] relative to the (expanded) image.
    Returns: crops float32 [S, 4] and found bool [S] (crops[i] is meaningful where found[i]).
    """
    num_trials = max(s.max_trials for s in samplers)

    def column(values):
        return tf.constant([[float(v)] for v in values], tf.float32)  # [S, 1]

    min_s = column(s.min_scale for s in samplers)
    max_s = column(s.max_scale for s in samplers)
    scale = seeds.uniform((len(samplers), num_trials), min_s, max_s)
    min_ar = tf.maximum(column(s.min_aspect_ratio for s in samplers), scale ** 2)
    max_ar = tf.minimum(column(s.max_aspect_ratio for s in samplers), 1.0 / scale ** 2)
    ratio = seeds.uniform((len(samplers), num_trials), min_ar, max_ar)
    w = tf.minimum(scale * tf.sqrt(ratio), 1.0)
    h = tf.minimum(scale / tf.sqrt(ratio), 1.0)
    x0 = seeds.uniform((len(samplers), num_trials), 0.0, 1.0 - w)
    y0 = seeds.uniform((len(samplers), num_trials), 0.0, 1.0 - h)
    crops = tf.stack([y0, x0, y0 + h, x0 + w], axis=-1)  # [S, T, 4]

    iou = tf.reshape(iou_matrix(tf.reshape(crops, [-1, 4]), boxes), [len(samplers), num_trials, -1])
    lo = column(-1.0 if s.min_jaccard_overlap is None else s.min_jaccard_overlap for s in samplers)
    hi = column(2.0 if s.max_jaccard_overlap is None else s.max_jaccard_overlap for s in samplers)
    some_box = tf.reduce_any((iou >= lo[..., None]) & (iou <= hi[..., None]), axis=-1)  # [S, T]
    constrained = tf.constant([[s.constrained] for s in samplers])
    in_trials = tf.range(num_trials)[None, :] < tf.constant([[s.max_trials] for s in samplers])
    ok = (some_box | ~constrained) & in_trials
    first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
    return tf.gather(crops, first, batch_dims=1), tf.reduce_any(ok, axis=1)


def choose_sample(crops, found, seeds):
    """A crop drawn uniformly among the found candidates (Caffe: rand() % size); the whole image if none."""
    count = tf.reduce_sum(tf.cast(found, tf.int32))
    k = tf.minimum(tf.cast(seeds.uniform() * tf.cast(count, tf.float32), tf.int32), count - 1)
    index = tf.argmax(tf.cast(found, tf.int32) * tf.cast(tf.equal(tf.cumsum(tf.cast(found, tf.int32)) - 1, k),
                                                           tf.int32), output_type=tf.int32)
    return tf.where(count > 0, crops[index], tf.constant([0.0, 0.0, 1.0, 1.0]))


# ---------------------------------------------------------------------------------------------------------
# Annotations and pixels.

def crop_boxes(boxes, *others):
    """Caffe's crop annotation transform for boxes already mapped into the crop's relative coordinates.

    Keeps the boxes whose centre lies in the crop (emit_type CENTER), clips them to [0, 1] and drops those
    left without area (ProjectBBox). `others` ([G] tensors: labels, difficult flags) are filtered alike.
    Returns (boxes, *others).
    """
    cy = (boxes[:, 0] + boxes[:, 2]) / 2.0
    cx = (boxes[:, 1] + boxes[:, 3]) / 2.0
    clipped = tf.clip_by_value(boxes, 0.0, 1.0)
    keep = ((cy >= 0.0) & (cy <= 1.0) & (cx >= 0.0) & (cx <= 1.0)
            & (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1]))
    return (tf.boolean_mask(clipped, keep),) + tuple(tf.boolean_mask(t, keep) for t in others)


def flip_boxes(boxes):
    """Horizontal mirror of relative boxes."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


# Caffe's interp_mode list of the SSD prototxts: LINEAR, AREA, NEAREST, CUBIC, LANCZOS4. TensorFlow has no
# Lanczos-4; Lanczos-3 stands in for it.
INTERPOLATIONS = ("bilinear", "area", "nearest", "bicubic", "lanczos3")
_CONVEX_INTERPOLATIONS = ("bilinear", "area", "nearest")  # outputs are weighted means of inputs


def random_resize(image, size, seeds, methods=INTERPOLATIONS):
    """[H, W, 3] in [0, 255] -> float32 [size[0], size[1], 3], interpolation drawn uniformly from `methods`.

    Kernels with negative lobes (bicubic, Lanczos) overshoot; their output is saturated to [0, 255] as
    OpenCV's resize of a uint8 image is.
    """
    index = tf.minimum(tf.cast(seeds.uniform() * len(methods), tf.int32), len(methods) - 1)

    def branch(method):
        def resize():
            out = tf.cast(tf.image.resize(image, size, method=method), tf.float32)
            return out if method in _CONVEX_INTERPOLATIONS else _clip(out)
        return resize

    return tf.switch_case(index, [branch(m) for m in methods])
