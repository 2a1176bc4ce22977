"""Pre-processing for the VGG SSD networks.

Evaluation and inference: resize to the network size (bilinear, no aspect preservation, as the Caffe SSD
tests) and subtract the mean (R 123, G 117, B 104); boxes stay relative so they map back to the original
image size unchanged.

Training: the Caffe SSD's augmentation (AnnotatedDataLayer with the ssd_pascal.py transform_param):
photometric distortion, zoom-out onto a mean-filled canvas up to 4x (probability 0.5), the 7 batch
samplers, horizontal flip (0.5), WARP resize to the network size with a random interpolation, mean
subtraction; difficult boxes are kept (use_difficult_gt). The ops are in ssd_augmentation.py; this module
composes them so that pixels are touched as late and as small as possible:

1. All geometry is drawn first, on the boxes and the image size only: expand canvas, crop, flip.
2. Only the part of the original image that the crop sees is loaded (for a JPEG record: decoded, with
   decode_and_crop_jpeg) and resized straight to where it lands in the output; the expand canvas is never
   built: after mean subtraction its fill is 0, so it is zero padding around the resized content.
3. The photometric distortion runs on that resized content (at most out_shape pixels) instead of on the
   original image as Caffe does. Every step of it is per pixel, so it commutes exactly with cropping and
   with the flip, and with resizing up to interpolation (resize averages neighbouring pixels; the
   distortion's clipping and HSV steps are not linear, so the two orders differ only where neighbouring
   pixels straddle a clip or hue boundary). The canvas fill stays undistorted, as in Caffe, where the
   expand happens after the distortion.
4. Boxes follow the pixels exactly: the content window and its output position are rounded to whole
   pixels and the boxes are mapped with that same rounded transform (at most half a pixel from the drawn
   crop), then filtered and clipped as Caffe does (centre in crop, positive area).
"""
import tensorflow as tf

from preprocessing import ssd_augmentation as aug

MEAN_RGB = (123.0, 117.0, 104.0)


def subtract_mean(images, mean_rgb=MEAN_RGB):
    return tf.cast(images, tf.float32) - tf.constant(mean_rgb, tf.float32)


def preprocess_for_eval(images, out_shape, mean_rgb=MEAN_RGB, resize_uint8=True):
    """uint8 or float [H, W, 3] or [B, H, W, 3] RGB in 0..255 -> float32 resized to out_shape, mean-subtracted.

    resize_uint8: TensorFlow's ResizeBilinear reads uint8 itself (float32 out, the same values as casting
    first) without a float32 copy of the full-size input, so a batch of 8 1280x720 video frames resizes about
    3x faster. False casts first, for graphs converted to other runtimes (TFLite's RESIZE_BILINEAR and the
    ONNX Resize that tf2onnx writes take no uint8 input with a float output); the values are the same.
    """
    if not resize_uint8:
        images = tf.cast(images, tf.float32)
    images = tf.image.resize(images, out_shape, method=tf.image.ResizeMethod.BILINEAR)
    images = tf.cast(images, tf.float32)
    return subtract_mean(images, mean_rgb)


def _geometry(crop, canvas, offset, size, out):
    """The crop -> where the image's pixels go in the output, both axes at once ([y, x] vectors).

    crop: [ymin, xmin, ymax, xmax] relative to the canvas; canvas/offset/size: int32 [2] canvas size,
    image offset in it, image size (pixels); out: float32 [2] output size. Returns int32 (w0, w1) the image
    pixels to load, (o0, o1) the output pixels they fill, bool ok (some pixel is visible), and float32
    (scale, shift) mapping an image pixel coordinate p to the output coordinate shift + p * scale,
    consistent with the rounded window.
    """
    f = lambda v: tf.cast(v, tf.float32)  # noqa: E731
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
    return (w0, w1), (o0, o1), ok, tf.where(ok, eff_scale, scale), tf.where(ok, f(o0) - f(w0) * eff_scale, shift)


# Scalars the training transform draws: expand (4: whether, ratio, two offsets), choice of sample (1),
# flip (1) in the geometry; interpolation (1) after it.
_GEOMETRY_SCALARS = 6
_NUM_SCALARS = _GEOMETRY_SCALARS + 1
# The geometry runs on the boxes padded to one of these counts (static shapes for XLA: one compilation
# per count used); larger counts are padded to a multiple of the last.
_BOX_BUCKETS = (8, 16, 32, 64, 128, 256, 512, 1024)


def _padded_count(num_boxes):
    last = _BOX_BUCKETS[-1]
    count = (num_boxes + last - 1) // last * last
    for bucket in reversed(_BOX_BUCKETS):
        count = tf.where(num_boxes <= bucket, bucket, count)
    return count


