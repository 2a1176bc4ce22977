"""The Detector's graph (inference/detector.py) written for other runtimes: SavedModel, ONNX and TFLite.

Every format holds the whole detection path: uint8 RGB images [B, H, W, 3] in, resized and mean-subtracted
inside, the network, softmax, box decoding and Caffe's DetectionOutput inside, and four outputs:
  boxes float32 [B, K, 4] ([ymin, xmin, ymax, xmax] relative, clipped to the image), scores float32 [B, K]
  (sorted), classes int32 [B, K] (1..C-1, 0 pads), num_detections int32 [B]; K = keep_top_k.
The class names and the model configuration travel inside each (see each writer). Each writer builds its
output beside the target under a temporary name and renames it when complete.
"""
import io
import json
import os
import shutil
import zipfile

import tensorflow as tf

from common import fileio

OUTPUTS = ("boxes", "scores", "classes", "num_detections")
SIGNATURE_KEY = "serving_default"
ONNX_OPSET = 17          # NonMaxSuppression (opset 11 semantics), Resize with half-pixel centres
ONNX_FILE = "model.onnx"
TFLITE_FILES = {"float32": "model.tflite", "int8": "model_int8.tflite"}
# The TFLite model's associated files: a zip archive appended to the flatbuffer, as TFLite Support's
# MetadataPopulator packs them; the interpreter ignores it, zipfile reads it.
TFLITE_LABELS = "labels.txt"
TFLITE_CONFIG = "ssd_config.json"


def serving_outputs(detector):
    """The four named outputs of the Detector's graph; boxes clipped to the image (detect_ssd.py clips them
    when it writes them; an export does it in the graph)."""
    with detector.graph.as_default():
        tensors = dict((k, detector.outputs[k]) for k in OUTPUTS)
        tensors["boxes"] = tf.clip_by_value(tensors["boxes"], 0.0, 1.0, name="clipped_boxes")
        return {k: tf.identity(v, name=k) for k, v in tensors.items()}


def model_metadata(detector, post_processing=None):
    """The model configuration with the post-processing the Detector was built with (its overrides)."""
    config = dict(detector.model.config or {})
    config["post_processing"] = dict(detector.model.post_processing, **(post_processing or {}))
    return config


def export_saved_model(detector, output_dir, post_processing=None):
    """A SavedModel with the serving signature "serving_default" (images -> the four outputs), the class names
    in assets.extra/labels.txt and the configuration in assets.extra/ssd_config.json."""
    outputs = serving_outputs(detector)
    with detector.graph.as_default():
        signature = tf.compat.v1.saved_model.signature_def_utils.predict_signature_def(
            inputs={"images": detector.images}, outputs=outputs)

        def write(tmp):
            builder = tf.compat.v1.saved_model.Builder(tmp)
            builder.add_meta_graph_and_variables(
                detector.session, [tf.saved_model.SERVING], signature_def_map={SIGNATURE_KEY: signature},
                strip_default_attrs=True)
            builder.save()
            extra = os.path.join(tmp, "assets.extra")
            os.makedirs(extra)
            with open(os.path.join(extra, "labels.txt"), "w") as f:
                f.write("".join(f"{name}\n" for name in detector.class_names))
            with open(os.path.join(extra, "ssd_config.json"), "w") as f:
                json.dump(model_metadata(detector, post_processing), f, indent=2)
        return _write_dir(output_dir, write)


def frozen_graph_def(detector, outputs):
    """The Detector's graph with its variables as constants, pruned to `outputs` (a dict of tensors)."""
    return tf.compat.v1.graph_util.convert_variables_to_constants(
        detector.session, detector.graph.as_graph_def(), sorted({t.op.name for t in outputs.values()}))


def onnx_model(detector, outputs, opset=ONNX_OPSET):
    """tf2onnx's ModelProto of the frozen graph from `images` to `outputs` (dict name -> tensor), its graph
    input and outputs named "images" and the dict's keys."""
    import tf2onnx
    graph_def = frozen_graph_def(detector, outputs)
    names = {detector.images.name: "images", **{t.name: k for k, t in outputs.items()}}
    model, _ = tf2onnx.convert.from_graph_def(
        graph_def, name="ssd", input_names=[detector.images.name], output_names=[t.name for t in outputs.values()],
        opset=opset, tensors_to_rename=names)
    return model


