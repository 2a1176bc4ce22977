"""What a Caffe SSD deploy prototxt means, without TensorFlow: Caffe's shape rules, PriorBox anchors and the
DetectionOutput parameters, checked layer by layer (caffe_converter/caffe_ssd.py builds the graph from it).

    spec = analyse(reader.read_prototxt(path), path)

Shapes are Caffe's (N, C, H, W, ...). Convolution output sizes floor, pooling sizes round up (Caffe's
pooling_layer.cpp, including its rule that the last window starts inside the image), Reshape / Flatten /
Permute / Concat follow their Caffe definitions on NCHW axes. PriorBox layers become static anchors
(box_ops/anchors.prior_box, [ymin, xmin, ymax, xmax] relative) and variances; DetectionOutput becomes
post-processing defaults. Anything the project cannot reproduce exactly is a CaffeModelError naming the layer.
"""
import dataclasses
import math

import numpy as np

from caffe_converter import reader
from common.errors import CaffeModelError
from box_ops import anchors as anchors_lib

LAYER_TYPES = ("Input", "Convolution", "BatchNorm", "Scale", "ReLU", "Eltwise", "Pooling", "Normalize",
               "Permute", "Flatten", "Reshape", "Concat", "Softmax", "PriorBox", "DetectionOutput", "Dropout")
_SAME_SHAPE = ("BatchNorm", "Scale", "ReLU", "Normalize", "Softmax", "Dropout")


@dataclasses.dataclass(frozen=True)
class CaffeSSDSpec:
    """A checked Caffe SSD deploy net. Shapes are Caffe's (N, C, H, W, ...) with N the prototxt's batch."""
    path: str
    layers: tuple             # reader.Layer, TEST phase, Input layers removed
    input_name: str
    input_shape: tuple        # (N, 3, H, W)
    shapes: dict              # layer index -> tuple of its tops' shapes
    in_shapes: dict           # layer index -> tuple of its bottoms' shapes
    static_blobs: frozenset   # PriorBox outputs and their concatenations: constants, not graph tensors
    priors: dict              # each of those blobs -> (anchors [n, 4] ymin-xmin-ymax-xmax, variances [n, 4])
    # From the DetectionOutput layer (None for a net without one, see analyse):
    anchors: np.ndarray = None      # float32 [P, 4] [ymin, xmin, ymax, xmax] relative, the priors it decodes
    variances: np.ndarray = None    # float32 [P, 4]
    num_classes: int = None
    loc_blob: str = None            # its loc and conf bottoms
    conf_blob: str = None
    softmax_index: int = None       # index in `layers` of the Softmax its confidences come from
    detection_index: int = None
    post_processing: dict = None    # select_threshold, nms_threshold, top_k, keep_top_k

    @property
    def image_size(self):
        return tuple(self.input_shape[2:])

    def uniform_variances(self):
        """The 4 variances as a tuple of floats when all priors share them, else a tuple of 4 [P] arrays."""
        if np.all(self.variances == self.variances[:1]):
            return tuple(float(v) for v in self.variances[0])
        return tuple(self.variances[:, i] for i in range(4))


def _pair(values, h, w, default, name, layer):
    values = list(values)
    if h is not None and w is not None:
        return int(h), int(w)
    if not values:
        return default, default
    if len(values) == 1:
        return int(values[0]), int(values[0])
    if len(values) == 2:
        return int(values[0]), int(values[1])
    raise CaffeModelError(None, f"layer '{layer.name}': {name} must have 1 or 2 values for a 2-D blob")


def conv_geometry(layer):
    """(num_output, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, bias_term) of a Convolution layer."""
    p = layer.param.convolution_param
    opt = lambda f: getattr(p, f) if p.HasField(f) else None  # noqa: E731
    kernel = _pair(p.kernel_size, opt("kernel_h"), opt("kernel_w"), None, "kernel_size", layer)
    stride = _pair(p.stride, opt("stride_h"), opt("stride_w"), 1, "stride", layer)
    pad = _pair(p.pad, opt("pad_h"), opt("pad_w"), 0, "pad", layer)
    dilation = _pair(p.dilation, None, None, 1, "dilation", layer)
    if kernel[0] is None or p.num_output <= 0 or p.axis != 1:
        raise CaffeModelError(None, f"layer '{layer.name}': a 2-D convolution needs kernel_size and num_output")
    return p.num_output, kernel, stride, pad, dilation, p.group, p.bias_term


