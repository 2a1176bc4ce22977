"""The detection path shared by evaluation, detect_ssd.py, the notebook, the exporter and the benchmarks:
pre-processing -> network -> softmax -> box decoding -> DetectionOutput, all in one TensorFlow graph, and a
Detector that builds that graph and its session once.
"""
import os

import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import rewriter_config_pb2

from common.errors import ConfigError
from nets import box_coding, fold_batch_norm, model_config, nets_factory, post_processing
from preprocessing import ssd_vgg_preprocessing


def detection_outputs(model, images, select_threshold=None, nms_threshold=None, top_k=None, keep_top_k=None,
                      nms="combined"):
    """Detections for pre-processed images.

    Args:
      model: nets_factory.SSDModel. images: float32 [B, H, W, 3] mean-subtracted RGB at model.image_size.
      nms: post_processing.select_detections' formulation ("per_class" needs a static batch size).
    Returns:
      dict: boxes [B, K, 4], scores [B, K], classes [B, K], num_detections [B] (select_detections), plus
      "probabilities" [B, N, C] and "decoded_boxes" [B, N, 4] (raw, before selection), the network's own
      "logits" and "offsets", and "end_points".
    """
    post = dict(model.post_processing)
    for key, value in (("select_threshold", select_threshold), ("nms_threshold", nms_threshold),
                       ("top_k", top_k), ("keep_top_k", keep_top_k)):
        if value is not None:
            post[key] = value
    (logits, offsets), end_points = model.network_fn(images)
    probabilities = tf.nn.softmax(tf.cast(logits, tf.float32))
    boxes = box_coding.decode_boxes(tf.cast(offsets, tf.float32), model.anchors, model.variances)
    out = post_processing.select_detections(
        probabilities, boxes, select_threshold=post["select_threshold"], nms_threshold=post["nms_threshold"],
        top_k=int(post["top_k"]), keep_top_k=int(post["keep_top_k"]), nms=nms)
    out.update(probabilities=probabilities, decoded_boxes=boxes, logits=logits, offsets=offsets, end_points=end_points)
    return out


PRECISIONS = ("float32", "bf16", "float16")


def session_config(intra_op_threads=None, inter_op_threads=None, precision="float32", xla=False):
    """A ConfigProto for inference.

    precision: "float32"; "bf16": grappler's oneDNN auto-mixed-precision rewrite (convolutions and matmuls in
    bfloat16 on CPUs with AVX512_BF16 / AMX; TensorFlow falls back to slow Eigen kernels elsewhere, see
    cpu_supports_bf16); "float16": grappler's auto-mixed-precision rewrite (float16 on GPUs with tensor cores).
    Softmax, decoding and NMS stay float32 (detection_outputs casts back). xla: global JIT (XLA) level ON_1.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
    config = tf.compat.v1.ConfigProto()
    if intra_op_threads:
        config.intra_op_parallelism_threads = int(intra_op_threads)
    if inter_op_threads:
        config.inter_op_parallelism_threads = int(inter_op_threads)
    rewrites = config.graph_options.rewrite_options
    if precision == "bf16":
        if not onednn_enabled():
            raise ConfigError("--precision=bf16", "needs TensorFlow's oneDNN optimisations: set "
                              "TF_ENABLE_ONEDNN_OPTS=1 before TensorFlow is imported")
        rewrites.auto_mixed_precision_onednn_bfloat16 = rewriter_config_pb2.RewriterConfig.ON
    elif precision == "float16":
        rewrites.auto_mixed_precision = rewriter_config_pb2.RewriterConfig.ON
    if xla:
        config.graph_options.optimizer_options.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1
    return config


def onednn_enabled():
    """Whether TensorFlow runs its oneDNN kernels and rewrites (TF_ENABLE_ONEDNN_OPTS, read at import; off by
    default in CUDA builds such as the pip wheel). Grappler's bfloat16 rewrite does nothing without them."""
    try:
        from tensorflow.python.util import _pywrap_util_port
        return bool(_pywrap_util_port.IsMklEnabled())
    except (ImportError, AttributeError):
        return os.environ.get("TF_ENABLE_ONEDNN_OPTS", "").lower() in ("1", "true")


def cpu_flags(cpuinfo="/proc/cpuinfo"):
    """The CPU feature flags of the first processor in /proc/cpuinfo (an empty set where there is none)."""
    try:
        with open(cpuinfo) as f:
            for line in f:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def cpu_supports_bf16(flags=None):
    """True when the CPU computes bfloat16 natively (AVX512_BF16 or AMX-BF16), which oneDNN needs for speed."""
    flags = cpu_flags() if flags is None else flags
    return bool({"avx512_bf16", "amx_bf16"} & set(flags))


def load_model(checkpoint_path, model_name=None):
    """(SSDModel, checkpoint prefix) from a checkpoint prefix or directory with its ssd_config.json."""
    ckpt = model_config.resolve_checkpoint(checkpoint_path)
    config = model_config.load_model_config(ckpt)
    if model_name and model_name != config["model_name"]:
        raise ConfigError(checkpoint_path, f"is a {config['model_name']} model, not {model_name}")
    return nets_factory.build_model(config), ckpt


NOT_COMPILED = ("ResizeBilinear", "ResizeNearestNeighbor", "DepthwiseConv2dNative")


