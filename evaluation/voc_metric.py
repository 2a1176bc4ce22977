"""Pascal VOC detection average precision, exactly as the official devkit's VOCevaldet.m computes it.

Pure NumPy (no TensorFlow), vectorised: no Python loop over detections or ground-truth boxes.

Boxes are VOC pixel boxes [xmin, ymin, xmax, ymax], 1-based and inclusive (a box's width is
xmax - xmin + 1), float64. The devkit's definition, per class:

- Detections of the class are ranked by score over the whole split, descending. MATLAB's
  `sort(-confidence)` is stable, so equal scores keep their file order (their order in the arrays here);
  py-faster-rcnn's `np.argsort(-confidence)` is not stable and may order ties differently.
- Each detection is compared with the ground-truth box of its class in its image that it overlaps most
  (IoU = intersection / union, with the +1 pixel widths; on equal IoU the first box in annotation order,
  as the devkit's `ov > ovmax`). If that IoU >= 0.5 (`ovmax >= VOCopts.minoverlap`; py-faster-rcnn uses
  `>`, which differs only at an IoU of exactly 0.5): a true positive if the box is not difficult and not
  yet matched, neither true nor false positive if the box is difficult, a false positive if the box was
  already matched (there is no fall-back to another box). Otherwise a false positive.
- Recall is over the non-difficult boxes; precision = TP / (TP + FP) at each rank.
- VOC2007 AP: the mean over t in MATLAB's `0:0.1:1` of the highest precision at recall >= t.
  VOC2010+ AP: the area under the monotone precision envelope (VOCap.m).

Vectorised matching: detections are sorted once; every (detection, ground-truth box of the same class in
the same image) pair is laid out flat, its IoU computed in one array operation, and the best box per
detection found with a segmented maximum. The devkit's sequential "the first detection to reach an
unmatched non-difficult box takes it" is then the first occurrence of each box in rank order among the
detections whose best box is non-difficult and overlapped >= 0.5 (np.unique(return_index)).
"""
import dataclasses

import numpy as np

from common.errors import DatasetError

# MATLAB's `0:0.1:1`, element by element: the colon operator builds the first half as a + k*d and the
# second half as b - k*d, so its fourth element is 3*0.1 = 0.30000000000000004, not 0.3 (the others equal
# the decimal literals). The devkit's 11-point AP therefore does not count a recall of exactly 3/10 as
# reaching 0.3. (py-faster-rcnn's np.arange(0., 1.1, 0.1) differs at 0.3, 0.6 and 0.7.)
VOC07_RECALL_THRESHOLDS = np.array([0.0, 0.1, 0.2, 3 * 0.1, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])


