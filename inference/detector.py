"""The detection path shared by evaluation, detect_ssd.py, the notebook, the exporter and the benchmarks:
pre-processing -> network -> softmax -> box decoding -> DetectionOutput, all in one TensorFlow graph, and a
Detector that builds that graph and its session once.
"""
import numpy as np
import tensorflow as tf

from box_ops import box_coding, post_processing
from caffe_converter import caffe_ssd
from common.errors import ConfigError
from common.precision import precision_of
from inference.graph_optimization import optimized_graph_def
from nets import model_config, nets_factory
from preprocessing import ssd_vgg_preprocessing

# Models built from their configuration by code outside nets/ (passed to nets_factory.build_model).
CONFIG_BUILDERS = {caffe_ssd.MODEL_NAME: caffe_ssd.build_from_config}


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


def load_model(checkpoint_path, model_name=None):
    """(SSDModel, checkpoint prefix) from a checkpoint prefix or directory with its ssd_config.json."""
    ckpt = model_config.resolve_checkpoint(checkpoint_path)
    config = model_config.load_model_config(ckpt)
    if model_name and model_name != config["model_name"]:
        raise ConfigError(checkpoint_path, f"is a {config['model_name']} model, not {model_name}")
    return nets_factory.build_model(config, config_builders=CONFIG_BUILDERS), ckpt


class Detector:
    """Runs a checkpoint on images. The graph and session are built once.

    detect(image uint8 [H, W, 3] RGB) -> dict(boxes [K, 4] relative [ymin, xmin, ymax, xmax], scores [K],
    classes [K]); detect_batch(images uint8 [B, H, W, 3], all of one size) -> list of such dicts.

    session_config: a ConfigProto (inference/session_options.py); graph_rewrites(config) may edit it in place.
    optimize: run optimized_graph_def()'s graph instead (frozen, batch norms folded; Winograd convolutions on
    CPUs and XLA, except for networks with depthwise convolutions, where XLA does not pay): on the
    2-core AVX2 reference machine 2-3x faster than the plain graph; XLA compiles on the first run of each
    batch shape (20-30 s for SSD-300), raw() is served from the same frozen graph, and end_points only by the
    plain one.
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
        """Replaces graph and session by the optimised frozen graph. The network's end_points are not kept: a
        layer output that stays fetchable cannot be folded away (a Caffe network lists every blob, so its
        BatchNorm and Scale layers would stay unfolded)."""
        tensors = {k: v for k, v in self.outputs.items() if isinstance(v, tf.Tensor)}
        graph_def = optimized_graph_def(self.session, self.graph, list(tensors.values()))
        precision = precision_of(session_config)
        if precision != "float32" and any(node.attr["_XlaCompile"].b for node in graph_def.node):
            # Grappler's precision rewrites work on TensorFlow's own kernels and do not reach XLA clusters;
            # the optimised graph is compiled by XLA except for depthwise networks (graph_optimization.uses_xla).
            self.session.close()
            raise ConfigError(f"precision={precision}", f"{self.model.name}'s optimised graph is compiled by XLA, "
                              f"which the {precision} rewrite does not reach: leave out the optimisation or the "
                              "reduced precision")
        graph = tf.Graph()
        with graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        self.session.close()
        self.graph = graph
        self.session = tf.compat.v1.Session(graph=graph, config=session_config)
        self.images = graph.get_tensor_by_name(self.images.name)
        self.outputs = {k: graph.get_tensor_by_name(v.name) for k, v in tensors.items()}
        self.outputs["end_points"] = {}

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
