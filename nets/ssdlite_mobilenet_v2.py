"""SSDLite-320 with a MobileNet-v2 base (Sandler et al., CVPR 2018, section 6.2; TF OD API's
ssdlite_mobilenet_v2), warm-startable from TF-Slim's MobileNet-v2 ImageNet checkpoints.

Base, TF-Slim's nets/mobilenet/mobilenet_v2.py (V2_DEF) with its variable names, every convolution followed by
batch norm (nets/batch_norm.py) and ReLU6 except the linear projections:

    Conv (3x3/s2, 32) -> expanded_conv (t=1, 16) -> expanded_conv_1..16, each an inverted residual
    expand (1x1, t=6) -> depthwise (3x3) -> project (1x1, linear) [+ input when stride 1 and same depth]:
    24 (s2), 24, 32 (s2), 32, 32, 64 (s2), 64, 64, 64, 96, 96, 96, 160 (s2), 160, 160, 320 -> Conv_1 (1x1, 1280)

`layer_i` is the i-th of these 19 layers, as TF-Slim's end points. Feature maps, as the OD API's
feature_map_layout: layer_15/expansion_output (expanded_conv_13's 576-channel expansion, stride 16, 20x20),
layer_19 (Conv_1, 10x10) and four extra layers, each a 1x1 conv to half the depth then a depthwise-separable
3x3/s2 conv to 512, 256, 256, 128 (5x5, 3x3, 2x2, 1x1; 'SAME' padding as TensorFlow's). SSDLite heads: a
depthwise 3x3 conv (batch norm, ReLU6) and a 1x1 conv for the offsets, the same for the class scores.

Channels: d * depth_multiplier rounded to a multiple of 8 (at least 8), TF-Slim's rule, the expansions
t * (input channels) likewise; extra layers max(int(d * depth_multiplier), 16), the OD API's min_depth.
Inputs are scaled to [-1, 1] as TF-Slim's ImageNet training did: mean 127.5 subtracted by the
pre-processing, times input_scale 1 / 127.5 by the network.
"""
import tensorflow as tf
import tf_slim as slim

from box_ops import anchors as anchors_lib
from nets import feature_maps
from nets.batch_norm import batch_norm, batch_norm_mode
from nets.ssd_params import SSDParams
from nets.ssd_vgg_300 import multibox_layers

# TF-Slim's V2_DEF after the first Conv: (expansion factor t, output channels, stride) per expanded_conv.
INVERTED_RESIDUALS = ((1, 16, 1), (6, 24, 2), (6, 24, 1), (6, 32, 2), (6, 32, 1), (6, 32, 1), (6, 64, 2),
                      (6, 64, 1), (6, 64, 1), (6, 64, 1), (6, 96, 1), (6, 96, 1), (6, 96, 1), (6, 160, 2),
                      (6, 160, 1), (6, 160, 1), (6, 320, 1))
EXTRA_DEPTHS = (512, 256, 256, 128)
BATCH_NORM_DECAY = 0.997     # TF-Slim's mobilenet training_scope
BATCH_NORM_EPSILON = 0.001

_SIZES = anchors_lib.linear_scale_sizes(320, 6)
# Anchors: the OD API's ssd_anchor_generator (scales 0.2 ... 0.95 linear over 6 layers, aspect ratios
# 1, 2, 1/2, 3, 1/3 plus the sqrt(s_k s_k+1) square) written as Caffe PriorBoxes: min_size s_k * 320,
# max_size s_k+1 * 320, ratios (2, 3) flipped: 6 per location. On the first layer the OD API's
# reduce_boxes_in_lowest_layer keeps 3 (a 0.1 square, 0.2 at ratios 2 and 1/2); here min_size 0.2 * 320
# with ratio 2 flipped and no max_size, 3 per location as well (the square is 64 px, not 32).
SSDLITE320_PARAMS = SSDParams(
    img_shape=(320, 320),
    num_classes=21,
    feat_layers=("layer_15/expansion_output", "layer_19", "layer_19_2_Conv2d_2_3x3_s2_512",
                 "layer_19_2_Conv2d_3_3x3_s2_256", "layer_19_2_Conv2d_4_3x3_s2_256",
                 "layer_19_2_Conv2d_5_3x3_s2_128"),
    feat_shapes=((20, 20), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
    anchor_min_sizes=_SIZES[0],
    anchor_max_sizes=((),) + _SIZES[1][1:],
    anchor_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0)),
    anchor_steps=(16, 32, 64, 320 / 3, 160, 320),  # 320 / feature size: the OD API's centres (i + 0.5) / n
    anchor_offset=0.5,
    anchor_flip=True,
    anchor_clip=False,
    normalizations=(-1, -1, -1, -1, -1, -1),
    prior_variances=(0.1, 0.1, 0.2, 0.2),   # the OD API's box coder scales 10, 10, 5, 5
    depth_multiplier=1.0,
    input_scale=1.0 / 127.5,
)
INCEPTION_MEAN_RGB = (127.5, 127.5, 127.5)


