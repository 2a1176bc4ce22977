"""Box coding and matching: Caffe SSD's CENTER_SIZE coder and its BIPARTITE + PER_PREDICTION matcher.

Boxes are [ymin, xmin, ymax, xmax] relative to the image. Offsets are in Caffe's mbox_loc order
[dx, dy, dw, dh] (x first), so Caffe's localisation heads copy over unchanged:

    dx = (cx - acx) / (aw * v0)    dy = (cy - acy) / (ah * v1)
    dw = log(w / aw) / v2          dh = log(h / ah) / v3

with (v0, v1, v2, v3) the prior variances (0.1, 0.1, 0.2, 0.2). See Caffe's bbox_util.cpp (EncodeBBox,
DecodeBBox, MatchBBox).
"""
import numpy as np
import tensorflow as tf


def _center_size(boxes):
    ymin, xmin, ymax, xmax = tf.unstack(boxes, axis=-1)
    return (ymin + ymax) / 2.0, (xmin + xmax) / 2.0, ymax - ymin, xmax - xmin


def _anchor_center_size(anchors):
    """NumPy anchors (the usual case) are converted when the graph is built, not at every run."""
    if isinstance(anchors, np.ndarray):
        return tuple(tf.constant(np.ascontiguousarray(v)) for v in _center_size_np(anchors))
    return _center_size(tf.convert_to_tensor(anchors, tf.float32))


def _center_size_np(boxes):
    """_center_size in NumPy, in float32 arithmetic as TensorFlow computes it."""
    ymin, xmin, ymax, xmax = np.asarray(boxes, np.float32).T
    return (ymin + ymax) / np.float32(2), (xmin + xmax) / np.float32(2), ymax - ymin, xmax - xmin


def encode_boxes(boxes, anchors, variances):
    """[..., N, 4] boxes matched to [N, 4] anchors -> [..., N, 4] offsets [dx, dy, dw, dh]."""
    return _encode_center_size(_center_size(tf.convert_to_tensor(boxes, tf.float32)), anchors, variances)


def _encode_center_size(center_size, anchors, variances, axis=-1):
    cy, cx, h, w = center_size
    acy, acx, ah, aw = _anchor_center_size(anchors)
    # Degenerate (zero-size) boxes only occur for unmatched anchors, whose offsets the loss ignores;
    # keep them finite.
    eps = 1e-8
    return tf.stack([(cx - acx) / aw / variances[0],
                     (cy - acy) / ah / variances[1],
                     tf.math.log(tf.maximum(w, eps) / aw) / variances[2],
                     tf.math.log(tf.maximum(h, eps) / ah) / variances[3]], axis=axis)


def decode_boxes(offsets, anchors, variances):
    """[..., N, 4] offsets [dx, dy, dw, dh] on [N, 4] anchors -> [..., N, 4] boxes [ymin, xmin, ymax, xmax]."""
    offsets = tf.convert_to_tensor(offsets, tf.float32)
    acy, acx, ah, aw = _anchor_center_size(anchors)
    dx, dy, dw, dh = tf.unstack(offsets, axis=-1)
    cx = dx * variances[0] * aw + acx
    cy = dy * variances[1] * ah + acy
    w = tf.exp(dw * variances[2]) * aw
    h = tf.exp(dh * variances[3]) * ah
    return tf.stack([cy - h / 2.0, cx - w / 2.0, cy + h / 2.0, cx + w / 2.0], axis=-1)


def _columns(boxes):
    """[N, 4] -> ymin, xmin, ymax, xmax as four [N] rows: contiguous rows are what the elementwise kernels
    are fast on. NumPy boxes (the anchors) are split once, when the graph is built; a tensor by one
    unstack (the CPU transpose kernel costs tens of microseconds even on a few boxes)."""
    if isinstance(boxes, np.ndarray):
        return [tf.constant(np.ascontiguousarray(c, np.float32)) for c in np.asarray(boxes, np.float32).T]
    return tf.unstack(tf.convert_to_tensor(boxes, tf.float32), num=4, axis=1)


