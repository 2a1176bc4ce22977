"""The batch norm SSD networks (ResNet-50 v1, Inception-v2, SSDLite MobileNet-v2): shapes, anchors, end points,
variable names against the bases that tf_slim.nets builds itself, and MobileNet-v2's parameter count against
the paper's architecture table (Sandler et al. 2018, Table 2) and its published 3.4M."""
import numpy as np
import pytest
import tensorflow as tf
import tf_slim as slim
from tf_slim.nets import inception_v2, resnet_v1

from box_ops import anchors as anchors_lib
from nets import nets_factory, ssd_inception_v2, ssd_resnet_v1, ssdlite_mobilenet_v2

# name, input size, anchors (sum over layers of H * W * anchors per location, written out), feature maps
CASES = [
    ("ssd_300_resnet_v1_50", 300, 38 * 38 * 4 + 19 * 19 * 6 + 10 * 10 * 6 + 5 * 5 * 6 + 3 * 3 * 4 + 1 * 4,
     [38, 19, 10, 5, 3, 1]),
    ("ssd_300_inception_v2", 300, 19 * 19 * 3 + (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1) * 6, [19, 10, 5, 3, 2, 1]),
    ("ssdlite_320_mobilenet_v2", 320, 20 * 20 * 3 + (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1) * 6, [20, 10, 5, 3, 2, 1]),
]


def build(name, batch=2, is_training=False, params=None):
    fn = nets_factory.get_network_fn(name, 21, is_training=is_training, params=params)
    size = fn.default_image_size
    images = tf.compat.v1.placeholder(tf.float32, [batch, size, size, 3])
    return fn, fn(images)


def shapes_below(prefix):
    return {v.op.name[len(prefix) + 1:]: v.shape.as_list() for v in tf.compat.v1.global_variables()
            if v.op.name.startswith(prefix + "/")}


@pytest.mark.parametrize("name,size,num_anchors,feat", CASES)
def test_output_shapes_anchors_and_end_points(name, size, num_anchors, feat):
    with tf.Graph().as_default():
        fn, ((logits, locs), end_points) = build(name)
        assert fn.default_image_size == size
        assert anchors_lib.ssd_anchors(fn.params).shape == (num_anchors, 4)
        assert logits.shape.as_list() == [2, num_anchors, 21]
        assert locs.shape.as_list() == [2, num_anchors, 4]
        for layer, f in zip(fn.params.feat_layers, feat):
            assert end_points[layer].shape.as_list()[1:3] == [f, f], layer
        assert end_points["predictions"].shape.as_list() == [2, num_anchors, 21]
        # Inference mode: no moving-average update anywhere.
        assert tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS) == []


@pytest.mark.parametrize("name", [c[0] for c in CASES])
def test_training_mode_collects_one_update_per_moving_average(name):
    with tf.Graph().as_default():
        build(name, is_training=True)
        moving = [v for v in tf.compat.v1.global_variables() if "/BatchNorm/moving_" in v.op.name]
        assert moving and len(tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS)) == len(moving)
    with tf.Graph().as_default():
        fn = nets_factory.get_network_fn(name, 21, is_training=True, freeze_batch_norm=True)
        fn(tf.compat.v1.placeholder(tf.float32, [1, fn.default_image_size, fn.default_image_size, 3]))
        assert tf.compat.v1.get_collection(tf.compat.v1.GraphKeys.UPDATE_OPS) == []


def test_resnet_base_variables_are_tf_slims_resnet_v1_50():
    with tf.Graph().as_default():
        with slim.arg_scope(ssd_resnet_v1.ssd_resnet_arg_scope()):
            resnet_v1.resnet_v1_50(tf.compat.v1.placeholder(tf.float32, [1, 224, 224, 3]), num_classes=None,
                                   is_training=False, global_pool=False)
        reference = shapes_below("resnet_v1_50")
    with tf.Graph().as_default():
        build("ssd_300_resnet_v1_50")
        ours = shapes_below("ssd_300_resnet_v1_50")
    assert "block3/unit_6/bottleneck_v1/conv2/BatchNorm/moving_variance" in reference
    assert "conv1/BatchNorm/gamma" in reference and len(reference) == 265
    assert {k: v for k, v in ours.items() if k in reference} == reference
    extra = {k.split("/")[0] for k in ours if k not in reference}
    assert extra == {"block5", "block6", "block7"} | {f"block{i}_box" for i in range(2, 8)}


def test_inception_base_variables_are_tf_slims_inception_v2():
    with tf.Graph().as_default():
        with slim.arg_scope(ssd_inception_v2.ssd_inception_arg_scope()):
            inception_v2.inception_v2_base(tf.compat.v1.placeholder(tf.float32, [1, 224, 224, 3]),
                                           scope="InceptionV2")
        reference = shapes_below("InceptionV2")
    with tf.Graph().as_default():
        build("ssd_300_inception_v2")
        ours = shapes_below("ssd_300_inception_v2")
    assert "Mixed_5c/Branch_3/Conv2d_0b_1x1/BatchNorm/moving_mean" in reference
    assert "Conv2d_1a_7x7/depthwise_weights" in reference
    assert not [k for k in reference if k.endswith("/gamma")]  # inception_v2's batch norm has no scale
    assert {k: v for k, v in ours.items() if k in reference} == reference
    extra = {k.split("/")[0] for k in ours if k not in reference}
    assert all(e.startswith("Mixed_5c_") or e.endswith("_box") for e in extra), extra


