"""The SSD loss, as Caffe's MultiBoxLoss trains the published models.

    L = (L_conf(pos) + L_conf(hard negatives) + alpha * L_loc(pos)) / max(1, num_positives)

L_conf is softmax cross-entropy; L_loc smooth L1 on the offsets of positive anchors. Hard negative mining
is per image (Caffe's MineHardExamples, MAX_NEGATIVE): the negatives of an image are ranked by their
background confidence loss and the top `negative_ratio` x (that image's positives) are kept, at most as
many as the image has negatives. An image with no positives therefore contributes no negatives, and a batch
without positives has zero loss, as in Caffe. Both terms are normalised by the positives (normalization
VALID), counted over the whole batch; `num_positives` lets a distributed trainer pass the global-batch count.
"""
import tensorflow as tf


def smooth_l1(x):
    absx = tf.abs(x)
    return tf.where(absx < 1.0, 0.5 * x * x, absx - 0.5)


def hard_negative_mask(neg_losses, negatives, num_positives_per_image, negative_ratio):
    """[B, N] mask of the mined negatives.

    Args:
      neg_losses: [B, N] background cross-entropy of every anchor. negatives: [B, N] bool candidates.
      num_positives_per_image: [B] int. negative_ratio: float.
    """
    num_candidates = tf.reduce_sum(tf.cast(negatives, tf.int32), axis=1)
    num_neg = tf.cast(tf.floor(negative_ratio * tf.cast(num_positives_per_image, tf.float32)), tf.int32)
    num_neg = tf.minimum(num_neg, num_candidates)
    ranked = tf.where(negatives, neg_losses, tf.fill(tf.shape(neg_losses), -1.0))
    # rank[b, n] = position of anchor n when image b's candidates are sorted by loss, descending.
    order = tf.argsort(ranked, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    return tf.logical_and(negatives, rank < num_neg[:, None])


def ssd_losses(logits, localisations, gclasses, glocalisations, negative_ratio=3.0, alpha=1.0,
               num_positives=None, scope=None):
    """SSD multibox loss.

    Args:
      logits: [B, N, C] class scores before softmax. localisations: [B, N, 4] predicted offsets.
      gclasses: [B, N] int target classes (0 = background). glocalisations: [B, N, 4] target offsets.
      negative_ratio: negatives per positive. alpha: weight of the localisation term.
      num_positives: optional scalar normaliser replacing this batch's positive count (e.g. summed across
        replicas); the loss is then divided by max(1, num_positives).
    Returns:
      dict with total_loss, cross_entropy_pos, cross_entropy_neg, localization (each already normalised),
      num_positives and num_negatives (this batch's counts, float32).
    """
    with tf.name_scope(scope or "ssd_losses"):
        logits = tf.cast(logits, tf.float32)
        localisations = tf.cast(localisations, tf.float32)
        gclasses = tf.cast(gclasses, tf.int64)
        positives = gclasses > 0
        negatives = tf.logical_not(positives)
        ce = tf.nn.sparse_softmax_cross_entropy_with_logits(labels=gclasses, logits=logits)  # [B, N]
        # For a negative the target is background, so its cross-entropy is the mining score.
        pos_per_image = tf.reduce_sum(tf.cast(positives, tf.int32), axis=1)
        neg_mask = hard_negative_mask(tf.stop_gradient(ce), negatives, pos_per_image, negative_ratio)
        posf = tf.cast(positives, tf.float32)
        negf = tf.cast(neg_mask, tf.float32)
        batch_positives = tf.reduce_sum(posf)
        normaliser = batch_positives if num_positives is None else tf.cast(num_positives, tf.float32)
        normaliser = tf.maximum(normaliser, 1.0)
        ce_pos = tf.reduce_sum(ce * posf) / normaliser
        ce_neg = tf.reduce_sum(ce * negf) / normaliser
        loc = tf.reduce_sum(smooth_l1(localisations - tf.cast(glocalisations, tf.float32)), axis=-1)
        loc = alpha * tf.reduce_sum(loc * posf) / normaliser
        return {
            "total_loss": ce_pos + ce_neg + loc,
            "cross_entropy_pos": ce_pos,
            "cross_entropy_neg": ce_neg,
            "localization": loc,
            "num_positives": batch_positives,
            "num_negatives": tf.reduce_sum(negf),
        }