def iou_matrix(boxes_a, boxes_b):
    """IoU of every pair: [G, 4] x [N, 4] -> [G, N] (Caffe's JaccardOverlap on normalised boxes)."""
    a = tf.convert_to_tensor(boxes_a, tf.float32)
    ay0, ax0, ay1, ax1 = tf.split(a, 4, axis=1)  # [G, 1] each
    by0, bx0, by1, bx1 = [c[None, :] for c in _columns(boxes_b)]  # [1, N] each
    ih = tf.maximum(tf.minimum(ay1, by1) - tf.maximum(ay0, by0), 0.0)
    iw = tf.maximum(tf.minimum(ax1, bx1) - tf.maximum(ax0, bx0), 0.0)
    inter = ih * iw
    union = (ay1 - ay0) * (ax1 - ax0) + (by1 - by0) * (bx1 - bx0) - inter
    return inter / tf.maximum(union, 1e-12)  # inter <= union, so 0 where both are 0


def _max_and_argmax(values, axis):
    """(max, first index of the max) along `axis` of a float [R, C] tensor, the index as int32.

    TF's ArgMax kernel on the CPU is 5-10x slower than a max reduction; the index of the first maximum is
    recovered with a comparison and a float min reduction (indices are exact in float32 below 2**24).
    """
    best = tf.reduce_max(values, axis=axis, keepdims=True)
    size = tf.shape(values)[axis]
    index = tf.cast(tf.range(size), tf.float32)
    index = index[:, None] if axis == 0 else index[None, :]
    first = tf.reduce_min(tf.where(values >= best, index, tf.cast(size, tf.float32)), axis=axis)
    return tf.squeeze(best, axis), tf.cast(first, tf.int32)


def _greedy_bipartite(iou):
    """Caffe's bipartite step on a [K, G] IoU matrix (rows: distinct anchors in ascending index order, zero
    where a pair does not count). Returns int32 [K]: the box each row is matched to, or -1."""
    num_rows, num_cols = tf.shape(iou)[0], tf.shape(iou)[1]
    rows, cols = tf.range(num_rows)[:, None], tf.range(num_cols)[None, :]

    def body(i, state, assigned):
        # Anchors first, so that a flat argmax breaks ties in Caffe's (prediction, gt) order.
        flat = tf.argmax(tf.reshape(state, [-1]), output_type=tf.int32)
        a, g = flat // num_cols, flat % num_cols
        ok = tf.reduce_max(state) > 0.0
        assigned = tf.where(ok & tf.equal(rows[:, 0], a), g, assigned)
        # Take the matched anchor's row and the matched box's column out of the competition.
        state = tf.where(tf.equal(rows, a) | tf.equal(cols, g), -1.0, state)
        return i + 1, state, assigned

    _, _, assigned = tf.while_loop(lambda i, *_: i < num_cols, body,
                                   [tf.constant(0), iou, -tf.ones([num_rows], tf.int32)])
    return assigned


def _bipartite(iou, num_gt):
    """Caffe's bipartite step on a [R, N] IoU matrix whose first num_gt rows are the boxes (any further rows
    are padding). Returns int32 [N]: the box each anchor is matched to, or -1."""
    num_anchors = tf.shape(iou)[1]
    iou = iou[:num_gt]
    best_iou, best = _max_and_argmax(iou, axis=1)  # [G]: each box's best anchor (lowest on ties)
    counts = tf.math.unsorted_segment_sum(tf.ones_like(best), best, num_anchors)
    overlaps = best_iou > 1e-6  # Caffe keeps only overlaps above 1e-6

    def distinct():
        # No two boxes want the same anchor: each takes its best, whatever order the greedy loop would use.
        return tf.tensor_scatter_nd_max(-tf.ones([num_anchors], tf.int32), best[:, None],
                                        tf.where(overlaps, tf.range(num_gt), -1))

    def greedy():
        # Boxes compete for anchors. The greedy loop only ever gives a box one of its num_gt best anchors
        # (fewer than num_gt are taken before it, and a tie goes to the lowest anchor index, as top_k orders
        # ties), so it runs on those few candidates, sorted into anchor order, repeats zeroed.
        _, top = tf.math.top_k(iou, k=tf.minimum(num_gt, num_anchors), sorted=True)
        candidates = tf.sort(tf.reshape(top, [-1]))
        repeat = tf.concat([[False], tf.equal(candidates[1:], candidates[:-1])], axis=0)
        rows = tf.transpose(tf.gather(iou, candidates, axis=1))
        rows = tf.where(repeat[:, None] | (rows <= 1e-6), 0.0, rows)
        return tf.tensor_scatter_nd_max(-tf.ones([num_anchors], tf.int32), candidates[:, None],
                                        _greedy_bipartite(rows))

    conflict = tf.reduce_any((tf.gather(counts, best) > 1) & overlaps)
    return tf.cond(conflict, greedy, distinct)


