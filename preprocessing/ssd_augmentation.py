"""The Caffe SSD's training augmentation, op by op (Caffe's im_transforms.cpp, sampler.cpp, bbox_util.cpp).

Boxes are [ymin, xmin, ymax, xmax] relative, float32. The ops draw nothing: each takes the uniforms it
reads (`u`, of a shape given here) as an argument. The transforms of ssd_transforms.py draw them, each from
its own stateless SeedStream, so that a run (and a tf.data map running in parallel) is reproducible from
one base seed, and the same numbers reach the plain reference pipeline (ssd_transforms.Compose) and the
fused fast path (ssd_vgg_preprocessing).

The pieces, in the order the Caffe data layer applies them:
- distort_color: DistortImage (brightness, contrast, saturation, hue; each with probability 0.5, in one of
  two orders);
- sample_expand: ExpandImage, the zoom-out onto a mean-filled canvas up to 4x the image;
- generate_samples + choose_sample: GenerateBatchSamples (one candidate crop per BatchSampler, up to
  max_trials each, under the sampler's Jaccard constraint) and the uniform choice among the candidates;
- random_resize: the WARP resize with an interpolation drawn uniformly from Caffe's interp_mode list
  (the interpolations are in resizing.py);
- crop_boxes / flip_boxes: the annotation transforms (emit constraint CENTER, projection, clipping).
"""
import dataclasses
import zlib

import tensorflow as tf

from box_ops.box_coding import iou_matrix
from preprocessing import resizing
from preprocessing.resizing import INTERPOLATIONS


def _stream_index(name):
    """A transform name -> a stable int: the low 31 bits of its CRC-32 (the same in every process, unlike
    hash())."""
    return zlib.crc32(name.encode("utf-8")) & 0x7FFFFFFF