def make_divisible(value, divisor=8, min_value=None):
    """TF-Slim's mobilenet._make_divisible: the nearest multiple of divisor, at least min_value, and not
    below 90% of value."""
    min_value = min_value or divisor
    new = max(min_value, int(value + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * value else new


def ssdlite_arg_scope(weight_decay=0.00004):
    """TF-Slim's mobilenet training_scope: truncated-normal weights (stddev 0.09), batch norm after every
    convolution, ReLU6, 'SAME' padding; weight decay on the convolutions, not on the depthwise kernels."""
    regularizer = slim.l2_regularizer(weight_decay) if weight_decay else None
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_initializer=tf.compat.v1.truncated_normal_initializer(stddev=0.09),
                        normalizer_fn=batch_norm, activation_fn=tf.nn.relu6, padding="SAME"), \
            slim.arg_scope([batch_norm], decay=BATCH_NORM_DECAY, epsilon=BATCH_NORM_EPSILON, center=True,
                           scale=True), \
            slim.arg_scope([slim.conv2d], weights_regularizer=regularizer), \
            slim.arg_scope([slim.separable_conv2d], weights_regularizer=None) as sc:
        return sc


def expanded_conv(net, expansion, depth, stride, scope):
    """TF-Slim's conv_blocks.expanded_conv: expand (1x1, skipped when it would not widen) -> depthwise
    3x3 -> project (1x1, linear), plus the input when the shapes allow. Returns (output, end points)."""
    points = {}
    with tf.compat.v1.variable_scope(scope):
        inputs = net
        if expansion > net.shape[-1]:
            net = slim.conv2d(net, expansion, [1, 1], scope="expand")
            points["expansion_output"] = net
        net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=stride, scope="depthwise")
        points["depthwise_output"] = net
        net = slim.conv2d(net, depth, [1, 1], activation_fn=None, scope="project")
        points["projection_output"] = net
        if stride == 1 and depth == inputs.shape[-1]:
            net = net + inputs
    return net, points


def mobilenet_v2_base(inputs, depth_multiplier=1.0):
    """TF-Slim's mobilenet_v2.mobilenet_base up to layer_19 (Conv_1), in the current variable scope (TF-Slim
    builds it in MobilenetV2: --checkpoint_model_scope=MobilenetV2). Returns (net, end_points)."""
    if depth_multiplier <= 0:
        raise ValueError(f"depth_multiplier must be > 0, got {depth_multiplier}")

    def depth(d):
        return make_divisible(d * depth_multiplier)

    end_points = {}
    net = slim.conv2d(inputs, depth(32), [3, 3], stride=2, scope="Conv")
    end_points["layer_1"] = net
    for i, (t, d, stride) in enumerate(INVERTED_RESIDUALS):
        # The first block keeps its 32 channels (expand_input_by_factor(1, divisible_by=1)).
        expansion = net.shape[-1] * t if t == 1 else make_divisible(net.shape[-1] * t)
        name = "expanded_conv" if i == 0 else f"expanded_conv_{i}"
        net, points = expanded_conv(net, expansion, depth(d), stride, scope=name)
        end_points[f"layer_{i + 2}"] = net
        end_points.update({f"layer_{i + 2}/{k}": v for k, v in points.items()})
    net = slim.conv2d(net, depth(1280), [1, 1], scope="Conv_1")
    end_points[f"layer_{len(INVERTED_RESIDUALS) + 2}"] = net
    return net, end_points


def ssdlite_head(net, num_classes, num_anchors, normalization, scope):
    """SSDLite box predictor: for offsets and for class scores, a depthwise 3x3 conv (batch norm, ReLU6)
    then a 1x1 conv with biases. Returns (offsets [B, H*W*A, 4], logits [B, H*W*A, C])."""
    del normalization  # batch norm bases need no L2 normalisation
    with tf.compat.v1.variable_scope(scope):
        batch = tf.shape(net)[0]
        outputs = []
        for name, size in (("conv_loc", 4), ("conv_cls", num_classes)):
            x = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, scope=name + "_depthwise")
            x = slim.conv2d(x, num_anchors * size, [1, 1], activation_fn=None, normalizer_fn=None,
                            biases_initializer=tf.compat.v1.zeros_initializer(), scope=name)
            outputs.append(tf.reshape(x, [batch, -1, size]))
        return tuple(outputs)


def ssdlite_mobilenet_v2(inputs, num_classes=21, is_training=False, params=None, reuse=None,
                         scope="ssdlite_320_mobilenet_v2"):
    """SSDLite on MobileNet-v2. inputs: float32 [B, 320, 320, 3] in [-1, 1] (see get_network_fn).

    is_training: batch norm mode. Returns ((logits [B, N, C], localisations [B, N, 4]), end_points).
    """
    params = (params or SSDLITE320_PARAMS).replace(num_classes=num_classes)
    multiplier = params.depth_multiplier
    with tf.compat.v1.variable_scope(scope, "ssdlite_mobilenet_v2", [inputs], reuse=reuse), \
            slim.arg_scope([batch_norm], **batch_norm_mode(params, is_training)):
        net, end_points = mobilenet_v2_base(inputs, multiplier)
        feature_maps.multi_resolution_feature_maps(net, "layer_19", EXTRA_DEPTHS, end_points, use_depthwise=True,
                                                   depth_multiplier=multiplier)
        return multibox_layers(end_points, params, head_fn=ssdlite_head)


def ssdlite_320_mobilenet_v2(inputs, num_classes=21, is_training=False, params=None, reuse=None,
                             scope="ssdlite_320_mobilenet_v2"):
    return ssdlite_mobilenet_v2(inputs, num_classes, is_training, params, reuse, scope)


ssdlite_320_mobilenet_v2.default_image_size = 320
ssdlite_320_mobilenet_v2.default_params = SSDLITE320_PARAMS
ssdlite_320_mobilenet_v2.mean_rgb = INCEPTION_MEAN_RGB
