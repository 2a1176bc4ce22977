"""Network names -> network functions and parameters (TF-Slim's nets_factory).

`get_network_fn` wraps a network in its arg_scope; `build_model` turns a model configuration (what
training and the Caffe converter write beside a checkpoint, see model_config.py) into an SSDModel: the
network function plus its anchors, variances, input size and mean, which is all that training, evaluation,
detection, the notebook and the exporter need.
"""
import dataclasses
import functools

import numpy as np
import tf_slim as slim

from box_ops import anchors as anchors_lib
from nets import ssd_vgg_300, ssd_vgg_512
from nets import ssd_inception_v2, ssd_resnet_v1, ssdlite_mobilenet_v2
from nets.ssd_params import SSDParams

networks_map = {
    "ssd_300_vgg": ssd_vgg_300.ssd_300_vgg,
    "ssd_300_vgg_lite": ssd_vgg_300.ssd_300_vgg_lite,
    "ssd_512_vgg": ssd_vgg_512.ssd_512_vgg,
    "ssd_300_vgg_coco": ssd_vgg_300.ssd_300_vgg_coco,  # the Caffe COCO models' anchors, 81 classes
    "ssd_512_vgg_coco": ssd_vgg_512.ssd_512_vgg_coco,
}
# Batch norm bases warm-started from TF-Slim ImageNet checkpoints (docs/models.md).
networks_map.update({
    "ssd_300_resnet_v1_50": ssd_resnet_v1.ssd_300_resnet_v1_50,
    "ssd_300_inception_v2": ssd_inception_v2.ssd_300_inception_v2,
    "ssdlite_320_mobilenet_v2": ssdlite_mobilenet_v2.ssdlite_320_mobilenet_v2,
})

arg_scopes_map = {
    "ssd_300_vgg": ssd_vgg_300.ssd_arg_scope,
    "ssd_300_vgg_lite": ssd_vgg_300.ssd_arg_scope,
    "ssd_512_vgg": ssd_vgg_300.ssd_arg_scope,
    "ssd_300_vgg_coco": ssd_vgg_300.ssd_arg_scope,
    "ssd_512_vgg_coco": ssd_vgg_300.ssd_arg_scope,
}
arg_scopes_map.update({
    "ssd_300_resnet_v1_50": ssd_resnet_v1.ssd_resnet_arg_scope,
    "ssd_300_inception_v2": ssd_inception_v2.ssd_inception_arg_scope,
    "ssdlite_320_mobilenet_v2": ssdlite_mobilenet_v2.ssdlite_arg_scope,
})

VGG_MEAN_RGB = ssd_vgg_300.VGG_MEAN_RGB
DEFAULT_POST_PROCESSING = {"select_threshold": 0.01, "nms_threshold": 0.45, "top_k": 400, "keep_top_k": 200}


def model_names(config_builders=None):
    """The names build_model knows: the networks defined here, plus those of `config_builders`."""
    return sorted(set(networks_map) | set(config_builders or ()))


def _check_name(name, config_builders=None):
    if name not in networks_map and name not in (config_builders or ()):
        raise ValueError(f"Name of network unknown {name}; known: {', '.join(model_names(config_builders))}")


def get_params(name, num_classes=None):
    """The default SSDParams of a network, optionally with another number of classes (background included)."""
    _check_name(name)
    params = networks_map[name].default_params
    return params if num_classes is None else params.replace(num_classes=num_classes)


def get_network_fn(name, num_classes, weight_decay=0.0, is_training=False, params=None, freeze_batch_norm=False):
    """fn(images) -> ((logits, localisations), end_points), in the network's arg_scope.

    `fn.default_image_size` and `fn.params` describe the network. freeze_batch_norm: batch norm layers use
    and keep their moving statistics while training (fine-tuning with small batches).
    """
    _check_name(name)
    func = networks_map[name]
    params = (params or func.default_params).replace(num_classes=num_classes)
    # SSD has no dropout: a network's is_training only sets the mode of its batch norm layers.
    training = is_training and not freeze_batch_norm

    @functools.wraps(func)
    def network_fn(images, reuse=None):
        if params.input_scale != 1.0:  # e.g. Inception / MobileNet inputs in [-1, 1]: (x - 127.5) / 127.5
            images = images * params.input_scale
        with slim.arg_scope(arg_scopes_map[name](weight_decay=weight_decay)):
            return func(images, num_classes=num_classes, is_training=training, params=params, reuse=reuse)

    network_fn.default_image_size = params.img_shape[0]
    network_fn.params = params
    return network_fn


@dataclasses.dataclass(frozen=True)
class SSDModel:
    """A network with everything needed around it. Boxes [ymin, xmin, ymax, xmax] relative.

    network_fn(images [B, H, W, 3] float32 mean-subtracted RGB) -> ((logits [B, N, C], offsets [B, N, 4]),
    end_points); anchors float32 [N, 4]; image_size (H, W); mean_rgb subtracted from 0..255 RGB pixels.
    """
    name: str
    network_fn: object
    anchors: np.ndarray
    variances: tuple
    image_size: tuple
    num_classes: int
    class_names: tuple
    mean_rgb: tuple = VGG_MEAN_RGB
    post_processing: dict = dataclasses.field(default_factory=lambda: dict(DEFAULT_POST_PROCESSING))
    params: SSDParams = None
    config: dict = None


def build_model(config, weight_decay=0.0, is_training=False, freeze_batch_norm=False, config_builders=None):
    """SSDModel from a model configuration dict (see model_config.py); freeze_batch_norm: get_network_fn.

    config_builders: {model name: fn(config) -> SSDModel} for models defined outside this module, registered
    by the caller (inference/detector.py passes caffe_converter's prototxt-built `caffe_ssd`).
    """
    name = config["model_name"]
    _check_name(name, config_builders)
    if name not in networks_map:
        return config_builders[name](config)
    num_classes = int(config["num_classes"])
    params = SSDParams.from_dict(config["params"]) if config.get("params") else get_params(name)
    params = params.replace(num_classes=num_classes)
    class_names = tuple(config.get("class_names") or [str(i) for i in range(1, num_classes)])
    post = dict(DEFAULT_POST_PROCESSING)
    post.update(config.get("post_processing") or {})
    return SSDModel(
        name=name,
        network_fn=get_network_fn(name, num_classes, weight_decay=weight_decay, is_training=is_training,
                                  params=params, freeze_batch_norm=freeze_batch_norm),
        anchors=anchors_lib.ssd_anchors(params),
        variances=tuple(params.prior_variances),
        image_size=tuple(params.img_shape),
        num_classes=num_classes,
        class_names=class_names,
        mean_rgb=tuple(config.get("mean_rgb") or VGG_MEAN_RGB),
        post_processing=post,
        params=params,
        config=dict(config),
    )


def default_config(name, num_classes=None, class_names=None):
    """The model configuration of a native network (what training writes into --train_dir)."""
    _check_name(name)
    if class_names is not None and num_classes is None:
        num_classes = len(class_names) + 1
    params = get_params(name, num_classes)
    return {
        "model_name": name,
        "num_classes": params.num_classes,
        "class_names": list(class_names) if class_names else None,
        "params": params.to_dict(),
        "mean_rgb": list(getattr(networks_map[name], "mean_rgb", VGG_MEAN_RGB)),
        "post_processing": dict(DEFAULT_POST_PROCESSING),
    }
