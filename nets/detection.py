"""The detection path shared by evaluation, detect_ssd.py, the notebook, the exporter and the benchmarks:
pre-processing -> network -> softmax -> box decoding -> DetectionOutput, all in one TensorFlow graph, and a
Detector that builds that graph and its session once.
"""
import numpy as np
import tensorflow as tf

from common.errors import ConfigError
from nets import box_coding, model_config, nets_factory, post_processing
from preprocessing import ssd_vgg_preprocessing


def detection_outputs(model, images, select_threshold=None, nms_threshold=None, top_k=None, keep_top_k=None):
    """Detections for pre-processed images.

    Args:
      model: nets_factory.SSDModel. images: float32 [B, H, W, 3] mean-subtracted RGB at model.image_size.
    Returns:
      dict: boxes [B, K, 4], scores [B, K], classes [B, K], num_detections [B] (select_detections), plus
      "probabilities" [B, N, C] and "decoded_boxes" [B, N, 4] (raw, before selection) and "end_points".
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
        top_k=int(post["top_k"]), keep_top_k=int(post["keep_top_k"]))
    out.update(probabilities=probabilities, decoded_boxes=boxes, end_points=end_points)
    return out


def load_model(checkpoint_path, model_name=None):
    """(SSDModel, checkpoint prefix) from a checkpoint prefix or directory with its ssd_config.json."""
    ckpt = model_config.resolve_checkpoint(checkpoint_path)
    config = model_config.load_model_config(ckpt)
    if model_name and model_name != config["model_name"]:
        raise ConfigError(checkpoint_path, f"is a {config['model_name']} model, not {model_name}")
    return nets_factory.build_model(config), ckpt


class Detector:
    """Runs a checkpoint on images. The graph and session are built once.

    detect(image uint8 [H, W, 3] RGB) -> dict(boxes [K, 4] relative [ymin, xmin, ymax, xmax], scores [K],
    classes [K]); detect_batch(images uint8 [B, H, W, 3], all of one size) -> list of such dicts.
    """

    def __init__(self, checkpoint_path, model_name=None, select_threshold=None, nms_threshold=None,
                 top_k=None, keep_top_k=None, session_config=None, graph_rewrites=None):
        self.model, self.checkpoint = load_model(checkpoint_path, model_name)
        self.graph = tf.Graph()
        with self.graph.as_default():
            self.images = tf.compat.v1.placeholder(tf.uint8, [None, None, None, 3], name="images")
            inputs = ssd_vgg_preprocessing.preprocess_for_eval(self.images, self.model.image_size,
                                                               self.model.mean_rgb)
            self.outputs = detection_outputs(self.model, inputs, select_threshold, nms_threshold, top_k,
                                             keep_top_k)
            saver = tf.compat.v1.train.Saver(tf.compat.v1.global_variables())
            if session_config is None:
                session_config = tf.compat.v1.ConfigProto()
            if graph_rewrites:
                graph_rewrites(session_config)
            self.session = tf.compat.v1.Session(graph=self.graph, config=session_config)
            saver.restore(self.session, self.checkpoint)
        self._fetch = {k: self.outputs[k] for k in ("boxes", "scores", "classes", "num_detections")}

    @property
    def class_names(self):
        return self.model.class_names

    def detect_batch(self, images):
        images = np.asarray(images)
        if images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be [B, H, W, 3], got {images.shape}")
        res = self.session.run(self._fetch, {self.images: images})
        out = []
        for b in range(images.shape[0]):
            n = int(res["num_detections"][b])
            out.append({"boxes": res["boxes"][b, :n], "scores": res["scores"][b, :n],
                        "classes": res["classes"][b, :n]})
        return out

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
