"""caffe_converter/caffe_ssd.py layer by layer against OpenCV's Caffe runtime (cv2.dnn, forward(layer) per layer).

Each test writes a small Caffe net around one layer type with random weights (caffe_writer), runs it in both
and compares every layer's output: convolutions with pad / stride / dilation / group / depthwise and
rectangular kernels (Caffe pads symmetrically where TF's SAME would not), ceil-mode pooling, BatchNorm with
its scale factor + Scale, Eltwise, Normalize, Permute / Flatten / Reshape / Concat / Softmax on Caffe's axes,
and PriorBox against box_ops/anchors.
"""
import numpy as np
import pytest
import tensorflow as tf

from caffe_converter import net_spec, reader
from caffe_converter import caffe_ssd
from caffe_converter import caffe_writer
from tests.caffe_converter import reference

MEAN_BGR = (104.0, 117.0, 123.0)


def _run(tmp_path, builder, weights, names, size):
    """(OpenCV outputs, project outputs as NCHW) of the named layers on a random image."""
    prototxt, caffemodel = caffe_writer.write_model(tmp_path, "net", builder.net, weights)
    image = np.random.default_rng(0).integers(0, 256, size + (3,), dtype=np.uint8)
    expected = reference.opencv_forward(prototxt, caffemodel, image, MEAN_BGR, names)
    spec = net_spec.analyse(reader.read_prototxt(prototxt), prototxt, require_detection=False)
    values = caffe_ssd.variables_from_caffemodel(spec, reader.layer_blobs(reader.read_caffemodel(caffemodel)))
    with tf.Graph().as_default(), tf.compat.v1.Session() as sess:
        images = tf.constant((image.astype(np.float32) - np.float32(MEAN_BGR[::-1]))[None])
        with tf.compat.v1.variable_scope(caffe_ssd.MODEL_NAME):
            _, end_points = caffe_ssd.caffe_layers(images, spec)
        for v in tf.compat.v1.global_variables():
            v.load(values.pop(v.op.name), sess)
        assert not values, f"unused converted weights {list(values)}"
        got = sess.run([end_points[n] for n in names])
    return expected, [reference.nchw(g) for g in got]


def _assert_close(expected, got, names, rtol=1e-4):
    for name, e, g in zip(names, expected, got):
        assert g.shape == e.shape, f"{name}: {g.shape} vs OpenCV {e.shape}"
        np.testing.assert_allclose(g, e, rtol=rtol, atol=rtol * max(1.0, float(np.abs(e).max())), err_msg=name)


def _conv_weights(rng, cout, cin, kh, kw, bias=True):
    w = [rng.standard_normal((cout, cin, kh, kw), np.float32) / np.float32(np.sqrt(cin * kh * kw) * 40)]
    return w + [rng.standard_normal(cout, np.float32)] if bias else w


def test_convolution_padding_stride_dilation_group(tmp_path):
    b = caffe_writer.NetBuilder("conv", [1, 3, 37, 41])
    b.add("c1", "Convolution", "data", convolution_param="num_output: 8 kernel_size: 3 stride: 2 pad: 1")
    b.add("c2", "Convolution", "c1", convolution_param="num_output: 8 kernel_h: 3 kernel_w: 5 pad_h: 1 pad_w: 2 "
                                                        "stride_h: 1 stride_w: 2 bias_term: false")
    b.add("c3", "Convolution", "c2", convolution_param="num_output: 12 kernel_size: 3 dilation: 2 pad: 2 group: 4")
    b.add("c4", "Convolution", "c3", convolution_param="num_output: 24 kernel_size: 3 pad: 1 stride: 2 "
                                                        "dilation: 2 group: 12")  # depthwise, multiplier 2
    b.add("c5", "Convolution", "c4", convolution_param="num_output: 6 kernel_size: 1 pad: 1")
    rng = np.random.default_rng(1)
    weights = {"c1": _conv_weights(rng, 8, 3, 3, 3), "c2": _conv_weights(rng, 8, 8, 3, 5, bias=False),
               "c3": _conv_weights(rng, 12, 2, 3, 3), "c4": _conv_weights(rng, 24, 1, 3, 3),
               "c5": _conv_weights(rng, 6, 24, 1, 1)}
    names = ["c1", "c2", "c3", "c4", "c5"]
    expected, got = _run(tmp_path, b, weights, names, (37, 41))
    assert [g.shape[2:] for g in got] == [(19, 21), (19, 11), (19, 11), (9, 5), (11, 7)]
    _assert_close(expected, got, names)


