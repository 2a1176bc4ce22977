"""Folding inference-mode batch norm into the convolution before it, in a frozen GraphDef.

A batch norm with fixed statistics is an affine map per channel, y = gamma (x - mean) / sqrt(var + eps) + beta,
so after a convolution it is the same convolution with its kernel's output channels scaled by
f = gamma / sqrt(var + eps) and a bias beta - mean * f added:

    Conv2D / DepthwiseConv2dNative (const kernel) -> FusedBatchNorm[V3] (is_training false, const params)
    becomes  Conv2D (kernel * f) -> BiasAdd (beta - mean * f)

The BiasAdd takes the batch norm's node name, so consumers and fetches are untouched; the folded kernel is a
new Const `<conv>/folded_kernel`, so the convolution keeps its name (the Winograd rewrite looks convolutions up
by name). Grappler only fuses the pair at run time, and then not for depthwise convolutions; folding the
constants once also lets the Winograd rewrite see a plain convolution.
"""
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

from inference.winograd import const_value

BATCH_NORM_OPS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
CONV_OPS = ("Conv2D", "DepthwiseConv2dNative")


def _op_name(name):
    return name.lstrip("^").split(":")[0]


def _output_index(name):
    parts = name.lstrip("^").split(":")
    return int(parts[1]) if len(parts) > 1 else 0


def _const_node(name, value):
    node = tf.compat.v1.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = tf.float32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(np.asarray(value, np.float32)))
    return node


def fold_batch_norms(graph_def, keep=()):
    """A copy of a frozen GraphDef with each foldable batch norm folded into its convolution.

    Foldable: an inference-mode NHWC float32 FusedBatchNorm* whose input is a Conv2D or DepthwiseConv2dNative
    with a constant kernel and no other consumer (nor a name in `keep`), whose scale, offset, mean and
    variance are constants and whose other outputs nobody reads. Returns (graph_def, folded batch norm names).
    """
    nodes = {n.name: n for n in graph_def.node}
    consumers = {}
    for node in graph_def.node:
        for name in node.input:
            consumers.setdefault(_op_name(name), []).append((node.name, _output_index(name)))
    replacements, new_consts, folded = {}, [], []
    for bn in graph_def.node:
        if bn.op not in BATCH_NORM_OPS or bn.attr["is_training"].b:
            continue
        if bn.attr["data_format"].s not in (b"", b"NHWC") or bn.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        conv = nodes.get(_op_name(bn.input[0]))
        if conv is None or conv.op not in CONV_OPS or _output_index(bn.input[0]) != 0 or conv.name in keep:
            continue
        if [c for c, _ in consumers.get(conv.name, [])] != [bn.name]:
            continue
        if any(index != 0 for _, index in consumers.get(bn.name, [])):
            continue
        kernel = const_value(nodes, conv.input[1])
        params = [const_value(nodes, name) for name in bn.input[1:5]]
        if kernel is None or any(p is None for p in params):
            continue
        gamma, beta, mean, variance = (np.asarray(p, np.float64) for p in params)
        factor = gamma / np.sqrt(variance + bn.attr["epsilon"].f)
        if conv.op == "Conv2D":
            new_kernel = kernel * factor
        else:  # depthwise [H, W, C, M]: output channel c * M + m
            new_kernel = kernel * factor.reshape(kernel.shape[2], kernel.shape[3])
        new_conv = tf.compat.v1.NodeDef()
        new_conv.CopyFrom(conv)
        new_conv.input[1] = conv.name + "/folded_kernel"
        bias_add = tf.compat.v1.NodeDef(name=bn.name, op="BiasAdd", device=bn.device)
        bias_add.input.extend([conv.name, bn.name + "/folded_bias"])
        bias_add.input.extend(name for name in bn.input if name.startswith("^"))
        bias_add.attr["T"].type = tf.float32.as_datatype_enum
        bias_add.attr["data_format"].s = b"NHWC"
        replacements[conv.name] = new_conv
        replacements[bn.name] = bias_add
        new_consts += [_const_node(conv.name + "/folded_kernel", new_kernel),
                       _const_node(bn.name + "/folded_bias", beta - mean * factor)]
        folded.append(bn.name)
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        out.node.add().CopyFrom(replacements.get(node.name, node))
    out.node.extend(new_consts)
    return out, folded