def pool_geometry(layer, in_shape):
    """(method, (kh, kw), (sh, sw), (ph, pw), (oh, ow)) of a Pooling layer, with Caffe's output size rule."""
    p = layer.param.pooling_param
    if p.pool not in (0, 1):
        raise CaffeModelError(None, f"layer '{layer.name}': only MAX and AVE pooling are supported")
    h, w = in_shape[2], in_shape[3]
    if p.global_pooling:
        return p.pool, (h, w), (1, 1), (0, 0), (1, 1)
    opt = lambda f: getattr(p, f) if p.HasField(f) else None  # noqa: E731
    kernel = (opt("kernel_h"), opt("kernel_w")) if p.HasField("kernel_h") else (p.kernel_size,) * 2
    stride = (p.stride_h, p.stride_w) if p.HasField("stride_h") else (p.stride,) * 2
    pad = (p.pad_h, p.pad_w) if p.HasField("pad_h") else (p.pad,) * 2
    if not kernel[0] or not kernel[1]:
        raise CaffeModelError(None, f"layer '{layer.name}': pooling needs kernel_size")
    out = []
    for size, k, s, pd in zip((h, w), kernel, stride, pad):
        rounding = math.floor if p.round_mode == 1 else math.ceil
        o = int(rounding((size + 2 * pd - k) / s)) + 1
        if pd > 0 and (o - 1) * s >= size + pd:  # the last window must start inside the image (pooling_layer.cpp)
            o -= 1
        out.append(o)
    return p.pool, kernel, stride, pad, tuple(out)


def axis_index(axis, rank, layer):
    """A Caffe axis (negative counts from the end) as 0..rank-1."""
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise CaffeModelError(None, f"layer '{layer.name}': axis {axis} out of range for a {rank}-D blob")
    return a


def concat_axis(layer, rank):
    """The Concat axis (0..rank-1): `axis`, or the deprecated `concat_dim` when only it is given."""
    p = layer.param.concat_param
    axis = p.concat_dim if p.HasField("concat_dim") and not p.HasField("axis") else p.axis
    return axis_index(axis, rank, layer)


def _reshape_shape(layer, shape):
    p = layer.param.reshape_param
    rank = len(shape)
    start = axis_index(p.axis, rank + 1, layer)
    end = rank if p.num_axes == -1 else start + p.num_axes
    dims = [int(d) for d in p.shape.dim]
    new = [shape[start + i] if d == 0 else d for i, d in enumerate(dims)]
    out = list(shape[:start]) + new + list(shape[end:])
    if out.count(-1) > 1:
        raise CaffeModelError(None, f"layer '{layer.name}': more than one -1 in the Reshape shape")
    if -1 in out:
        known = int(np.prod([d for d in out if d != -1]))
        out[out.index(-1)] = int(np.prod(shape)) // max(known, 1)
    return tuple(out)