def test_pooling_rounds_up_as_caffe(tmp_path):
    b = caffe_writer.NetBuilder("pool", [1, 3, 38, 29])
    b.add("c", "Convolution", "data", convolution_param="num_output: 4 kernel_size: 1")
    b.add("max_ceil", "Pooling", "c", pooling_param="pool: MAX kernel_size: 3 stride: 2")
    b.add("max_pad", "Pooling", "c", pooling_param="pool: MAX kernel_size: 3 stride: 2 pad: 1")
    b.add("ave_pad", "Pooling", "c", pooling_param="pool: AVE kernel_size: 3 stride: 2 pad: 1")
    b.add("ave_ceil", "Pooling", "c", pooling_param="pool: AVE kernel_h: 2 kernel_w: 3 stride_h: 2 stride_w: 3")
    b.add("max_2x2", "Pooling", "c", pooling_param="pool: MAX kernel_size: 2 stride: 2")
    b.add("global", "Pooling", "c", pooling_param="pool: AVE global_pooling: true")
    rng = np.random.default_rng(2)
    names = ["max_ceil", "max_pad", "ave_pad", "ave_ceil", "max_2x2", "global"]
    expected, got = _run(tmp_path, b, {"c": _conv_weights(rng, 4, 3, 1, 1)}, names, (38, 29))
    # Caffe rounds up: 38 -> ceil(35 / 2) + 1 = 19 rows, where TF's VALID would give 18.
    assert [g.shape[2:] for g in got] == [(19, 14), (20, 15), (20, 15), (19, 10), (19, 15), (1, 1)]
    _assert_close(expected, got, names)


def test_batch_norm_scale_relu_eltwise(tmp_path):
    b = caffe_writer.NetBuilder("bn", [1, 3, 16, 20])
    b.add("c1", "Convolution", "data", convolution_param="num_output: 6 kernel_size: 3 pad: 1")
    b.add("c2", "Convolution", "data", convolution_param="num_output: 6 kernel_size: 1")
    b.add("bn", "BatchNorm", "c1", batch_norm_param="eps: 0.001")
    b.add("scale", "Scale", "bn", scale_param="bias_term: true")
    b.add("scale_only", "Scale", "c2")
    b.add("leaky", "ReLU", "scale", relu_param="negative_slope: 0.1")
    b.add("sum", "Eltwise", ["leaky", "scale_only"], eltwise_param="operation: SUM coeff: 0.5 coeff: -2")
    b.add("prod", "Eltwise", ["leaky", "scale_only"], eltwise_param="operation: PROD")
    b.add("max", "Eltwise", ["leaky", "scale_only", "c2"], eltwise_param="operation: MAX")
    b.add("drop", "Dropout", "max", dropout_param="dropout_ratio: 0.5")
    rng = np.random.default_rng(3)
    factor = np.float32(4.0)  # Caffe's moving-average normaliser: mean and variance are divided by it
    weights = {"c1": _conv_weights(rng, 6, 3, 3, 3), "c2": _conv_weights(rng, 6, 3, 1, 1),
               "bn": [rng.standard_normal(6, np.float32) * factor, rng.uniform(0.5, 2, 6).astype(np.float32) * factor,
                      np.array([factor])],
               "scale": [rng.uniform(0.5, 2, 6).astype(np.float32), rng.standard_normal(6, np.float32)],
               "scale_only": [rng.uniform(-2, 2, 6).astype(np.float32)]}
    names = ["bn", "scale", "scale_only", "leaky", "sum", "prod", "max", "drop"]
    expected, got = _run(tmp_path, b, weights, names, (16, 20))
    _assert_close(expected, got, names)


def test_normalize(tmp_path):
    b = caffe_writer.NetBuilder("norm", [1, 3, 12, 10])
    b.add("c", "Convolution", "data", convolution_param="num_output: 8 kernel_size: 3")
    b.add("per_pixel", "Normalize", "c", norm_param="across_spatial: false channel_shared: false")
    b.add("whole", "Normalize", "c", norm_param="across_spatial: true channel_shared: true eps: 0.001")
    rng = np.random.default_rng(4)
    weights = {"c": _conv_weights(rng, 8, 3, 3, 3), "per_pixel": [rng.uniform(5, 20, 8).astype(np.float32)],
               "whole": [np.array([7.5], np.float32)]}
    names = ["per_pixel", "whole"]
    expected, got = _run(tmp_path, b, weights, names, (12, 10))
    _assert_close(expected, got, names)


