"""Times the full detection path (pre-processing, network, softmax, box decoding, NMS) of a checkpoint, and
optionally OpenCV's DNN module on the Caffe model it was converted from, and the project's exports in ONNX
Runtime, OpenVINO and LiteRT, in the same process.

    python benchmarks/bench_inference.py --checkpoint_path=DIR [--model_name=ssd_300_vgg] [--batch_size=8]
        [--num_batches=10] [--warmup_batches=2] [--optimize] [--precision=float32|bf16|float16] [--xla]
        [--intra_op_threads=N] [--inter_op_threads=N] [--onednn=default|on|off] [--image=PATH]
        [--compare_opencv PROTOTXT CAFFEMODEL] [--runtime=tf,onnxruntime,openvino,tflite,tflite_int8]
        [--schedule=blocks|alternate] [--smoke]

--optimize runs the Detector's optimised graph (frozen, Winograd F(4x4, 3x3) convolutions on CPUs, compiled by
XLA except for networks with depthwise convolutions; see inference/graph_optimization.py), the fast path.
--precision=bf16 runs grappler's oneDNN bfloat16 rewrite on the plain graph, or with --optimize on a graph that
XLA does not compile (the depthwise networks: SSDLite, MobileNet-SSD); the JSON line then gives
"float32_agreement", the share of the float32 graph's top-100 detections kept. The graph and the session are
built once (inference/detector.py); every timed run feeds a batch of uint8 RGB images at the network's input
size (image decoding excluded; the in-graph resize and mean subtraction, and OpenCV's blobFromImages, included)
and fetches the final detections. Every runner gets the same images and the same number of threads.
--schedule=blocks (the default) times each runner's warm-up and batches in a row; --schedule=alternate runs them
batch by batch, so that all see the same drift of a shared machine's load. On a quiet machine alternating is
biased: ONNX Runtime's and OpenVINO's worker threads spin for a while after a run and slow down whichever runner
comes next (SSDLite's network in ONNX Runtime: 46 images/s alternating, 99 in blocks; docs/benchmarks.md).
Prints one JSON line: images per second and milliseconds per batch (median over the timed batches), the device,
the precision, the load average, and with a comparison OpenCV's figures, the ratio of images per second and how
many of OpenCV's top-100 detections ours reproduce.

--runtime (comma-separated, repeatable) adds the same network exported by inference/exports.py from a plain
float32 Detector of the checkpoint: onnxruntime (model.onnx in ONNX Runtime), openvino / openvino_bf16
(model.onnx read by OpenVINO, f32 or bf16 inference precision), tflite / tflite_int8 (LiteRT with XNNPACK, batch
1 models run image by image; int8 calibrated on the benchmark's own images: a speed figure). Each is timed
twice: "full" (the four detection outputs) and "network" (probabilities and decoded boxes, before the NMS), all
with the same thread count. The JSON line gains "runtimes": {name: {"full": figures, "network": figures,
"float32_top100": fraction}}, TensorFlow's own "network" figures, and "ratios": TensorFlow's images/s over each
runtime's, per path (> 1: TensorFlow faster).
"""
import json
import os
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)

RUNTIMES = ("onnxruntime", "openvino", "openvino_bf16", "tflite", "tflite_int8")


def parse_args(argv):
    parser = flags.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint_path", required=True, help="checkpoint prefix or directory (latest)")
    parser.add_argument("--model_name", default=None, help="expected model name (checked against ssd_config.json)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_batches", type=int, default=10, help="timed batches")
    parser.add_argument("--warmup_batches", type=int, default=2, help="untimed batches first")
    parser.add_argument("--precision", default="float32", choices=("float32", "bf16", "float16"),
                        help="bf16: oneDNN bfloat16 (CPUs with AVX512_BF16 / AMX); float16: mixed float16 (GPUs)")
    parser.add_argument("--optimize", action="store_true",
                        help="frozen graph, Winograd F(4x4, 3x3) convolutions on CPUs, XLA (Detector(optimize=True))")
    parser.add_argument("--xla", action="store_true",
                        help="global XLA JIT (OptimizerOptions.ON_1; on CPUs also sets --tf_xla_cpu_global_jit)")
    parser.add_argument("--intra_op_threads", type=int, default=0, help="0: one per CPU core")
    parser.add_argument("--inter_op_threads", type=int, default=1)
    parser.add_argument("--onednn", default="default", choices=("default", "on", "off"),
                        help="sets TF_ENABLE_ONEDNN_OPTS before TensorFlow loads (default: the project's, on "
                        "(common/tf_env.py), and always on with --optimize or --precision=bf16)")
    parser.add_argument("--compare_opencv", nargs=2, metavar=("PROTOTXT", "CAFFEMODEL"),
                        help="also time OpenCV's DNN on this Caffe model (the one the checkpoint came from)")
    parser.add_argument("--image", default=None,
                        help="the image to replicate into batches (default: matplotlib's grace_hopper.jpg)")
    parser.add_argument("--runtime", action="append", default=[],
                        help=f"also time exports in these runtimes: {','.join(RUNTIMES)} (comma-separated, "
                        "repeatable; tf is always timed)")
    parser.add_argument("--schedule", default="blocks", choices=("blocks", "alternate"),
                        help="blocks: each runner's batches in a row (a quiet machine); alternate: batch by "
                        "batch, so that every runner sees the same drift of a shared machine's load")
    parser.add_argument("--smoke", action="store_true", help="one batch of one image, no warm-up (for tests)")
    args = parser.parse_args(argv)
    args.runtime = [r for value in args.runtime for r in value.split(",") if r and r != "tf"]
    unknown = sorted(set(args.runtime) - set(RUNTIMES))
    if unknown:
        parser.error(f"unknown --runtime {unknown[0]!r} (known: tf,{','.join(RUNTIMES)})")
    if args.smoke:
        args.batch_size, args.num_batches, args.warmup_batches = 1, 1, 0
    if args.batch_size < 1 or args.num_batches < 1 or args.warmup_batches < 0:
        parser.error("--batch_size and --num_batches must be >= 1, --warmup_batches >= 0")
    return args


