"""SSD-300 with a VGG-16 base (Liu et al., ECCV 2016), as the Caffe SSD's VGG_VOC0712_SSD_300x300.

    conv1..conv5 (VGG-16, pool5 3x3/s1) -> conv6 (Caffe fc6: 3x3, 1024, dilation 6) -> conv7 (fc7: 1x1, 1024)
    -> block8 (conv6_1 1x1 256, conv6_2 3x3/s2 512) -> block9 (conv7_1 128, conv7_2 3x3/s2 256)
    -> block10 (conv8_1 128, conv8_2 3x3 valid 256) -> block11 (conv9_1 128, conv9_2 3x3 valid 256)

Heads on block4 (conv4_3, L2-normalised with a learned per-channel scale initialised to 20), block7,
block8, block9, block10, block11: a 3x3 conv for the [dx, dy, dw, dh] offsets and one for the class scores
of each anchor. Feature maps 38, 19, 10, 5, 3, 1; 8,732 anchors. The SSD-512 network (ssd_vgg_512.py)
reuses `ssd_vgg` with its own extra blocks and parameters.

Padding follows Caffe: stride-2 and pad-0 convolutions pad explicitly and symmetrically (TF's 'SAME' would
pad a 3x3/s2 conv on an even map only at the end); 2x2/s2 max pooling with 'SAME' equals Caffe's ceil mode.
"""
import tensorflow as tf
import tf_slim as slim

from box_ops import anchors as anchors_lib
from nets.ssd_params import SSDParams

# The ImageNet mean of Caffe's VGG-16 (its mean_value 104, 117, 123 in BGR order), which every VGG SSD subtracts.
VGG_MEAN_RGB = (123.0, 117.0, 104.0)

SSD300_PARAMS = SSDParams(
    img_shape=(300, 300),
    num_classes=21,
    feat_layers=("block4", "block7", "block8", "block9", "block10", "block11"),
    feat_shapes=((38, 38), (19, 19), (10, 10), (5, 5), (3, 3), (1, 1)),
    anchor_min_sizes=((30.0,), (60.0,), (111.0,), (162.0,), (213.0,), (264.0,)),
    anchor_max_sizes=((60.0,), (111.0,), (162.0,), (213.0,), (264.0,), (315.0,)),
    anchor_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
    anchor_steps=(8, 16, 32, 64, 100, 300),
    anchor_offset=0.5,
    anchor_flip=True,
    anchor_clip=False,
    normalizations=(20, -1, -1, -1, -1, -1),
    prior_variances=(0.1, 0.1, 0.2, 0.2),
)

# The extra feature blocks after conv7: (scope, 1x1 depth, depth, kernel, stride, pad) as Caffe's
# conv6_1/conv6_2 ... conv9_1/conv9_2.
EXTRA_BLOCKS_300 = (
    ("block8", 256, 512, 3, 2, 1),
    ("block9", 128, 256, 3, 2, 1),
    ("block10", 128, 256, 3, 1, 0),
    ("block11", 128, 256, 3, 1, 0),
)


def ssd_arg_scope(weight_decay=0.0005):
    """Xavier weights, zero biases, L2 decay on weights only (Caffe SSD: decay_mult 0 on biases)."""
    with slim.arg_scope([slim.conv2d],
                        activation_fn=tf.nn.relu,
                        weights_regularizer=slim.l2_regularizer(weight_decay) if weight_decay else None,
                        weights_initializer=tf.compat.v1.initializers.glorot_uniform(),
                        biases_initializer=tf.compat.v1.zeros_initializer(),
                        padding="SAME") as sc:
        return sc


def l2_normalization(inputs, scale_init, scope="L2Normalization"):
    """Caffe's Normalize (across_spatial false, channel_shared false): x / sqrt(sum_c x^2 + 1e-10) * gamma_c."""
    with tf.compat.v1.variable_scope(scope):
        channels = inputs.shape[-1]
        gamma = slim.model_variable("gamma", shape=[channels], dtype=inputs.dtype.base_dtype,
                                    initializer=tf.compat.v1.constant_initializer(scale_init))
        norm = tf.math.rsqrt(tf.reduce_sum(tf.square(inputs), axis=-1, keepdims=True) + 1e-10)
        return inputs * norm * gamma