@tf.function(jit_compile=True, autograph=False)
def _draw_geometry(boxes, valid, size, scalars, sampler_uniforms, samplers, expand_prob, max_expand_ratio,
                   flip_prob, out_shape):
    """The geometry of the training transform, on the boxes and the image size only, as one XLA-compiled
    function (it is a few hundred scalar-sized steps, which as TensorFlow kernels cost more in dispatch
    than in arithmetic). Its random numbers are drawn outside, by the caller's SeedStream.

    boxes float32 [M, 4] padded, valid bool [M] (the real ones), size int32 [2] the image size; scalars
    float32 [_GEOMETRY_SCALARS] and sampler_uniforms (aug.sampler_draw_shape) the numbers; the rest Python
    values. Returns int32 (w0, w1) the image pixels to load and (o0, o1) the output pixels they fill, bool
    ok (some pixel is visible), float32 [M, 4] the boxes mapped into the output (clipped, flipped), bool
    [M] those kept (valid, centre in the crop, positive area), and bool flip.
    """
    seeds = aug.PresetStream(scalars, [sampler_uniforms])
    out = tf.constant(out_shape, tf.float32)
    canvas, offset = aug.sample_expand(size, seeds, max_expand_ratio, expand_prob)
    canvas_boxes = aug.boxes_to_canvas(boxes, size, canvas, offset)
    crops, found = aug.generate_samples(canvas_boxes, seeds, samplers, valid=valid)
    crop = aug.choose_sample(crops, found, seeds)
    flip = seeds.bernoulli(flip_prob)
    (w0, w1), (o0, o1), ok, scale, shift = _geometry(crop, canvas, offset, size, out)

    # Boxes follow the (rounded) pixel transform.
    scale = tf.tile(scale * tf.cast(size, tf.float32) / out, [2])
    shift = tf.tile(shift / out, [2])
    mapped, keep = aug.crop_boxes_mask(boxes * scale + shift)
    mapped = tf.where(flip, aug.flip_boxes(mapped), mapped)
    return w0, w1, o0, o1, ok, mapped, keep & valid, flip


def _train_geometry(boxes, labels, difficult, size, seeds, samplers, expand_prob, max_expand_ratio, flip_prob,
                    out_shape):
    """_draw_geometry on boxes float32 [G, 4] (padded to a bucketed count here), with the numbers of
    `seeds`. Returns int32 (w0, w1), (o0, o1), bool ok and flip, and the kept boxes, labels, difficult."""
    num_boxes = tf.shape(boxes)[0]
    padded = tf.pad(boxes, [[0, _padded_count(num_boxes) - num_boxes], [0, 0]])
    valid = tf.range(tf.shape(padded)[0]) < num_boxes
    scalars = seeds.take(_GEOMETRY_SCALARS)
    sampler_uniforms = seeds.uniform(aug.sampler_draw_shape(samplers))
    w0, w1, o0, o1, ok, mapped, keep, flip = _draw_geometry(
        padded, valid, size, scalars, sampler_uniforms, tuple(samplers), float(expand_prob),
        float(max_expand_ratio), float(flip_prob), tuple(out_shape))
    return (w0, w1), (o0, o1), ok, flip, *aug.gather_kept(mapped, keep, labels, difficult)


def _train_from_window_loader(load_window, size, labels, boxes, difficult, out_shape, mean_rgb, seed,
                              samplers, expand_prob, max_expand_ratio, flip_prob, distortion, interpolations):
    """The training transform, given the image size int32 [2] and load_window(offset [2], size [2]) ->
    uint8 [h, w, 3] pixels of the image."""
    out_h, out_w = int(out_shape[0]), int(out_shape[1])
    seeds = aug.SeedStream(seed, num_scalars=_NUM_SCALARS)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    size = tf.cast(size, tf.int32)

    (w0, w1), (o0, o1), ok, flip, out_boxes, labels, difficult = _train_geometry(
        boxes, labels, difficult, size, seeds, samplers, expand_prob, max_expand_ratio, flip_prob, (out_h, out_w))

    # Pixels: only the visible window, resized to its place on the output canvas (zero elsewhere), then
    # flipped, distorted, mean-subtracted and masked in one XLA-compiled pass (_finish_canvas).
    def canvas_image():
        content = aug.random_resize(load_window(w0, w1 - w0), o1 - o0, seeds, interpolations)
        # Padded on the [h, w * 3] view: TF's Pad kernel is about 3x faster on 2-D than on [h, w, 3].
        low, high = o0 * [1, 3], (tf.constant([out_h, out_w]) - o1) * [1, 3]
        wide = tf.pad(tf.reshape(content, tf.stack([o1[0] - o0[0], (o1[1] - o0[1]) * 3])), tf.stack([low, high], 1))
        return tf.reshape(wide, [out_h, out_w, 3])

    image = tf.cond(ok, canvas_image, lambda: tf.zeros([out_h, out_w, 3], tf.float32))
    image.set_shape([out_h, out_w, 3])
    content = tf.where(ok, tf.reshape(tf.stack([o0, o1], axis=1), [4]), tf.zeros([4], tf.int32))
    drawn = aug.draw_distortion(seeds, distortion) if distortion is not None else None
    image = _finish_canvas(image, content, flip, tf.constant(mean_rgb, tf.float32), drawn)
    return image, labels, out_boxes, difficult


