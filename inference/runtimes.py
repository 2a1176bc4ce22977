"""Exports (inference/exports.py) run through their own runtimes, behind the Detector's interface.

    detector = runtimes.open_model("export/model.onnx")     # or model.tflite, or a SavedModel folder
    results = detector.detect_batch(images)   # uint8 [B, H, W, 3] RGB -> per image dict(boxes, scores, classes)
    detector.class_names; detector.close()

As inference/detector.Detector: boxes [K, 4] relative [ymin, xmin, ymax, xmax], scores [K] sorted, classes [K]
(1..C-1), unpadded. detect_ssd.py --model and benchmarks/bench_inference.py use them.
"""
import json
import os

import numpy as np

from common.errors import ConfigError
from inference import exports
from inference.detector import Detector


# The export's four outputs -> one dict(boxes, scores, classes) per image, unpadded: the Detector's own.
unpad = Detector.detections


def _check_batch(images):
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[-1] != 3 or images.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [B, H, W, 3], got {images.dtype} {images.shape}")
    return images


class _Runtime:
    """detect() and the context manager over detect_batch() and close()."""

    def detect(self, image):
        return self.detect_batch(np.asarray(image)[None])[0]

    def close(self):
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class OnnxRuntimeDetector(_Runtime):
    """model.onnx in ONNX Runtime (CPU). threads: intra-op threads (0: ONNX Runtime's default)."""
    runtime = "onnxruntime"

    def __init__(self, path, threads=0):
        import onnxruntime as ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(threads or 0)
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        except Exception as err:  # onnxruntime raises its own exception types, all "cannot load"
            reason = str(err).strip().splitlines()[0]
            raise ConfigError(path, f"ONNX Runtime cannot load this model: {reason}") from None
        meta = self.session.get_modelmeta().custom_metadata_map
        self.class_names = tuple(json.loads(meta["class_names"])) if "class_names" in meta else ()
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, images):
        """The raw outputs (a dict of arrays) for uint8 [B, H, W, 3]."""
        return dict(zip(self.output_names, self.session.run(None, {"images": _check_batch(images)})))

    def detect_batch(self, images):
        return unpad(self.run(images))


class OpenVinoDetector(_Runtime):
    """model.onnx read by OpenVINO's ONNX frontend, compiled for the CPU (dynamic batch and image size)."""
    runtime = "openvino"

    def __init__(self, path, threads=0, precision="f32"):
        import openvino as ov
        core = ov.Core()
        config = {"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        self.compiled = core.compile_model(core.read_model(path), "CPU", config)
        self.request = self.compiled.create_infer_request()
        import onnx
        props = {p.key: p.value for p in onnx.load(path, load_external_data=False).metadata_props}
        self.class_names = tuple(json.loads(props["class_names"])) if "class_names" in props else ()
        self.output_names = [o.get_any_name() for o in self.compiled.outputs]

    def run(self, images):
        result = self.request.infer({"images": _check_batch(images)})
        return {name: result[out] for name, out in zip(self.output_names, self.compiled.outputs)}

    def detect_batch(self, images):
        return unpad(self.run(images))


class LiteRtDetector(_Runtime):
    """model.tflite in the LiteRT interpreter (XNNPACK on the CPU). The models are batch 1: a batch runs image
    by image; the input is resized to each image size as it changes."""
    runtime = "tflite"

    def __init__(self, path, threads=0):
        from ai_edge_litert.interpreter import Interpreter
        try:
            self.interpreter = Interpreter(model_path=path, num_threads=int(threads) or None)
        except (ValueError, RuntimeError) as err:
            raise ConfigError(path, f"LiteRT cannot load this model: {str(err).strip().splitlines()[0]}") from None
        self.input = self.interpreter.get_input_details()[0]
        self.outputs = {d["name"]: d["index"] for d in self.interpreter.get_output_details()}
        labels = exports.tflite_associated_file(path)
        self.class_names = tuple(labels.splitlines()) if labels is not None else ()
        self.shape = None

    def run(self, images):
        images = _check_batch(images)
        per_image = []
        for image in images:
            if self.shape != image.shape:
                self.interpreter.resize_tensor_input(self.input["index"], [1, *image.shape])
                self.interpreter.allocate_tensors()
                self.shape = image.shape
            self.interpreter.set_tensor(self.input["index"], image[None])
            self.interpreter.invoke()
            per_image.append({k: self.interpreter.get_tensor(i).copy() for k, i in self.outputs.items()})
        return {k: np.concatenate([p[k] for p in per_image]) for k in self.outputs}

    def detect_batch(self, images):
        return unpad(self.run(images))


class SavedModelDetector(_Runtime):
    """A SavedModel folder of export_ssd.py, through tf.saved_model.load and its serving signature."""
    runtime = "saved_model"

    def __init__(self, path):
        import tensorflow as tf
        try:
            self.serve = tf.saved_model.load(path).signatures[exports.SIGNATURE_KEY]
        except (OSError, KeyError, ValueError) as err:
            raise ConfigError(path, f"not a SavedModel of export_ssd.py ({err})") from None
        labels = os.path.join(path, "assets.extra", "labels.txt")
        self.class_names = ()
        if os.path.isfile(labels):
            with open(labels) as f:
                self.class_names = tuple(f.read().splitlines())
        self.tf = tf

    def run(self, images):
        return {k: v.numpy() for k, v in self.serve(images=self.tf.constant(_check_batch(images))).items()}

    def detect_batch(self, images):
        return unpad(self.run(images))


def open_model(path, threads=0):
    """The runtime for an export: a .onnx file (ONNX Runtime), a .tflite file (LiteRT) or a SavedModel folder."""
    if os.path.isdir(path):
        if not os.path.isfile(os.path.join(path, "saved_model.pb")):
            raise ConfigError(path, "not a SavedModel folder (no saved_model.pb)")
        return SavedModelDetector(path)
    if not os.path.isfile(path):
        raise ConfigError(path, "no such model file or SavedModel folder")
    if path.endswith(".onnx"):
        return OnnxRuntimeDetector(path, threads)
    if path.endswith(".tflite"):
        return LiteRtDetector(path, threads)
    raise ConfigError(path, "unknown model format (expected .onnx, .tflite or a SavedModel folder)")
