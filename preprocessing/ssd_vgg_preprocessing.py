"""Pre-processing for the VGG SSD networks.

Evaluation and inference: resize to the network size (bilinear, no aspect preservation, as the Caffe SSD
tests) and subtract the mean (R 123, G 117, B 104); boxes stay relative so they map back to the original
image size unchanged. Training augmentation (the Caffe SSD's photometric distortion, zoom-out, batch
sampler, flip, random interpolation) lives beside it in this module's training functions.
"""
import tensorflow as tf

MEAN_RGB = (123.0, 117.0, 104.0)


def subtract_mean(images, mean_rgb=MEAN_RGB):
    return tf.cast(images, tf.float32) - tf.constant(mean_rgb, tf.float32)


def preprocess_for_eval(images, out_shape, mean_rgb=MEAN_RGB):
    """uint8 or float [H, W, 3] or [B, H, W, 3] RGB in 0..255 -> float32 resized to out_shape, mean-subtracted."""
    images = tf.cast(images, tf.float32)
    images = tf.image.resize(images, out_shape, method=tf.image.ResizeMethod.BILINEAR)
    return subtract_mean(images, mean_rgb)
