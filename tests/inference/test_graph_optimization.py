"""inference/graph_optimization.py's XLA choice: graphs with depthwise convolutions are not marked for XLA (nor
rewritten to Winograd, which needs XLA's fusion), other graphs are; the values stay those of the plain graph."""
import numpy as np
import tensorflow as tf

from inference import graph_optimization


def _graph(depthwise):
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(0)
        x = tf.compat.v1.placeholder(tf.float32, [1, 32, 32, 64], name="x")
        w = tf.compat.v1.get_variable("w", [3, 3, 64, 64])
        y = tf.nn.conv2d(x, w, 1, "SAME")
        if depthwise:
            d = tf.compat.v1.get_variable("d", [3, 3, 64, 1])
            y = tf.nn.depthwise_conv2d(y, d, [1, 1, 1, 1], "SAME")
        y = tf.identity(tf.nn.relu(y), name="y")
    return graph, x, y


def _marked(graph_def):
    return [n.name for n in graph_def.node if "_XlaCompile" in n.attr and n.attr["_XlaCompile"].b]


def test_depthwise_graphs_are_not_compiled_and_others_are():
    rng = np.random.default_rng(0)
    feed = rng.normal(size=(1, 32, 32, 64)).astype(np.float32)
    for depthwise in (False, True):
        graph, x, y = _graph(depthwise)
        with tf.compat.v1.Session(graph=graph) as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            expected = sess.run(y, {x: feed})
            graph_def = graph_optimization.optimized_graph_def(sess, graph, [y])
        assert graph_optimization.uses_xla(graph_def) == (not depthwise)
        assert bool(_marked(graph_def)) == (not depthwise)
        ops = {n.op for n in graph_def.node}
        assert ("DepthwiseConv2dNative" in ops) == depthwise
        with tf.Graph().as_default() as g, tf.compat.v1.Session(graph=g) as sess:
            tf.graph_util.import_graph_def(graph_def, name="")
            got = sess.run("y:0", {"x:0": feed})
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-3)
    # Explicit choices win over the default.
    graph, x, y = _graph(True)
    with tf.compat.v1.Session(graph=graph) as sess:
        sess.run(tf.compat.v1.global_variables_initializer())
        assert _marked(graph_optimization.optimized_graph_def(sess, graph, [y], xla=True))
