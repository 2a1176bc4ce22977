"""Caffe's VGG SSD models (Wei Liu's VGG_VOC0712_SSD_300x300 / 512x512 and their COCO / ILSVRC siblings) onto the
project's ssd_300_vgg / ssd_512_vgg: layer names, kernel layouts, and the checks that a model fits the network.

Caffe layer -> project scope (under the model scope, e.g. ssd_300_vgg/):
    conv1_1 .. conv5_3 -> conv1/conv1_1 .. conv5/conv5_3      fc6 -> conv6, fc7 -> conv7
    conv6_1 / conv6_2 -> block8/conv1x1 / block8/conv3x3 ...  conv10_1 / conv10_2 -> block12 (SSD-512)
    <source>_mbox_loc / _mbox_conf -> <block>_box/conv_loc / conv_cls, <source> the PriorBox's feature layer
    conv4_3_norm (Normalize) -> block4_box/L2Normalization/gamma
Kernels go from Caffe's [out, in, kh, kw] to [kh, kw, in, out]; conv1_1's input channels are reversed so the
converted model takes RGB. Head channels need no reordering: Caffe's Permute(0, 2, 3, 1) + Flatten and the
project's NHWC reshape both read channel a * k + j as anchor a, coordinate (or class) j.
"""
import collections

import numpy as np

from caffe_converter import net_spec, reader
from common.errors import CaffeModelError
from box_ops import anchors as anchors_lib
from nets import ssd_vgg_300, ssd_vgg_512

# Caffe feature layer -> the project's end_points name (heads can sit on any of them).
FEATURE_BLOCKS = collections.OrderedDict([
    ("conv1_2", "block1"), ("conv2_2", "block2"), ("conv3_3", "block3"), ("conv4_3", "block4"),
    ("conv5_3", "block5"), ("fc6", "block6"), ("fc7", "block7"), ("conv6_2", "block8"), ("conv7_2", "block9"),
    ("conv8_2", "block10"), ("conv9_2", "block11"), ("conv10_2", "block12")])
EXTRA_BLOCKS = {"ssd_300_vgg": ssd_vgg_300.EXTRA_BLOCKS_300, "ssd_512_vgg": ssd_vgg_512.EXTRA_BLOCKS_512,
                "ssd_300_vgg_coco": ssd_vgg_300.EXTRA_BLOCKS_300, "ssd_512_vgg_coco": ssd_vgg_512.EXTRA_BLOCKS_512}
# The variable scope of each network (the COCO models are the VOC networks with other parameters).
SCOPES = {"ssd_300_vgg_coco": "ssd_300_vgg", "ssd_512_vgg_coco": "ssd_512_vgg"}
# The networks a Caffe VGG SSD maps onto.
MODEL_NAMES = tuple(EXTRA_BLOCKS)


def base_layers(model_name):
    """[(caffe layer, project scope, (kernel, stride, pad, dilation))] of the convolutions before the heads."""
    layers = []
    for block, n in ((1, 2), (2, 2), (3, 3), (4, 3), (5, 3)):
        layers += [(f"conv{block}_{i}", f"conv{block}/conv{block}_{i}", (3, 1, 1, 1)) for i in range(1, n + 1)]
    layers += [("fc6", "conv6", (3, 1, 6, 6)), ("fc7", "conv7", (1, 1, 0, 1))]
    for i, (scope, _, _, kernel, stride, pad) in enumerate(EXTRA_BLOCKS[model_name]):
        layers += [(f"conv{i + 6}_1", f"{scope}/conv1x1", (1, 1, 0, 1)),
                   (f"conv{i + 6}_2", f"{scope}/conv3x3", (kernel, stride, pad, 1))]
    return layers


POOLING = {"pool1": (0, 2, 2, 0), "pool2": (0, 2, 2, 0), "pool3": (0, 2, 2, 0), "pool4": (0, 2, 2, 0),
           "pool5": (0, 3, 1, 1)}  # (MAX, kernel, stride, pad)


def head_source(feat_block, normalized):
    """The Caffe layer whose output the heads of a project feature block read (conv4_3_norm when normalised)."""
    source = next(c for c, b in FEATURE_BLOCKS.items() if b == feat_block)
    return f"{source}_norm" if normalized else source


def _f32(value):
    """A float32 prototxt value as the decimal written in the prototxt (35.84, not 35.84000015258789)."""
    return float(str(np.float32(value)))


def _close(a, b):
    return np.allclose(np.float32(a), np.float32(b), rtol=1e-6, atol=1e-6)


def _same(a, b):
    if a is None or b is None:
        return a is None and b is None
    a, b = np.atleast_1d(np.float32(a)), np.atleast_1d(np.float32(b))
    return a.shape == b.shape and np.allclose(a, b, rtol=1e-6, atol=1e-6)


