"""Precision-recall plots of a VOC or COCO evaluation (matplotlib, Agg, no pyplot state).

VOC: one PNG per class, `pr_<class>.png`: the precision-recall curve, the VOC2010+ precision envelope whose
area is the AP, and the VOC2007 11 points; both APs in the title. And `ap_summary.png`: a bar chart of
the per-class APs with the two mAP lines.
COCO (write_coco_plots): `pr_<class>.png` with COCOeval's interpolated precision at its 101 recall
thresholds for IoU 0.5 and 0.75 (all areas, 100 detections), and `ap_summary.png` with the per-class AP
(IoU 0.50:0.95) and the AP line. Files are written under temporary names and renamed.
"""
import os
import re

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from common.fileio import atomic_path
from evaluation.voc_metric import VOC07_RECALL_THRESHOLDS, precision_envelope, voc07_points

SUMMARY_FILENAME = "ap_summary.png"


def class_plot_filename(class_name):
    return "pr_" + re.sub(r"[^A-Za-z0-9_.-]", "_", class_name) + ".png"


def _save(fig, path):
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _fmt(ap):
    return "n/a" if np.isnan(ap) else f"{ap:.4f}"


def _pr_axes(ax, ylabel="precision"):
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel(ylabel)
    ax.grid(True, alpha=0.3)


def plot_class(result, path):
    """Writes the precision-recall PNG of one evaluation.voc_metric.ClassResult to `path`."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    if result.num_positives and result.num_detections:
        recall, precision = result.recall, result.precision
        envelope = precision_envelope(precision)
        ax.plot(recall, precision, color="tab:blue", lw=1, label="precision")
        ax.step(np.r_[0.0, recall], np.r_[envelope[:1], envelope], where="pre", color="tab:orange", lw=1.5,
                ls="--", label="envelope (VOC2010+ AP = area)")
        ax.plot(VOC07_RECALL_THRESHOLDS, voc07_points(recall, precision), "o", color="tab:green", ms=4,
                label="VOC2007 11 points")
        ax.legend(loc="lower left", fontsize=8)
    else:
        reason = "no non-difficult objects" if not result.num_positives else "no detections"
        ax.text(0.5, 0.5, reason, ha="center", va="center", transform=ax.transAxes)
    _pr_axes(ax)
    ax.set_title(f"{result.name}: AP VOC07 {_fmt(result.ap_voc07)}, VOC12 {_fmt(result.ap_voc12)}\n"
                 f"{result.num_positives} objects, {result.num_detections} detections, "
                 f"{result.num_true_positives} TP", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_summary(evaluation, path):
    """Writes the bar chart of per-class AP (VOC2007 and VOC2010+) with the mAP lines to `path`."""
    names = [c.name for c in evaluation.classes]
    ap07 = np.nan_to_num([c.ap_voc07 for c in evaluation.classes], nan=0.0)
    ap12 = np.nan_to_num([c.ap_voc12 for c in evaluation.classes], nan=0.0)
    x = np.arange(len(names))
    fig = Figure(figsize=(max(6.0, 0.45 * len(names) + 2), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(x - 0.2, ap07, width=0.4, color="tab:blue", label="AP VOC07")
    ax.bar(x + 0.2, ap12, width=0.4, color="tab:orange", label="AP VOC12")
    for value, color, label in ((evaluation.map_voc07, "tab:blue", "mAP VOC07"),
                                (evaluation.map_voc12, "tab:orange", "mAP VOC12")):
        if not np.isnan(value):
            ax.axhline(value, color=color, ls="--", lw=1, label=f"{label} {value:.4f}")
    for i, c in enumerate(evaluation.classes):
        if not c.num_positives:
            ax.text(i, 0.01, "n/a", ha="center", va="bottom", fontsize=7, color="gray", rotation=90)
    ax.set_xticks(x)
    ax.set_xticklabels(names, rotation=60, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("average precision")
    ax.set_title(f"{evaluation.num_images} images, IoU >= {evaluation.iou_threshold:g}")
    ax.legend(fontsize=8, loc="upper right", ncol=2)
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def write_plots(evaluation, directory):
    """Writes every class's PR plot and the summary chart into `directory`; returns the paths."""
    paths = []
    for result in evaluation.classes:
        paths.append(os.path.join(directory, class_plot_filename(result.name)))
        plot_class(result, paths[-1])
    paths.append(os.path.join(directory, SUMMARY_FILENAME))
    plot_summary(evaluation, paths[-1])
    return paths


COCO_PR_IOUS = (0.5, 0.75)


def _coco_ap_at(curve):
    return float(np.mean(curve)) if np.all(curve > -1) else float("nan")


def plot_coco_class(evaluation, name, path):
    """Writes the PR curves at IoU 0.5 and 0.75 of one class of an evaluation.coco_metric.CocoEvaluation."""
    fig = Figure(figsize=(5.5, 5))
    ax = fig.add_subplot(1, 1, 1)
    recall = evaluation.recall_thresholds
    aps = []
    for iou, color in zip(COCO_PR_IOUS, ("tab:blue", "tab:orange")):
        curve = evaluation.precision_curve(name, iou)
        aps.append(_coco_ap_at(curve))
        if np.all(curve > -1):
            ax.plot(recall, curve, color=color, lw=1.5, label=f"IoU {iou:g}: AP {_fmt(aps[-1])}")
    if np.isnan(evaluation.per_class_ap[name]):
        ax.text(0.5, 0.5, "no ground truth", ha="center", va="center", transform=ax.transAxes)
    else:
        ax.legend(loc="lower left", fontsize=8)
    _pr_axes(ax, "precision (COCOeval, interpolated)")
    ax.set_title(f"{name}: AP {_fmt(evaluation.per_class_ap[name])} (IoU 0.50:0.95), AP50 {_fmt(aps[0])}, "
                 f"AP75 {_fmt(aps[1])}", fontsize=9)
    fig.tight_layout()
    _save(fig, path)


def plot_coco_summary(evaluation, path):
    """Writes the bar chart of the per-class COCO AP (IoU 0.50:0.95) with the AP line."""
    names = [n for _, n in evaluation.categories]
    ap = np.nan_to_num([evaluation.per_class_ap[n] for n in names], nan=0.0)
    fig = Figure(figsize=(max(6.0, 0.2 * len(names) + 2), 4.5))
    ax = fig.add_subplot(1, 1, 1)
    ax.bar(np.arange(len(names)), ap, color="tab:blue", label="AP (IoU 0.50:0.95)")
    if evaluation.stats["AP"] >= 0:
        ax.axhline(evaluation.stats["AP"], color="tab:red", ls="--", lw=1, label=f"AP {evaluation.stats['AP']:.4f}")
    ax.set_xticks(np.arange(len(names)))
    ax.set_xticklabels(names, rotation=90, fontsize=6 if len(names) > 30 else 8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("average precision")
    ax.set_title(f"COCO AP per class, {evaluation.num_images} images")
    ax.legend(fontsize=8, loc="upper right")
    ax.grid(True, axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def write_coco_plots(evaluation, directory):
    """Writes every class's PR plot (IoU 0.5 and 0.75) and the summary chart into `directory`."""
    paths = []
    for _, name in evaluation.categories:
        paths.append(os.path.join(directory, class_plot_filename(name)))
        plot_coco_class(evaluation, name, paths[-1])
    paths.append(os.path.join(directory, SUMMARY_FILENAME))
    plot_coco_summary(evaluation, paths[-1])
    return paths
