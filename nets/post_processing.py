"""Post-processing as Caffe SSD's DetectionOutput, batched in TensorFlow.

For every image and every non-background class: keep the boxes whose score is above `select_threshold`,
take the `top_k` highest, run NMS at `nms_threshold` (a box survives when its IoU with every kept,
higher-scoring box is <= the threshold), then keep the `keep_top_k` best detections over all classes.
Caffe limits candidates to top_k *before* NMS; `tf.image.combined_non_max_suppression` alone would cap them
after, so the top_k candidates are gathered first and handed to it as per-class boxes.
"""
import numpy as np
import tensorflow as tf


def select_detections(scores, boxes, select_threshold=0.01, nms_threshold=0.45, top_k=400, keep_top_k=200,
                      background_label=0):
    """Batched DetectionOutput.

    Args:
      scores: [B, N, C] class probabilities (softmax), background included.
      boxes: [B, N, 4] decoded boxes [ymin, xmin, ymax, xmax] (shared by all classes, Caffe's share_location).
    Returns:
      dict: boxes [B, K, 4], scores [B, K], classes int32 [B, K] (original label ids), num_detections
      int32 [B]; K = keep_top_k, rows sorted by score, padded with zeros beyond num_detections.
    """
    scores = tf.convert_to_tensor(scores, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    num_classes = scores.shape[-1]
    class_ids = [c for c in range(num_classes) if c != background_label]
    fg = tf.gather(scores, class_ids, axis=2)  # [B, N, C']
    num_anchors = tf.shape(fg)[1]
    k = tf.minimum(top_k, num_anchors)
    # Candidates: per class, the top_k scores. Scores at or below the threshold are dropped (Caffe keeps
    # score > threshold); combined NMS drops scores below its threshold, so lift ours to the next float.
    top_scores, top_idx = tf.math.top_k(tf.transpose(fg, [0, 2, 1]), k=k, sorted=True)  # [B, C', k]
    cand_boxes = tf.gather(boxes, top_idx, batch_dims=1)  # [B, C', k, 4]
    cand_boxes = tf.transpose(cand_boxes, [0, 2, 1, 3])  # [B, k, C', 4]
    cand_scores = tf.transpose(top_scores, [0, 2, 1])  # [B, k, C']
    threshold = float(np.nextafter(np.float32(select_threshold), np.float32(2.0)))
    nmsed_boxes, nmsed_scores, nmsed_classes, num = tf.image.combined_non_max_suppression(
        cand_boxes, cand_scores, max_output_size_per_class=top_k, max_total_size=keep_top_k,
        iou_threshold=nms_threshold, score_threshold=threshold, pad_per_class=False, clip_boxes=False)
    labels = tf.gather(tf.constant(class_ids, tf.int32), tf.cast(nmsed_classes, tf.int32))
    valid = tf.range(keep_top_k)[None, :] < num[:, None]
    labels = tf.where(valid, labels, tf.zeros_like(labels))
    return {"boxes": nmsed_boxes, "scores": nmsed_scores, "classes": labels, "num_detections": num}
