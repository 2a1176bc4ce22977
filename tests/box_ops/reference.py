"""NumPy references for the SSD core, written from Caffe's bbox_util.cpp and multibox_loss_layer.cpp.

Deliberately plain loops: they are the definitions the TensorFlow code must agree with.
"""
import math

import numpy as np


def iou(a, b):
    """Caffe JaccardOverlap on [ymin, xmin, ymax, xmax] boxes."""
    ih = min(a[2], b[2]) - max(a[0], b[0])
    iw = min(a[3], b[3]) - max(a[1], b[1])
    if ih <= 0 or iw <= 0:
        return 0.0
    inter = ih * iw
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


def caffe_match(gt, anchors, threshold=0.5):
    """MatchBBox with BIPARTITE then PER_PREDICTION. Returns [N] gt index or -1."""
    n, g = len(anchors), len(gt)
    overlaps = {}
    for i in range(n):
        for j in range(g):
            o = iou(anchors[i], gt[j])
            if o > 1e-6:
                overlaps.setdefault(i, {})[j] = o
    match = [-1] * n
    gt_pool = list(range(g))
    while gt_pool:
        max_idx, max_gt, max_ov = -1, -1, -1.0
        for i in sorted(overlaps):
            if match[i] != -1:
                continue
            for j in gt_pool:
                if j in overlaps[i] and overlaps[i][j] > max_ov:
                    max_idx, max_gt, max_ov = i, j, overlaps[i][j]
        if max_idx == -1:
            break
        match[max_idx] = max_gt
        gt_pool.remove(max_gt)
    for i in sorted(overlaps):
        if match[i] != -1:
            continue
        best, best_ov = -1, -1.0
        for j in range(g):
            o = overlaps[i].get(j, 0.0)
            if o >= threshold and o > best_ov:
                best, best_ov = j, o
        match[i] = best
    return np.array(match)


def encode(box, anchor, var):
    acx, acy = (anchor[1] + anchor[3]) / 2, (anchor[0] + anchor[2]) / 2
    aw, ah = anchor[3] - anchor[1], anchor[2] - anchor[0]
    cx, cy = (box[1] + box[3]) / 2, (box[0] + box[2]) / 2
    w, h = box[3] - box[1], box[2] - box[0]
    return [(cx - acx) / aw / var[0], (cy - acy) / ah / var[1], math.log(w / aw) / var[2], math.log(h / ah) / var[3]]


def nms(boxes, scores, threshold, top_k):
    """ApplyNMSFast (eta 1): candidates sorted by score, first top_k, greedy keep if IoU <= threshold."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])[:top_k]
    keep = []
    for i in order:
        if all(iou(boxes[i], boxes[k]) <= threshold for k in keep):
            keep.append(i)
    return keep


def detection_output(probs, boxes, conf_threshold, nms_threshold, top_k, keep_top_k):
    """DetectionOutputLayer for one image: list of (label, score, box) sorted by score."""
    dets = []
    for c in range(1, probs.shape[1]):
        idx = [i for i in range(len(boxes)) if probs[i, c] > conf_threshold]
        keep = nms([boxes[i] for i in idx], [probs[i, c] for i in idx], nms_threshold, top_k)
        dets += [(c, probs[idx[k], c], boxes[idx[k]]) for k in keep]
    dets.sort(key=lambda d: -d[1])
    return dets[:keep_top_k]


def multibox_loss(logits, locs, gclasses, glocs, neg_ratio=3.0, alpha=1.0):
    """MultiBoxLoss (SOFTMAX conf, SMOOTH_L1 loc, MAX_NEGATIVE mining per image, VALID normalisation)."""
    total_conf, total_loc, num_pos = 0.0, 0.0, 0
    for b in range(logits.shape[0]):
        z = logits[b] - logits[b].max(axis=1, keepdims=True)
        logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
        pos = [i for i in range(logits.shape[1]) if gclasses[b, i] > 0]
        negs = [i for i in range(logits.shape[1]) if gclasses[b, i] == 0]
        num_neg = min(int(neg_ratio * len(pos)), len(negs))
        negs.sort(key=lambda i: -(-logp[i, 0]))
        for i in pos:
            total_conf += -logp[i, gclasses[b, i]]
            d = locs[b, i] - glocs[b, i]
            total_loc += sum(0.5 * x * x if abs(x) < 1 else abs(x) - 0.5 for x in d)
        for i in negs[:num_neg]:
            total_conf += -logp[i, 0]
        num_pos += len(pos)
    norm = max(1, num_pos)
    return (total_conf + alpha * total_loc) / norm
