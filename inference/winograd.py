"""Winograd minimal filtering F(m x m, 3 x 3) for the 3x3 stride-1 convolutions of a frozen inference graph.

Lavin & Gray, "Fast Algorithms for Convolutional Neural Networks" (CVPR 2016): each m x m output tile of a 3x3
convolution is A^T [ (G g G^T) (.) (B^T d B) ] A, with d the (m + 2) x (m + 2) input tile, g the kernel and
(.) the element-wise product summed over input channels. Summed over channels that product is one matrix
multiplication per tile position, so the (m + 2)^2 batched GEMMs [tiles, C_in] x [C_in, C_out] replace
9 m^2 / (m + 2)^2 times as many multiply-adds: 2.25x for F(2, 3), 4x for F(4, 3), 5.06x for F(6, 3). The
kernel transform is done once in NumPy when the graph is rewritten; the input and output transforms are cheap
linear maps that XLA fuses, which is why the rewritten graph is compiled with XLA (inference/detector.py does
both). It is the algorithm OpenCV's DNN module (F(6, 3)) and cuDNN use for these layers; in float32 it differs
from the direct convolution by ~1e-6 (F(2, 3)) to ~2e-5 (F(4, 3), F(6, 3)) of the output's scale.

    graph_def, converted = rewrite_convolutions(frozen_graph_def)   # eligible Conv2D nodes replaced in place

The rewrite keeps every node name that the rest of the graph refers to: a replaced Conv2D becomes a subgraph
under `<name>/winograd/` whose last node carries the Conv2D's name, so fused BiasAdd / Relu consumers,
fetches and the SpaceToBatchND wrapping of dilated convolutions (Caffe's fc6) are untouched.
"""
import numpy as np
import tensorflow as tf
from tensorflow.python.framework import tensor_util

# (B^T, G, A^T) for F(m, 3), interpolation points 0, +-1 (m = 2), 0, +-1, +-2 (m = 4, Lavin & Gray) and
# 0, +-1, +-2, +-1/2 (m = 6, as NNPACK and wincnn), each with the point at infinity.
TRANSFORMS = {
    2: (np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], np.float64),
        np.array([[1, 0, 0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 0], [0, 1, -1, -1]], np.float64)),
    4: (np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0],
                  [0, -2, -1, 2, 1, 0], [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], np.float64),
        np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6],
                  [1 / 24, 1 / 12, 1 / 6], [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]], np.float64),
        np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], np.float64)),
    6: (np.array([[1, 0, -21 / 4, 0, 21 / 4, 0, -1, 0], [0, 1, 1, -17 / 4, -17 / 4, 1, 1, 0],
                  [0, -1, 1, 17 / 4, -17 / 4, -1, 1, 0], [0, 1 / 2, 1 / 4, -5 / 2, -5 / 4, 2, 1, 0],
                  [0, -1 / 2, 1 / 4, 5 / 2, -5 / 4, -2, 1, 0], [0, 2, 4, -5 / 2, -5, 1 / 2, 1, 0],
                  [0, -2, 4, 5 / 2, -5, -1 / 2, 1, 0], [0, -1, 0, 21 / 4, 0, -21 / 4, 0, 1]], np.float64),
        np.array([[1, 0, 0], [-2 / 9, -2 / 9, -2 / 9], [-2 / 9, 2 / 9, -2 / 9], [1 / 90, 1 / 45, 2 / 45],
                  [1 / 90, -1 / 45, 2 / 45], [32 / 45, 16 / 45, 8 / 45], [32 / 45, -16 / 45, 8 / 45], [0, 0, 1]],
                 np.float64),
        np.array([[1, 1, 1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 1 / 2, -1 / 2, 0], [0, 1, 1, 4, 4, 1 / 4, 1 / 4, 0],
                  [0, 1, -1, 8, -8, 1 / 8, -1 / 8, 0], [0, 1, 1, 16, 16, 1 / 16, 1 / 16, 0],
                  [0, 1, -1, 32, -32, 1 / 32, -1 / 32, 1]], np.float64)),
}


def transform_kernel(kernel, tile=4):
    """HWIO kernel [3, 3, C_in, C_out] -> float32 [(tile + 2)^2, C_in, C_out], G g G^T per channel pair."""
    _, g, _ = TRANSFORMS[tile]
    kernel = np.asarray(kernel, np.float32)
    if kernel.ndim != 4 or kernel.shape[:2] != (3, 3):
        raise ValueError(f"Winograd F(m, 3) needs a 3x3 kernel, got {kernel.shape}")
    a = tile + 2
    g = g.astype(np.float32)
    # Two small linear maps written as sums of slices: no float64 or transposed copies of large kernels.
    rows = [sum(g[x, i] * kernel[i] for i in range(3) if g[x, i]) for x in range(a)]  # a x [3, C_in, C_out]
    u = np.empty((a, a) + kernel.shape[2:], np.float32)
    for x in range(a):
        for y in range(a):
            u[x, y] = sum(g[y, j] * rows[x][j] for j in range(3) if g[y, j])
    return u.reshape((a * a,) + kernel.shape[2:])