class GroundTruth:
    """The ground-truth objects of one split, flattened: one row per object.

    Attributes (read-only by convention):
      class_names: tuple of N names; label i (1..N) is class_names[i - 1].
      image_ids: [I] str, the split's images in order (images without objects included).
      object_image: [T] int64, the index into image_ids of each object.
      boxes: [T, 4] float64 pixel boxes [xmin, ymin, xmax, ymax].
      labels: [T] int64 in 1..N.
      difficult: [T] bool.
      notes: tuple of str, remarks from the loader (e.g. objects of classes not scored).
    Objects of one image keep their annotation order (the devkit's tie-break between equal overlaps).
    """

    def __init__(self, class_names, image_ids, object_image, boxes, labels, difficult, notes=(), source=None):
        self.class_names = tuple(str(c) for c in class_names)
        self.image_ids = np.asarray(image_ids, dtype=str).reshape(-1)
        self.object_image = np.asarray(object_image, dtype=np.int64).reshape(-1)
        self.boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(difficult, dtype=bool).reshape(-1)
        self.notes = tuple(notes)
        num_objects = len(self.object_image)
        if not (len(self.boxes) == len(self.labels) == len(self.difficult) == num_objects):
            raise DatasetError(source, "ground truth arrays differ in length")
        if len(set(self.class_names)) != len(self.class_names):
            raise DatasetError(source, f"duplicate class names in {list(self.class_names)}")
        if num_objects and (self.object_image.min() < 0 or self.object_image.max() >= len(self.image_ids)):
            raise DatasetError(source, "object image index out of range")
        bad = (self.labels < 1) | (self.labels > len(self.class_names))
        if bad.any():
            raise DatasetError(source, f"label {self.labels[bad][0]} outside 1..{len(self.class_names)}")
        if not np.isfinite(self.boxes).all():
            raise DatasetError(source, "ground-truth box with a non-finite coordinate")
        self._sorted_order = np.argsort(self.image_ids, kind="stable")
        self._sorted_ids = self.image_ids[self._sorted_order]
        duplicated = self._sorted_ids[1:] == self._sorted_ids[:-1]
        if duplicated.any():
            raise DatasetError(source, f"image {str(self._sorted_ids[1:][duplicated][0])!r} appears twice")

    @classmethod
    def from_images(cls, class_names, images, notes=(), source=None):
        """Builds from an iterable of (image_id, boxes [G, 4] pixel xyxy, labels [G], difficult [G])."""
        ids, object_image, boxes, labels, difficult = [], [], [], [], []
        for index, (image_id, b, l, d) in enumerate(images):
            ids.append(image_id)
            b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
            object_image.append(np.full(len(b), index, dtype=np.int64))
            boxes.append(b)
            labels.append(np.asarray(l, dtype=np.int64).reshape(-1))
            difficult.append(np.asarray(d, dtype=bool).reshape(-1))
            if not len(b) == len(labels[-1]) == len(difficult[-1]):
                raise DatasetError(source, f"image {image_id!r}: boxes, labels and difficult differ in length")
        cat = lambda parts, empty: np.concatenate(parts) if parts else empty  # noqa: E731
        return cls(class_names, ids, cat(object_image, np.zeros(0, np.int64)), cat(boxes, np.zeros((0, 4))),
                   cat(labels, np.zeros(0, np.int64)), cat(difficult, np.zeros(0, bool)), notes, source)

    @property
    def num_images(self):
        return len(self.image_ids)

    def num_positives(self):
        """[N] int64: the non-difficult objects of each class (the recall denominators)."""
        return np.bincount(self.labels[~self.difficult], minlength=len(self.class_names) + 1)[1:]

    def image_index(self, image_ids, source=None):
        """[D] str image ids -> [D] int64 indices into self.image_ids; DatasetError for an unknown id."""
        image_ids = np.asarray(image_ids, dtype=str).reshape(-1)
        if not len(image_ids):
            return np.zeros(0, np.int64)
        unique, inverse = np.unique(image_ids, return_inverse=True)
        if not len(self._sorted_ids):
            raise DatasetError(source, f"detection for image {str(unique[0])!r}, but the ground truth has no images")
        pos = np.minimum(np.searchsorted(self._sorted_ids, unique), len(self._sorted_ids) - 1)
        known = self._sorted_ids[pos] == unique
        if not known.all():
            raise DatasetError(source, f"detection for image {str(unique[~known][0])!r}, which is not in the ground "
                                       f"truth ({self.num_images} images); the devkit rejects it too")
        return self._sorted_order[pos][inverse.reshape(-1)]


