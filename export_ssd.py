"""Exports an SSD checkpoint (trained, native or converted from Caffe) as a SavedModel for serving.

    python export_ssd.py --checkpoint_path=checkpoints/ssd_300_vgg --output_dir=serving/ssd_300_vgg/1 \\
        [--model_name=ssd_300_vgg] [--select_threshold=0.01] [--nms_threshold=0.45] [--top_k=400] \\
        [--keep_top_k=200] [--optimize]

The SavedModel holds the whole detection path of nets/detection.py (the Detector's graph): uint8 RGB images
of any size in, resized and mean-subtracted inside, the network, softmax, box decoding and Caffe's
DetectionOutput inside, detections out. TensorFlow Serving serves it as is (point --model_base_path at the
folder above the numbered version folder) and `tf.saved_model.load` runs it without this project's code:

    model = tf.saved_model.load("serving/ssd_300_vgg/1")
    out = model.signatures["serving_default"](images=tf.constant(batch_uint8))   # [B, H, W, 3] RGB

Signature "serving_default" (method tensorflow/serving/predict):
  inputs:  images          uint8   [B, H, W, 3]  RGB, any H and W (one size per batch)
  outputs: boxes           float32 [B, K, 4]     [ymin, xmin, ymax, xmax] relative to the image, clipped to it
           scores          float32 [B, K]        sorted, highest first
           classes         int32   [B, K]        labels 1..C-1 (0 is background and pads unused rows)
           num_detections  int32   [B]           valid rows of each image; K = keep_top_k
The class names and the model configuration are in assets.extra/labels.txt and assets.extra/ssd_config.json.
--output_dir must not exist yet (or be empty); the SavedModel appears complete or not at all.

--optimize exports the Detector's optimised CPU graph instead (nets/detection.optimized_graph_def: weights
frozen into it, 3x3 convolutions as Winograd F(4x4, 3x3), every node marked for XLA): the fast CPU path,
about 4x larger on disk (the transformed kernels). `tf.saved_model.load` compiles it with XLA on the first
call; run it with TF_ENABLE_ONEDNN_OPTS=1 so that XLA's matrix products are multi-threaded oneDNN calls, and
TensorFlow Serving with --xla_cpu_compilation_enabled=true. For GPU serving export without it.
"""
import argparse
import os
import shutil
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter; set before it is imported

from common.errors import ConfigError, run_main  # noqa: E402

SIGNATURE_KEY = "serving_default"
OUTPUTS = ("boxes", "scores", "classes", "num_detections")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--checkpoint_path", required=True, help="checkpoint prefix or directory")
    parser.add_argument("--output_dir", required=True, help="the SavedModel folder (e.g. .../<model>/1)")
    parser.add_argument("--model_name", default=None, help="expected model name (checked against the config)")
    parser.add_argument("--select_threshold", type=float, default=None, help="keep scores above this")
    parser.add_argument("--nms_threshold", type=float, default=None, help="NMS IoU threshold")
    parser.add_argument("--top_k", type=int, default=None, help="candidates per class before NMS")
    parser.add_argument("--keep_top_k", type=int, default=None, help="detections kept per image")
    parser.add_argument("--optimize", action="store_true",
                        help="export the optimised CPU graph (frozen, Winograd convolutions, XLA)")
    args = parser.parse_args(argv)
    for name in ("top_k", "keep_top_k"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name}", f"must be >= 1, got {value}")
    for name in ("select_threshold", "nms_threshold"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name}", f"must be in [0, 1], got {value}")
    if os.path.exists(args.output_dir) and (not os.path.isdir(args.output_dir) or os.listdir(args.output_dir)):
        raise ConfigError(args.output_dir, "already exists and is not an empty folder")
    return args


def export(detector, output_dir, post_processing=None):
    """Writes the Detector's graph and weights as a SavedModel with the serving signature (see above).

    post_processing: the values the Detector was built with where they differ from the model's defaults,
    recorded in assets.extra/ssd_config.json."""
    import json
    import tensorflow as tf
    from common import fileio

    with detector.graph.as_default():
        outputs = dict((k, detector.outputs[k]) for k in OUTPUTS)
        # detect_ssd.py clips boxes to the image when it writes them; the served model does it in the graph.
        outputs["boxes"] = tf.clip_by_value(outputs["boxes"], 0.0, 1.0, name="clipped_boxes")
        signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
            inputs={"images": detector.images}, outputs=outputs)
        final = os.path.abspath(output_dir)
        tmp = fileio.tmp_name(final)
        shutil.rmtree(tmp, ignore_errors=True)
        try:
            builder = tf.compat.v1.saved_model.Builder(tmp)
            builder.add_meta_graph_and_variables(
                detector.session, [tf.saved_model.SERVING], signature_def_map={SIGNATURE_KEY: signature},
                strip_default_attrs=True)
            builder.save()
            extra = os.path.join(tmp, "assets.extra")
            os.makedirs(extra)
            with open(os.path.join(extra, "labels.txt"), "w") as f:
                f.write("".join(f"{name}\n" for name in detector.class_names))
            config = dict(detector.model.config or {})
            config["post_processing"] = dict(detector.model.post_processing, **(post_processing or {}))
            with open(os.path.join(extra, "ssd_config.json"), "w") as f:
                json.dump(config, f, indent=2)
            if os.path.isdir(final):
                os.rmdir(final)  # empty, checked by parse_args
            os.replace(tmp, final)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    return final


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from nets import caffe_ssd  # noqa: F401  (registers the caffe_ssd model with nets_factory)
    from nets import detection

    with detection.Detector(args.checkpoint_path, model_name=args.model_name,
                            select_threshold=args.select_threshold, nms_threshold=args.nms_threshold,
                            top_k=args.top_k, keep_top_k=args.keep_top_k, optimize=args.optimize) as detector:
        overrides = {k: getattr(args, k) for k in ("select_threshold", "nms_threshold", "top_k", "keep_top_k")
                     if getattr(args, k) is not None}
        path = export(detector, args.output_dir, overrides)
        print(f"wrote {path}: {detector.model.name}, {len(detector.class_names)} classes, "
              f"signature {SIGNATURE_KEY}: images uint8 [B, H, W, 3] -> {', '.join(OUTPUTS)}")
    return 0


if __name__ == "__main__":
    run_main(main)