def export_onnx(detector, output_dir, post_processing=None, opset=ONNX_OPSET):
    """<output_dir>/model.onnx: the whole detection path (ONNX NonMaxSuppression inside), input "images", the
    four outputs by name, metadata_props "class_names" (a JSON list, label i+1 is entry i) and "ssd_config".
    Needs the Detector built with nms="combined" (tf2onnx converts its shared-boxes CombinedNonMaxSuppression)."""
    import onnx
    model = onnx_model(detector, serving_outputs(detector), opset)
    config = model_metadata(detector, post_processing)
    for key, value in (("class_names", json.dumps(list(detector.class_names))),
                       ("ssd_config", json.dumps(config)), ("model_name", detector.model.name)):
        model.metadata_props.add(key=key, value=value)
    model.doc_string = (f"SSD {detector.model.name}: images uint8 [B, H, W, 3] RGB -> boxes, scores, classes, "
                        f"num_detections; opset {opset}")

    def write(tmp):
        onnx.save(model, os.path.join(tmp, ONNX_FILE))
    return os.path.join(_write_dir(output_dir, write), ONNX_FILE)


def calibration_images(dataset, num_images):
    """uint8 [1, H, W, 3] images of a dataset_factory description, the first num_images of its records in
    order (the project's decoder), for post-training quantisation."""
    records = tf.data.TFRecordDataset(list(dataset.files)).map(dataset.decode_fn).take(num_images)
    for example in records:
        yield example["image"].numpy()[None]


def tflite_model(detector, outputs, precision="float32", calibration=None):
    """The TFLite flatbuffer of `images` -> `outputs` (built-in ops only: the Detector must be built with
    batch_size=1 and nms="per_class", whose NMS is TFLite's NON_MAX_SUPPRESSION_V5).

    precision "int8": post-training full-integer quantisation of the network (the ops of the network's
    variable scope: convolutions, pooling, the heads; the input resize and mean too), activation ranges
    calibrated on `calibration` (an iterable of uint8 [1, H, W, 3] images). Softmax, box decoding and NMS stay
    float32: int8 decoded boxes and scores in steps of 1/256 cost half the mAP of the quickstart model (0.41
    against 0.80). So does the L2-normalised layer (conv4_3) with its normalisation (_float_ops), whose
    filters are stored as int8 all the same, and the anchors as float16 (_compact)."""
    def converter():
        conv = tf.compat.v1.lite.TFLiteConverter.from_session(
            detector.session, [detector.images], list(outputs.values()))
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS]
        return conv
    if precision == "float32":
        return converter().convert()
    if precision != "int8":
        raise ValueError(f"precision must be float32 or int8, got {precision!r}")
    scope = detector.outputs["logits"].op.name.split("/")[0] + "/"
    float_ops = sorted(_float_ops(converter().convert(), scope))
    conv = converter()
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    calibration = [image for image in calibration]
    conv.representative_dataset = lambda: ([image] for image in calibration)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=conv, debug_dataset=lambda: ([image] for image in calibration[:1]),
        debug_options=tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=float_ops))
    return _compact(bytes(debugger.get_nondebug_quantized_model()))


def _float_ops(flatbuffer, scope):
    """The operators of a float TFLite model to leave unquantised, by the names of the tensors they write (the
    node names of TFLite's quantiser): every operator outside the network's scope (softmax, decoding, NMS), and
    each L2 normalisation with the layer that feeds it and the scaling after it. SSD normalises conv4_3 because
    its activations span a far wider range than the other layers' (Liu et al., ParseNet); quantised per
    tensor, that layer alone cost 0.07 mAP_VOC07 on a briefly trained quickstart model (0.37 against 0.45)."""
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    name = lambda index: graph.tensors[index].name.decode()  # noqa: E731
    code = lambda op: max(model.operatorCodes[op.opcodeIndex].builtinCode,  # noqa: E731
                          model.operatorCodes[op.opcodeIndex].deprecatedBuiltinCode)
    keep_float = {name(op.outputs[0]) for op in graph.operators if not name(op.outputs[0]).startswith(scope)}
    for op in graph.operators:
        if code(op) == schema.BuiltinOperator.L2_NORMALIZATION:
            normalised = set(op.outputs)
            keep_float |= {name(op.inputs[0]), name(op.outputs[0])}
            keep_float |= {name(o.outputs[0]) for o in graph.operators if normalised & set(o.inputs)}
    return keep_float