@dataclasses.dataclass(frozen=True)
class ClassDetections:
    """The detections of one class over a split, in file order (which breaks score ties).

    image_ids: [D] str; scores: [D] float64; boxes: [D, 4] float64 pixel [xmin, ymin, xmax, ymax];
    source: where they came from (a results file), for error messages.
    """
    image_ids: np.ndarray
    scores: np.ndarray
    boxes: np.ndarray
    source: str = None

    def __post_init__(self):
        object.__setattr__(self, "image_ids", np.asarray(self.image_ids, dtype=str).reshape(-1))
        object.__setattr__(self, "scores", np.asarray(self.scores, dtype=np.float64).reshape(-1))
        object.__setattr__(self, "boxes", np.asarray(self.boxes, dtype=np.float64).reshape(-1, 4))
        if not len(self.image_ids) == len(self.scores) == len(self.boxes):
            raise DatasetError(self.source, "detection image ids, scores and boxes differ in length")
        if not (np.isfinite(self.scores).all() and np.isfinite(self.boxes).all()):
            raise DatasetError(self.source, "detection with a non-finite score or coordinate")

    @classmethod
    def empty(cls, source=None):
        return cls(np.zeros(0, str), np.zeros(0), np.zeros((0, 4)), source)

    def __len__(self):
        return len(self.scores)


def detections_by_class(class_names, image_ids, labels, scores, boxes):
    """Groups flat detections (labels 1..N) into {class name: ClassDetections}, keeping their order.

    image_ids [D] str, labels [D] int, scores [D], boxes [D, 4] pixel xyxy. Every class gets an entry.
    """
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    image_ids = np.asarray(image_ids, dtype=str).reshape(-1)
    scores = np.asarray(scores, dtype=np.float64).reshape(-1)
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if ((labels < 1) | (labels > len(class_names))).any():
        raise ValueError(f"detection labels must be in 1..{len(class_names)}")
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(1, len(class_names) + 2))
    out = {}
    for c, name in enumerate(class_names):
        sel = order[bounds[c]:bounds[c + 1]]
        out[name] = ClassDetections(image_ids[sel], scores[sel], boxes[sel])
    return out


def rank_detections(scores):
    """[D] scores -> [D] int64 order, best first; equal scores keep their input order (MATLAB's stable sort)."""
    return np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")


def pairwise_iou(a, b):
    """IoU of paired pixel boxes a[k] and b[k] ([K, 4] each), with the devkit's +1 widths and operation order.

    Pairs that do not overlap (intersection width or height <= 0) get 0, as the devkit skips them.
    """
    iw = np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]) + 1.0
    ih = np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]) + 1.0
    overlap = (iw > 0) & (ih > 0)
    inter = np.where(overlap, iw * ih, 0.0)
    union = ((a[:, 2] - a[:, 0] + 1.0) * (a[:, 3] - a[:, 1] + 1.0)
             + (b[:, 2] - b[:, 0] + 1.0) * (b[:, 3] - b[:, 1] + 1.0) - inter)
    return np.divide(inter, union, out=np.zeros_like(inter), where=overlap)


@dataclasses.dataclass(frozen=True)
class Matches:
    """The devkit's assignment of ranked detections (all [D], in rank order)."""
    true_positive: np.ndarray  # bool
    false_positive: np.ndarray  # bool
    ignored: np.ndarray  # bool: best box difficult and overlapped >= threshold (neither TP nor FP)
    overlap: np.ndarray  # float64: IoU with the best box, -inf when the image has no box of the class
    gt_index: np.ndarray  # int64: that box's index into the gt arrays given, -1 when none


