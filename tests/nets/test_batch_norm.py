"""nets/batch_norm.py against batch normalisation written out in NumPy (Ioffe & Szegedy, Algorithm 1, with
TF-Slim's moving averages), and inference/fold_batch_norm.py against the unfolded frozen graph."""
import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim

from inference import fold_batch_norm
from nets.batch_norm import batch_norm

UPDATE_OPS = tf.compat.v1.GraphKeys.UPDATE_OPS


def reference(x, gamma, beta, mean, variance, eps):
    return gamma * (x - mean) / np.sqrt(variance + eps) + beta


@pytest.fixture
def x():
    return np.random.default_rng(0).normal(2.0, 3.0, (4, 5, 6, 3)).astype(np.float32)


def variables():
    return {v.op.name: v for v in tf.compat.v1.global_variables()}


def test_training_mode_normalises_by_the_batch_and_updates_moving_averages(x):
    decay, eps = 0.9, 1e-3
    gamma, beta = np.array([0.5, 2.0, 1.5], np.float32), np.array([0.1, -1.0, 3.0], np.float32)
    with tf.Graph().as_default():
        inputs = tf.compat.v1.placeholder(tf.float32, x.shape)
        y = batch_norm(inputs, decay=decay, epsilon=eps, scale=True, is_training=True,
                       param_initializers={"gamma": tf.compat.v1.constant_initializer(gamma),
                                           "beta": tf.compat.v1.constant_initializer(beta)})
        updates = tf.compat.v1.get_collection(UPDATE_OPS)
        assert len(updates) == 2
        v = variables()
        assert set(v) == {"BatchNorm/beta", "BatchNorm/gamma", "BatchNorm/moving_mean", "BatchNorm/moving_variance"}
        assert {t.op.name for t in tf.compat.v1.trainable_variables()} == {"BatchNorm/beta", "BatchNorm/gamma"}
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            moving_mean, moving_var = np.zeros(3), np.ones(3)
            for step in range(3):
                batch = x * (step + 1)
                out, _ = sess.run([y, updates], {inputs: batch})
                m, var = batch.mean((0, 1, 2)), batch.var((0, 1, 2))
                np.testing.assert_allclose(out, reference(batch, gamma, beta, m, var, eps), atol=2e-5, rtol=1e-5)
                n = batch.size // 3
                moving_mean = decay * moving_mean + (1 - decay) * m
                moving_var = decay * moving_var + (1 - decay) * var * n / (n - 1)  # unbiased, as Caffe / TF-Slim
                np.testing.assert_allclose(sess.run(v["BatchNorm/moving_mean"]), moving_mean, rtol=1e-5)
                np.testing.assert_allclose(sess.run(v["BatchNorm/moving_variance"]), moving_var, rtol=1e-5)


def test_inference_mode_uses_moving_statistics_and_updates_nothing(x):
    mean, var = np.array([1.0, 2.0, -1.0]), np.array([4.0, 0.25, 9.0])
    with tf.Graph().as_default():
        y = batch_norm(tf.constant(x), epsilon=1e-5, is_training=False, center=False,
                       param_initializers={"moving_mean": tf.compat.v1.constant_initializer(mean),
                                           "moving_variance": tf.compat.v1.constant_initializer(var)})
        assert tf.compat.v1.get_collection(UPDATE_OPS) == []
        assert "BatchNorm/gamma" not in variables() and "BatchNorm/beta" not in variables()
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            for _ in range(2):
                # epsilon 1e-5 is raised to fused_batch_norm's minimum 1.001e-5, as in TF-Slim.
                np.testing.assert_allclose(sess.run(y), reference(x, 1.0, 0.0, mean, var, 1.001e-5), rtol=1e-5,
                                           atol=1e-5)
            np.testing.assert_array_equal(sess.run(variables()["BatchNorm/moving_mean"]), mean.astype(np.float32))


