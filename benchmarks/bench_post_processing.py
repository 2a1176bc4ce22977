"""Times select_detections (Caffe's DetectionOutput, box_ops/post_processing.py) alone on an SSD-300-sized load:
8732 anchors, 21 classes, scores from seeded logits with a dominant background (about 40 candidates above 0.01
per class and image), boxes clustered so that NMS has work. Optionally against another version of the module
(e.g. `git show <commit>:box_ops/post_processing.py > /tmp/old.py`), alternating run by run, with a check that
both give the same detections.

    python benchmarks/bench_post_processing.py [--batch_size=8] [--runs=15] [--reference=/tmp/old.py]

Prints one JSON line: median ms per call for each formulation ("combined", "per_class"; and "reference"),
the bytes of all op outputs of one call (RunMetadata), and whether the reference's detections are identical.
"""
import importlib.util
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)


def load(batch_size, num_anchors=8732, num_classes=21, seed=0):
    import numpy as np
    rng = np.random.default_rng(seed)
    centres = np.round(rng.uniform(0.1, 0.9, (batch_size, num_anchors, 2)) * 6) / 6
    centres += rng.normal(0, 0.02, centres.shape)
    size = rng.uniform(0.05, 0.3, (batch_size, num_anchors, 2))
    boxes = np.concatenate([centres - size / 2, centres + size / 2], axis=-1).astype(np.float32)
    logits = rng.normal(0, 2, (batch_size, num_anchors, num_classes))
    logits[..., 0] += 6
    probs = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return probs.astype(np.float32), boxes


def main(argv=None):
    p = flags.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--batch_size", type=int, default=8)
    p.add_argument("--runs", type=int, default=15)
    p.add_argument("--threads", type=int, default=0, help="intra-op threads (0: one per core)")
    p.add_argument("--reference", default=None, help="another post_processing.py to compare with")
    args = p.parse_args(argv)
    import numpy as np
    import tensorflow as tf
    from box_ops import post_processing
    probs, boxes = load(args.batch_size)
    variants = {nms: (lambda s, b, nms=nms: post_processing.select_detections(s, b, nms=nms))
                for nms in post_processing.NMS_FORMULATIONS}
    if args.reference:
        spec = importlib.util.spec_from_file_location("reference_post_processing", args.reference)
        reference = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(reference)
        variants["reference"] = reference.select_detections
    threads = args.threads or os.cpu_count()
    config = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=threads, inter_op_parallelism_threads=1)
    sessions, results, times, output_bytes = {}, {}, {}, {}
    for name, fn in variants.items():
        graph = tf.Graph()
        with graph.as_default():
            s = tf.compat.v1.placeholder(tf.float32, probs.shape)  # static batch: per_class needs it
            b = tf.compat.v1.placeholder(tf.float32, boxes.shape)
            sessions[name] = (tf.compat.v1.Session(graph=graph, config=config), fn(s, b), {s: probs, b: boxes})
    for name, (sess, out, feed) in sessions.items():
        results[name] = sess.run(out, feed)
        metadata = tf.compat.v1.RunMetadata()
        sess.run(out, feed, options=tf.compat.v1.RunOptions(trace_level=tf.compat.v1.RunOptions.FULL_TRACE),
                 run_metadata=metadata)
        output_bytes[name] = sum(o.tensor_description.allocation_description.requested_bytes
                                 for dev in metadata.step_stats.dev_stats for n in dev.node_stats for o in n.output)
        times[name] = []
    for _ in range(args.runs):
        for name, (sess, out, feed) in sessions.items():
            start = time.perf_counter()
            sess.run(out, feed)
            times[name].append(time.perf_counter() - start)
    result = {"batch_size": args.batch_size, "threads": threads, "runs": args.runs,
              "num_detections": results["combined"]["num_detections"].tolist(),
              "ms": {k: round(1000 * float(np.median(v)), 2) for k, v in times.items()},
              "op_output_bytes": output_bytes}
    for name in variants:
        if name != "combined":
            result[f"{name}_identical"] = all(np.array_equal(results[name][k], results["combined"][k])
                                              for k in ("boxes", "scores", "classes", "num_detections"))
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