def _match_iou(iou, threshold, num_gt):
    """Caffe's matching on a precomputed [G + 1, N] IoU matrix: num_gt boxes x anchors, then a row of
    zeros (a dummy box, so that the argmax is defined for an image without boxes; it is never matched).
    Returns int32 [N]: the matched box, or -1."""
    bipartite = _bipartite(iou, num_gt)
    best_iou, best_gt = _max_and_argmax(iou, axis=0)
    per_prediction = tf.where(best_iou >= threshold, best_gt, -1)
    return tf.where(bipartite >= 0, bipartite, per_prediction)


def match(gt_boxes, anchors, threshold=0.5):
    """Caffe SSD matching: BIPARTITE, then PER_PREDICTION. Returns int32 [N]: gt index per anchor, or -1.

    Bipartite step (greedy, as MatchBBox): repeatedly take the highest-IoU pair among the unmatched ground
    truth boxes and unmatched anchors, and match it, whatever its IoU (only pairs with IoU > 1e-6 count, as
    Caffe keeps only those overlaps). So every ground-truth box gets its best free anchor, even a box smaller
    than every anchor. Per-prediction step: every still-unmatched anchor whose best IoU is >= threshold is
    matched to that box.
    """
    return _match_boxes(gt_boxes, anchors, threshold)[0]


def _match_boxes(boxes, anchors, threshold):
    """match() with what encode_targets reuses: (matches [N], iou [G + 1, N], boxes [G + 1, 4], G).

    A zero-size dummy box after the real ones overlaps nothing: it keeps the per-anchor argmax defined for
    an image without boxes, and gives unmatched anchors a row to gather from.
    """
    boxes = tf.reshape(tf.cast(boxes, tf.float32), [-1, 4])
    num_gt = tf.shape(boxes)[0]
    boxes = tf.concat([boxes, tf.zeros([1, 4])], axis=0)
    iou = iou_matrix(boxes, anchors)  # computed once for matching and scores
    return _match_iou(iou, threshold, num_gt), iou, boxes, num_gt


def encode_targets(labels, boxes, anchors, variances, match_threshold=0.5):
    """Training targets for one image (runs per image in the tf.data pipeline, so it is kept lean).

    Args:
      labels: int [G] class labels (1..C-1). boxes: float32 [G, 4]. anchors: NumPy (fastest) or tensor [N, 4].
    Returns:
      gclasses int64 [N] (0 = background), glocalisations float32 [N, 4] (offsets, zero where background),
      gscores float32 [N] (IoU of each anchor with its matched box, 0 where background).
    """
    matches, iou, boxes, num_gt = _match_boxes(boxes, anchors, match_threshold)
    labels = tf.concat([tf.cast(tf.reshape(labels, [-1]), tf.float32), tf.zeros([1])], axis=0)
    positive = matches >= 0
    # The matched box of every anchor as a one-hot [G + 1, N] (the dummy row where background): each
    # per-anchor value is then a sum over the few boxes, computed on contiguous [N] rows. TF's gather is
    # an order of magnitude slower per element, and an [N, 4] layout makes every step a slow broadcast.
    chosen = tf.equal(tf.range(num_gt + 1)[:, None], tf.where(positive, matches, num_gt)[None, :])
    table = tf.stack(list(_center_size(boxes)) + [labels])  # [5, G + 1]: cy, cx, h, w, label
    per_anchor = tf.matmul(table, tf.cast(chosen, tf.float32))  # exact: one nonzero term per column
    cy, cx, h, w, gclasses = tf.unstack(per_anchor)
    offsets = tf.where(positive[None, :], _encode_center_size((cy, cx, h, w), anchors, variances, axis=0), 0.0)
    gscores = tf.reduce_sum(tf.where(chosen, iou, 0.0), axis=0)  # the dummy row is all zeros
    # [4, N] -> [N, 4] as a product with the identity: oneDNN's matmul reads the transposed operand
    # several times faster than its transpose kernel writes it.
    glocalisations = tf.matmul(offsets, tf.eye(4), transpose_a=True)
    return tf.cast(gclasses, tf.int64), glocalisations, gscores
