"""Folding inference-mode batch norm into the convolution before it, in a frozen GraphDef.

A batch norm with fixed statistics is an affine map per channel, y = gamma (x - mean) / sqrt(var + eps) + beta,
so after a convolution it is the same convolution with its kernel's output channels scaled by
f = gamma / sqrt(var + eps) and a bias beta - mean * f added:

    Conv2D / DepthwiseConv2dNative (const kernel) [-> BiasAdd (const bias b)] -> FusedBatchNorm[V3]
    (is_training false, const params)   becomes   Conv2D (kernel * f) -> BiasAdd ((b - mean) * f + beta)

Folding repeats until nothing is left to fold, so a chain of affine maps after one convolution (Caffe's
BatchNorm then Scale, both FusedBatchNorm ops in caffe_converter/caffe_ssd.py) folds into it entirely.

The BiasAdd takes the batch norm's node name, so consumers and fetches are untouched; the folded kernel is a
new Const `<batch norm>/folded_kernel`, so the convolution keeps its name (the Winograd rewrite looks convolutions up
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
    with a constant kernel, or a BiasAdd with a constant bias of one, each with no other consumer (nor a name
    in `keep`), whose scale, offset, mean and variance are constants and whose other outputs nobody reads.
    Returns (graph_def, folded batch norm names).
    """
    folded = []
    while True:
        graph_def, once = _fold_once(graph_def, keep)
        if not once:
            return graph_def, folded
        folded += once


def _fold_once(graph_def, keep):
    nodes = {n.name: n for n in graph_def.node}
    consumers = {}
    for node in graph_def.node:
        for name in node.input:
            consumers.setdefault(_op_name(name), []).append((node.name, _output_index(name)))
    replacements, new_consts, folded, removed = {}, [], [], set()
    for bn in graph_def.node:
        if bn.op not in BATCH_NORM_OPS or bn.attr["is_training"].b:
            continue
        if bn.attr["data_format"].s not in (b"", b"NHWC") or bn.attr["T"].type != tf.float32.as_datatype_enum:
            continue
        if _output_index(bn.input[0]) != 0 or any(index != 0 for _, index in consumers.get(bn.name, [])):
            continue
        conv, bias, bias_add_in = nodes.get(_op_name(bn.input[0])), None, None
        if conv is not None and conv.op == "BiasAdd" and conv.attr["data_format"].s in (b"", b"NHWC") \
                and _output_index(conv.input[0]) == 0 and _sole_consumer(consumers, conv.name, bn.name, keep):
            bias_add_in, bias = conv, const_value(nodes, conv.input[1])
            conv = nodes.get(_op_name(conv.input[0])) if bias is not None else None
        reader = bias_add_in.name if bias_add_in is not None else bn.name
        if conv is None or conv.op not in CONV_OPS or not _sole_consumer(consumers, conv.name, reader, keep):
            continue
        kernel = const_value(nodes, conv.input[1])
        params = [const_value(nodes, name) for name in bn.input[1:5]]
        if kernel is None or any(p is None for p in params):
            continue
        gamma, beta, mean, variance = (np.asarray(p, np.float64) for p in params)
        factor = gamma / np.sqrt(variance + bn.attr["epsilon"].f)
        if bias is not None:
            mean = mean - np.asarray(bias, np.float64)  # gamma (conv + b - mean) f + beta
        if conv.op == "Conv2D":
            new_kernel = kernel * factor
        else:  # depthwise [H, W, C, M]: output channel c * M + m
            new_kernel = kernel * factor.reshape(kernel.shape[2], kernel.shape[3])
        new_conv = tf.compat.v1.NodeDef()
        new_conv.CopyFrom(conv)
        new_conv.input[1] = bn.name + "/folded_kernel"  # per batch norm: a convolution may fold several
        bias_add = tf.compat.v1.NodeDef(name=bn.name, op="BiasAdd", device=bn.device)
        bias_add.input.extend([conv.name, bn.name + "/folded_bias"])
        bias_add.input.extend(name for name in bn.input if name.startswith("^"))
        bias_add.attr["T"].type = tf.float32.as_datatype_enum
        bias_add.attr["data_format"].s = b"NHWC"
        replacements[conv.name] = new_conv
        replacements[bn.name] = bias_add
        if bias_add_in is not None:
            removed.add(bias_add_in.name)  # its bias is in the folded one
        new_consts += [_const_node(bn.name + "/folded_kernel", new_kernel),
                       _const_node(bn.name + "/folded_bias", beta - mean * factor)]
        folded.append(bn.name)
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for node in graph_def.node:
        if node.name not in removed:
            out.node.add().CopyFrom(replacements.get(node.name, node))
    out.node.extend(new_consts)
    return out, folded


def _sole_consumer(consumers, name, reader, keep):
    """Whether `reader` is the only node reading `name`, and `name` is not kept."""
    return name not in keep and [c for c, _ in consumers.get(name, [])] == [reader]
