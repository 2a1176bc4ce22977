"""Box coding and matching: Caffe SSD's CENTER_SIZE coder and its BIPARTITE + PER_PREDICTION matcher.

Boxes are [ymin, xmin, ymax, xmax] relative to the image. Offsets are in Caffe's mbox_loc order
[dx, dy, dw, dh] (x first), so Caffe's localisation heads copy over unchanged:

    dx = (cx - acx) / (aw * v0)    dy = (cy - acy) / (ah * v1)
    dw = log(w / aw) / v2          dh = log(h / ah) / v3

with (v0, v1, v2, v3) the prior variances (0.1, 0.1, 0.2, 0.2). See Caffe's bbox_util.cpp (EncodeBBox,
DecodeBBox, MatchBBox).
"""
import tensorflow as tf


def _center_size(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (ymin + ymax) / 2.0, (xmin + xmax) / 2.0, ymax - ymin, xmax - xmin


def encode_boxes(boxes, anchors, variances):
    """[..., N, 4] boxes matched to [N, 4] anchors -> [..., N, 4] offsets [dx, dy, dw, dh]."""
    cy, cx, h, w = _center_size(tf.convert_to_tensor(boxes, tf.float32))
    acy, acx, ah, aw = _center_size(tf.convert_to_tensor(anchors, tf.float32))
    # Degenerate (zero-size) boxes only occur for unmatched anchors, whose offsets the loss ignores;
    # keep them finite.
    eps = 1e-8
    return tf.stack([(cx - acx) / aw / variances[0],
                     (cy - acy) / ah / variances[1],
                     tf.math.log(tf.maximum(w, eps) / aw) / variances[2],
                     tf.math.log(tf.maximum(h, eps) / ah) / variances[3]], axis=-1)


def decode_boxes(offsets, anchors, variances):
    """[..., N, 4] offsets [dx, dy, dw, dh] on [N, 4] anchors -> [..., N, 4] boxes [ymin, xmin, ymax, xmax]."""
    offsets = tf.convert_to_tensor(offsets, tf.float32)
    acy, acx, ah, aw = _center_size(tf.convert_to_tensor(anchors, tf.float32))
    dx, dy, dw, dh = tf.unstack(offsets, axis=-1)
    cx = dx * variances[0] * aw + acx
    cy = dy * variances[1] * ah + acy
    w = tf.exp(dw * variances[2]) * aw
    h = tf.exp(dh * variances[3]) * ah
    return tf.stack([cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0], axis=-1)


def iou_matrix(boxes_a, boxes_b):
    """IoU of every pair: [G, 4] x [N, 4] -> [G, N] (Caffe's JaccardOverlap on normalised boxes)."""
    a = tf.convert_to_tensor(boxes_a, tf.float32)[:, None, :]
    b = tf.convert_to_tensor(boxes_b, tf.float32)[None, :, :]
    ih = tf.maximum(tf.minimum(a[..., 2], b[..., 2]) - tf.maximum(a[..., 0], b[..., 0]), 0.0)
    iw = tf.maximum(tf.minimum(a[..., 3], b[..., 3]) - tf.maximum(a[..., 1], b[..., 1]), 0.0)
    inter = ih * iw
    area_a = (a[..., 2] - a[..., 0]) * (a[..., 3] - a[..., 1])
    area_b = (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])
    union = area_a + area_b - inter
    return tf.where(union > 0.0, inter / tf.maximum(union, 1e-12), tf.zeros_like(inter))


