"""Precision-recall plots of a VOC evaluation (matplotlib, Agg, no pyplot state).

One PNG per class, `pr_<class>.png`: the precision-recall curve, the VOC2010+ precision envelope whose
area is the AP, and the VOC2007 11 points; both APs in the title. And `ap_summary.png`: a bar chart of
the per-class APs with the two mAP lines. Files are written under temporary names and renamed.
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
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.grid(True, alpha=0.3)
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
