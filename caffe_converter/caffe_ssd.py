"""An SSD network built from any Caffe SSD deploy prototxt (the `caffe_ssd` model), for models that are not VGG.

    spec = net_spec.analyse(net_parameter)   # caffe_converter/net_spec.py: Caffe semantics, shapes, anchors
    (logits, localisations), end_points = caffe_ssd_net(images, spec)

Tensors are NHWC inside while every blob keeps its Caffe (NCHW) meaning: each blob carries `perm`, the Caffe
axis held by each tensor axis, so Permute only relabels axes and Flatten / Reshape / Concat / Softmax act on
Caffe's axes exactly (a Permute(0, 2, 3, 1) of an NHWC map followed by Flatten costs no transpose).
Convolutions pad explicitly and symmetrically, pooling rounds up as Caffe, BatchNorm folds in its scale-factor
blob, Normalize adds eps inside the square root. PriorBox layers are static anchors (box_ops/anchors.py), and
DetectionOutput is not a graph op: its parameters become the model's post-processing defaults, run by
inference/detector.py (box_coding.decode_boxes + post_processing.select_detections) like every other model.

The network returns the project's contract: logits [B, N, C] (the input of the Softmax feeding DetectionOutput,
so softmax(logits) is Caffe's confidence) and localisations [B, N, 4] ([dx, dy, dw, dh], Caffe's mbox_loc).
Images are RGB and mean-subtracted like every model of the project; the network multiplies them by
`input_scale` and reverses them to the model's BGR order.
"""
import collections
import re

import numpy as np
import tensorflow as tf
import tf_slim as slim

from caffe_converter import net_spec, reader
from common.errors import CaffeModelError
from nets import nets_factory

MODEL_NAME = "caffe_ssd"
_NHWC = (0, 2, 3, 1)


def scope_name(layer_name):
    """A TensorFlow scope name for a Caffe layer name."""
    name = re.sub(r"[^A-Za-z0-9_.\-]", "_", layer_name)
    return name if re.match(r"[A-Za-z0-9.]", name) else "L" + name


# ------------------------------------------------------------------------------------------------ graph
class _Blob:
    """A tensor and `perm`: tensor axis i holds Caffe axis perm[i] (NHWC storage of NCHW is (0, 2, 3, 1))."""

    def __init__(self, tensor, perm, normalized=None):
        self.tensor, self.perm = tensor, tuple(perm)
        # A BatchNorm's output: (its input, mean, variance, eps), so that a Scale after it becomes one op.
        self.normalized = normalized

    def to(self, perm):
        perm = tuple(perm)
        if perm == self.perm:
            return self.tensor
        return tf.transpose(self.tensor, [self.perm.index(a) for a in perm])

    def caffe_order(self):
        return self.to(range(len(self.perm)))

    def channel_shape(self):
        """Broadcast shape putting Caffe's channel axis where this tensor holds it."""
        shape = [1] * len(self.perm)
        shape[self.perm.index(1)] = -1
        return shape


def _variable(name, shape, trainable=True):
    return slim.model_variable(name, shape=shape, dtype=tf.float32, trainable=trainable,
                               initializer=tf.compat.v1.zeros_initializer())


def _conv(x, w, strides, dilations, depthwise=False):
    # TF refuses strides > 1 together with dilation > 1: convolve densely, then subsample (same result).
    both = strides != (1, 1) and dilations != (1, 1)
    s = (1, 1) if both else strides
    if depthwise:
        y = tf.nn.depthwise_conv2d(x, w, [1, s[0], s[1], 1], "VALID", dilations=list(dilations))
    else:
        y = tf.nn.conv2d(x, w, [1, s[0], s[1], 1], "VALID", dilations=[1, dilations[0], dilations[1], 1])
    return y[:, ::strides[0], ::strides[1], :] if both else y