def padded_conv(net, depth, kernel, stride, pad, scope, rate=1):
    """A Caffe convolution: symmetric explicit padding `pad`, then a VALID convolution."""
    if pad:
        net = tf.pad(net, [[0, 0], [pad, pad], [pad, pad], [0, 0]])
    return slim.conv2d(net, depth, [kernel, kernel], stride=stride, rate=rate, padding="VALID", scope=scope)


def multibox_head(net, num_classes, num_anchors, normalization, scope):
    """Offsets [B, H*W*A, 4] and class logits [B, H*W*A, C] of one feature layer, in anchor order."""
    with tf.compat.v1.variable_scope(scope):
        if normalization > 0:
            net = l2_normalization(net, normalization)
        batch = tf.shape(net)[0]
        loc = slim.conv2d(net, num_anchors * 4, [3, 3], activation_fn=None, scope="conv_loc")
        cls = slim.conv2d(net, num_anchors * num_classes, [3, 3], activation_fn=None, scope="conv_cls")
        return tf.reshape(loc, [batch, -1, 4]), tf.reshape(cls, [batch, -1, num_classes])


def ssd_vgg(inputs, params, extra_blocks, is_training=False, reuse=None, scope="ssd_300_vgg"):
    """The VGG-16 SSD graph shared by SSD-300 and SSD-512.

    Args:
      inputs: float32 [B, H, W, 3], RGB, mean-subtracted. params: SSDParams. extra_blocks: see EXTRA_BLOCKS_300.
    Returns:
      ((logits [B, N, num_classes], localisations [B, N, 4]), end_points), N = number of anchors.
    """
    del is_training  # no dropout or batch norm in SSD; kept for the TF-Slim network signature.
    div = params.channel_divisor

    def depth(d):
        return max(1, d // div)

    end_points = {}
    with tf.compat.v1.variable_scope(scope, "ssd_vgg", [inputs], reuse=reuse):
        net = slim.repeat(inputs, 2, slim.conv2d, depth(64), [3, 3], scope="conv1")
        end_points["block1"] = net
        net = slim.max_pool2d(net, [2, 2], padding="SAME", scope="pool1")
        net = slim.repeat(net, 2, slim.conv2d, depth(128), [3, 3], scope="conv2")
        end_points["block2"] = net
        net = slim.max_pool2d(net, [2, 2], padding="SAME", scope="pool2")
        net = slim.repeat(net, 3, slim.conv2d, depth(256), [3, 3], scope="conv3")
        end_points["block3"] = net
        net = slim.max_pool2d(net, [2, 2], padding="SAME", scope="pool3")
        net = slim.repeat(net, 3, slim.conv2d, depth(512), [3, 3], scope="conv4")
        end_points["block4"] = net
        net = slim.max_pool2d(net, [2, 2], padding="SAME", scope="pool4")
        net = slim.repeat(net, 3, slim.conv2d, depth(512), [3, 3], scope="conv5")
        end_points["block5"] = net
        net = slim.max_pool2d(net, [3, 3], stride=1, padding="SAME", scope="pool5")
        net = slim.conv2d(net, depth(1024), [3, 3], rate=6, scope="conv6")  # fc6, 'SAME' = pad 6 both sides
        end_points["block6"] = net
        net = slim.conv2d(net, depth(1024), [1, 1], scope="conv7")  # fc7
        end_points["block7"] = net
        for name, d1, d2, kernel, stride, pad in extra_blocks:
            with tf.compat.v1.variable_scope(name):
                net = slim.conv2d(net, depth(d1), [1, 1], scope="conv1x1")
                net = padded_conv(net, depth(d2), kernel, stride, pad, scope="conv3x3")
            end_points[name] = net

        return multibox_layers(end_points, params)


def multibox_layers(end_points, params, head_fn=multibox_head):
    """The heads on params.feat_layers, concatenated in anchor order; adds logits, localisations and
    predictions to end_points. head_fn(net, num_classes, num_anchors, normalization, scope) -> (loc, cls).

    Returns ((logits [B, N, num_classes], localisations [B, N, 4]), end_points). Call it inside the
    network's variable scope; heads are scoped `<layer>_box` ('/' in a layer name becomes '_').
    """
    num_anchors = anchors_lib.layer_num_anchors(params)
    locs, logits = [], []
    for i, layer in enumerate(params.feat_layers):
        feat = end_points[layer]
        expected = tuple(params.feat_shapes[i])
        if feat.shape[1] is not None and tuple(feat.shape[1:3]) != expected:
            raise ValueError(f"{layer} is {tuple(feat.shape[1:3])}, params say {expected}")
        loc, cls = head_fn(feat, params.num_classes, num_anchors[i], params.normalizations[i],
                           scope=layer.replace("/", "_") + "_box")
        locs.append(loc)
        logits.append(cls)
    logits = tf.concat(logits, axis=1, name="logits")
    localisations = tf.concat(locs, axis=1, name="localisations")
    end_points["logits"] = logits
    end_points["localisations"] = localisations
    end_points["predictions"] = tf.nn.softmax(logits)
    return (logits, localisations), end_points


def ssd_300_vgg(inputs, num_classes=21, is_training=False, params=None, reuse=None, scope="ssd_300_vgg"):
    params = (params or SSD300_PARAMS).replace(num_classes=num_classes)
    return ssd_vgg(inputs, params, EXTRA_BLOCKS_300, is_training=is_training, reuse=reuse, scope=scope)


ssd_300_vgg.default_image_size = 300
ssd_300_vgg.default_params = SSD300_PARAMS

SSD300_LITE_PARAMS = SSD300_PARAMS.replace(channel_divisor=8)


def ssd_300_vgg_lite(inputs, num_classes=21, is_training=False, params=None, reuse=None,
                     scope="ssd_300_vgg_lite"):
    """ssd_300_vgg with every hidden layer's channels divided by 8: same topology, anchors and heads."""
    params = (params or SSD300_LITE_PARAMS).replace(num_classes=num_classes)
    return ssd_vgg(inputs, params, EXTRA_BLOCKS_300, is_training=is_training, reuse=reuse, scope=scope)


ssd_300_vgg_lite.default_image_size = 300
ssd_300_vgg_lite.default_params = SSD300_LITE_PARAMS

# The Caffe COCO model VGG_coco_SSD_300x300 (weiliu89/caffe, branch ssd, examples/ssd/ssd_coco.py): 81
# classes; PriorBox sizes from min_ratio 15, max_ratio 90 (step floor(75 / 4) = 18: 15, 33, 51, 69, 87 % of
# 300) plus 7% / 15% for conv4_3; ratios, steps, offset, variances and normalisations as the VOC model.
SSD300_COCO_PARAMS = SSD300_PARAMS.replace(
    num_classes=81,
    anchor_min_sizes=((21.0,), (45.0,), (99.0,), (153.0,), (207.0,), (261.0,)),
    anchor_max_sizes=((45.0,), (99.0,), (153.0,), (207.0,), (261.0,), (315.0,)),
)


def ssd_300_vgg_coco(inputs, num_classes=81, is_training=False, params=None, reuse=None, scope="ssd_300_vgg"):
    """ssd_300_vgg with the Caffe COCO model's anchors and 81 classes. Same variables, same scope: a COCO
    checkpoint initialises a VOC ssd_300_vgg (COCO -> VOC fine-tuning, training/checkpoint_init.py)."""
    return ssd_300_vgg(inputs, num_classes, is_training, params or SSD300_COCO_PARAMS, reuse, scope)


ssd_300_vgg_coco.default_image_size = 300
ssd_300_vgg_coco.default_params = SSD300_COCO_PARAMS