def optimized_graph_def(session, graph, fetches, winograd=None, xla=True):
    """The inference graph of `fetches`, frozen (variables -> constants), batch norms folded into their
    convolutions (nets/fold_batch_norm.py), its 3x3 stride-1 convolutions computed
    by Winograd F(4x4, 3x3) or F(6x6, 3x3) (nets/winograd.py; by default only where no GPU is visible: cuDNN
    has its own), and every node but the resize marked for XLA compilation (`_XlaCompile`; ops without an XLA
    kernel, such as the NMS, stay outside the compiled clusters). XLA fuses the Winograd transforms; without
    it they cost more than they save. With oneDNN on (TF_ENABLE_ONEDNN_OPTS=1) XLA's GEMMs are multi-threaded.
    """
    from nets import winograd as winograd_lib
    output_names = sorted({t.op.name for t in fetches})
    graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), output_names)
    graph_def, _ = fold_batch_norm.fold_batch_norms(graph_def, keep=output_names)
    if winograd is None:
        winograd = not tf.config.list_physical_devices("GPU")
    if winograd:
        shapes = {op.name: op.inputs[0].shape for op in graph.get_operations() if op.type == "Conv2D"}
        large_maps = onednn_enabled()
        graph_def, _ = winograd_lib.rewrite_convolutions(
            graph_def, shapes, policy=lambda shape, kernel: winograd_lib.default_policy(shape, kernel, large_maps))
    if xla:
        for node in graph_def.node:
            # XLA's CPU resize is 7-20x slower than TensorFlow's kernel (a batch of 8 at 300 x 300: 68 ms
            # against 9 ms): the pre-processing resize stays a TensorFlow op. So do depthwise convolutions
            # (XLA's grouped convolution): the Caffe MobileNet-SSD ran at 1.3 images/s compiled, 9.3 without them.
            node.attr["_XlaCompile"].b = node.op not in NOT_COMPILED
    return graph_def


class Detector:
    """Runs a checkpoint on images. The graph and session are built once.

    detect(image uint8 [H, W, 3] RGB) -> dict(boxes [K, 4] relative [ymin, xmin, ymax, xmax], scores [K],
    classes [K]); detect_batch(images uint8 [B, H, W, 3], all of one size) -> list of such dicts.

    session_config: a ConfigProto (see session_config()); graph_rewrites(config) may edit it in place.
    optimize: run optimized_graph_def()'s graph instead (frozen, Winograd convolutions on CPUs, XLA): on the
    2-core AVX2 reference machine 2-3x faster than the plain graph; XLA compiles on the first run of each
    batch shape (20-30 s for SSD-300), and raw() / end_points are served from the same frozen graph.
    batch_size: a static batch size for the images placeholder (None: any); nms: the post-processing's
    formulation (post_processing.select_detections; exports to runtimes without a combined NMS use
    "per_class", which needs batch_size); portable: a graph for the ONNX and TFLite converters (the images
    are cast to float32 before the resize, same values; inference/exports.py).
    """

    def __init__(self, checkpoint_path, model_name=None, select_threshold=None, nms_threshold=None,
                 top_k=None, keep_top_k=None, session_config=None, graph_rewrites=None, optimize=False,
                 batch_size=None, nms="combined", portable=False):
        self.model, self.checkpoint = load_model(checkpoint_path, model_name)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf.compat.v1.placeholder(tf.uint8, [batch_size, None, None, 3], name="images")
            inputs = ssd_vgg_preprocessing.preprocess_for_eval(self.images, self.model.image_size,
                                                               self.model.mean_rgb, resize_uint8=not portable)
            self.outputs = detection_outputs(self.model, inputs, select_threshold, nms_threshold, top_k,
                                             keep_top_k, nms=nms)
            saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables())
            if session_config is None:
                session_config = tf.compat.v1.ConfigProto()
            if graph_rewrites:
                graph_rewrites(session_config)
            self.session = tf.compat.v1.Session(graph=self.graph, config=session_config)
            saver.restore(self.session, self.checkpoint)
        if optimize:
            self._optimize(session_config)
        # What detect_batch fetches; a caller timing session.run directly (benchmarks) fetches the same.
        self.detection_fetches = {k: self.outputs[k] for k in ("boxes", "scores", "classes", "num_detections")}

    def _optimize(self, session_config):
        """Replaces graph and session by the frozen graph, Winograd convolutions on CPUs, compiled by XLA."""
        tensors = {k: v for k, v in self.outputs.items() if isinstance(v, tf.Tensor)}
        tensors.update({"end_points/" + k: v for k, v in self.outputs["end_points"].items()})
        graph_def = optimized_graph_def(self.session, self.graph, list(tensors.values()))
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        self.session.close()
        self.graph = graph
        self.session = tf.compat.v1.Session(graph=graph, config=session_config)
        self.images = graph.get_tensor_by_name(self.images.name)
        new = {k: graph.get_tensor_by_name(v.name) for k, v in tensors.items()}
        self.outputs = {k: v for k, v in new.items() if not k.startswith("end_points/")}
        self.outputs["end_points"] = {k[len("end_points/"):]: v for k, v in new.items() if k.startswith("end_points/")}

    @property
    def class_names(self):
        return self.model.class_names

    @staticmethod
    def detections(results):
        """session.run(detection_fetches) results -> one dict(boxes, scores, classes) per image, unpadded."""
        out = []
        for b in range(len(results["num_detections"])):
            n = int(results["num_detections"][b])
            out.append({"boxes": results["boxes"][b, :n], "scores": results["scores"][b, :n],
                        "classes": results["classes"][b, :n]})
        return out

    def detect_batch(self, images):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
        return self.detections(self.session.run(self.detection_fetches, {self.images: images}))

    def detect(self, image):
        return self.detect_batch(np.asarray(image)[None])[0]

    def raw(self, images):
        """(probabilities [B, N, C], decoded boxes [B, N, 4]) before selection, for parity checks."""
        images = np.asarray(images)
        if images.ndim == 3:
            images = images[None]
        return self.session.run([self.outputs["probabilities"], self.outputs["decoded_boxes"]],
                                {self.images: images})

    def close(self):
        self.session.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