def _images(args, size):
    """The batch: --image, else matplotlib's grace_hopper.jpg sample photo (else seeded noise), decoded and
    resized to the network's input size before any timing, replicated batch_size times."""
    import numpy as np
    from PIL import Image
    from common.errors import DatasetError
    height, width = size
    path = args.image
    if path is None:
        try:
            import matplotlib.cbook
            path = matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)
        except (ImportError, OSError, ValueError):
            path = None
    if path is None:
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (args.batch_size, height, width, 3), dtype=np.uint8)
    try:
        with Image.open(path) as im:
            image = np.asarray(im.convert("RGB").resize((width, height), Image.BILINEAR))
    except OSError as err:
        raise DatasetError(path, f"cannot read the image ({err})") from None
    return np.repeat(image[None], args.batch_size, axis=0)


def _opencv_runner(prototxt, caffemodel, model, threads):
    import cv2
    from common.errors import CaffeModelError
    try:
        net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
    except cv2.error as err:
        raise CaffeModelError(prototxt, f"OpenCV cannot load this Caffe model: {str(err).strip()}") from None
    net.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    net.setPreferableTarget(cv2.dnn.DNN_TARGET_CPU)
    cv2.setNumThreads(threads)
    height, width = model.image_size
    scale = float((model.config or {}).get("input_scale", 1.0))
    # Our images are RGB; swapRB gives the Caffe model its BGR order, and the mean is subtracted after the
    # swap, so it is given in BGR order.
    mean = tuple(float(m) for m in reversed(model.mean_rgb))

    def run(images):
        blob = cv2.dnn.blobFromImages(list(images), scale, (width, height), mean, swapRB=True, crop=False)
        net.setInput(blob)
        return net.forward()
    return run, cv2.__version__


def _opencv_agreement(detection_out, ours, top=100):
    """Fraction of OpenCV's top detections of the first image that ours reproduce (same label, IoU >= 0.9,
    score within 0.02), and how many OpenCV has."""
    import numpy as np
    rows = detection_out.reshape(-1, 7)
    rows = rows[(rows[:, 0] == 0) & (rows[:, 2] > 0)]
    rows = rows[np.argsort(-rows[:, 2], kind="stable")][:top]
    ref = (rows[:, 1].astype(int), rows[:, 2], rows[:, [4, 3, 6, 5]])
    return matched_fraction(ref, (ours["classes"], ours["scores"], ours["boxes"])), len(rows)


def matched_fraction(ref, ours, min_iou=0.9, score_tol=0.02):
    """Fraction of reference detections (labels, scores, boxes [ymin, xmin, ymax, xmax]) matched one-to-one by
    ours: same label, IoU >= min_iou, |score difference| <= score_tol."""
    import numpy as np
    labels, scores, boxes = (np.asarray(a) for a in ours)
    used = np.zeros(len(labels), bool)
    hits = 0
    for label, score, box in zip(*ref):
        ih = np.clip(np.minimum(boxes[:, 2], box[2]) - np.maximum(boxes[:, 0], box[0]), 0, None)
        iw = np.clip(np.minimum(boxes[:, 3], box[3]) - np.maximum(boxes[:, 1], box[1]), 0, None)
        inter = ih * iw
        union = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1]) +
                 (box[2] - box[0]) * (box[3] - box[1]) - inter)
        iou = np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)
        ok = (~used) & (labels == label) & (np.abs(scores - score) <= score_tol) & (iou >= min_iou)
        if ok.any():  # the closest candidate (not the first): near-duplicate boxes must not steal a match
            used[np.argmax(np.where(ok, iou - np.abs(scores - score), -np.inf))] = True
            hits += 1
    return hits / max(len(ref[0]), 1)