def test_tensor_is_training_switches_both_output_and_updates(x):
    with tf.Graph().as_default():
        training = tf.compat.v1.placeholder(tf.bool, [])
        y = batch_norm(tf.constant(x), decay=0.5, is_training=training)
        updates = tf.compat.v1.get_collection(UPDATE_OPS)
        mean_var = variables()["BatchNorm/moving_mean"]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            out, _ = sess.run([y, updates], {training: False})
            np.testing.assert_allclose(out, reference(x, 1, 0, 0, 1, 1e-3), rtol=1e-5)
            np.testing.assert_array_equal(sess.run(mean_var), np.zeros(3))
            out, _ = sess.run([y, updates], {training: True})
            np.testing.assert_allclose(out, reference(x, 1, 0, x.mean((0, 1, 2)), x.var((0, 1, 2)), 1e-3),
                                       rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(sess.run(mean_var), 0.5 * x.mean((0, 1, 2)), rtol=1e-5)


def test_updates_in_place_without_a_collection(x):
    with tf.Graph().as_default():
        y = batch_norm(tf.constant(x), decay=0.0, updates_collections=None, is_training=True)
        assert tf.compat.v1.get_collection(UPDATE_OPS) == []
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            sess.run(y)
            np.testing.assert_allclose(sess.run(variables()["BatchNorm/moving_mean"]), x.mean((0, 1, 2)), rtol=1e-5)


def test_slim_batch_norm_arg_scope_reaches_it_and_conv2d_names_follow_tf_slim(x):
    """tf_slim's nets set is_training through arg_scope([slim.batch_norm], ...): it must apply here."""
    with tf.Graph().as_default():
        with slim.arg_scope([slim.conv2d], normalizer_fn=batch_norm, normalizer_params={"scale": True}):
            with slim.arg_scope([slim.batch_norm], is_training=False):
                slim.conv2d(tf.constant(x), 8, [3, 3], scope="conv1")
        assert tf.compat.v1.get_collection(UPDATE_OPS) == []  # is_training False came through
        assert set(variables()) == {"conv1/weights", "conv1/BatchNorm/beta", "conv1/BatchNorm/gamma",
                                    "conv1/BatchNorm/moving_mean", "conv1/BatchNorm/moving_variance"}


def test_rank_2_inputs(x):
    flat = x.reshape(-1, 3)
    with tf.Graph().as_default():
        y = batch_norm(tf.constant(flat), is_training=True)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            np.testing.assert_allclose(sess.run(y), reference(flat, 1, 0, flat.mean(0), flat.var(0), 1e-3),
                                       rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depthwise", [False, True])
def test_folding_into_the_convolution_gives_the_same_outputs(x, depthwise):
    rng = np.random.default_rng(1)
    with tf.Graph().as_default() as graph:
        inputs = tf.compat.v1.placeholder(tf.float32, [None, 5, 6, 3], name="images")
        init = {"moving_mean": tf.compat.v1.constant_initializer(rng.normal(size=6)),
                "moving_variance": tf.compat.v1.constant_initializer(rng.uniform(0.5, 2.0, 6)),
                "gamma": tf.compat.v1.constant_initializer(rng.uniform(0.5, 2.0, 6)),
                "beta": tf.compat.v1.constant_initializer(rng.normal(size=6))}
        params = {"scale": True, "is_training": False, "param_initializers": init}
        if depthwise:  # multiplier 2: output channel c * 2 + m
            net = slim.separable_conv2d(inputs, None, [3, 3], depth_multiplier=2, normalizer_fn=batch_norm,
                                        normalizer_params=params, activation_fn=tf.nn.relu6)
        else:
            net = slim.conv2d(inputs, 6, [3, 3], normalizer_fn=batch_norm, normalizer_params=params)
        out = tf.identity(net, name="out")
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            expected = sess.run(out, {inputs: x})
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["out"])
    folded, names = fold_batch_norm.fold_batch_norms(frozen, keep=["out"])
    assert len(names) == 1
    with tf.Graph().as_default() as g2:
        tf.graph_util.import_graph_def(folded, name="")
        assert not [op for op in g2.get_operations() if op.type.startswith("FusedBatchNorm")
                    and op.outputs[0].consumers()]
        with tf.compat.v1.Session() as sess:
            got = sess.run("out:0", {"images:0": x})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("depthwise", [False, True])
def test_a_chain_of_affine_maps_after_a_biased_convolution_folds_into_it(x, depthwise):
    """Caffe's Convolution (with bias) -> BatchNorm -> Scale, as caffe_converter/caffe_ssd.py builds it: BiasAdd
    then two inference-mode FusedBatchNormV3 (the second with mean 0, variance 1, epsilon 0), all folded into
    one convolution and one BiasAdd, against the unfolded graph."""
    rng = np.random.default_rng(2)
    c = 6
    with tf.Graph().as_default() as graph:
        inputs = tf.compat.v1.placeholder(tf.float32, [None, 5, 6, 3], name="images")
        if depthwise:
            y = tf.nn.depthwise_conv2d(inputs, tf.constant(rng.normal(size=(3, 3, 3, 2)), tf.float32),
                                       [1, 1, 1, 1], "VALID")
        else:
            y = tf.nn.conv2d(inputs, tf.constant(rng.normal(size=(3, 3, 3, c)), tf.float32), 1, "VALID")
        y = tf.nn.bias_add(y, tf.constant(rng.normal(size=c), tf.float32))
        const = lambda v: tf.constant(v, tf.float32)  # noqa: E731
        y = tf.raw_ops.FusedBatchNormV3(x=y, scale=const(np.ones(c)), offset=const(np.zeros(c)),
                                        mean=const(rng.normal(size=c)), variance=const(rng.uniform(0.5, 2, c)),
                                        epsilon=1e-5, is_training=False)[0]
        y = tf.raw_ops.FusedBatchNormV3(x=y, scale=const(rng.uniform(0.5, 2, c)), offset=const(rng.normal(size=c)),
                                        mean=const(np.zeros(c)), variance=const(np.ones(c)), epsilon=0.0,
                                        is_training=False)[0]
        out = tf.identity(tf.nn.relu(y), name="out")
        with tf.compat.v1.Session() as sess:
            expected = sess.run(out, {inputs: x})
            frozen = tf.compat.v1.graph_util.convert_variables_to_constants(sess, graph.as_graph_def(), ["out"])
    folded, names = fold_batch_norm.fold_batch_norms(frozen, keep=["out"])
    assert len(names) == 2
    ops = [n.op for n in folded.node if n.op not in ("Const", "Placeholder", "Identity")]
    assert sorted(ops) == sorted(["DepthwiseConv2dNative" if depthwise else "Conv2D", "BiasAdd", "Relu"])
    with tf.Graph().as_default():
        tf.graph_util.import_graph_def(folded, name="")
        with tf.compat.v1.Session() as sess:
            got = sess.run("out:0", {"images:0": x})
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.slow
def test_optimized_detector_folds_batch_norm_and_detects_what_the_plain_one_does(tmp_path):
    """export / --optimize path (inference/graph_optimization.py): every batch norm of an SSDLite
    MobileNet-v2 with random statistics folded into its convolution, the same detections as the plain graph."""
    from nets import nets_factory
    from inference.detector import Detector
    from tests.inference.test_winograd import _matched
    from training.checkpoints import random_batch_norm_statistics, save_initial_model
    config = nets_factory.default_config("ssdlite_320_mobilenet_v2", class_names=["a", "b", "c"])
    config["params"]["depth_multiplier"] = 0.35
    rng = np.random.default_rng(2)
    save_initial_model(str(tmp_path), config=config, seed=1, load_values=random_batch_norm_statistics(rng))
    images = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    with Detector(str(tmp_path), keep_top_k=50) as plain:
        expected = plain.detect_batch(images)
        probs, boxes = plain.raw(images)
        num_bn = len([op for op in plain.graph.get_operations() if op.type.startswith("FusedBatchNorm")])
    with Detector(str(tmp_path), keep_top_k=50, optimize=True) as fast:
        left = [op.name for op in fast.graph.get_operations() if op.type.startswith("FusedBatchNorm")]
        got = fast.detect_batch(images)
        fast_probs, fast_boxes = fast.raw(images)
    assert num_bn == 76 and left == []  # 1 + 50 base layers, 1 + 12 extras, 12 heads: all folded
    np.testing.assert_allclose(fast_probs, probs, atol=1e-4)
    np.testing.assert_allclose(fast_boxes, boxes, atol=1e-4)
    for e, g in zip(expected, got):
        assert len(g["scores"]) == len(e["scores"]) > 0
        assert _matched(e, g, 0.99, 1e-4) == 1.0