def _prior_box(layer, feat_shape, img_shape):
    p = layer.param.prior_box_param
    min_sizes, max_sizes = list(p.min_size), list(p.max_size)
    if not min_sizes:
        raise CaffeModelError(None, f"layer '{layer.name}': PriorBox needs min_size")
    if max_sizes and len(max_sizes) != len(min_sizes):
        raise CaffeModelError(None, f"layer '{layer.name}': {len(max_sizes)} max_size for {len(min_sizes)} "
                                    "min_size (Caffe requires one per min_size)")
    if any(mx <= mn for mn, mx in zip(min_sizes, max_sizes)):
        raise CaffeModelError(None, f"layer '{layer.name}': every max_size must exceed its min_size")
    variances = list(p.variance) or [0.1]
    if len(variances) not in (1, 4):
        raise CaffeModelError(None, f"layer '{layer.name}': PriorBox needs 1 or 4 variances")
    if p.HasField("img_h") or p.HasField("img_w"):
        img_shape = (p.img_h, p.img_w)
    elif p.HasField("img_size"):
        img_shape = (p.img_size, p.img_size)
    if p.HasField("step_h") or p.HasField("step_w"):
        step = (p.step_h, p.step_w)
    else:
        step = p.step if p.HasField("step") else None
    boxes = anchors_lib.prior_box(feat_shape, img_shape, min_sizes, max_sizes, list(p.aspect_ratio), p.flip,
                                  p.clip, step, p.offset)
    return boxes, np.tile(np.float32(variances * (4 // len(variances))), (len(boxes), 1))


def _detection_params(layer, num_priors):
    p = layer.param.detection_output_param
    name = layer.name
    if len(layer.bottoms) != 3:
        raise CaffeModelError(None, f"layer '{name}': DetectionOutput needs the loc, conf and prior bottoms")
    if p.num_classes < 2:
        raise CaffeModelError(None, f"layer '{name}': num_classes must be >= 2 (background included)")
    if not p.share_location:
        raise CaffeModelError(None, f"layer '{name}': share_location false is not supported")
    if p.code_type != 2:
        raise CaffeModelError(None, f"layer '{name}': only code_type CENTER_SIZE is supported")
    if p.background_label_id != 0:
        raise CaffeModelError(None, f"layer '{name}': only background_label_id 0 is supported")
    if p.nms_param.eta != 1.0:
        raise CaffeModelError(None, f"layer '{name}': adaptive NMS (eta != 1) is not supported")
    top_k = p.nms_param.top_k if p.nms_param.HasField("top_k") and p.nms_param.top_k > 0 else num_priors
    keep = p.keep_top_k if p.keep_top_k > 0 else top_k * (p.num_classes - 1)
    # Caffe keeps every score when confidence_threshold is absent; probabilities are >= 0.
    threshold = p.confidence_threshold if p.HasField("confidence_threshold") else 0.0
    # float32 fields, written back as the prototxt's decimals (0.45, not 0.44999998807907104)
    return {"select_threshold": float(str(np.float32(threshold))),
            "nms_threshold": float(str(np.float32(p.nms_param.nms_threshold))),
            "top_k": int(top_k), "keep_top_k": int(keep)}


def _out_shapes(layer, ins, layer_type):
    """Caffe's output shapes of one layer (Layer::Reshape), from its bottoms' shapes."""
    name, p = layer.name, layer.param
    bn, sp = p.batch_norm_param, p.scale_param
    if layer_type == "BatchNorm" and bn.HasField("use_global_stats") and not bn.use_global_stats:
        raise CaffeModelError(None, f"layer '{name}': use_global_stats false (batch statistics) in a deploy net")
    if layer_type == "Scale" and (len(ins) != 1 or not (
            sp.num_axes == 0 or (sp.num_axes == 1 and axis_index(sp.axis, len(ins[0]), layer) == 1))):
        raise CaffeModelError(None, f"layer '{name}': only a learned per-channel or scalar Scale is supported")
    if layer_type == "Eltwise" and p.eltwise_param.coeff and len(p.eltwise_param.coeff) != len(ins):
        raise CaffeModelError(None, f"layer '{name}': Eltwise needs one coeff per bottom")
    if layer_type in _SAME_SHAPE:
        if layer_type == "Softmax":
            axis_index(p.softmax_param.axis, len(ins[0]), layer)
        return [ins[0]] * len(layer.tops)
    if layer_type == "Convolution":
        num_output, (kh, kw), (sh, sw), (ph, pw), (dh, dw), group, _ = conv_geometry(layer)
        n, c, h, w = ins[0]
        if c % group or num_output % group:
            raise CaffeModelError(None, f"layer '{name}': group {group} does not divide {c} -> {num_output}")
        oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
        ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
        return [(n, num_output, oh, ow)]
    if layer_type == "Pooling":
        return [ins[0][:2] + pool_geometry(layer, ins[0])[4]]
    if layer_type == "Eltwise":
        if any(s != ins[0] for s in ins):
            raise CaffeModelError(None, f"layer '{name}': Eltwise bottoms differ in shape: {ins}")
        return [ins[0]]
    if layer_type == "Permute":
        order = list(p.permute_param.order)
        order += [a for a in range(len(ins[0])) if a not in order]
        if sorted(order) != list(range(len(ins[0]))) or order[0] != 0:
            raise CaffeModelError(None, f"layer '{name}': invalid Permute order {order}")
        return [tuple(ins[0][a] for a in order)]
    if layer_type == "Flatten":
        s = ins[0]
        a, e = axis_index(p.flatten_param.axis, len(s), layer), axis_index(p.flatten_param.end_axis, len(s), layer)
        return [tuple(s[:a]) + (int(np.prod(s[a:e + 1])),) + tuple(s[e + 1:])]
    if layer_type == "Reshape":
        return [_reshape_shape(layer, ins[0])]
    if layer_type == "Concat":
        a = concat_axis(layer, len(ins[0]))
        if any(len(s) != len(ins[0]) or s[:a] + s[a + 1:] != ins[0][:a] + ins[0][a + 1:] for s in ins):
            raise CaffeModelError(None, f"layer '{name}': Concat bottoms do not fit along axis {a}: {ins}")
        return [ins[0][:a] + (sum(s[a] for s in ins),) + ins[0][a + 1:]]
    raise AssertionError(layer_type)


def analyse(net, path="<prototxt>", require_detection=True):
    """CaffeSSDSpec of a deploy NetParameter; CaffeModelError naming the layer for anything unsupported.

    require_detection=False accepts a net without DetectionOutput (a backbone, or one layer under test); its
    spec then has no anchors, loc / conf blobs or post-processing.
    """
    inputs = reader.net_inputs(net, path)
    if len(inputs) != 1:
        raise CaffeModelError(path, f"an SSD deploy net has one input (the image), this one has {len(inputs)}")
    input_name, input_shape = next(iter(inputs.items()))
    if len(input_shape) != 4 or input_shape[1] != 3:
        raise CaffeModelError(path, f"input '{input_name}' must be N x 3 x H x W, got {list(input_shape)}")
    shapes, blob_shape = {}, {input_name: tuple(int(d) for d in input_shape)}
    priors, writer, layers, in_shapes = {}, {}, [], {}
    detection = None
    try:
        for layer in reader.layers(net):
            if layer.type == "Input":
                continue
            if layer.type not in LAYER_TYPES:
                raise CaffeModelError(None, f"layer '{layer.name}' has type '{layer.type}', which caffe_ssd "
                                            f"does not support (supported: {', '.join(LAYER_TYPES)})")
            missing = [b for b in layer.bottoms if b not in blob_shape]
            if missing:
                raise CaffeModelError(None, f"layer '{layer.name}': unknown bottom blob '{missing[0]}'")
            index = len(layers)
            layers.append(layer)
            ins = [blob_shape[b] for b in layer.bottoms]
            if layer.type == "PriorBox":
                feat, img = ins[0], ins[1] if len(ins) > 1 else blob_shape[input_name]
                priors[layer.tops[0]] = _prior_box(layer, feat[2:4], img[2:4])
                outs = [(1, 2, priors[layer.tops[0]][0].size)]
            elif layer.type == "Concat" and all(b in priors for b in layer.bottoms):
                outs = _out_shapes(layer, ins, "Concat")
                if outs[0][2] != sum(s[2] for s in ins):
                    raise CaffeModelError(None, f"layer '{layer.name}': priors must be concatenated on axis 2")
                priors[layer.tops[0]] = tuple(np.concatenate([priors[b][i] for b in layer.bottoms])
                                              for i in range(2))
            elif layer.type == "DetectionOutput":
                if detection is not None:
                    raise CaffeModelError(None, f"layer '{layer.name}': a second DetectionOutput layer")
                detection = index
                outs = [(1, 1, 1, 7)]
            elif any(b in priors for b in layer.bottoms):
                raise CaffeModelError(None, f"layer '{layer.name}' ({layer.type}) uses PriorBox output; only "
                                            "Concat and DetectionOutput may")
            else:
                outs = _out_shapes(layer, ins, layer.type)
            if layer.tops[0] not in priors and detection != index and \
                    any(len(s) < 2 or s[0] != input_shape[0] for s in outs):
                raise CaffeModelError(None, f"layer '{layer.name}' changes the batch axis: {outs}")
            shapes[index] = tuple(outs)
            in_shapes[index] = tuple(ins)
            for top, shape in zip(layer.tops, outs):
                blob_shape[top] = shape
                writer[top] = index
        if detection is None:
            if require_detection:
                raise CaffeModelError(None, "no DetectionOutput layer: not an SSD deploy prototxt")
            return CaffeSSDSpec(path=path, layers=tuple(layers), input_name=input_name,
                                input_shape=tuple(int(d) for d in input_shape), shapes=shapes,
                                in_shapes=in_shapes, static_blobs=frozenset(priors), priors=priors)
        return _finish(path, layers, input_name, input_shape, shapes, in_shapes, blob_shape, priors, writer,
                       detection)
    except CaffeModelError as err:
        raise CaffeModelError(path, err.reason) from None


def _finish(path, layers, input_name, input_shape, shapes, in_shapes, blob_shape, priors, writer, detection):
    det = layers[detection]
    loc, conf, prior = det.bottoms
    if prior not in priors:
        raise CaffeModelError(None, f"layer '{det.name}': its third bottom '{prior}' is not built from PriorBox")
    anchors, variances = priors[prior]
    if det.param.detection_output_param.variance_encoded_in_target:
        variances = np.ones_like(variances)
    num_priors = len(anchors)
    post = _detection_params(det, num_priors)
    num_classes = det.param.detection_output_param.num_classes
    per_image = lambda b: int(np.prod(blob_shape[b][1:]))  # noqa: E731
    if per_image(loc) != num_priors * 4:
        raise CaffeModelError(None, f"'{loc}' holds {per_image(loc)} offsets per image for {num_priors} priors")
    if per_image(conf) != num_priors * num_classes:
        raise CaffeModelError(None, f"'{conf}' holds {per_image(conf)} scores per image; {num_priors} priors x "
                                    f"{num_classes} classes need {num_priors * num_classes}")
    # The logits: the input of the Softmax that DetectionOutput's confidences come from (through Flatten or
    # Reshape, which keep Caffe's element order), with the softmax taken over its last axis of size C.
    index = writer[conf]
    while layers[index].type in ("Flatten", "Reshape"):
        index = writer[layers[index].bottoms[0]]
    softmax = layers[index]
    if softmax.type != "Softmax":
        raise CaffeModelError(None, f"layer '{det.name}': its confidences must come from a Softmax layer")
    shape = blob_shape[softmax.bottoms[0]]
    if axis_index(softmax.param.softmax_param.axis, len(shape), softmax) != len(shape) - 1 or \
            shape[-1] != num_classes:
        raise CaffeModelError(None, f"layer '{softmax.name}': the softmax must run over a last axis of "
                                    f"{num_classes} classes, its input is {list(shape)}")
    return CaffeSSDSpec(path=path, layers=tuple(layers), input_name=input_name,
                        input_shape=tuple(int(d) for d in input_shape), shapes=shapes, in_shapes=in_shapes,
                        static_blobs=frozenset(priors), priors=priors, anchors=anchors.astype(np.float32),
                        variances=variances.astype(np.float32), num_classes=int(num_classes), loc_blob=loc,
                        conf_blob=conf, softmax_index=index, detection_index=detection, post_processing=post)


def spec_from_prototxt_text(text, path="<prototxt>"):
    return analyse(reader.parse_prototxt(text, path), path)