def winograd_conv2d(inputs, kernel, padding="VALID", tile=4):
    """tf.nn.conv2d(inputs, kernel, 1, padding) by Winograd F(tile x tile, 3 x 3).

    Args:
      inputs: float32 [B, H, W, C_in] NHWC with static H, W, C_in (B may be dynamic).
      kernel: NumPy [3, 3, C_in, C_out] (HWIO); or, already transformed, a float32 tensor
        [(tile + 2)^2, C_in, C_out] (transform_kernel).
      padding: "VALID" or "SAME" (for a 3x3 stride-1 kernel: one pixel on every side).
      tile: 2, 4 or 6, the output tile size m.
    Returns:
      float32 [B, H', W', C_out], H' = H - 2 (VALID) or H (SAME).
    """
    bt, _, at = TRANSFORMS[tile]
    m, a = tile, tile + 2
    if isinstance(kernel, np.ndarray):
        kernel = tf.constant(transform_kernel(kernel, tile))
    c_in, c_out = kernel.shape[1:]
    if padding == "SAME":
        inputs = tf.pad(inputs, [[0, 0], [1, 1], [1, 1], [0, 0]])
    elif padding != "VALID":
        raise ValueError(f"padding must be SAME or VALID, got {padding!r}")
    height, width = inputs.shape[1], inputs.shape[2]
    out_h, out_w = height - 2, width - 2
    tiles_h, tiles_w = -(-out_h // m), -(-out_w // m)
    # Zeros below and right so that the tiles cover the image; their outputs are cropped at the end.
    x = tf.pad(inputs, [[0, 0], [0, tiles_h * m + 2 - height], [0, tiles_w * m + 2 - width], [0, 0]])
    batch = tf.shape(x)[0]
    bt_c = tf.constant(bt, tf.float32)
    at_c = tf.constant(at, tf.float32)
    # Input transform B^T d B, separably: rows, then columns. [a, B, Th, W', C] -> [a, a, B * Th * Tw * C].
    rows = tf.stack([x[:, i:i + m * tiles_h:m] for i in range(a)], 0)
    rows = tf.reshape(tf.matmul(bt_c, tf.reshape(rows, [a, -1])), [a, batch, tiles_h, tiles_w * m + 2, c_in])
    cols = tf.stack([rows[:, :, :, j:j + m * tiles_w:m] for j in range(a)], 1)
    v = tf.matmul(tf.broadcast_to(bt_c, [a, a, a]), tf.reshape(cols, [a, a, -1]))
    # One GEMM per tile position: [a*a, tiles, C_in] x [a*a, C_in, C_out].
    mult = tf.matmul(tf.reshape(v, [a * a, -1, c_in]), kernel, name="gemm")
    # Output transform A^T M A, rows then columns, and the tiles back into the image.
    y = tf.reshape(tf.matmul(at_c, tf.reshape(mult, [a, -1])), [m, a, -1])
    y = tf.matmul(tf.broadcast_to(at_c, [m, m, a]), y)
    y = tf.reshape(y, [m, m, batch, tiles_h, tiles_w, c_out])
    y = tf.reshape(tf.transpose(y, [2, 3, 0, 4, 1, 5]), [batch, tiles_h * m, tiles_w * m, c_out])
    return y[:, :out_h, :out_w]


def default_policy(input_shape, kernel_shape, large_maps=True):
    """The tile size m for a convolution of F(m x m, 3 x 3), or 0 to keep the direct convolution.

    Measured on the 2-core AVX2 reference machine on SSD VGG's layers (XLA, oneDNN): with 3 input channels
    (conv1_1) there is nothing to save; from 64 channels up F(4, 3) is 2-3x faster than the direct convolution
    on maps up to 38 x 38, and F(6, 3) (8 x 8 tiles, 1.78 multiplications per output against 2.25) is faster
    still from 75 x 75 (300 x 300 x 64: 58 ms against 100 ms for F(4, 3) and 108 ms direct) but loses on small
    maps, where its tiles overhang the map. Without oneDNN (large_maps False) XLA's own matrix products are
    single-threaded and the transforms of maps over 160 x 160 cost what they save.
    """
    del kernel_shape
    _, height, width, channels = input_shape
    if channels < 64 or (not large_maps and height * width > 160 * 160):
        return 0
    return 6 if min(height, width) >= 60 else 4


def const_value(nodes, name):
    """The NumPy value of a Const node, following Identity nodes and Reshapes of a constant to a constant
    shape (a depthwise kernel stored in Caffe's layout); None for anything else."""
    node = nodes.get(name.lstrip("^").split(":")[0])
    while node is not None and node.op == "Identity":
        node = nodes.get(node.input[0].split(":")[0])
    if node is not None and node.op == "Reshape":
        value, shape = const_value(nodes, node.input[0]), const_value(nodes, node.input[1])
        return None if value is None or shape is None else value.reshape(shape)
    if node is None or node.op != "Const":
        return None
    return tensor_util.MakeNdarray(node.attr["value"].tensor)


def _eligible(node, kernel, input_shape):
    attr = node.attr
    return (kernel is not None and kernel.ndim == 4 and kernel.shape[:2] == (3, 3)
            and attr["T"].type == tf.float32.as_datatype_enum
            and list(attr["strides"].list.i) == [1, 1, 1, 1]
            and list(attr["dilations"].list.i) in ([], [1, 1, 1, 1])
            and attr["data_format"].s in (b"", b"NHWC") and attr["padding"].s in (b"SAME", b"VALID")
            and input_shape.rank == 4 and None not in input_shape.as_list()[1:])


def rewrite_convolutions(graph_def, input_shapes=None, policy=None):
    """A copy of a frozen GraphDef with its eligible 3x3 stride-1 NHWC float32 Conv2D nodes (constant kernel,
    SAME or VALID padding, static spatial shape) computed by winograd_conv2d with the tile size
    `policy(input_shape, kernel_shape)` returns (default_policy; 0 keeps the convolution).

    input_shapes: {Conv2D node name: its input's TensorShape} when the caller has the graph the GraphDef
    came from (saves importing it). Returns (graph_def, names of the rewritten nodes).
    """
    policy = policy or default_policy
    nodes = {n.name: n for n in graph_def.node}
    if input_shapes is None:
        shapes_graph = tf.Graph()
        with shapes_graph.as_default():
            tf.graph_util.import_graph_def(graph_def, name="")
        input_shapes = {n.name: shapes_graph.get_operation_by_name(n.name).inputs[0].shape
                        for n in graph_def.node if n.op == "Conv2D"}
    # All replacements are built in one scratch graph, each under its Conv2D's name: the placeholder
    # "<name>/winograd/input" stands for the Conv2D's input and the output takes the Conv2D's own name.
    scratch = tf.Graph()
    inputs, kernels = {}, {}
    with scratch.as_default():
        for node in graph_def.node:
            if node.op != "Conv2D" or node.name not in input_shapes:
                continue
            shape = tf.TensorShape(input_shapes[node.name])
            kernel = const_value(nodes, node.input[1])
            tile = policy(shape.as_list(), kernel.shape) if _eligible(node, kernel, shape) else 0
            if not tile:
                continue
            u = transform_kernel(kernel, tile)
            with tf.name_scope(node.name + "/winograd/"):
                x = tf.compat.v1.placeholder(tf.float32, shape, name="input")
                # The transformed kernel enters as a placeholder too and becomes a Const node below:
                # building a large constant in a tf.Graph and serialising it again is slow.
                k = tf.compat.v1.placeholder(tf.float32, u.shape, name="kernel")
                y = winograd_conv2d(x, k, node.attr["padding"].s.decode(), tile)
            tf.identity(y, name=node.name)
            inputs[x.op.name] = node.input[0]
            kernels[k.op.name] = u
    out = tf.compat.v1.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    replaced = {name.rsplit("/winograd/", 1)[0] for name in inputs}
    for node in graph_def.node:
        if node.name not in replaced:
            out.node.add().CopyFrom(node)
    for node in scratch.as_graph_def().node:
        if node.name in inputs:
            continue
        if node.name in kernels:
            const = out.node.add(name=node.name, op="Const")
            const.attr["dtype"].type = tf.float32.as_datatype_enum
            const.attr["value"].tensor.CopyFrom(tensor_util.make_tensor_proto(kernels[node.name]))
            continue
        new = out.node.add()
        new.CopyFrom(node)
        if node.name in replaced:
            new.device = nodes[node.name].device
        for i, name in enumerate(new.input):
            op_name = name.lstrip("^").split(":")[0]
            if op_name in inputs:
                if name.startswith("^"):
                    raise ValueError(f"unexpected control input {name} in a Winograd subgraph")
                new.input[i] = inputs[op_name]
    return out, sorted(replaced)