def _convolution(layer, ins, in_shapes, out_shapes):
    num_output, (kh, kw), stride, (ph, pw), dilation, group, bias_term = net_spec.conv_geometry(layer)
    x = ins[0].to(_NHWC)
    cin = in_shapes[0][1]
    w = _variable("weights", [kh, kw, cin // group, num_output])
    if ph or pw:
        x = tf.pad(x, [[0, 0], [ph, ph], [pw, pw], [0, 0]])  # Caffe pads symmetrically
    if group == 1:
        y = _conv(x, w, stride, dilation)
    elif group == cin:  # depthwise: output channel c * m + k reads input channel c
        y = _conv(x, tf.reshape(w, [kh, kw, cin, num_output // cin]), stride, dilation, depthwise=True)
    else:
        y = tf.concat([_conv(a, b, stride, dilation)
                       for a, b in zip(tf.split(x, group, axis=3), tf.split(w, group, axis=3))], axis=3)
    if bias_term:
        y = tf.nn.bias_add(y, _variable("biases", [num_output]))  # BiasAdd: fused with the convolution
    return [_Blob(y, _NHWC)]


def _pooling(layer, ins, in_shapes, out_shapes):
    method, (kh, kw), (sh, sw), (ph, pw), (oh, ow) = net_spec.pool_geometry(layer, in_shapes[0])
    x = ins[0].to(_NHWC)
    h, w = in_shapes[0][2:]
    if layer.param.pooling_param.global_pooling:
        y = (tf.reduce_max if method == 0 else tf.reduce_mean)(x, axis=[1, 2], keepdims=True)
        return [_Blob(y, _NHWC)]
    # Pad ph / pw before and enough after for the last (ceil-mode) window, then pool VALID.
    after_h, after_w = max(0, (oh - 1) * sh + kh - h - ph), max(0, (ow - 1) * sw + kw - w - pw)
    paddings = [[0, 0], [ph, after_h], [pw, after_w], [0, 0]]
    if method == 0:  # MAX: padding never wins
        x = tf.pad(x, paddings, constant_values=-np.inf) if ph or pw or after_h or after_w else x
        y = tf.nn.max_pool2d(x, [kh, kw], [sh, sw], "VALID")[:, :oh, :ow, :]
    else:  # AVE: sum over the window / Caffe's window area, which counts pad but not the ceil overhang
        x = tf.pad(x, paddings)
        y = tf.nn.avg_pool2d(x, [kh, kw], [sh, sw], "VALID")[:, :oh, :ow, :] * float(kh * kw)
        area_h = [min(i * sh - ph + kh, h + ph) - (i * sh - ph) for i in range(oh)]
        area_w = [min(j * sw - pw + kw, w + pw) - (j * sw - pw) for j in range(ow)]
        y = y / np.outer(area_h, area_w).astype(np.float32)[None, :, :, None]
    return [_Blob(y, _NHWC)]


def _affine(x, scale, offset, mean, variance, epsilon):
    """scale (x - mean) / sqrt(variance + epsilon) + offset per channel of an NHWC tensor, as one inference-mode
    FusedBatchNormV3 (the raw op: the Python wrapper raises epsilon to cuDNN's 1.001e-5), which
    inference/fold_batch_norm.py folds into the convolution before it."""
    return tf.raw_ops.FusedBatchNormV3(x=x, scale=scale, offset=offset, mean=mean, variance=variance,
                                       epsilon=epsilon, data_format="NHWC", is_training=False)[0]


def _filled(n, value):
    """A Const (not tf.ones' Fill op, which the batch norm folding cannot read as a constant)."""
    return tf.constant(np.full([n], value, np.float32))


def _batch_norm(layer, ins, in_shapes, out_shapes):
    c, b = in_shapes[0][1], ins[0]
    mean, var = _variable("moving_mean", [c], trainable=False), _variable("moving_variance", [c], trainable=False)
    eps = layer.param.batch_norm_param.eps
    if b.perm == _NHWC:
        return [_Blob(_affine(b.tensor, _filled(c, 1.0), _filled(c, 0.0), mean, var, eps), b.perm,
                      normalized=(b.tensor, mean, var, eps))]
    shape = b.channel_shape()
    return [_Blob((b.tensor - tf.reshape(mean, shape)) / tf.sqrt(tf.reshape(var, shape) + eps), b.perm)]


def _scale(layer, ins, in_shapes, out_shapes):
    b, sp = ins[0], layer.param.scale_param
    shape = [] if sp.num_axes == 0 else [in_shapes[0][1]]
    gamma = _variable("gamma", shape)
    beta = _variable("beta", shape) if sp.bias_term else None
    if sp.num_axes != 0 and b.perm == _NHWC:  # per channel: gamma x + beta as one foldable affine op
        c = in_shapes[0][1]
        offset = beta if beta is not None else _filled(c, 0.0)
        if b.normalized is not None:
            # BatchNorm then Scale (Caffe's pair): one batch norm of the BatchNorm's input, which grappler fuses
            # with the convolution before it and inference/fold_batch_norm.py folds into it.
            x, mean, var, eps = b.normalized
            return [_Blob(_affine(x, gamma, offset, mean, var, eps), b.perm)]
        return [_Blob(_affine(b.tensor, gamma, offset, _filled(c, 0.0), _filled(c, 1.0), 0.0), b.perm)]
    bshape = [] if sp.num_axes == 0 else b.channel_shape()
    y = b.tensor * tf.reshape(gamma, bshape)
    if beta is not None:
        y = y + tf.reshape(beta, bshape)
    return [_Blob(y, b.perm)]


def _normalize(layer, ins, in_shapes, out_shapes):
    b, p = ins[0], layer.param.norm_param
    axes = list(range(1, len(b.perm))) if p.across_spatial else [b.perm.index(1)]
    norm = tf.sqrt(tf.reduce_sum(tf.square(b.tensor), axis=axes, keepdims=True) + p.eps)
    gamma = _variable("gamma", [] if p.channel_shared else [in_shapes[0][1]])
    return [_Blob(b.tensor / norm * (gamma if p.channel_shared else tf.reshape(gamma, b.channel_shape())),
                  b.perm)]


def _relu(layer, ins, in_shapes, out_shapes):
    x, slope = ins[0].tensor, layer.param.relu_param.negative_slope
    y = tf.nn.relu(x) if slope == 0 else tf.maximum(x, 0.0) + slope * tf.minimum(x, 0.0)
    return [_Blob(y, ins[0].perm)]


def _eltwise(layer, ins, in_shapes, out_shapes):
    p, perm = layer.param.eltwise_param, ins[0].perm
    xs = [b.to(perm) for b in ins]
    if p.operation == 1:  # SUM
        coeffs = list(p.coeff) or [1.0] * len(xs)
        y = tf.add_n([x if c == 1.0 else c * x for c, x in zip(coeffs, xs)])
    elif p.operation == 0:  # PROD
        y = xs[0]
        for x in xs[1:]:
            y = y * x
    else:  # MAX
        y = xs[0]
        for x in xs[1:]:
            y = tf.maximum(y, x)
    return [_Blob(y, perm)]


def _permute(layer, ins, in_shapes, out_shapes):
    order = list(layer.param.permute_param.order)
    order += [a for a in range(len(in_shapes[0])) if a not in order]
    inverse = {axis: j for j, axis in enumerate(order)}
    return [_Blob(ins[0].tensor, [inverse[a] for a in ins[0].perm])]  # only the labels move


def _reshape(layer, ins, in_shapes, out_shapes):
    y = tf.reshape(ins[0].caffe_order(), [-1] + list(out_shapes[0][1:]))
    return [_Blob(y, range(len(out_shapes[0])))]


def _concat(layer, ins, in_shapes, out_shapes):
    axis = net_spec.concat_axis(layer, len(in_shapes[0]))
    perm = ins[0].perm if all(b.perm == ins[0].perm for b in ins) else tuple(range(len(in_shapes[0])))
    return [_Blob(tf.concat([b.to(perm) for b in ins], axis=perm.index(axis)), perm)]


def _softmax(layer, ins, in_shapes, out_shapes):
    axis = net_spec.axis_index(layer.param.softmax_param.axis, len(in_shapes[0]), layer)
    return [_Blob(tf.nn.softmax(ins[0].tensor, axis=ins[0].perm.index(axis)), ins[0].perm)]


_BUILDERS = {"Convolution": _convolution, "Pooling": _pooling, "BatchNorm": _batch_norm, "Scale": _scale,
             "Normalize": _normalize, "ReLU": _relu, "Eltwise": _eltwise, "Permute": _permute,
             "Flatten": _reshape, "Reshape": _reshape, "Concat": _concat, "Softmax": _softmax,
             "Dropout": lambda layer, ins, in_shapes, out_shapes: ins}


def caffe_layers(images, spec, input_scale=1.0, bgr=True):
    """Builds spec's layers (not PriorBox / DetectionOutput) on images [B, H, W, 3] float32 RGB, mean-subtracted.

    Returns (blobs, end_points): blobs maps each Caffe blob name to its final value (a _Blob); end_points
    holds each layer's output by the layer's name and each blob's final value by its name (in-place layers
    overwrite it): a 4-D blob as Caffe's (N, C, H, W) transposed to (N, H, W, C), also after a Permute, any
    other blob in Caffe's order. Also records, under
    "__softmax_input__" / "__loc__" / "__conf__", the blobs DetectionOutput reads (when the spec has one).
    """
    x = tf.convert_to_tensor(images, tf.float32)
    if x.shape[1] is not None and tuple(x.shape[1:3]) != spec.image_size:
        raise ValueError(f"{spec.path}: the network takes {spec.image_size} images, got {tuple(x.shape[1:3])}")
    x = x * input_scale if input_scale != 1.0 else x
    blobs = {spec.input_name: _Blob(tf.reverse(x, axis=[-1]) if bgr else x, _NHWC)}
    end_points = collections.OrderedDict()
    for index, layer in enumerate(spec.layers):
        if index == spec.detection_index:
            blobs["__loc__"], blobs["__conf__"] = blobs[spec.loc_blob], blobs[spec.conf_blob]
        if layer.type in ("PriorBox", "DetectionOutput") or layer.tops[0] in spec.static_blobs:
            continue
        if index == spec.softmax_index:
            blobs["__softmax_input__"] = blobs[layer.bottoms[0]]
        with tf.compat.v1.variable_scope(scope_name(layer.name)):
            outs = _BUILDERS[layer.type](layer, [blobs[b] for b in layer.bottoms], spec.in_shapes[index],
                                         spec.shapes[index])
        for top, blob, shape in zip(layer.tops, outs, spec.shapes[index]):
            if blob.tensor.shape[1:].as_list() != [shape[a] for a in blob.perm][1:]:
                raise AssertionError(f"{layer.name}: built {blob.tensor.shape}, Caffe says {shape}")
            blobs[top] = blob
            end_points[top] = blob.to(_NHWC) if len(blob.perm) == 4 else blob.caffe_order()
        end_points[layer.name] = end_points[layer.tops[0]]
    return blobs, end_points


def caffe_ssd_net(images, spec, input_scale=1.0, bgr=True, is_training=False, reuse=None, scope=MODEL_NAME):
    """The Caffe SSD deploy net of `spec` on images [B, H, W, 3] float32 RGB, mean-subtracted.

    Returns ((logits [B, P, C], localisations [B, P, 4]), end_points): end_points as caffe_layers', plus
    "logits", "localisations" and "predictions" (DetectionOutput's confidences, = softmax(logits)).
    """
    del is_training  # deploy semantics: BatchNorm uses its stored statistics, Dropout is the identity
    shape = [-1, len(spec.anchors), spec.num_classes]
    with tf.compat.v1.variable_scope(scope, MODEL_NAME, [images], reuse=reuse):
        blobs, end_points = caffe_layers(images, spec, input_scale, bgr)
        logits = tf.reshape(blobs["__softmax_input__"].caffe_order(), shape, name="logits")
        localisations = tf.reshape(blobs["__loc__"].caffe_order(), shape[:2] + [4], name="localisations")
        end_points["logits"] = logits
        end_points["localisations"] = localisations
        end_points["predictions"] = tf.reshape(blobs["__conf__"].caffe_order(), shape, name="predictions")
    return (logits, localisations), end_points


# ----------------------------------------------------------------------------------- weights and model
def variables_from_caffemodel(spec, blobs, path="<caffemodel>", scope=MODEL_NAME):
    """{variable name: value} of caffe_ssd_net's variables from a caffemodel's {layer name: [blobs]}.

    Convolution kernels go from Caffe's [out, in, kh, kw] to [kh, kw, in, out]; BatchNorm's mean and
    variance are divided by its scale-factor blob. Every shape is checked against the prototxt.
    """
    values = collections.OrderedDict()
    for index, layer in enumerate(spec.layers):
        if layer.type not in ("Convolution", "BatchNorm", "Scale", "Normalize"):
            continue
        c = spec.in_shapes[index][0][1]
        prefix = f"{scope}/{scope_name(layer.name)}/"
        if layer.type == "Convolution":
            num_output, (kh, kw), _, _, _, group, bias_term = net_spec.conv_geometry(layer)
            expected = [(num_output, c // group, kh, kw)] + [(num_output,)] * bias_term
        elif layer.type == "BatchNorm":
            expected = [(c,), (c,), (1,)]
        elif layer.type == "Scale":
            shape = () if layer.param.scale_param.num_axes == 0 else (c,)
            expected = [shape] * (1 + layer.param.scale_param.bias_term)
        else:
            expected = [() if layer.param.norm_param.channel_shared else (c,)]
        arrays = blobs.get(layer.name)
        if not arrays:
            raise CaffeModelError(path, f"layer '{layer.name}' ({layer.type}) has no weights in the caffemodel")
        if len(arrays) != len(expected):
            raise CaffeModelError(path, f"layer '{layer.name}' has {len(arrays)} blobs, the prototxt needs "
                                        f"{len(expected)}")
        arrays = [a.reshape(e) if a.size == 1 and int(np.prod(e)) == 1 else
                  reader.conform(a, e, path, f"layer '{layer.name}' blob {i}")
                  for i, (a, e) in enumerate(zip(arrays, expected))]
        if layer.type == "Convolution":
            values[prefix + "weights"] = arrays[0].transpose(2, 3, 1, 0)
            if bias_term:
                values[prefix + "biases"] = arrays[1]
        elif layer.type == "BatchNorm":
            factor = 0.0 if arrays[2][0] == 0 else 1.0 / arrays[2][0]  # Caffe's moving-average normaliser
            values[prefix + "moving_mean"] = arrays[0] * factor
            values[prefix + "moving_variance"] = arrays[1] * factor
        else:
            values[prefix + "gamma"] = arrays[0]
            if len(arrays) > 1:
                values[prefix + "beta"] = arrays[1]
    return values


def build_from_config(config):
    """nets_factory.SSDModel of a caffe_ssd configuration (its "prototxt" text, mean, post-processing)."""
    spec = net_spec.spec_from_prototxt_text(config["prototxt"], "ssd_config.json (prototxt)")
    if int(config.get("num_classes", spec.num_classes)) != spec.num_classes:
        raise CaffeModelError("ssd_config.json", f"num_classes {config['num_classes']} but the prototxt's "
                                                 f"DetectionOutput has {spec.num_classes}")
    input_scale = float(config.get("input_scale", 1.0))
    bgr = config.get("channel_order", "BGR") == "BGR"

    def network_fn(images, reuse=None):
        return caffe_ssd_net(images, spec, input_scale=input_scale, bgr=bgr, reuse=reuse)

    network_fn.default_image_size = spec.image_size[0]
    network_fn.spec = spec
    post = dict(spec.post_processing)
    post.update(config.get("post_processing") or {})
    names = config.get("class_names") or [str(i) for i in range(1, spec.num_classes)]
    return nets_factory.SSDModel(
        name=MODEL_NAME, network_fn=network_fn, anchors=spec.anchors, variances=spec.uniform_variances(),
        image_size=spec.image_size, num_classes=spec.num_classes, class_names=tuple(names),
        mean_rgb=tuple(config.get("mean_rgb") or nets_factory.VGG_MEAN_RGB), post_processing=post,
        params=None, config=dict(config))