@tf.function(jit_compile=True, autograph=False)
def _finish_canvas(image, content, flip, mean_rgb, distortion):
    """The per-pixel end of the training transform on a fixed-size canvas: horizontal flip, photometric
    distortion (the numbers `distortion` of aug.draw_distortion, or None), mean subtraction inside the
    content rows and columns content = [y0, y1, x0, x1] of the unflipped canvas (outside: 0, the
    mean-filled expand canvas).

    XLA fuses these ~60 elementwise steps into a few loops over the canvas, 2-3x cheaper than running
    them as TensorFlow kernels, and the fixed shape means one compilation per network input size. The flip
    comes first, on the input, where XLA reads it as an index change. The last step (mean, mask) runs on
    the [H, W * 3] view: on [H, W, 3] XLA's loop over the 3 channels innermost is not vectorised.
    """
    height, width = image.shape[0], image.shape[1]
    image = tf.where(flip, tf.reverse(image, axis=[1]), image)

    def subtract_mean_and_mask(x):
        x0 = tf.where(flip, width - content[3], content[2])
        x1 = tf.where(flip, width - content[2], content[3])
        rows = tf.range(height)[:, None]
        cols = tf.range(width * 3)[None, :] // 3  # the pixel column of each value of a row
        inside = (rows >= content[0]) & (rows < content[1]) & (cols >= x0) & (cols < x1)
        wide = tf.where(inside, tf.reshape(x, [height, width * 3]) - tf.tile(mean_rgb, [width])[None, :], 0.0)
        return tf.reshape(wide, [height, width, 3])

    if distortion is None:
        return subtract_mean_and_mask(image)
    return aug.apply_distortion(image, distortion, then=subtract_mean_and_mask)


_TRAIN_DEFAULTS = dict(samplers=aug.SSD_BATCH_SAMPLERS, expand_prob=0.5, max_expand_ratio=4.0, flip_prob=0.5,
                       distortion=aug.DistortionParams(), interpolations=aug.INTERPOLATIONS)


def preprocess_for_train(image, labels, boxes, difficult, out_shape, mean_rgb=MEAN_RGB, seed=None, **options):
    """Caffe SSD training augmentation of one decoded image.

    Args:
      image: uint8 [H, W, 3] RGB. labels: int [G]. boxes: float32 [G, 4] relative [ymin, xmin, ymax, xmax].
      difficult: int [G]. out_shape: (height, width) of the network input. mean_rgb: subtracted at the end.
      seed: None (random), an int, or an int tensor [2] (a stateless seed; same seed, same output).
      options: samplers, expand_prob, max_expand_ratio, flip_prob, distortion (DistortionParams or None),
        interpolations (tf.image.resize method names), defaulting to the Caffe SSD's settings.
    Returns:
      image float32 [out_h, out_w, 3] mean-subtracted; labels [K], boxes float32 [K, 4] in [0, 1] with
      positive area, difficult [K]: the boxes that survive the crop, in their original order.
    """
    image = tf.convert_to_tensor(image)

    def load_window(offset, size):
        return tf.slice(image, tf.concat([offset, [0]], 0), tf.concat([size, [3]], 0))

    return _train_from_window_loader(load_window, tf.shape(image)[:2], labels, boxes, difficult, out_shape,
                                     mean_rgb, seed, **dict(_TRAIN_DEFAULTS, **options))


def preprocess_encoded_for_train(encoded, height, width, labels, boxes, difficult, out_shape, mean_rgb=MEAN_RGB,
                                 seed=None, dct_method="INTEGER_FAST", **options):
    """As preprocess_for_train, from the encoded image file (JPEG or PNG) and its size (height, width).

    A JPEG is decoded only inside the crop window (tf.io.decode_and_crop_jpeg); `dct_method` trades
    accuracy for speed (INTEGER_FAST differs from the exact IDCT by a few grey levels, far below the
    photometric distortion). A PNG is decoded whole and sliced.
    """
    encoded = tf.convert_to_tensor(encoded, tf.string)

    def load_window(offset, size):
        def jpeg():
            return tf.io.decode_and_crop_jpeg(encoded, tf.concat([offset, size], 0), channels=3,
                                              dct_method=dct_method)

        def other():
            return tf.slice(tf.io.decode_png(encoded, channels=3), tf.concat([offset, [0]], 0),
                            tf.concat([size, [3]], 0))

        window = tf.cond(tf.io.is_jpeg(encoded), jpeg, other)
        window.set_shape([None, None, 3])
        return window

    return _train_from_window_loader(load_window, tf.stack([height, width]), labels, boxes, difficult,
                                     out_shape, mean_rgb, seed, **dict(_TRAIN_DEFAULTS, **options))
