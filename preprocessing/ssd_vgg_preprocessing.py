"""Pre-processing for the VGG SSD networks.

Evaluation and inference: resize to the network size (bilinear, no aspect preservation, as the Caffe SSD
tests) and subtract the mean (R 123, G 117, B 104); boxes stay relative so they map back to the original
image size unchanged.

Training: the Caffe SSD's augmentation (AnnotatedDataLayer with the ssd_pascal.py transform_param):
photometric distortion, zoom-out onto a mean-filled canvas up to 4x (probability 0.5), the 7 batch
samplers, horizontal flip (0.5), WARP resize to the network size with a random interpolation, mean
subtraction; difficult boxes are kept (use_difficult_gt). Its specification is the plain list of transforms
of ssd_transforms.py (ssd_transforms.reference_preprocess_for_train); the ops are in ssd_augmentation.py.
This module is the fast path: it draws the same numbers (each transform's draw(), from that transform's seed
stream), calls the same geometry methods, and orders the pixel work so that pixels are touched as late and as
small as possible:

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
from preprocessing import ssd_transforms as T


def subtract_mean(images, mean_rgb):
    return tf.cast(images, tf.float32) - tf.constant(mean_rgb, tf.float32)


def preprocess_for_eval(images, out_shape, mean_rgb, resize_uint8=True):
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
def _draw_geometry(boxes, valid, size, numbers, expand, batch_sample, resize, flip):
    """The geometry of the training transform, on the boxes and the image size only, as one XLA-compiled
    function (it is a few hundred scalar-sized steps, which as TensorFlow kernels cost more in dispatch
    than in arithmetic): the geometry methods of the transforms Expand, BatchSample, Resize and Flip
    (ssd_transforms), run with their numbers, drawn outside (XLA's random numbers differ from TensorFlow's).

    boxes float32 [M, 4] padded, valid bool [M] (the real ones), size int32 [2] the image size; numbers
    (expand's, batch_sample's, flip's) those of the transforms' draw(). Returns int32 (w0, w1) the image
    pixels to load and (o0, o1) the output pixels they fill, bool ok (some pixel is visible), float32 [M, 4]
    the boxes mapped into the output (clipped, flipped), bool [M] those kept (valid, centre in the crop,
    positive area), and bool flip.
    """
    u_expand, u_batch_sample, u_flip = numbers
    canvas, offset = expand.geometry(size, u_expand)
    crop = batch_sample.choose(aug.boxes_to_canvas(boxes, size, canvas, offset), u_batch_sample, valid=valid)
    do_flip = flip.happens(u_flip)
    (w0, w1), (o0, o1), ok, scale, shift = resize.geometry(crop, canvas, offset, size)

    # Boxes follow the (rounded) pixel transform.
    out = tf.constant(resize.out_shape, tf.float32)
    scale = tf.tile(scale * tf.cast(size, tf.float32) / out, [2])
    shift = tf.tile(shift / out, [2])
    mapped, keep = aug.crop_boxes_mask(boxes * scale + shift)
    mapped = tf.where(do_flip, aug.flip_boxes(mapped), mapped)
    return w0, w1, o0, o1, ok, mapped, keep & valid, do_flip


def _train_geometry(boxes, labels, difficult, size, numbers, steps):
    """_draw_geometry on boxes float32 [G, 4] (padded to a bucketed count here), with the transforms `steps`
    (by type) and their `numbers` (by name). Returns int32 (w0, w1), (o0, o1), bool ok and flip, and the
    kept boxes, labels, difficult."""
    num_boxes = tf.shape(boxes)[0]
    padded = tf.pad(boxes, [[0, _padded_count(num_boxes) - num_boxes], [0, 0]])
    valid = tf.range(tf.shape(padded)[0]) < num_boxes
    expand, batch_sample, resize, flip = (steps[t] for t in (T.Expand, T.BatchSample, T.Resize, T.Flip))
    w0, w1, o0, o1, ok, mapped, keep, flip = _draw_geometry(
        padded, valid, size, (numbers[expand.name], numbers[batch_sample.name], numbers[flip.name]),
        expand, batch_sample, resize, flip)
    return (w0, w1), (o0, o1), ok, flip, *aug.gather_kept(mapped, keep, labels, difficult)


# The transforms this fast path knows, each once (it runs them in Caffe's order, that of ssd_transforms()).
_FUSED_TRANSFORMS = (T.Distort, T.Expand, T.BatchSample, T.Resize, T.Flip, T.SubtractMean)


def _train_from_window_loader(load_window, size, labels, boxes, difficult, out_shape, mean_rgb, seed, **options):
    """The training transform, given the image size int32 [2] and load_window(offset [2], size [2]) ->
    uint8 [h, w, 3] pixels of the image: ssd_transforms.ssd_transforms(out_shape, mean_rgb, **options) with
    the numbers of their own seed streams, fused."""
    transforms = T.ssd_transforms(out_shape, mean_rgb, **options)
    steps = {type(t): t for t in transforms}
    if len(steps) != len(transforms) or not set(steps) <= set(_FUSED_TRANSFORMS):
        raise NotImplementedError(f"the fast path has no step for {transforms}: add it (docs/augmentation.md)")
    numbers = T.Compose(transforms).draw(seed)
    resize, distort = steps[T.Resize], steps.get(T.Distort)
    out_h, out_w = resize.out_shape
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    size = tf.cast(size, tf.int32)

    (w0, w1), (o0, o1), ok, flip, out_boxes, labels, difficult = _train_geometry(
        boxes, labels, difficult, size, numbers, steps)

    # Pixels: only the visible window, resized to its place on the output canvas (zero elsewhere), then
    # flipped, distorted, mean-subtracted and masked in one XLA-compiled pass (_finish_canvas).
    def canvas_image():
        content = aug.random_resize(load_window(w0, w1 - w0), o1 - o0, numbers[resize.name], resize.interpolations)
        # Padded on the [h, w * 3] view: TF's Pad kernel is about 3x faster on 2-D than on [h, w, 3].
        low, high = o0 * [1, 3], (tf.constant([out_h, out_w]) - o1) * [1, 3]
        wide = tf.pad(tf.reshape(content, tf.stack([o1[0] - o0[0], (o1[1] - o0[1]) * 3])), tf.stack([low, high], 1))
        return tf.reshape(wide, [out_h, out_w, 3])

    image = tf.cond(ok, canvas_image, lambda: tf.zeros([out_h, out_w, 3], tf.float32))
    image.set_shape([out_h, out_w, 3])
    content = tf.where(ok, tf.reshape(tf.stack([o0, o1], axis=1), [4]), tf.zeros([4], tf.int32))
    mean = tf.constant(steps[T.SubtractMean].mean_rgb, tf.float32)
    if distort is None:
        image = _finish_canvas(image, content, flip, mean)
    else:
        image = _finish_canvas(image, content, flip, mean, distort, numbers[distort.name])
    return image, labels, out_boxes, difficult


@tf.function(jit_compile=True, autograph=False)
def _finish_canvas(image, content, flip, mean_rgb, distort=None, u_distort=None):
    """The per-pixel end of the training transform on a fixed-size canvas: horizontal flip, photometric
    distortion (the transform Distort with its numbers u_distort, or None), mean subtraction inside the
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

    if distort is None:
        return subtract_mean_and_mask(image)
    return aug.apply_distortion(image, distort.amounts(u_distort), then=subtract_mean_and_mask)


def preprocess_for_train(image, labels, boxes, difficult, out_shape, mean_rgb, seed=None, **options):
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
                                     mean_rgb, seed, **options)


def preprocess_encoded_for_train(encoded, height, width, labels, boxes, difficult, out_shape, mean_rgb,
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
                                     out_shape, mean_rgb, seed, **options)
