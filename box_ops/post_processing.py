"""Post-processing as Caffe SSD's DetectionOutput, batched in TensorFlow.

For every image and every non-background class: keep the boxes whose score is above `select_threshold`,
take the `top_k` highest, run NMS at `nms_threshold` (a box survives when its IoU with every kept,
higher-scoring box is <= the threshold), then keep the `keep_top_k` best detections over all classes.

The boxes are class-agnostic (Caffe's share_location: true), so they go into the NMS once, `[B, N, 1, 4]`;
Caffe limits candidates to top_k *before* NMS, which `tf.image.combined_non_max_suppression` alone would not
(its per-class cap applies after), so every score outside its class's top_k is zeroed first. Two
formulations of these semantics, tested equal (tests/box_ops/test_post_processing.py):
- nms="combined": one CombinedNonMaxSuppression op (TensorFlow, and tf2onnx's ONNX NonMaxSuppression);
- nms="per_class": one NonMaxSuppressionV5 per image and class on its top_k candidates, for runtimes without
  a combined NMS (TFLite's built-in NON_MAX_SUPPRESSION_V5); needs a static batch size.
"""
import numpy as np
import tensorflow as tf

NMS_FORMULATIONS = ("combined", "per_class")


def select_detections(scores, boxes, select_threshold=0.01, nms_threshold=0.45, top_k=400, keep_top_k=200,
                      background_label=0, nms="combined"):
    """Batched DetectionOutput.

    Args:
      scores: [B, N, C] class probabilities (softmax), background included.
      boxes: [B, N, 4] decoded boxes [ymin, xmin, ymax, xmax] (shared by all classes, Caffe's share_location).
      nms: "combined" or "per_class" (module docstring); the same detections either way.
    Returns:
      dict: boxes [B, K, 4], scores [B, K], classes int32 [B, K] (original label ids), num_detections
      int32 [B]; K = keep_top_k, rows sorted by score, padded with zeros beyond num_detections.
    """
    if nms not in NMS_FORMULATIONS:
        raise ValueError(f"nms must be one of {NMS_FORMULATIONS}, got {nms!r}")
    scores = tf.convert_to_tensor(scores, tf.float32)
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    num_classes = scores.shape[-1]
    class_ids = [c for c in range(num_classes) if c != background_label]
    # Class-major [B, C', N]: the per-class top_k and the gather of foreground classes read contiguous rows.
    fg = tf.gather(tf.transpose(scores, [0, 2, 1]), class_ids, axis=1)
    num_anchors = fg.shape[2] if fg.shape[2] is not None else tf.shape(fg)[2]
    k = min(top_k, num_anchors) if isinstance(num_anchors, int) else tf.minimum(top_k, num_anchors)
    # Candidates: per class, the top_k scores (ties to the lower index, as Caffe's stable sort).
    top_scores, top_idx = tf.math.top_k(fg, k=k, sorted=True)  # [B, C', k]
    # Scores at or below the threshold are dropped (Caffe keeps score > threshold); the NMS ops keep scores
    # at or above theirs, so ours is lifted to the next float.
    threshold = float(np.nextafter(np.float32(select_threshold), np.float32(2.0)))
    if nms == "combined":
        nmsed_boxes, nmsed_scores, nmsed_classes, num = _combined_nms(
            fg, boxes, top_scores, top_idx, threshold, nms_threshold, top_k, keep_top_k)
    else:
        nmsed_boxes, nmsed_scores, nmsed_classes, num = _per_class_nms(
            boxes, top_scores, top_idx, threshold, nms_threshold, keep_top_k)
    labels = tf.gather(tf.constant(class_ids, tf.int32), tf.cast(nmsed_classes, tf.int32))
    valid = tf.range(keep_top_k)[None, :] < num[:, None]
    labels = tf.where(valid, labels, tf.zeros_like(labels))
    return {"boxes": nmsed_boxes, "scores": nmsed_scores, "classes": labels, "num_detections": num}


def _combined_nms(fg, boxes, top_scores, top_idx, threshold, nms_threshold, top_k, keep_top_k):
    """fg: [B, C', N] foreground scores. The shared boxes [B, N, 1, 4] and the scores [B, N, C'] with
    everything outside each class's top_k zeroed (a scatter of the top_k scores into zeros: exact under ties,
    unlike a comparison with the k-th score)."""
    shape = tf.shape(top_idx)  # [B, C', k]
    batch_idx = tf.broadcast_to(tf.range(shape[0])[:, None, None], shape)
    class_idx = tf.broadcast_to(tf.range(shape[1])[None, :, None], shape)
    indices = tf.stack([batch_idx, class_idx, top_idx], axis=-1)
    candidates = tf.scatter_nd(indices, top_scores, tf.shape(fg))  # [B, C', N]
    boxes_shape = tf.concat([tf.shape(boxes)[:2], [1, 4]], axis=0)
    return tf.image.combined_non_max_suppression(
        tf.reshape(boxes, boxes_shape), tf.transpose(candidates, [0, 2, 1]), max_output_size_per_class=top_k,
        max_total_size=keep_top_k, iou_threshold=nms_threshold, score_threshold=threshold, pad_per_class=False,
        clip_boxes=False)


def _per_class_nms(boxes, top_scores, top_idx, threshold, nms_threshold, keep_top_k):
    """Per image and class, NMS on the class's top_k candidates; then the keep_top_k best over the classes."""
    batch, num_fg, k = top_idx.shape
    if batch is None or num_fg is None or k is None:
        raise ValueError('nms="per_class" needs a static batch size and number of candidates')
    cand_boxes = tf.gather(boxes, top_idx, batch_dims=1)  # [B, C', k, 4]
    out = []
    for b in range(batch):
        kept_scores, kept_boxes = [], []
        for c in range(num_fg):
            selected, selected_scores, count = tf.raw_ops.NonMaxSuppressionV5(
                boxes=cand_boxes[b, c], scores=top_scores[b, c], max_output_size=k, iou_threshold=nms_threshold,
                score_threshold=threshold, soft_nms_sigma=0.0, pad_to_max_output_size=True)
            # Rows beyond count are padding: -1 sorts them after every real detection (scores are > 0).
            kept_scores.append(tf.where(tf.range(k) < count, selected_scores, -tf.ones_like(selected_scores)))
            kept_boxes.append(tf.gather(cand_boxes[b, c], selected))
        all_scores = tf.concat(kept_scores, axis=0)  # [C' * k], class-major
        best_scores, best = tf.math.top_k(all_scores, k=min(keep_top_k, num_fg * k), sorted=True)
        valid = best_scores > 0
        num = tf.reduce_sum(tf.cast(valid, tf.int32))
        det_boxes = tf.where(valid[:, None], tf.gather(tf.concat(kept_boxes, axis=0), best), 0.0)
        det_scores = tf.where(valid, best_scores, 0.0)
        det_classes = tf.where(valid, tf.cast(best // k, tf.float32), 0.0)
        pad = keep_top_k - best.shape[0]
        if pad > 0:
            det_boxes = tf.pad(det_boxes, [[0, pad], [0, 0]])
            det_scores, det_classes = tf.pad(det_scores, [[0, pad]]), tf.pad(det_classes, [[0, pad]])
        out.append((det_boxes, det_scores, det_classes, num))
    return tuple(tf.stack(parts, axis=0) for parts in zip(*out))