def _match_iou(iou, threshold):
    """Caffe's matching on a precomputed [N, G] IoU matrix (anchors x boxes). Returns int32 [N]."""
    iou = tf.where(iou > 1e-6, iou, tf.zeros_like(iou))
    # The extra zero column keeps argmax defined for an image without boxes; it is never matched.
    iou = tf.pad(iou, [[0, 0], [0, 1]])
    num_anchors, num_cols = tf.shape(iou)[0], tf.shape(iou)[1]
    num_gt = num_cols - 1

    def body(i, state, assigned):
        # Anchors first, so that a flat argmax breaks ties in Caffe's (prediction, gt) order.
        flat = tf.argmax(tf.reshape(state, [-1]), output_type=tf.int32)
        a, g = flat // num_cols, flat % num_cols
        ok = state[a, g] > 0.0
        assigned = tf.tensor_scatter_nd_update(assigned, [[a]], tf.where(ok, g, assigned[a])[None])
        # Take the matched anchor's row and the matched box's column out of the competition.
        state = tf.tensor_scatter_nd_update(state, [[a]], -tf.ones([1, num_cols]))
        state = tf.tensor_scatter_nd_update(state, tf.stack([tf.range(num_anchors), tf.fill([num_anchors], g)], 1),
                                            -tf.ones([num_anchors]))
        return i + 1, state, assigned

    _, _, bipartite = tf.while_loop(
        lambda i, *_: i < num_gt, body, [tf.constant(0), iou, -tf.ones([num_anchors], tf.int32)],
        shape_invariants=[tf.TensorShape([]), tf.TensorShape([None, None]), tf.TensorShape([None])],
        back_prop=False)
    best_gt = tf.argmax(iou, axis=1, output_type=tf.int32)
    best_iou = tf.reduce_max(iou, axis=1)
    per_prediction = tf.where(best_iou >= threshold, best_gt, -tf.ones_like(best_gt))
    return tf.where(bipartite >= 0, bipartite, per_prediction)


def match(gt_boxes, anchors, threshold=0.5):
    """Caffe SSD matching: BIPARTITE, then PER_PREDICTION. Returns int32 [N]: gt index per anchor, or -1.

    Bipartite step (greedy, as MatchBBox): repeatedly take the highest-IoU pair among the unmatched ground
    truth boxes and unmatched anchors, and match it, whatever its IoU (only pairs with IoU > 1e-6 count, as
    Caffe keeps only those overlaps). So every ground-truth box gets its best free anchor, even a box smaller
    than every anchor. Per-prediction step: every still-unmatched anchor whose best IoU is >= threshold is
    matched to that box.
    """
    return _match_iou(tf.transpose(iou_matrix(gt_boxes, anchors)), threshold)


def encode_targets(labels, boxes, anchors, variances, match_threshold=0.5):
    """Training targets for one image (runs in the tf.data pipeline, so it is kept lean).

    Args:
      labels: int [G] class labels (1..C-1). boxes: float32 [G, 4]. anchors: NumPy or tensor [N, 4].
    Returns:
      gclasses int64 [N] (0 = background), glocalisations float32 [N, 4] (offsets, zero where background),
      gscores float32 [N] (IoU of each anchor with its matched box, 0 where background).
    """
    labels = tf.cast(tf.reshape(labels, [-1]), tf.int64)
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    anchors = tf.convert_to_tensor(anchors, tf.float32)
    iou = tf.transpose(iou_matrix(boxes, anchors))  # [N, G], computed once for matching and scores
    matches = _match_iou(iou, match_threshold)
    positive = matches >= 0
    safe = tf.maximum(matches, 0)
    # An image without boxes: gather from a dummy box so shapes stay static; everything is masked anyway.
    padded_boxes = tf.concat([boxes, tf.constant([[0.0, 0.0, 1.0, 1.0]])], axis=0)
    padded_labels = tf.concat([labels, tf.zeros([1], tf.int64)], axis=0)
    offsets = encode_boxes(tf.gather(padded_boxes, safe), anchors, variances)
    glocalisations = tf.where(positive[:, None], offsets, tf.zeros_like(offsets))
    gclasses = tf.where(positive, tf.gather(padded_labels, safe), tf.zeros_like(matches, tf.int64))
    iou = tf.pad(iou, [[0, 0], [0, 1]])
    gscores = tf.where(positive, tf.gather(iou, safe, batch_dims=1), tf.zeros_like(offsets[:, 0]))
    return gclasses, glocalisations, gscores