def match_detections(det_image, det_boxes, gt_image, gt_boxes, gt_difficult, iou_threshold=0.5):
    """The devkit's matching of one class, vectorised.

    det_image [D] int (image index), det_boxes [D, 4]: detections already in rank order.
    gt_image [G] int, gt_boxes [G, 4], gt_difficult [G]: this class's boxes; boxes of one image are
    compared in the order given (the first of equal overlaps wins). Returns Matches.
    """
    det_image = np.asarray(det_image, dtype=np.int64).reshape(-1)
    det_boxes = np.asarray(det_boxes, dtype=np.float64).reshape(-1, 4)
    gt_image = np.asarray(gt_image, dtype=np.int64).reshape(-1)
    gt_difficult = np.asarray(gt_difficult, dtype=bool).reshape(-1)
    num_dets = len(det_image)
    num_images = int(max(det_image.max(initial=-1), gt_image.max(initial=-1))) + 1
    # Ground truth grouped by image, annotation order kept: image i's boxes are gt_order[starts[i]:+counts[i]].
    gt_order = np.argsort(gt_image, kind="stable")
    counts = np.bincount(gt_image, minlength=num_images)
    starts = np.cumsum(counts) - counts
    # One row per (detection, box of its image), grouped by detection in rank order.
    per_det = counts[det_image]
    seg_start = np.cumsum(per_det) - per_det
    total = int(per_det.sum())
    pair_det = np.repeat(np.arange(num_dets), per_det)
    pair_gt = gt_order[np.repeat(starts[det_image] - seg_start, per_det) + np.arange(total)]

    overlap = np.full(num_dets, -np.inf)
    gt_index = np.full(num_dets, -1, dtype=np.int64)
    if total:
        iou = pairwise_iou(det_boxes[pair_det], np.asarray(gt_boxes, dtype=np.float64).reshape(-1, 4)[pair_gt])
        has_gt = per_det > 0
        overlap[has_gt] = np.maximum.reduceat(iou, seg_start[has_gt])
        # First pair of each detection reaching its maximum: the devkit's strict `ov > ovmax` scan.
        at_max = np.flatnonzero(iou == overlap[pair_det])
        first = at_max[np.r_[True, pair_det[at_max[1:]] != pair_det[at_max[:-1]]]]
        gt_index[pair_det[first]] = pair_gt[first]

    above = overlap >= iou_threshold
    ignored = above & gt_difficult[np.maximum(gt_index, 0)] if len(gt_difficult) else np.zeros(num_dets, bool)
    candidates = np.flatnonzero(above & ~ignored)
    _, first_claim = np.unique(gt_index[candidates], return_index=True)
    true_positive = np.zeros(num_dets, dtype=bool)
    true_positive[candidates[first_claim]] = True
    false_positive = ~(true_positive | ignored)
    return Matches(true_positive, false_positive, ignored, overlap, gt_index)


def precision_recall(true_positive, false_positive, num_positives):
    """Cumulative precision and recall at each rank, as VOCevaldet.m: [D] float64 each.

    Precision is NaN where no detection has counted yet (leading ignored detections: the devkit's 0/0);
    recall is NaN when the class has no non-difficult object.
    """
    tp = np.cumsum(true_positive, dtype=np.float64)
    fp = np.cumsum(false_positive, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = tp / num_positives if num_positives else np.full(len(tp), np.nan)
        precision = tp / (tp + fp)
    return precision, recall


def precision_envelope(precision):
    """[D] -> [D]: the highest precision at each rank or later, the monotone envelope of VOCap.m.

    NaN precisions (MATLAB's 0/0) are skipped, as MATLAB's max skips them; an all-NaN tail gives 0.
    """
    envelope = np.fmax.accumulate(np.asarray(precision, dtype=np.float64)[::-1])[::-1]
    return np.nan_to_num(envelope, nan=0.0)


def voc07_points(recall, precision):
    """[11]: max(precision[recall >= t]) for t in MATLAB's 0:0.1:1, 0 where no rank reaches t.

    recall must be non-decreasing (cumulative), so {recall >= t} is the suffix from the first rank reaching t.
    """
    first = np.searchsorted(np.asarray(recall, dtype=np.float64), VOC07_RECALL_THRESHOLDS, side="left")
    return np.append(precision_envelope(precision), 0.0)[first]


def ap_voc07(recall, precision):
    """VOC2007 11-point AP: the mean of voc07_points, summed in the devkit's order (ap = ap + p/11)."""
    ap = 0.0
    for p in voc07_points(recall, precision):
        ap += p / 11
    return ap


def ap_voc12(recall, precision):
    """VOC2010+ AP (VOCap.m): area under the monotone precision envelope, sum of Δrecall × precision."""
    mrec = np.concatenate([[0.0], np.asarray(recall, dtype=np.float64), [1.0]])
    mpre = precision_envelope(np.concatenate([[0.0], np.asarray(precision, dtype=np.float64), [0.0]]))
    i = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[i] - mrec[i - 1]) * mpre[i]))


