"""Reporting a COCO evaluation (evaluation/coco_metric.CocoEvaluation), for eval_ssd_network.py --metric=coco.

Prints the 12 COCOeval statistics and the per-class AP table, writes the `--output_json` document
({"COCO": {"AP": ..., ..., "ARl": ...}, "COCO_per_class": {name: AP or null}}, INTERFACES.md), the PR
plots at IoU 0.5 and 0.75 and TensorBoard scalars (eval/COCO/AP, eval/COCO_per_class/<name>, ...).
"""
import math

from evaluation import plots
from evaluation.coco_metric import STAT_DESCRIPTIONS, STAT_NAMES
from evaluation.report import SUMMARY_PREFIX, write_report


def _number(value):
    return None if value is None or math.isnan(value) else float(value)


def coco_json(evaluation):
    return {"COCO": {name: float(evaluation.stats[name]) for name in STAT_NAMES},
            "COCO_per_class": {name: _number(ap) for name, ap in evaluation.per_class_ap.items()}}


def format_report(evaluation):
    """The per-class AP table and the 12 statistics (as COCOeval.summarize names them), as text."""
    width = max([len("class")] + [len(n) for n in evaluation.per_class_ap])
    lines = [f"{'class':<{width}}  {'COCO id':>7}  {'AP':>8}", "-" * (width + 19)]
    for cid, name in evaluation.categories:
        ap = evaluation.per_class_ap[name]
        lines.append(f"{name:<{width}}  {cid:7d}  {'     n/a' if math.isnan(ap) else f'{ap:8.4f}'}")
    lines.append("-" * (width + 19))
    for name, description in zip(STAT_NAMES, STAT_DESCRIPTIONS):
        lines.append(f"{name:<6} {description:<40} = {evaluation.stats[name]:.6f}")
    lines.append(f"({evaluation.num_images} images, {evaluation.num_detections} detections, COCOeval bbox of "
                 f"{evaluation.backend})")
    return "\n".join(lines)


def summary_values(evaluation):
    values = {f"{SUMMARY_PREFIX}/COCO/{name}": evaluation.stats[name] for name in STAT_NAMES}
    values.update({f"{SUMMARY_PREFIX}/COCO_per_class/{name}": ap for name, ap in evaluation.per_class_ap.items()})
    return {tag: float(v) for tag, v in values.items() if not math.isnan(v) and v >= 0}


def report_coco(evaluation, eval_dir=None, output_json=None, global_step=None, write_plots=True, summaries=True,
                print_fn=print):
    """Prints the report; writes the plots and scalars into `eval_dir`, then `output_json`. Returns the JSON."""
    return write_report(coco_json(evaluation), format_report(evaluation), eval_dir, output_json,
                        plot_fn=(lambda d: plots.write_coco_plots(evaluation, d)) if write_plots else None,
                        scalars=summary_values(evaluation) if summaries else None, global_step=global_step,
                        print_fn=print_fn)