def params_from_spec(spec, params, path):
    """SSDParams for the network from a deploy prototxt's PriorBox / Normalize layers (net_spec.CaffeSSDSpec).

    Everything the prototxt says that SSDParams cannot carry (per-layer offsets, variances, flip or clip,
    step_h != step_w, a Normalize the network lacks) is a CaffeModelError naming the layer.
    """
    by_top = {l.tops[0]: l for l in spec.layers}
    det = spec.layers[spec.detection_index]
    prior_layer = by_top.get(det.bottoms[2])
    priors = [by_top[b] for b in prior_layer.bottoms] if prior_layer.type == "Concat" else [prior_layer]
    feat_layers, feat_shapes, mins, maxs, ratios, steps, norms, shared = [], [], [], [], [], [], [], {}
    for layer in priors:
        source = by_top.get(layer.bottoms[0])
        normalized = source is not None and source.type == "Normalize"
        feature = source.bottoms[0] if normalized else layer.bottoms[0]
        if feature not in FEATURE_BLOCKS:
            raise CaffeModelError(path, f"PriorBox '{layer.name}' sits on '{layer.bottoms[0]}', which is not a "
                                        f"VGG SSD feature layer ({', '.join(FEATURE_BLOCKS)})")
        p = layer.param.prior_box_param
        if p.HasField("step_h") and p.step_h != p.step_w:
            raise CaffeModelError(path, f"PriorBox '{layer.name}': step_h != step_w is not supported")
        if p.HasField("img_h") or p.HasField("img_w") or p.HasField("img_size"):
            raise CaffeModelError(path, f"PriorBox '{layer.name}': an explicit img_size is not supported")
        variances = tuple(map(_f32, p.variance)) * (4 // len(p.variance)) if p.variance else (0.1,) * 4
        for key, value in (("offset", _f32(p.offset)), ("flip", p.flip), ("clip", p.clip), ("variance", variances)):
            if shared.setdefault(key, value) != value:
                raise CaffeModelError(path, f"PriorBox '{layer.name}': {key} {value} differs from the other "
                                            f"PriorBox layers' {shared[key]}; ssd_*_vgg needs one value")
        if normalized:
            n = source.param.norm_param
            if n.across_spatial or n.channel_shared or not _close(n.eps, 1e-10):
                raise CaffeModelError(path, f"Normalize '{source.name}' must be across_spatial false, "
                                            "channel_shared false, eps 1e-10 as the network's L2Normalization")
        block = FEATURE_BLOCKS[feature]
        feat_layers.append(block)
        feat_shapes.append(tuple(spec.in_shapes[spec.layers.index(layer)][0][2:4]))
        mins.append(tuple(map(_f32, p.min_size)))
        maxs.append(tuple(map(_f32, p.max_size)))
        ratios.append(tuple(map(_f32, p.aspect_ratio)))
        steps.append(_f32(p.step_h) if p.HasField("step_h") else _f32(p.step) if p.HasField("step") else None)
        # The scale's initial value only switches the normalisation on; the trained scale is loaded.
        norms.append(_f32(n.scale_filler.value) or 1.0 if normalized else -1)
    new = params.replace(
        img_shape=spec.image_size, num_classes=spec.num_classes, feat_layers=tuple(feat_layers),
        feat_shapes=tuple(feat_shapes), anchor_min_sizes=tuple(mins), anchor_max_sizes=tuple(maxs),
        anchor_ratios=tuple(ratios), anchor_steps=tuple(steps), anchor_offset=float(shared["offset"]),
        anchor_flip=bool(shared["flip"]), anchor_clip=bool(shared["clip"]), normalizations=tuple(norms),
        prior_variances=tuple(float(v) for v in shared["variance"]))
    # The network's anchors must be Caffe's, prior for prior (box_ops/anchors.py vs the prototxt's PriorBox).
    if anchors_lib.ssd_anchors(new).shape != spec.anchors.shape or \
            not np.allclose(anchors_lib.ssd_anchors(new), spec.anchors, atol=1e-5):
        raise CaffeModelError(path, "the network's anchors differ from the prototxt's PriorBox output")
    return new


def check_geometry(spec, model_name, path):
    """Kernel, stride, pad and dilation of every mapped convolution and pooling layer, and a ReLU after each
    base convolution: what the blob shapes cannot reveal."""
    by_name = {l.name: l for l in spec.layers}
    relu_inputs = {l.bottoms[0] for l in spec.layers if l.type == "ReLU"}
    for name, scope, (kernel, stride, pad, dilation) in base_layers(model_name):
        layer = by_name.get(name)
        if layer is None:
            continue  # a network that stops earlier (SSD-300 has no conv10); blob mapping reports what's missing
        _, k, s, p, d, group, _ = net_spec.conv_geometry(layer)
        got = (k, s, p, d, group)
        want = ((kernel,) * 2, (stride,) * 2, (pad,) * 2, (dilation,) * 2, 1)
        if got != want:
            raise CaffeModelError(path, f"layer '{name}' is kernel/stride/pad/dilation/group {got}, {model_name}'s "
                                        f"{scope} is {want}")
        if layer.tops[0] not in relu_inputs:
            raise CaffeModelError(path, f"layer '{name}' is not followed by a ReLU as {model_name}'s {scope} is")
    for name, (method, kernel, stride, pad) in POOLING.items():
        layer = by_name.get(name)
        got = None if layer is None else net_spec.pool_geometry(layer, spec.in_shapes[spec.layers.index(layer)][0])
        if got is None or got[:4] != (method, (kernel,) * 2, (stride,) * 2, (pad,) * 2):
            raise CaffeModelError(path, f"layer '{name}' must be {kernel}x{kernel} stride {stride} pad {pad} MAX "
                                        f"pooling in {model_name}, the prototxt has {got}")


def check_caffemodel_priors(layers, params, path):
    """Without a prototxt: the PriorBox layers a caffemodel's own (training) net carries must agree with the
    network's parameters, or the conversion would silently decode with other anchors."""
    for layer in layers:
        if layer.type != "PriorBox":
            continue
        # A saved training net renames bottoms after its Split layers; the layer name keeps the source.
        feature = layer.name.replace("_mbox_priorbox", "").replace("_norm", "")
        block = FEATURE_BLOCKS.get(feature)
        if block not in params.feat_layers:
            raise CaffeModelError(path, f"PriorBox '{layer.name}' has no feature layer in the network; "
                                        "give --prototxt_path")
        i = params.feat_layers.index(block)
        p = layer.param.prior_box_param
        got = (tuple(p.min_size), tuple(p.max_size), tuple(p.aspect_ratio),
               p.step if p.HasField("step") else None, p.offset)
        want = (params.anchor_min_sizes[i], params.anchor_max_sizes[i], params.anchor_ratios[i],
                params.anchor_steps[i], params.anchor_offset)
        if not all(_same(g, w) for g, w in zip(got, want)):
            raise CaffeModelError(path, f"PriorBox '{layer.name}' (min, max, ratios, step, offset) = {got}, the "
                                        f"network's {block} has {want}; pass the deploy prototxt to use the model's")


def variables_from_caffemodel(model_name, params, blobs, variable_shapes, path, rgb=True, scope=None):
    """{variable name: value} for every variable of the network from a caffemodel's {layer: [blobs]}.

    variable_shapes: {name: shape} of the built network's variables; every one must be filled and fit.
    """
    scope = scope or SCOPES.get(model_name, model_name)
    mapping = [(caffe, f"{scope}/{project}") for caffe, project, _ in base_layers(model_name)
               if f"{scope}/{project}/weights" in variable_shapes]
    for i, block in enumerate(params.feat_layers):
        source = head_source(block, params.normalizations[i] > 0)
        mapping += [(f"{source}_mbox_loc", f"{scope}/{block}_box/conv_loc"),
                    (f"{source}_mbox_conf", f"{scope}/{block}_box/conv_cls")]
    values = collections.OrderedDict()
    for caffe, target in mapping:
        arrays = blobs.get(caffe)
        if not arrays or len(arrays) != 2:
            raise CaffeModelError(path, f"the caffemodel has no weights and biases for layer '{caffe}' "
                                        f"(needed for {target})")
        kh, kw, cin, cout = variable_shapes[f"{target}/weights"]
        weights = reader.conform(arrays[0], (cout, cin, kh, kw), path, f"layer '{caffe}' weights")
        if caffe == "conv1_1" and rgb:
            weights = weights[:, ::-1]  # Caffe's BGR input channels -> RGB
        values[f"{target}/weights"] = np.ascontiguousarray(weights.transpose(2, 3, 1, 0))
        values[f"{target}/biases"] = reader.conform(arrays[1], (cout,), path, f"layer '{caffe}' biases")
    for i, block in enumerate(params.feat_layers):
        if params.normalizations[i] > 0:
            caffe, target = f"{head_source(block, False)}_norm", f"{scope}/{block}_box/L2Normalization/gamma"
            if caffe not in blobs:
                raise CaffeModelError(path, f"the caffemodel has no Normalize layer '{caffe}' (for {target})")
            values[target] = reader.conform(blobs[caffe][0], variable_shapes[target], path, f"layer '{caffe}' scale")
    missing = sorted(set(variable_shapes) - set(values))
    if missing:
        raise CaffeModelError(path, f"no Caffe weights map onto {', '.join(missing)}")
    return values