@dataclasses.dataclass(frozen=True)
class ClassResult:
    """One class's evaluation. Arrays are [D], detections in rank order."""
    name: str
    num_positives: int  # non-difficult ground-truth objects
    num_difficult: int
    num_detections: int
    num_true_positives: int
    num_false_positives: int
    num_ignored: int
    scores: np.ndarray
    precision: np.ndarray
    recall: np.ndarray
    ap_voc07: float  # NaN when num_positives == 0
    ap_voc12: float


@dataclasses.dataclass(frozen=True)
class VOCEvaluation:
    num_images: int
    iou_threshold: float
    classes: tuple  # of ClassResult, in class order

    def _mean(self, attribute):
        values = [getattr(c, attribute) for c in self.classes if c.num_positives > 0]
        return float(np.mean(values)) if values else float("nan")

    @property
    def map_voc07(self):
        """Mean VOC2007 AP over the classes with at least one non-difficult object (NaN if none)."""
        return self._mean("ap_voc07")

    @property
    def map_voc12(self):
        """Mean VOC2010+ AP over the classes with at least one non-difficult object (NaN if none)."""
        return self._mean("ap_voc12")

    def ap(self, kind):
        """{class name: AP} for kind 'voc07' or 'voc12' (NaN for classes without non-difficult objects)."""
        return {c.name: getattr(c, f"ap_{kind}") for c in self.classes}


def evaluate_class(ground_truth, label, detections, iou_threshold=0.5):
    """Scores one class (label 1..N) of `ground_truth` against ClassDetections. Returns ClassResult."""
    in_class = ground_truth.labels == label
    num_positives = int(np.count_nonzero(in_class & ~ground_truth.difficult))
    det_image = ground_truth.image_index(detections.image_ids, detections.source)
    order = rank_detections(detections.scores)
    matches = match_detections(det_image[order], detections.boxes[order], ground_truth.object_image[in_class],
                               ground_truth.boxes[in_class], ground_truth.difficult[in_class], iou_threshold)
    precision, recall = precision_recall(matches.true_positive, matches.false_positive, num_positives)
    if num_positives:
        ap07, ap12 = ap_voc07(recall, precision), ap_voc12(recall, precision)
    else:
        ap07 = ap12 = float("nan")
    return ClassResult(
        name=ground_truth.class_names[label - 1], num_positives=num_positives,
        num_difficult=int(np.count_nonzero(in_class)) - num_positives, num_detections=len(order),
        num_true_positives=int(matches.true_positive.sum()), num_false_positives=int(matches.false_positive.sum()),
        num_ignored=int(matches.ignored.sum()), scores=detections.scores[order], precision=precision,
        recall=recall, ap_voc07=ap07, ap_voc12=ap12)


def evaluate_detections(ground_truth, detections, iou_threshold=0.5):
    """Scores every class of `ground_truth`.

    detections: {class name: ClassDetections}; a class without an entry has no detections, a name that is
    not a ground-truth class is an error. Returns VOCEvaluation (per-class AP of both kinds, precision and
    recall arrays, counts, and the two mAPs over classes with >= 1 non-difficult object).
    """
    unknown = sorted(set(detections) - set(ground_truth.class_names))
    if unknown:
        raise DatasetError(detections[unknown[0]].source, f"detections for class {unknown[0]!r}, which is not "
                                                          f"one of the {len(ground_truth.class_names)} classes")
    empty = ClassDetections.empty()
    results = tuple(evaluate_class(ground_truth, label, detections.get(name, empty), iou_threshold)
                    for label, name in enumerate(ground_truth.class_names, start=1))
    return VOCEvaluation(num_images=ground_truth.num_images, iou_threshold=iou_threshold, classes=results)