def _export_runners(args, images, threads, workdir):
    """{runtime: {"full": run(images) -> raw outputs, "network": ...}} for --runtime, from exports of plain
    float32 Detectors of the checkpoint written into workdir, and the float32 detections of images[0]."""
    from inference import session_options
    from inference.detector import Detector
    from inference import exports, runtimes
    config = session_options.session_config(threads, args.inter_op_threads)
    runners = {}
    with Detector(args.checkpoint_path, args.model_name, session_config=config, portable=True) as plain:
        base = plain.detect(images[0])
        if {"onnxruntime", "openvino", "openvino_bf16"} & set(args.runtime):
            import onnx
            graphs = (("full", exports.serving_outputs(plain)), ("network", exports.network_outputs(plain)))
            for path, outputs in graphs:
                onnx.save(exports.onnx_model(plain, outputs), os.path.join(workdir, f"{path}.onnx"))
    tflite = [r for r in args.runtime if r.startswith("tflite")]
    if tflite:
        with Detector(args.checkpoint_path, args.model_name, session_config=config, batch_size=1,
                                nms="per_class", portable=True) as single:
            graphs = (("full", exports.serving_outputs(single)), ("network", exports.network_outputs(single)))
            for runtime in tflite:
                precision = "int8" if runtime == "tflite_int8" else "float32"
                for path, outputs in graphs:
                    with open(os.path.join(workdir, f"{path}_{precision}.tflite"), "wb") as f:
                        f.write(exports.tflite_model(single, outputs, precision, [im[None] for im in images]))
    for runtime in args.runtime:
        runners[runtime] = {}
        for path in ("full", "network"):
            if runtime == "onnxruntime":
                model = runtimes.OnnxRuntimeDetector(os.path.join(workdir, f"{path}.onnx"), threads)
            elif runtime.startswith("openvino"):
                model = runtimes.OpenVinoDetector(os.path.join(workdir, f"{path}.onnx"), threads,
                                                  "bf16" if runtime.endswith("bf16") else "f32")
            else:
                precision = "int8" if runtime == "tflite_int8" else "float32"
                model = runtimes.LiteRtDetector(os.path.join(workdir, f"{path}_{precision}.tflite"), threads)
            runners[runtime][path] = model.run
    return runners, base



