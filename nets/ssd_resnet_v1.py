"""SSD-300 with a ResNet-50 v1 base (He et al., 2016), as DSSD's SSD-ResNet baseline (Fu et al., 2017):
heads on the conv3_x, conv4_x and conv5_x stages plus extra layers, warm-startable from TF-Slim's
`resnet_v1_50.ckpt` (`--checkpoint_model_scope=resnet_v1_50`).

The base is `tf_slim.nets.resnet_v1.resnet_v1` itself with resnet_v1_50's blocks, built in the SSD's scope
with batch norm from nets/batch_norm.py, so its variables are TF-Slim's under another top scope
(`ssd_300_resnet_v1_50/block1/unit_1/bottleneck_v1/conv1/BatchNorm/gamma`). TF-Slim puts a block's stride in
its LAST unit, so a stage's features at their own resolution are those of the unit before it:

    block2 = block2/unit_3 (conv3_x, stride 8, 38x38, 512)    block3 = block3/unit_5 (conv4_x, 19x19, 1024)
    block4 = the base's output (conv5_x, stride 32, 10x10, 2048)
    -> block5 (1x1 256, 3x3/s2 pad 1 512: 5x5) -> block6 (1x1 128, 3x3/s2 pad 1 256: 3x3)
    -> block7 (1x1 128, 3x3 valid 256: 1x1)

SSD-300's anchors (the Caffe VOC model's sizes and ratios, 8,732) and its 3x3 multibox heads, without the
L2 normalisation (batch norm keeps the scales comparable). Extra layers have batch norm and ReLU. Inputs
are mean-subtracted RGB, as TF-Slim's vgg_preprocessing trained resnet_v1_50.
"""
import tensorflow as tf
import tf_slim as slim
from tf_slim.nets import resnet_v1

from nets.batch_norm import batch_norm, batch_norm_mode
from nets.ssd_vgg_300 import SSD300_PARAMS, multibox_layers, padded_conv

SSD300_RESNET_PARAMS = SSD300_PARAMS.replace(
    feat_layers=("block2", "block3", "block4", "block5", "block6", "block7"),
    normalizations=(-1, -1, -1, -1, -1, -1),
)
# (scope, 1x1 depth, depth, kernel, stride, pad), as ssd_vgg_300.EXTRA_BLOCKS_300 from a 10x10 map.
EXTRA_BLOCKS = (
    ("block5", 256, 512, 3, 2, 1),
    ("block6", 128, 256, 3, 2, 1),
    ("block7", 128, 256, 3, 1, 0),
)
# End points (below the network scope) of the stages' full-resolution features.
STAGE_END_POINTS = {"block2": "block2/unit_3/bottleneck_v1", "block3": "block3/unit_5/bottleneck_v1"}
BATCH_NORM_DECAY = 0.997     # tf_slim resnet_utils.resnet_arg_scope
BATCH_NORM_EPSILON = 1e-5


def ssd_resnet_arg_scope(weight_decay=0.0001):
    """TF-Slim's resnet_arg_scope (He-normal weights, batch norm with scale, ReLU) with nets/batch_norm.py."""
    with slim.arg_scope([slim.conv2d],
                        weights_regularizer=slim.l2_regularizer(weight_decay) if weight_decay else None,
                        weights_initializer=slim.variance_scaling_initializer(),
                        activation_fn=tf.nn.relu, normalizer_fn=batch_norm, padding="SAME"), \
            slim.arg_scope([batch_norm], decay=BATCH_NORM_DECAY, epsilon=BATCH_NORM_EPSILON, scale=True), \
            slim.arg_scope([slim.max_pool2d], padding="SAME") as sc:
        return sc


def resnet_v1_50_blocks():
    """tf_slim's resnet_v1_50 blocks (3, 4, 6, 3 bottleneck units; stride 2 in the last unit of 1-3)."""
    block = resnet_v1.resnet_v1_block
    return [block("block1", base_depth=64, num_units=3, stride=2),
            block("block2", base_depth=128, num_units=4, stride=2),
            block("block3", base_depth=256, num_units=6, stride=2),
            block("block4", base_depth=512, num_units=3, stride=1)]


def ssd_300_resnet_v1_50(inputs, num_classes=21, is_training=False, params=None, reuse=None,
                         scope="ssd_300_resnet_v1_50"):
    """inputs: float32 [B, 300, 300, 3] mean-subtracted RGB. is_training: batch norm mode.

    Returns ((logits [B, 8732, C], localisations [B, 8732, 4]), end_points).
    """
    params = (params or SSD300_RESNET_PARAMS).replace(num_classes=num_classes)
    with tf.compat.v1.variable_scope(scope, "ssd_resnet_v1", [inputs], reuse=reuse) as sc, \
            slim.arg_scope([batch_norm], **batch_norm_mode(params, is_training)):
        # Re-entering the scope object builds the base's variables directly under it, as TF-Slim names them
        # under resnet_v1_50/.
        net, base_points = resnet_v1.resnet_v1(inputs, resnet_v1_50_blocks(), num_classes=None,
                                               is_training=is_training, global_pool=False,
                                               include_root_block=True, reuse=reuse, scope=sc)
        prefix = sc.name + "/"
        end_points = {k[len(prefix):] if k.startswith(prefix) else k: v for k, v in base_points.items()}
        for name, point in STAGE_END_POINTS.items():
            end_points[name] = end_points[point]
        end_points["block4"] = net
        for name, d1, d2, kernel, stride, pad in EXTRA_BLOCKS:
            with tf.compat.v1.variable_scope(name):
                net = slim.conv2d(net, d1, [1, 1], scope="conv1x1")
                net = padded_conv(net, d2, kernel, stride, pad, scope="conv3x3")
            end_points[name] = net
        with slim.arg_scope([slim.conv2d], normalizer_fn=None, biases_initializer=tf.compat.v1.zeros_initializer()):
            return multibox_layers(end_points, params)


ssd_300_resnet_v1_50.default_image_size = 300
ssd_300_resnet_v1_50.default_params = SSD300_RESNET_PARAMS
