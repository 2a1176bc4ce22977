"""Reporting a VOC evaluation, shared by eval_ssd_network.py's scoring and model modes.

`report_evaluation` prints the per-class table and both mAPs, writes the `--output_json` document, the
precision-recall plots into the eval directory and TensorBoard scalars (an event file in the eval
directory, written through a tf.compat.v1 FileWriter in its own graph, so it works from eager and
graph-mode programs alike).
"""
import math

from common.fileio import write_json
from evaluation import plots

SUMMARY_PREFIX = "eval"


def _number(value):
    """JSON has no NaN: an undefined AP (class without non-difficult objects) is null."""
    return None if value is None or math.isnan(value) else float(value)


def evaluation_json(evaluation):
    """The `--output_json` document of INTERFACES.md (mAP over classes with >= 1 non-difficult object)."""
    return {
        "num_images": int(evaluation.num_images),
        "mAP_VOC07": _number(evaluation.map_voc07),
        "mAP_VOC12": _number(evaluation.map_voc12),
        "AP_VOC07": {name: _number(ap) for name, ap in evaluation.ap("voc07").items()},
        "AP_VOC12": {name: _number(ap) for name, ap in evaluation.ap("voc12").items()},
    }


def format_table(evaluation):
    """The per-class table and the two mAPs, as text."""
    width = max([len("class")] + [len(c.name) for c in evaluation.classes])
    header = f"{'class':<{width}}  {'objects':>7} {'difficult':>9} {'dets':>8} {'TP':>7} {'FP':>8}  " \
             f"{'AP VOC07':>8}  {'AP VOC12':>8}"
    fmt = lambda v: "     n/a" if math.isnan(v) else f"{v:8.4f}"  # noqa: E731
    lines = [header, "-" * len(header)]
    for c in evaluation.classes:
        lines.append(f"{c.name:<{width}}  {c.num_positives:7d} {c.num_difficult:9d} {c.num_detections:8d} "
                     f"{c.num_true_positives:7d} {c.num_false_positives:8d}  {fmt(c.ap_voc07)}  {fmt(c.ap_voc12)}")
    lines.append("-" * len(header))
    scored = sum(1 for c in evaluation.classes if c.num_positives > 0)
    lines.append(f"mAP VOC07 (11-point): {fmt(evaluation.map_voc07).strip()}   "
                 f"mAP VOC2010+ (area): {fmt(evaluation.map_voc12).strip()}   "
                 f"({scored} classes, {evaluation.num_images} images, IoU >= {evaluation.iou_threshold:g})")
    return "\n".join(lines)


def summary_values(evaluation):
    """{tag: value} of the TensorBoard scalars (classes without non-difficult objects left out)."""
    values = {f"{SUMMARY_PREFIX}/mAP_VOC07": evaluation.map_voc07,
              f"{SUMMARY_PREFIX}/mAP_VOC12": evaluation.map_voc12}
    for c in evaluation.classes:
        values[f"{SUMMARY_PREFIX}/AP_VOC07/{c.name}"] = c.ap_voc07
        values[f"{SUMMARY_PREFIX}/AP_VOC12/{c.name}"] = c.ap_voc12
    return {tag: float(v) for tag, v in values.items() if not math.isnan(v)}


def write_summaries(eval_dir, evaluation, global_step=None):
    """Appends the mAP and per-class AP scalars to an event file in `eval_dir` at `global_step`."""
    write_scalars(eval_dir, summary_values(evaluation), global_step)


def write_scalars(eval_dir, values, global_step=None):
    """Appends {tag: float} as TensorBoard scalars to an event file in `eval_dir` at `global_step`."""
    import tensorflow as tf  # TensorBoard's event files; the rest of the evaluation needs no TensorFlow

    summary = tf.compat.v1.Summary(value=[tf.compat.v1.Summary.Value(tag=tag, simple_value=value)
                                          for tag, value in values.items()])
    # A FileWriter refuses eager mode; a graph context of its own makes it work from any program.
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(eval_dir)
        try:
            writer.add_summary(summary, global_step=global_step)
        finally:
            writer.close()


def report_evaluation(evaluation, eval_dir=None, output_json=None, global_step=None, write_plots=True,
                      summaries=True, print_fn=print):
    """Prints the table; writes `output_json`, and into `eval_dir` the plots and TensorBoard scalars.

    Everything is computed before anything is written; each file is written atomically, the JSON last.
    Returns the JSON document.
    """
    return write_report(evaluation_json(evaluation), format_table(evaluation), eval_dir, output_json,
                        plot_fn=(lambda d: plots.write_plots(evaluation, d)) if write_plots else None,
                        scalars=summary_values(evaluation) if summaries else None, global_step=global_step,
                        print_fn=print_fn)


def write_report(document, text, eval_dir=None, output_json=None, plot_fn=None, scalars=None, global_step=None,
                 print_fn=print):
    """Prints `text`; into `eval_dir` plot_fn(eval_dir)'s plots and the `scalars` {tag: value}; then writes
    `document` to `output_json`, last: its presence means the whole report was written. Returns it."""
    print_fn(text)
    if eval_dir:
        if plot_fn is not None:
            plot_fn(eval_dir)
        if scalars is not None:
            write_scalars(eval_dir, scalars, global_step)
    if output_json:
        write_json(output_json, document)
    return document
