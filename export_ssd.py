"""Exports an SSD checkpoint (trained, native or converted from Caffe) for serving: SavedModel, ONNX or TFLite.

    python export_ssd.py --checkpoint_path=checkpoints/ssd_300_vgg --output_dir=serving/ssd_300_vgg/1 \\
        [--format=saved_model|onnx|tflite] [--model_name=ssd_300_vgg] [--select_threshold=0.01] \\
        [--nms_threshold=0.45] [--top_k=400] [--keep_top_k=200] [--optimize]
    python export_ssd.py --checkpoint_path=... --output_dir=tflite_int8 --format=tflite --precision=int8 \\
        --calibration_dataset_dir=tfrecords --calibration_split=voc_2007_trainval \\
        [--calibration_dataset_name=voc_custom] [--num_calibration_images=300]

Every format holds the whole detection path of inference/detector.py (the Detector's graph): uint8 RGB images in,
resized and mean-subtracted inside, the network, softmax, box decoding and Caffe's DetectionOutput inside:
  inputs:  images          uint8   [B, H, W, 3]  RGB, any H and W (one size per batch)
  outputs: boxes           float32 [B, K, 4]     [ymin, xmin, ymax, xmax] relative to the image, clipped to it
           scores          float32 [B, K]        sorted, highest first
           classes         int32   [B, K]        labels 1..C-1 (0 is background and pads unused rows)
           num_detections  int32   [B]           valid rows of each image; K = keep_top_k
--format=saved_model (default): signature "serving_default" (method tensorflow/serving/predict); TensorFlow
  Serving serves it as is (point --model_base_path at the folder above the numbered version folder) and
  `tf.saved_model.load(dir).signatures["serving_default"](images=...)` runs it without this project. The
  class names and configuration are in assets.extra/labels.txt and assets.extra/ssd_config.json.
  --optimize exports the Detector's optimised CPU graph instead (inference/graph_optimization.py: weights
  frozen into it, 3x3 convolutions as Winograd F(4x4, 3x3), every node marked for XLA): the fast CPU path,
  about 4x larger on disk. `tf.saved_model.load` compiles it with XLA on the first call; run it with
  TF_ENABLE_ONEDNN_OPTS=1, and TensorFlow Serving with --xla_cpu_compilation_enabled=true.
--format=onnx: <output_dir>/model.onnx via tf2onnx, opset 17, the NMS as ONNX NonMaxSuppression; runs in
  ONNX Runtime, OpenVINO, TensorRT. Class names in the model's metadata_props "class_names" (JSON list),
  the configuration in "ssd_config".
--format=tflite: <output_dir>/model.tflite (--precision=float32) or model_int8.tflite (--precision=int8:
  post-training full-integer quantisation of the network, calibrated on the first --num_calibration_images
  images of --calibration_split in --calibration_dataset_dir, TFRecords of tf_convert_data.py), built-in
  ops only (the NMS is TFLite's NON_MAX_SUPPRESSION_V5, one per class), batch 1 (resize_tensor_input for
  another H, W); runs in the stock LiteRT interpreter. Class names: the associated file labels.txt (and
  ssd_config.json) in a zip archive appended to the flatbuffer, as TFLite Support packs associated files.
Check an export with detect_ssd.py --model=<model.onnx | model.tflite | saved_model dir> (docs/export.md).
--output_dir must not exist yet (or be empty); the export appears complete or not at all.
"""
import os
import sys

from cli import flags
from common.errors import ConfigError, run_main

FORMATS = ("saved_model", "onnx", "tflite")
PRECISIONS = ("float32", "int8")


def parse_args(argv):
    parser = flags.script_parser(__doc__)
    parser.add_argument("--checkpoint_path", required=True, help="checkpoint prefix or directory")
    parser.add_argument("--output_dir", required=True, help="the export folder (e.g. .../<model>/1)")
    parser.add_argument("--format", default="saved_model", help="saved_model (default), onnx or tflite")
    parser.add_argument("--model_name", default=None, help="expected model name (checked against the config)")
    flags.add_post_processing_flags(parser)
    parser.add_argument("--optimize", action="store_true",
                        help="saved_model: export the optimised CPU graph (frozen, batch norms folded; Winograd + XLA "
                             "unless the network has depthwise convolutions)")
    parser.add_argument("--precision", default="float32", help="tflite: float32 (default) or int8")
    parser.add_argument("--calibration_dataset_dir", default=None, help="int8: TFRecords to calibrate on")
    parser.add_argument("--calibration_dataset_name", default="voc_custom", help="int8: dataset_factory name")
    parser.add_argument("--calibration_split", default=None, help="int8: the split (converter output name)")
    parser.add_argument("--num_calibration_images", type=int, default=300, help="int8: images calibrated on")
    args = parser.parse_args(argv)
    if args.format not in FORMATS:
        raise ConfigError("--format", f"unknown format {args.format!r} (one of {', '.join(FORMATS)})")
    if args.precision not in PRECISIONS:
        raise ConfigError("--precision", f"unknown precision {args.precision!r} (one of {', '.join(PRECISIONS)})")
    if args.precision == "int8":
        if args.format != "tflite":
            raise ConfigError("--precision=int8", "only --format=tflite exports int8")
        if not (args.calibration_dataset_dir and args.calibration_split):
            raise ConfigError("--precision=int8", "needs --calibration_dataset_dir and --calibration_split")
        flags.check_at_least(args, num_calibration_images=1)
    if args.optimize and args.format != "saved_model":
        raise ConfigError("--optimize", "only with --format=saved_model (its graph may be compiled by XLA)")
    flags.check_post_processing(args)
    if os.path.exists(args.output_dir) and (not os.path.isdir(args.output_dir) or os.listdir(args.output_dir)):
        raise ConfigError(args.output_dir, "already exists and is not an empty folder")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from inference.detector import Detector
    from inference import exports

    calibration = None
    if args.precision == "int8":
        dataset = flags.get_dataset(args.calibration_dataset_name, args.calibration_split,
                                    args.calibration_dataset_dir, flag="--calibration_dataset_name")
        calibration = exports.calibration_images(dataset, args.num_calibration_images)
    # TFLite has no combined NMS: its graph runs the per-class formulation, at batch 1 (post_processing.py).
    graph = dict(batch_size=1, nms="per_class") if args.format == "tflite" else {}
    graph["portable"] = args.format != "saved_model"
    overrides = flags.post_processing_overrides(args)
    with Detector(args.checkpoint_path, model_name=args.model_name, optimize=args.optimize, **overrides,
                  **graph) as detector:
        if args.format == "saved_model":
            path = exports.export_saved_model(detector, args.output_dir, overrides)
            what = f"signature {exports.SIGNATURE_KEY}"
        elif args.format == "onnx":
            path = exports.export_onnx(detector, args.output_dir, overrides)
            what = f"ONNX opset {exports.ONNX_OPSET}"
        else:
            path = exports.export_tflite(detector, args.output_dir, overrides, args.precision, calibration)
            what = f"TFLite {args.precision}, batch 1"
        print(f"wrote {path}: {detector.model.name}, {len(detector.class_names)} classes, {what}: "
              f"images uint8 [B, H, W, 3] -> {', '.join(exports.OUTPUTS)}")
    return 0


if __name__ == "__main__":
    run_main(main)
