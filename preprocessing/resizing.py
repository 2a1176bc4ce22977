"""The interpolations of the Caffe SSD's WARP resize, one function per method name.

Caffe's interp_mode list of the SSD prototxts is LINEAR, AREA, NEAREST, CUBIC, LANCZOS4 (OpenCV's resize).
Here: bilinear, area and bicubic are tf.image.resize's; TensorFlow has no Lanczos-4, so Lanczos-3 stands
in for it; NEAREST is OpenCV's INTER_NEAREST exactly. Two of them are computed differently from
tf.image.resize, for speed, with the same results:
- nearest: OpenCV's index rule (floor(x * W / w)) rather than TF's half-pixel one, as two gathers;
- lanczos3: tf.image.resize(method="lanczos3") bit for bit, as two one-axis passes (resize_lanczos3).
"""
import tensorflow as tf

INTERPOLATIONS = ("bilinear", "area", "nearest", "bicubic", "lanczos3")
_CONVEX_INTERPOLATIONS = ("bilinear", "area", "nearest")  # outputs are weighted means of inputs


def resize(image, size, method):
    """[H, W, C] in [0, 255] -> float32 [size[0], size[1], C] with one of INTERPOLATIONS.

    Kernels with negative lobes (bicubic, Lanczos) overshoot; their output is saturated to [0, 255] as
    OpenCV's resize of a uint8 image is.
    """
    if method == "nearest":
        return tf.cast(resize_nearest_opencv(image, size), tf.float32)
    if method == "lanczos3":
        out = resize_lanczos3(image, size)
    else:
        out = tf.cast(tf.image.resize(image, size, method=method), tf.float32)
    return out if method in _CONVEX_INTERPOLATIONS else tf.clip_by_value(out, 0.0, 255.0)


def resize_nearest_opencv(image, size):
    """[H, W, C] -> [size[0], size[1], C] (same dtype) as OpenCV's INTER_NEAREST, which Caffe's NEAREST is:
    output pixel (y, x) takes source pixel (floor(y * H / h), floor(x * W / w)), clamped (no half-pixel
    offset, unlike tf.image.resize's nearest; in float64, as OpenCV computes it). Two gathers: whole rows,
    then pixels; 2-3x faster than TensorFlow's nearest kernel here."""
    shape = tf.shape(image)

    def source(out_size, in_size):
        scale = tf.cast(in_size, tf.float64) / tf.cast(out_size, tf.float64)
        index = tf.cast(tf.floor(tf.cast(tf.range(out_size), tf.float64) * scale), tf.int32)
        return tf.minimum(index, in_size - 1)

    rows = tf.gather(image, source(size[0], shape[0]))
    return tf.gather(rows, source(size[1], shape[1]), axis=1)


def _resize_rows(image, num_rows, kernel):
    """[H, W, C] -> float32 [num_rows, W, C]: ScaleAndTranslate along the first axis only, on the image
    viewed as one column of H pixels with W * C channels. Its weights and sums along that axis are those
    of the two-axis op, and with a single column its other pass is a copy (a span of 1, weight 1)."""
    shape = tf.shape(image)
    column = tf.reshape(image, [1, shape[0], 1, shape[1] * shape[2]])
    scale = tf.stack([tf.cast(num_rows, tf.float32) / tf.cast(shape[0], tf.float32), 1.0])
    out = tf.raw_ops.ScaleAndTranslate(images=column, size=tf.stack([num_rows, 1]), scale=scale,
                                       translation=tf.zeros([2]), kernel_type=kernel, antialias=False)
    return tf.reshape(out, [num_rows, shape[1], shape[2]])


def resize_lanczos3(image, size):
    """[H, W, C] -> float32 [size[0], size[1], C], equal bit for bit to tf.image.resize(method="lanczos3").

    TensorFlow's ScaleAndTranslate kernel does its height pass as weighted sums of whole rows (vectorised)
    but its width pass one pixel and one channel at a time, which here costs two thirds of its ~4 ms on a
    500x375 -> 300x300 resize. Both passes are done as height passes instead, with a transpose between
    and after them: the same weights, added in the same order, in about 1.4 ms.
    """
    size = tf.convert_to_tensor(size, tf.int32)
    rows = tf.transpose(_resize_rows(image, size[0], "lanczos3"), [1, 0, 2])  # [W, size[0], C]
    return tf.transpose(_resize_rows(rows, size[1], "lanczos3"), [1, 0, 2])