def _compact(flatbuffer, min_elements=1024):
    """A quantised TFLite model made smaller without changing what it computes beyond storage precision:
    the float32 filters of the convolutions left float stored as int8 (per output channel, symmetric), the
    other float32 constants of at least min_elements values (the anchors) as float16, each restored by a
    DEQUANTIZE op at the start of the graph; intermediate tensors named by their index."""
    import numpy as np
    from tensorflow.lite.python import schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils
    model = flatbuffer_utils.convert_bytearray_to_object(bytearray(flatbuffer))
    graph = model.subgraphs[0]
    codes = [max(c.builtinCode, c.deprecatedBuiltinCode) for c in model.operatorCodes]
    if schema.BuiltinOperator.DEQUANTIZE in codes:
        dequantize = codes.index(schema.BuiltinOperator.DEQUANTIZE)
        model.operatorCodes[dequantize].version = max(model.operatorCodes[dequantize].version, 5)
    else:
        code = schema.OperatorCodeT()
        code.builtinCode = code.deprecatedBuiltinCode = schema.BuiltinOperator.DEQUANTIZE
        code.version = 5  # float16 and per-channel int8 inputs
        model.operatorCodes.append(code)
        dequantize = len(model.operatorCodes) - 1
    filters = {op.inputs[1] for op in graph.operators
               if codes[op.opcodeIndex] == schema.BuiltinOperator.CONV_2D and len(op.inputs) > 1}
    restore = []
    for index, tensor in enumerate(list(graph.tensors)):
        data = model.buffers[tensor.buffer].data if tensor.buffer else None
        if tensor.type != schema.TensorType.FLOAT32 or data is None or len(data) < 4 * min_elements:
            continue
        values = np.frombuffer(bytes(bytearray(data)), np.float32)
        stored = schema.TensorT()
        stored.shape = tensor.shape
        if index in filters:  # [out, h, w, in]: one scale per output channel
            per_channel = values.reshape(tensor.shape[0], -1)
            scale = np.maximum(np.abs(per_channel).max(axis=1), 1e-12) / 127.0
            stored_values = np.clip(np.round(per_channel / scale[:, None]), -127, 127).astype(np.int8)
            stored.type, stored.quantization = schema.TensorType.INT8, schema.QuantizationParametersT()
            stored.quantization.scale = scale.astype(np.float32).tolist()
            stored.quantization.zeroPoint = [0] * len(scale)
            stored.quantization.quantizedDimension = 0
        else:
            stored_values, stored.type = values.astype(np.float16), schema.TensorType.FLOAT16
        buffer = schema.BufferT()
        buffer.data = stored_values.reshape(-1).view(np.uint8)
        model.buffers.append(buffer)
        stored.name, stored.buffer = tensor.name + b"_stored", len(model.buffers) - 1
        graph.tensors.append(stored)
        model.buffers[tensor.buffer].data = None
        tensor.buffer = 0
        op = schema.OperatorT()
        op.opcodeIndex, op.inputs, op.outputs = dequantize, [len(graph.tensors) - 1], [index]
        restore.append(op)
    graph.operators = restore + list(graph.operators)
    kept = set(graph.inputs) | set(graph.outputs)
    for index, tensor in enumerate(graph.tensors):
        if index not in kept:
            tensor.name = f"t{index}".encode()
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model))


def export_tflite(detector, output_dir, post_processing=None, precision="float32", calibration=None):
    """<output_dir>/model.tflite (float32) or model_int8.tflite: see tflite_model. Input "images" uint8
    [1, H, W, 3] (resize_tensor_input for another H, W), the four outputs by name. The class names
    (labels.txt) and the configuration (ssd_config.json) are associated files in a zip archive appended to
    the flatbuffer (read them with zipfile.ZipFile(path))."""
    outputs = serving_outputs(detector)
    flatbuffer = tflite_model(detector, outputs, precision, calibration)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr(TFLITE_LABELS, "".join(f"{name}\n" for name in detector.class_names))
        z.writestr(TFLITE_CONFIG, json.dumps(model_metadata(detector, post_processing), indent=2))
    name = TFLITE_FILES[precision]

    def write(tmp):
        with open(os.path.join(tmp, name), "wb") as f:
            f.write(flatbuffer)
            f.write(archive.getvalue())
    return os.path.join(_write_dir(output_dir, write), name)


def tflite_associated_file(path, name=TFLITE_LABELS):
    """The text of an associated file of a .tflite model written by export_tflite (None without one)."""
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(name).decode("utf-8")
    except (zipfile.BadZipFile, KeyError, OSError):
        return None


def _write_dir(output_dir, write):
    """Calls write(tmp) on a temporary folder beside output_dir, which becomes output_dir when it returns (an
    empty output_dir is replaced); on any error the temporary folder is removed and output_dir left as it was."""
    final = os.path.abspath(output_dir)
    tmp = fileio.tmp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    try:
        write(tmp)
        if os.path.isdir(final):
            os.rmdir(final)  # empty, checked by the caller
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def network_outputs(detector):
    """The raw detection path before selection: probabilities [B, N, C] and decoded boxes [B, N, 4] (for
    network-only timings of the same graph in other runtimes)."""
    with detector.graph.as_default():
        return {"probabilities": tf.identity(detector.outputs["probabilities"], name="net_probabilities"),
                "decoded_boxes": tf.identity(detector.outputs["decoded_boxes"], name="net_decoded_boxes")}


