"""The inference graph optimised for speed: frozen (variables -> constants), batch norms folded, 3x3
convolutions by Winograd on CPUs, and XLA compilation marked node by node."""
import tensorflow as tf

from inference import fold_batch_norm
from inference import winograd as winograd_lib
from inference.session_options import onednn_enabled


NOT_COMPILED = ("ResizeBilinear", "ResizeNearestNeighbor", "DepthwiseConv2dNative")


def uses_xla(graph_def):
    """Whether XLA pays on this graph: not on networks with depthwise convolutions (MobileNet, SSDLite).

    Depthwise convolutions stay outside XLA (NOT_COMPILED), so such a network falls into many small clusters
    with a TensorFlow op between each pair, and the cluster boundaries cost more than the fusion saves: on 2
    AMD EPYC Zen 4 cores, ssdlite_320_mobilenet_v2 ran its full path at 46.6 images/s frozen and folded
    without XLA against 33.0 with it (batch 1; 61.6 against 49.7 at batch 8), docs/benchmarks.md.
    """
    return not any(node.op == "DepthwiseConv2dNative" for node in graph_def.node)


def optimized_graph_def(session, graph, fetches, winograd=None, xla=None):
    """The inference graph of `fetches`, frozen (variables -> constants), batch norms folded into their
    convolutions (fold_batch_norm.py), its 3x3 stride-1 convolutions computed
    by Winograd F(4x4, 3x3) or F(6x6, 3x3) (winograd.py; by default only where no GPU is visible: cuDNN
    has its own), and every node but the resize marked for XLA compilation (`_XlaCompile`; ops without an XLA
    kernel, such as the NMS, stay outside the compiled clusters). XLA fuses the Winograd transforms; without
    it they cost more than they save, so winograd=None follows XLA. xla=None: uses_xla(). With oneDNN on
    (TF_ENABLE_ONEDNN_OPTS=1) XLA's GEMMs are multi-threaded.
    """
    output_names = sorted({t.op.name for t in fetches})
    graph_def = tf.compat.v1.graph_util.convert_variables_to_constants(session, graph.as_graph_def(), output_names)
    graph_def, _ = fold_batch_norm.fold_batch_norms(graph_def, keep=output_names)
    if xla is None:
        xla = uses_xla(graph_def)
    if winograd is None:
        winograd = xla and not tf.config.list_physical_devices("GPU")
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