def test_permute_flatten_reshape_concat_softmax(tmp_path):
    """The SSD head plumbing: NCHW semantics kept while the tensors stay NHWC."""
    b = caffe_writer.NetBuilder("heads", [1, 3, 10, 14])
    b.add("a", "Convolution", "data", convolution_param="num_output: 12 kernel_size: 3 pad: 1")
    b.add("b", "Convolution", "data", convolution_param="num_output: 6 kernel_size: 3 stride: 2 pad: 1")
    b.add("a_perm", "Permute", "a", permute_param="order: 0 order: 2 order: 3 order: 1")
    b.add("a_flat", "Flatten", "a_perm", flatten_param="axis: 1")
    b.add("b_perm", "Permute", "b", permute_param="order: 0 order: 2 order: 3 order: 1")
    b.add("b_flat", "Flatten", "b_perm")
    b.add("b_nchw_flat", "Flatten", "b")  # no Permute: Caffe's channel-major order
    b.add("b_odd_perm", "Permute", "b", permute_param="order: 0 order: 3 order: 1 order: 2")
    b.add("b_odd_flat", "Flatten", "b_odd_perm", flatten_param="axis: 2")
    b.add("cat", "Concat", ["a_flat", "b_flat"], concat_param="axis: 1")
    b.add("cat_channels", "Concat", ["a", "a"], concat_param="axis: 1")
    b.add("reshaped", "Reshape", "cat", reshape_param="shape { dim: 0 dim: -1 dim: 3 }")
    b.add("soft", "Softmax", "reshaped", softmax_param="axis: 2")
    b.add("soft_channels", "Softmax", "a")
    b.add("flat", "Flatten", "soft")
    rng = np.random.default_rng(5)
    weights = {"a": _conv_weights(rng, 12, 3, 3, 3), "b": _conv_weights(rng, 6, 3, 3, 3)}
    names = ["a_perm", "a_flat", "b_flat", "b_nchw_flat", "b_odd_perm", "b_odd_flat", "cat", "cat_channels",
             "reshaped", "soft", "soft_channels", "flat"]
    expected, got = _run(tmp_path, b, weights, names, (10, 14))
    _assert_close(expected, got, names)


PRIORS = {
    "two_sizes": "min_size: 10 min_size: 20 max_size: 15 max_size: 30 aspect_ratio: 2 aspect_ratio: 3 clip: false "
                 "variance: 0.1 variance: 0.2 variance: 0.3 variance: 0.4",
    "duplicates_clip": "min_size: 8 aspect_ratio: 2 aspect_ratio: 2 aspect_ratio: 0.5 flip: false clip: true "
                       "variance: 0.1 step: 5 offset: 0.3",
    "step_hw": "min_size: 12 max_size: 40 aspect_ratio: 3 clip: true step_h: 4 step_w: 6 variance: 0.1 "
               "variance: 0.1 variance: 0.2 variance: 0.2",
}


def test_prior_box_matches_opencv(tmp_path):
    b = caffe_writer.NetBuilder("priors", [1, 3, 33, 47])
    b.add("c", "Convolution", "data", convolution_param="num_output: 4 kernel_size: 3 stride: 4")
    for name, params in PRIORS.items():
        b.add(name, "PriorBox", ["c", "data"], prior_box_param=params)
    prototxt, caffemodel = caffe_writer.write_model(
        tmp_path, "priors", b.net, {"c": _conv_weights(np.random.default_rng(6), 4, 3, 3, 3)})
    outputs = reference.opencv_forward(prototxt, caffemodel, np.zeros((33, 47, 3), np.uint8), names=list(PRIORS))
    spec = net_spec.analyse(reader.read_prototxt(prototxt), prototxt, require_detection=False)
    for name, out in zip(PRIORS, outputs):
        anchors, variances = spec.priors[name]
        # OpenCV (as Caffe) writes [xmin, ymin, xmax, ymax] then the variances; the project [ymin, xmin, ...].
        np.testing.assert_allclose(anchors, out[0, 0].reshape(-1, 4)[:, [1, 0, 3, 2]], atol=1e-6, err_msg=name)
        np.testing.assert_allclose(variances, out[0, 1].reshape(-1, 4), atol=1e-7, err_msg=name)


def test_prior_box_explicit_image_size():
    """img_h / img_w replace the data blob's size (Caffe's PriorBox; OpenCV ignores them, so NumPy here)."""
    b = caffe_writer.NetBuilder("priors", [1, 3, 30, 30])
    b.add("c", "Convolution", "data", convolution_param="num_output: 4 kernel_size: 3 stride: 10")
    b.add("p", "PriorBox", ["c", "data"], prior_box_param="min_size: 12 img_h: 40 img_w: 50")
    anchors, variances = net_spec.analyse(b.net, require_detection=False).priors["p"]
    cy, cx = np.meshgrid((np.arange(3) + 0.5) * 40 / 3, (np.arange(3) + 0.5) * 50 / 3, indexing="ij")
    cy, cx = cy.ravel(), cx.ravel()
    want = np.stack([(cy - 6) / 40, (cx - 6) / 50, (cy + 6) / 40, (cx + 6) / 50], axis=1)
    np.testing.assert_allclose(anchors, want, atol=1e-6)
    np.testing.assert_allclose(variances, 0.1)


@pytest.mark.parametrize("layer_type,params,message", [
    ("Pooling", "pool: STOCHASTIC kernel_size: 2", "only MAX and AVE"),
    ("BatchNorm", "use_global_stats: false", "use_global_stats false"),
    ("Scale", "axis: 2", "per-channel or scalar Scale"),
])
def test_unsupported_variants_are_errors(layer_type, params, message):
    b = caffe_writer.NetBuilder("bad", [1, 3, 8, 8])
    field = {"Pooling": "pooling_param", "BatchNorm": "batch_norm_param", "Scale": "scale_param"}[layer_type]
    b.add("odd", layer_type, "data", **{field: params})
    with pytest.raises(reader.CaffeModelError, match=message):
        net_spec.analyse(b.net, require_detection=False)