def run(args):
    import numpy as np
    import tensorflow as tf
    from inference import session_options
    from inference.detector import Detector
    runtimes_unpad = Detector.detections

    threads = args.intra_op_threads or os.cpu_count()
    config = session_options.session_config(threads, args.inter_op_threads, args.precision, args.xla)
    flags = session_options.cpu_flags()
    load_before = os.getloadavg()
    start = time.perf_counter()
    det = Detector(args.checkpoint_path, args.model_name, session_config=config, optimize=args.optimize)
    build_seconds = time.perf_counter() - start
    images = _images(args, det.model.image_size)
    fetch, feed = det.detection_fetches, {det.images: images}

    def run_tf():
        return det.session.run(fetch, feed)

    runners = [("tensorflow", run_tf)]
    opencv_version = None
    if args.compare_opencv:
        run_cv, opencv_version = _opencv_runner(*args.compare_opencv, det.model, threads)
        runners.append(("opencv", lambda: run_cv(images)))
    base = None
    if args.runtime:
        import tempfile
        workdir = tempfile.mkdtemp(prefix="bench_exports_")
        exported, base = _export_runners(args, images, threads, workdir)
        net_fetch = [det.outputs["probabilities"], det.outputs["decoded_boxes"]]
        runners.append(("tensorflow/network", lambda: det.session.run(net_fetch, feed)))
        for runtime, paths in exported.items():
            for path, fn in paths.items():
                runners.append((f"{runtime}/{path}", lambda fn=fn: fn(images)))
    first_batch, times, outputs = {}, {name: [] for name, _ in runners}, {}

    def timed(name, fn, warmup):
        start = time.perf_counter()
        out = fn()
        seconds = time.perf_counter() - start
        if warmup:
            first_batch.setdefault(name, seconds)  # includes XLA's compilation with --optimize / --xla
        else:
            outputs[name] = out
            times[name].append(seconds)

    if args.schedule == "alternate":
        for i in range(args.warmup_batches + args.num_batches):
            for name, fn in runners:
                timed(name, fn, i < args.warmup_batches)
    else:  # blocks: each runner's warm-up and timed batches in a row
        for name, fn in runners:
            for i in range(args.warmup_batches + args.num_batches):
                timed(name, fn, i < args.warmup_batches)
    load_after = os.getloadavg()

    def figures(seconds):
        median = float(np.median(seconds))
        return {"images_per_second": round(args.batch_size / median, 3), "ms_per_batch": round(1000 * median, 2),
                "ms_per_batch_min": round(1000 * min(seconds), 2),
                "ms_per_batch_mean": round(1000 * float(np.mean(seconds)), 2)}

    result = {"model_name": det.model.name, "checkpoint": det.checkpoint, "batch_size": args.batch_size,
              "num_batches": args.num_batches, "schedule": args.schedule, "image_size": list(det.model.image_size),
              "precision": args.precision, "device": session_options.device_description(), "optimize": args.optimize, "xla": args.xla,
              "intra_op_threads": threads, "inter_op_threads": args.inter_op_threads,
              "onednn": session_options.onednn_enabled(),
              "cpu_bf16": session_options.cpu_supports_bf16(flags), "cpu_avx512f": "avx512f" in flags,
              "tensorflow": tf.__version__}
    result.update(figures(times["tensorflow"]))
    result["build_seconds"] = round(build_seconds, 2)
    if "tensorflow" in first_batch:
        result["first_batch_seconds"] = round(first_batch["tensorflow"], 2)
    ours = det.detections(outputs["tensorflow"])[0]
    if args.runtime:
        result["network"] = figures(times["tensorflow/network"])
        top = np.argsort(-base["scores"], kind="stable")[:100]
        # The exports clip their boxes to the image (detect_ssd.py clips when it writes them): compare clipped.
        reference = (base["classes"][top], base["scores"][top], np.clip(base["boxes"][top], 0.0, 1.0))
        result["runtimes"], result["ratios"] = {}, {}
        for runtime in args.runtime:
            theirs = runtimes_unpad(outputs[f"{runtime}/full"])[0]
            result["runtimes"][runtime] = {
                "full": figures(times[f"{runtime}/full"]), "network": figures(times[f"{runtime}/network"]),
                "float32_top100": round(matched_fraction(reference, (theirs["classes"], theirs["scores"],
                                                                      theirs["boxes"])), 4)}
            for path, ours_fig in (("full", result), ("network", result["network"])):
                result["ratios"][f"tf_vs_{runtime}_{path}"] = round(
                    ours_fig["images_per_second"] / result["runtimes"][runtime][path]["images_per_second"], 3)
        result["float32_top100"] = round(matched_fraction(reference, (ours["classes"], ours["scores"],
                                                                       np.clip(ours["boxes"], 0.0, 1.0))), 4)
        import shutil
        shutil.rmtree(workdir, ignore_errors=True)
    if args.precision != "float32":
        # The same images through float32: how many of its top-100 detections the reduced precision keeps.
        with Detector(args.checkpoint_path, args.model_name,
                                session_config=session_options.session_config(threads, args.inter_op_threads)) as ref:
            base = ref.detect(images[0])
        top = np.argsort(-base["scores"], kind="stable")[:100]
        result["float32_agreement"] = round(matched_fraction(
            (base["classes"][top], base["scores"][top], base["boxes"][top]),
            (ours["classes"], ours["scores"], ours["boxes"])), 4)
    if args.compare_opencv:
        cv = figures(times["opencv"])
        agreement, count = _opencv_agreement(outputs["opencv"], ours)
        result["opencv"] = dict(cv, version=opencv_version, threads=threads, detections=count)
        result["speedup_vs_opencv"] = round(result["images_per_second"] / cv["images_per_second"], 3)
        result["opencv_agreement"] = round(agreement, 4)
    result["load_average"] = [round(load_before[0], 2), round(load_after[0], 2)]
    det.close()
    return result


def main(argv=None):
    args = parse_args(argv)
    if args.xla:
        # Without this flag TensorFlow only auto-clusters for XLA on GPUs.
        os.environ["TF_XLA_FLAGS"] = (os.environ.get("TF_XLA_FLAGS", "") + " --tf_xla_cpu_global_jit").strip()
    if args.onednn == "default" and (args.precision == "bf16" or args.optimize):
        # Grappler's bfloat16 rewrite needs TensorFlow's oneDNN optimisations, and with them XLA runs the
        # Winograd GEMMs of --optimize on oneDNN, multi-threaded.
        args.onednn = "on"
    if args.onednn != "default":
        # Read once when TensorFlow's kernels load: only effective before the first TensorFlow import.
        os.environ["TF_ENABLE_ONEDNN_OPTS"] = "1" if args.onednn == "on" else "0"
    result = run(args)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
