"""TensorBoard summaries of a training step and the progress line a person reads."""
import datetime

import tensorflow as tf

LOSS_TERMS = ("total_loss", "cross_entropy_pos", "cross_entropy_neg", "localization", "regularization")


def images_with_boxes(images, boxes, mean_rgb, max_outputs=3):
    """Training images with their ground-truth boxes drawn, for tf.summary.

    images: float32 [B, H, W, 3] mean-subtracted RGB; boxes: [B, M, 4] relative [ymin, xmin, ymax, xmax]
    (zero padding draws nothing visible). Returns float32 [min(B, max_outputs), H, W, 3] in [0, 1].
    """
    images = images[:max_outputs]
    images = tf.clip_by_value((images + tf.constant(mean_rgb, tf.float32)) / 255.0, 0.0, 1.0)
    colors = tf.constant([[1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [1.0, 0.0, 1.0, 1.0]])
    return tf.image.draw_bounding_boxes(images, tf.cast(boxes[:max_outputs], tf.float32), colors)


def build_summaries(values, learning_rate, images=None, boxes=None, mean_rgb=None, max_images=3, batch_size=None):
    """Merged summary op: every loss term, positives and negatives per batch (and per image when batch_size is
    given), the learning rate used by the step, the gradient norm, training images with their boxes."""
    summaries = [tf.compat.v1.summary.scalar(f"losses/{k}", values[k]) for k in LOSS_TERMS]
    summaries.append(tf.compat.v1.summary.scalar("batch/num_positives", values["num_positives"]))
    summaries.append(tf.compat.v1.summary.scalar("batch/num_negatives", values["num_negatives"]))
    if batch_size:
        summaries.append(tf.compat.v1.summary.scalar("batch/positives_per_image",
                                                     values["num_positives"] / float(batch_size)))
    summaries.append(tf.compat.v1.summary.scalar("optimizer/learning_rate", learning_rate))
    if "grad_norm" in values:
        summaries.append(tf.compat.v1.summary.scalar("optimizer/grad_norm", values["grad_norm"]))
    if images is not None and max_images:
        drawn = images_with_boxes(images, boxes, mean_rgb, max_images)
        summaries.append(tf.compat.v1.summary.image("images_with_ground_truth", drawn, max_outputs=max_images))
    return tf.compat.v1.summary.merge(summaries)


def format_duration(seconds):
    return str(datetime.timedelta(seconds=int(round(seconds))))


def progress_line(record, max_steps=None):
    """'step 120/1000: loss 5.123 (ce_pos ..., ce_neg ..., loc ..., reg ...) pos 34 neg 102 lr 0.001 pos/image 4.2
    | ...'"""
    step = f"step {record['step']}" + (f"/{max_steps}" if max_steps else "")
    line = (f"{step}: loss {record['total_loss']:.4f} (ce_pos {record['cross_entropy_pos']:.4f}, "
            f"ce_neg {record['cross_entropy_neg']:.4f}, loc {record['localization']:.4f}, "
            f"reg {record['regularization']:.4f}) pos {record['num_positives']:.0f} "
            f"neg {record['num_negatives']:.0f} lr {record['learning_rate']:.3g}")
    if record.get("positives_per_image") is not None:  # anchors matched per image, averaged since the last line
        line += f" pos/image {record['positives_per_image']:.1f}"
    if record.get("images_per_sec"):
        line += f" | {record['images_per_sec']:.1f} images/s, {record['secs_per_step']:.3f} s/step"
        if record.get("eta_secs") is not None:
            line += f", {format_duration(record['eta_secs'])} left"
    return line
