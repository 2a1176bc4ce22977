"""Network shapes, variable names, parameter counts, and that one gradient step lowers the loss."""
import numpy as np
import pytest
import tensorflow as tf

from box_ops import anchors as anchors_lib
from box_ops import box_coding, ssd_losses
from nets import nets_factory


def build(name, batch=1):
    fn = nets_factory.get_network_fn(name, 21)
    size = fn.default_image_size
    images = tf.compat.v1.placeholder(tf.float32, [batch, size, size, 3])
    return fn, images, fn(images)


@pytest.mark.parametrize("name,size,num_anchors,feat", [
    ("ssd_300_vgg", 300, 8732, [38, 19, 10, 5, 3, 1]),
    ("ssd_300_vgg_lite", 300, 8732, [38, 19, 10, 5, 3, 1]),
    ("ssd_512_vgg", 512, 24564, [64, 32, 16, 8, 4, 2, 1]),
    ("ssd_300_vgg_coco", 300, 8732, [38, 19, 10, 5, 3, 1]),
])
def test_output_shapes_and_end_points(name, size, num_anchors, feat):
    with tf.Graph().as_default():
        fn, _, ((logits, locs), end_points) = build(name, batch=2)
        assert fn.default_image_size == size
        assert logits.shape.as_list() == [2, num_anchors, 21]
        assert locs.shape.as_list() == [2, num_anchors, 4]
        for layer, f in zip(fn.params.feat_layers, feat):
            assert end_points[layer].shape.as_list()[1:3] == [f, f]
        assert anchors_lib.ssd_anchors(fn.params).shape == (num_anchors, 4)
        assert end_points["predictions"].shape.as_list() == [2, num_anchors, 21]


def test_ssd_300_vgg_parameter_count_and_names():
    with tf.Graph().as_default():
        build("ssd_300_vgg")
        variables = {v.op.name: v.shape.as_list() for v in tf.compat.v1.trainable_variables()}
    # The Caffe VGG_VOC0712_SSD_300x300 model has 26,285,486 parameters for 21 classes.
    assert sum(int(np.prod(s)) for s in variables.values()) == 26285486
    # TF-Slim names, so that vgg_16 checkpoints map by scope.
    assert variables["ssd_300_vgg/conv1/conv1_1/weights"] == [3, 3, 3, 64]
    assert variables["ssd_300_vgg/conv5/conv5_3/biases"] == [512]
    assert variables["ssd_300_vgg/conv6/weights"] == [3, 3, 512, 1024]
    assert variables["ssd_300_vgg/conv7/weights"] == [1, 1, 1024, 1024]
    assert variables["ssd_300_vgg/block8/conv3x3/weights"] == [3, 3, 256, 512]
    assert variables["ssd_300_vgg/block11/conv3x3/weights"] == [3, 3, 128, 256]
    assert variables["ssd_300_vgg/block4_box/L2Normalization/gamma"] == [512]
    assert variables["ssd_300_vgg/block4_box/conv_loc/weights"] == [3, 3, 512, 16]
    assert variables["ssd_300_vgg/block7_box/conv_cls/weights"] == [3, 3, 1024, 6 * 21]


def test_lite_divides_hidden_channels_by_8_and_keeps_heads():
    with tf.Graph().as_default():
        build("ssd_300_vgg")
        full = {v.op.name.split("/", 1)[1]: v.shape.as_list() for v in tf.compat.v1.trainable_variables()}
    with tf.Graph().as_default():
        build("ssd_300_vgg_lite")
        lite = {v.op.name.split("/", 1)[1]: v.shape.as_list() for v in tf.compat.v1.trainable_variables()}
    assert full.keys() == lite.keys()
    for name, shape in full.items():
        if name.endswith("weights"):
            in_c = shape[2] if name.startswith("conv1/conv1_1") else shape[2] // 8
            out_c = shape[3] if ("conv_loc" in name or "conv_cls" in name) else shape[3] // 8
            assert lite[name] == shape[:2] + [in_c, out_c], name
        elif name.endswith("gamma"):
            assert lite[name] == [shape[0] // 8]


def test_l2_normalisation_scale_initialised_to_20():
    with tf.Graph().as_default():
        build("ssd_300_vgg_lite")
        gamma = [v for v in tf.compat.v1.global_variables() if v.op.name.endswith("gamma")][0]
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            assert np.all(sess.run(gamma) == 20.0)


def test_unknown_network_name():
    with pytest.raises(ValueError, match="unknown"):
        nets_factory.get_network_fn("ssd_1000_vgg", 21)


def test_one_gradient_step_lowers_the_loss_on_lite():
    rng = np.random.default_rng(0)
    with tf.Graph().as_default():
        tf.compat.v1.set_random_seed(0)
        fn = nets_factory.get_network_fn("ssd_300_vgg_lite", 4)
        anchors = anchors_lib.ssd_anchors(fn.params)
        images = tf.constant(rng.normal(0, 50, (2, 300, 300, 3)).astype(np.float32))
        targets = [box_coding.encode_targets(tf.constant(lab), tf.constant(box), anchors, (0.1, 0.1, 0.2, 0.2))
                   for lab, box in (([1, 3], [[0.1, 0.1, 0.5, 0.4], [0.5, 0.6, 0.9, 0.95]]),
                                    ([2], [[0.2, 0.3, 0.8, 0.7]]))]
        gclasses = tf.stack([t[0] for t in targets])
        glocs = tf.stack([t[1] for t in targets])
        (logits, locs), _ = fn(images)
        loss = ssd_losses.ssd_losses(logits, locs, gclasses, glocs)["total_loss"]
        step = tf.compat.v1.train.GradientDescentOptimizer(1e-3).minimize(loss)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            before = sess.run(loss)
            sess.run(step)
            after = sess.run(loss)
    assert np.isfinite(before) and after < before


@pytest.mark.parametrize("name,voc_name,size", [("ssd_300_vgg_coco", "ssd_300_vgg", 300),
                                                ("ssd_512_vgg_coco", "ssd_512_vgg", 512)])
def test_coco_models_are_the_voc_networks_with_81_classes(name, voc_name, size):
    """The COCO models: 81 classes by default, the same variables under the same scope as the VOC network
    (so a COCO checkpoint initialises a VOC model), only the anchor sizes differ."""
    assert nets_factory.get_params(name).num_classes == 81
    shapes = {}
    for model in (name, voc_name):
        with tf.Graph().as_default():
            fn = nets_factory.get_network_fn(model, 81)
            fn(tf.compat.v1.placeholder(tf.float32, [1, size, size, 3]))
            shapes[model] = {v.op.name: v.shape.as_list() for v in tf.compat.v1.global_variables()}
    assert shapes[name] == shapes[voc_name]
    assert shapes[name][f"{voc_name}/block7_box/conv_cls/weights"] == [3, 3, 1024, 6 * 81]
    coco, voc = nets_factory.get_params(name), nets_factory.get_params(voc_name)
    assert coco.anchor_min_sizes != voc.anchor_min_sizes
    assert coco.replace(anchor_min_sizes=voc.anchor_min_sizes, anchor_max_sizes=voc.anchor_max_sizes,
                        num_classes=21) == voc