def mobilenet_v2_reference_count():
    """Trainable parameters of MobileNetV2 1.0 up to its 1x1 conv to 1280 channels, from the paper's Table 2:
    each convolution's kernel plus batch norm's gamma and beta per output channel; no biases."""
    table = [(1, 16, 1), (6, 24, 2), (6, 32, 3), (6, 64, 4), (6, 96, 3), (6, 160, 3), (6, 320, 1)]  # t, c, n
    count, c = 3 * 3 * 3 * 32 + 2 * 32, 32
    for t, out, n in table:
        for _ in range(n):
            e = c * t
            if t != 1:
                count += c * e + 2 * e      # expansion 1x1
            count += 9 * e + 2 * e          # depthwise 3x3
            count += e * out + 2 * out      # linear projection 1x1
            c = out
    return count + c * 1280 + 2 * 1280


def test_mobilenet_v2_names_and_parameter_count():
    with tf.Graph().as_default():
        build("ssdlite_320_mobilenet_v2", batch=1)
        ours = shapes_below("ssdlite_320_mobilenet_v2")
        trainable = {v.op.name for v in tf.compat.v1.trainable_variables()}
    base = {k: v for k, v in ours.items() if k.split("/")[0] in
            {"Conv", "Conv_1", "expanded_conv"} | {f"expanded_conv_{i}" for i in range(1, 17)}}
    # TF-Slim's mobilenet_v2 names (nets/mobilenet/conv_blocks.py expanded_conv).
    assert base["Conv/weights"] == [3, 3, 3, 32]
    assert "expanded_conv/expand/weights" not in base  # t = 1: no expansion
    assert base["expanded_conv/depthwise/depthwise_weights"] == [3, 3, 32, 1]
    assert base["expanded_conv/project/weights"] == [1, 1, 32, 16]
    assert base["expanded_conv_13/expand/weights"] == [1, 1, 96, 576]
    assert base["expanded_conv_16/project/BatchNorm/moving_mean"] == [320]
    assert base["Conv_1/weights"] == [1, 1, 320, 1280]
    counted = sum(int(np.prod(s)) for k, s in base.items() if "ssdlite_320_mobilenet_v2/" + k in trainable)
    assert counted == mobilenet_v2_reference_count()
    # The published 3.4M (paper, TF-Slim) counts the ImageNet classifier too: 1280 x 1001 + 1001 (TF-Slim's
    # 1001 classes), which the paper rounds down (3.51M).
    with_classifier = counted + 1280 * 1001 + 1001
    assert abs(with_classifier - 3.4e6) / 3.4e6 < 0.035


def test_mobilenet_depth_multiplier_follows_tf_slims_rounding():
    params = ssdlite_mobilenet_v2.SSDLITE320_PARAMS.replace(depth_multiplier=0.35)
    with tf.Graph().as_default():
        build("ssdlite_320_mobilenet_v2", batch=1, params=params)
        ours = shapes_below("ssdlite_320_mobilenet_v2")
    # 32 * 0.35 = 11.2 -> 16 (multiple of 8, not below 90%); 16 * 0.35 -> 8; 1280 * 0.35 = 448.
    assert ours["Conv/weights"] == [3, 3, 3, 16]
    assert ours["expanded_conv/project/weights"] == [1, 1, 16, 8]
    assert ours["Conv_1/weights"][-1] == 448
    assert ours["layer_19_2_Conv2d_2_3x3_s2_512/weights"][-1] == int(512 * 0.35)
    assert ssdlite_mobilenet_v2.make_divisible(11.2) == 16 and ssdlite_mobilenet_v2.make_divisible(20) == 24


def test_preprocessing_range_is_chosen_by_the_model(monkeypatch):
    """VGG mean subtraction for ResNet (TF-Slim's vgg_preprocessing), [-1, 1] for Inception and MobileNet."""
    assert nets_factory.default_config("ssd_300_resnet_v1_50")["mean_rgb"] == list(nets_factory.VGG_MEAN_RGB)
    for name in ("ssd_300_inception_v2", "ssdlite_320_mobilenet_v2"):
        config = nets_factory.default_config(name)
        model = nets_factory.build_model(config)
        assert config["mean_rgb"] == [127.5] * 3
        seen = {}

        def network(images, **kwargs):
            seen["images"] = images
            return (None, None), {}

        monkeypatch.setitem(nets_factory.networks_map, name, network)
        with tf.Graph().as_default():
            pixels = tf.constant([[[[0.0, 127.5, 255.0]]]]) - tf.constant(model.mean_rgb)  # the pre-processing
            nets_factory.get_network_fn(name, 21, params=model.params)(pixels)
            with tf.compat.v1.Session() as sess:
                np.testing.assert_allclose(sess.run(seen["images"]).ravel(), [-1.0, 0.0, 1.0])


@pytest.mark.parametrize("params,size", [(ssdlite_mobilenet_v2.SSDLITE320_PARAMS, 320),
                                         (ssd_inception_v2.SSD300_INCEPTION_PARAMS, 300)])
def test_anchor_sizes_are_the_od_apis_scales(params, size):
    """TF OD API ssd_anchor_generator: s_k = 0.2 + 0.75 k / 5, the extra square sqrt(s_k s_k+1) with s_6 = 1."""
    scales = [0.2, 0.35, 0.5, 0.65, 0.8, 0.95, 1.0]
    np.testing.assert_allclose([m[0] for m in params.anchor_min_sizes], np.array(scales[:6]) * size)
    assert params.anchor_max_sizes[0] == ()  # 3 anchors on the first layer
    np.testing.assert_allclose([m[0] for m in params.anchor_max_sizes[1:]], np.array(scales[2:]) * size)
    centres = anchors_lib.ssd_anchors(params)[:, 1::2].mean(axis=1)  # x centres
    n = params.feat_shapes[0][1]
    np.testing.assert_allclose(np.unique(np.round(centres[:n * n * 3], 6))[:3], (np.arange(3) + 0.5) / n, atol=1e-6)