class SeedStream:
    """Hands out stateless seeds (int [2] tensors) derived from one base seed, and uniform numbers drawn
    with them: the k-th draw uses stateless_fold_in(base, k).

    `seed`: None (a base seed drawn at random: not reproducible), a Python int, or an int tensor of shape
    [2] (e.g. [run seed, element index] in a tf.data pipeline). named(name) is the stream of one transform:
    its numbers depend on the base seed and the name only, so a transform added to or removed from a
    pipeline changes no other transform's numbers.
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

    def named(self, name):
        """The stream of the transform `name`: base seed stateless_fold_in(base, the name's _stream_index)."""
        return SeedStream(tf.random.experimental.stateless_fold_in(self._base, _stream_index(name)))

    def uniform(self, shape=()):
        """float32 uniform in [0, 1) of the given shape, from the next seed."""
        return tf.random.stateless_uniform(list(shape), self(), dtype=tf.float32)


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


DISTORTION_DRAW = (9,)  # the shape of the uniforms distortion_amounts reads


def distortion_amounts(u, params=DistortionParams()):
    """Caffe's DistortImage decisions for one image from nine uniforms u (float32 [9] in [0, 1): the order,
    then for each step whether it happens, then the four amounts), as the amounts of its steps (a dict of
    scalar tensors for apply_distortion): brightness (0 when skipped), contrast_before / contrast_after
    (the factor in the position its order puts it, 1 elsewhere), saturation (1 when skipped), hue (0 when
    skipped) and hsv (whether saturation or hue happens)."""
    p = params
    u_happens, u_amounts = tf.split(u, [5, 4])
    happens = u_happens < tf.constant([0.5, p.brightness_prob, p.contrast_prob, p.saturation_prob, p.hue_prob])
    contrast_first, do_b, do_c, do_s, do_h = tf.unstack(happens)
    lower = tf.constant([-p.brightness_delta, p.contrast_lower, p.saturation_lower, -p.hue_delta])
    span = tf.constant([2 * p.brightness_delta, p.contrast_upper - p.contrast_lower,
                        p.saturation_upper - p.saturation_lower, 2 * p.hue_delta])
    amounts = tf.where(tf.stack([do_b, do_c, do_s, do_h]), lower + u_amounts * span, tf.constant([0.0, 1.0, 1.0, 0.0]))
    brightness, contrast, saturation, hue = tf.unstack(amounts)
    return dict(brightness=brightness, contrast_before=tf.where(contrast_first, contrast, 1.0),
                saturation=saturation, hue=hue, contrast_after=tf.where(contrast_first, 1.0, contrast),
                hsv=do_s | do_h)


def apply_distortion(image, d, then=None):
    """float32 [..., 3] RGB in [0, 255] -> the same, distorted with the amounts d of distortion_amounts, then
    passed through `then` (a per-pixel function, or None).

    A skipped brightness or contrast step has the neutral amount (x + 0, x * 1, exact on [0, 255]), so those
    steps need no branch; saturation and hue change different HSV components, so they are one step (one
    HSV round trip), taken only when either happens. (The branch also keeps XLA from fusing the HSV
    arithmetic with its producers, which it would recompute per use.) The steps after the branch point,
    `then` included, are inside both branches: under XLA that saves writing the whole image once more at
    the branch's end, and the branch without HSV is a single pass.
    """
    then = then or (lambda x: x)
    image = adjust_contrast(adjust_brightness(image, d["brightness"]), d["contrast_before"])
    return tf.cond(d["hsv"],
                   lambda: then(adjust_contrast(_clip(adjust_saturation_hue(image, d["saturation"], d["hue"])),
                                                d["contrast_after"])),
                   lambda: then(adjust_contrast(image, d["contrast_after"])))


def distort_color(image, u, params=DistortionParams()):
    """float32 [..., 3] RGB in [0, 255] -> the same, photometrically distorted as Caffe's DistortImage.

    With probability 0.5 the order is brightness, contrast, saturation, hue; otherwise brightness,
    saturation, hue, contrast. Each step happens with its own probability (0.5). Caffe's random channel
    reordering has probability 0 in SSD and is left out. All per pixel: it commutes with cropping and
    flipping, and with resizing up to interpolation. u: the uniforms of distortion_amounts.
    """
    return apply_distortion(image, distortion_amounts(u, params))


# ---------------------------------------------------------------------------------------------------------
# Zoom-out (Caffe ExpandImage).

EXPAND_DRAW = (4,)  # the shape of the uniforms sample_expand reads


def sample_expand(size, u, max_expand_ratio=4.0, prob=0.5):
    """Caffe's ExpandImage geometry for an image of int32 size [height, width], from four uniforms u
    (float32 [4] in [0, 1): whether, ratio, y offset, x offset).

    With probability `prob` the image is placed on a canvas of int(size * r), r ~ U(1, max_expand_ratio),
    at an integer offset floor(U(0, canvas - size)); otherwise the canvas is the image.
    Returns int32 (canvas [2], offset [2]), [y, x] order.
    """
    size = tf.cast(size, tf.int32)
    u_expand, u_ratio, u_y, u_x = tf.unstack(u)
    ratio = tf.where(u_expand < prob, 1.0 + u_ratio * (max_expand_ratio - 1.0), 1.0)
    canvas = tf.maximum(tf.cast(tf.cast(size, tf.float32) * ratio, tf.int32), size)
    room = canvas - size
    offset = tf.cast(tf.floor(tf.stack([u_y, u_x]) * tf.cast(room, tf.float32)), tf.int32)
    return canvas, tf.minimum(offset, room)


def boxes_to_canvas(boxes, size, canvas, offset):
    """Relative boxes of an image of int size [2] -> relative boxes of the expand canvas [2] it sits on at
    offset [2]."""
    f = lambda v: tf.cast(tf.tile(v, [2]), tf.float32)  # noqa: E731
    return (boxes * f(size) + f(offset)) / f(canvas)


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


def sampler_draw_shape(samplers=SSD_BATCH_SAMPLERS):
    """The shape of the uniforms generate_samples reads: (4, samplers, trials) for scale, ratio, x and y."""
    return (4, len(samplers), max(s.max_trials for s in samplers))


def generate_samples(boxes, u, samplers=SSD_BATCH_SAMPLERS, valid=None):
    """One candidate crop per sampler, as Caffe's GenerateSamples with max_sample 1.

    Each sampler draws up to max_trials crops (SampleBBox: scale ~ U(min, max); aspect ratio ~
    U(max(min_ar, scale^2), min(max_ar, 1 / scale^2)); w = scale * sqrt(ar), h = scale / sqrt(ar);
    offsets ~ U(0, 1 - w), U(0, 1 - h)) and keeps the first that satisfies its constraint. All trials are
    drawn at once, which is the same distribution as drawing them one by one.

    Args: boxes float32 [G, 4] relative to the (expanded) image; u: float32 uniforms of
      sampler_draw_shape(samplers); valid: None, or bool [G] marking the real boxes among padding (a
      padding box satisfies no constraint).
    Returns: crops float32 [S, 4] and found bool [S] (crops[i] is meaningful where found[i]).
    """
    _, _, num_trials = sampler_draw_shape(samplers)

    def column(values):
        return tf.constant([[float(v)] for v in values], tf.float32)  # [S, 1]

    min_s = column(s.min_scale for s in samplers)
    max_s = column(s.max_scale for s in samplers)
    u_scale, u_ratio, u_x, u_y = tf.unstack(u)
    scale = min_s + u_scale * (max_s - min_s)
    min_ar = tf.maximum(column(s.min_aspect_ratio for s in samplers), scale ** 2)
    max_ar = tf.minimum(column(s.max_aspect_ratio for s in samplers), 1.0 / scale ** 2)
    ratio = min_ar + u_ratio * (max_ar - min_ar)
    w = tf.minimum(scale * tf.sqrt(ratio), 1.0)
    h = tf.minimum(scale / tf.sqrt(ratio), 1.0)
    x0 = u_x * (1.0 - w)
    y0 = u_y * (1.0 - h)
    crops = tf.stack([y0, x0, y0 + h, x0 + w], axis=-1)  # [S, T, 4]

    iou = tf.reshape(iou_matrix(tf.reshape(crops, [-1, 4]), boxes), [len(samplers), num_trials, -1])
    lo = column(-1.0 if s.min_jaccard_overlap is None else s.min_jaccard_overlap for s in samplers)
    hi = column(2.0 if s.max_jaccard_overlap is None else s.max_jaccard_overlap for s in samplers)
    hit = (iou >= lo[..., None]) & (iou <= hi[..., None])
    some_box = tf.reduce_any(hit if valid is None else hit & valid, axis=-1)  # [S, T]
    constrained = tf.constant([[s.constrained] for s in samplers])
    in_trials = tf.range(num_trials)[None, :] < tf.constant([[s.max_trials] for s in samplers])
    ok = (some_box | ~constrained) & in_trials
    first = tf.argmax(tf.cast(ok, tf.int32), axis=1, output_type=tf.int32)
    return tf.gather(crops, first, batch_dims=1), tf.reduce_any(ok, axis=1)


def choose_sample(crops, found, u):
    """A crop chosen uniformly among the found candidates with the uniform u (scalar in [0, 1); Caffe:
    rand() % size); the whole image if none."""
    rank = tf.cumsum(tf.cast(found, tf.int32))  # 1, 2, ... along the found candidates
    count = tf.reduce_max(rank)
    k = tf.cast(u * tf.cast(count, tf.float32), tf.int32) + 1  # in 1..count
    chosen = found & tf.equal(rank, tf.minimum(k, count))
    crop = tf.reduce_sum(tf.where(chosen[:, None], crops, 0.0), axis=0)  # the one chosen row
    return tf.where(count > 0, crop, tf.constant([0.0, 0.0, 1.0, 1.0]))


# ---------------------------------------------------------------------------------------------------------
# Annotations and pixels.

def crop_boxes(boxes, *others):
    """Caffe's crop annotation transform for boxes already mapped into the crop's relative coordinates.

    Keeps the boxes whose centre lies in the crop (emit_type CENTER), clips them to [0, 1] and drops those
    left without area (ProjectBBox). `others` ([G] tensors: labels, difficult flags) are filtered alike.
    Returns (boxes, *others).
    """
    return gather_kept(*crop_boxes_mask(boxes), *others)


def crop_boxes_mask(boxes):
    """crop_boxes without the filtering (static shapes, for XLA): (clipped boxes [G, 4], keep bool [G])."""
    low, high = tf.split(boxes, 2, axis=1)  # [G, 2] each: (ymin, xmin), (ymax, xmax)
    twice_centre = low + high
    clipped = tf.clip_by_value(boxes, 0.0, 1.0)
    clipped_low, clipped_high = tf.split(clipped, 2, axis=1)
    keep = tf.reduce_all((twice_centre >= 0.0) & (twice_centre <= 2.0) & (clipped_high > clipped_low), axis=1)
    return clipped, keep


def gather_kept(boxes, keep, *others):
    """The rows of boxes and of each of `others` where keep ([G] bool) is true, in order."""
    index = tf.reshape(tf.where(keep), [-1])  # once for all of them (boolean_mask would redo it per tensor)
    return tuple(tf.gather(t, index) for t in (boxes,) + others)


def flip_boxes(boxes):
    """Horizontal mirror of relative boxes."""
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return tf.stack([ymin, 1.0 - xmax, ymax, 1.0 - xmin], axis=-1)


def random_resize(image, size, u, methods=INTERPOLATIONS):
    """[H, W, 3] in [0, 255] -> float32 [size[0], size[1], 3], the interpolation chosen uniformly from
    `methods` (names of resizing.INTERPOLATIONS, Caffe's interp_mode list) with the uniform u (scalar)."""
    index = tf.minimum(tf.cast(u * len(methods), tf.int32), len(methods) - 1)
    return tf.switch_case(index, [lambda m=m: resizing.resize(image, size, m) for m in methods])
