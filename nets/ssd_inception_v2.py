"""SSD-300 with an Inception-v2 (BN-Inception) base, as TF OD API's ssd_inception_v2, warm-startable from
TF-Slim's `inception_v2.ckpt` (`--checkpoint_model_scope=InceptionV2`).

The base is `tf_slim.nets.inception_v2.inception_v2_base` itself up to Mixed_5c, built in the SSD's scope with
batch norm from nets/batch_norm.py after every convolution (the separable Conv2d_1a_7x7 too, as the OD API's
feature extractor does), so its variables are TF-Slim's under another top scope. Feature maps, the OD API's
feature_map_layout: Mixed_4c (stride 16, 19x19, 576), Mixed_5c (10x10, 1024) and four extra layers (1x1 conv to
half the depth, 3x3/s2 'SAME' conv to 512, 256, 256, 128: 5x5, 3x3, 2x2, 1x1), batch norm and ReLU6; 3x3
multibox heads. Anchors: the OD API's ssd_anchor_generator as Caffe PriorBoxes (see ssdlite_mobilenet_v2.py),
1,917 for 300x300. Inputs in [-1, 1], as TF-Slim's inception_preprocessing trained the base.
"""
import tensorflow as tf
import tf_slim as slim
from tf_slim.nets import inception_v2

from box_ops import anchors as anchors_lib
from nets import feature_maps
from nets.batch_norm import batch_norm, batch_norm_mode
from nets.ssd_params import SSDParams
from nets.ssd_vgg_300 import multibox_layers
from nets.ssdlite_mobilenet_v2 import INCEPTION_MEAN_RGB

EXTRA_DEPTHS = (512, 256, 256, 128)
BATCH_NORM_DECAY = 0.9997    # tf_slim inception_v2_arg_scope
BATCH_NORM_EPSILON = 0.001

_SIZES = anchors_lib.linear_scale_sizes(300, 6)
SSD300_INCEPTION_PARAMS = SSDParams(
    img_shape=(300, 300),
    num_classes=21,
    feat_layers=("Mixed_4c", "Mixed_5c", "Mixed_5c_2_Conv2d_2_3x3_s2_512", "Mixed_5c_2_Conv2d_3_3x3_s2_256",
                 "Mixed_5c_2_Conv2d_4_3x3_s2_256", "Mixed_5c_2_Conv2d_5_3x3_s2_128"),
    feat_shapes=((19, 19), (10, 10), (5, 5), (3, 3), (2, 2), (1, 1)),
    anchor_min_sizes=_SIZES[0],
    anchor_max_sizes=((),) + _SIZES[1][1:],   # 3 anchors on the first layer, 6 elsewhere (the OD API's)
    anchor_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0)),
    anchor_steps=(300 / 19, 30, 60, 100, 150, 300),  # 300 / feature size: the OD API's centres (i + 0.5) / n
    anchor_offset=0.5,
    anchor_flip=True,
    anchor_clip=False,
    normalizations=(-1, -1, -1, -1, -1, -1),
    prior_variances=(0.1, 0.1, 0.2, 0.2),
    input_scale=1.0 / 127.5,
)


def ssd_inception_arg_scope(weight_decay=0.00004):
    """tf_slim's inception_v2_arg_scope (variance-scaling weights, batch norm without scale, ReLU) with
    nets/batch_norm.py, extended to the separable convolution."""
    with slim.arg_scope([slim.conv2d, slim.separable_conv2d],
                        weights_regularizer=slim.l2_regularizer(weight_decay) if weight_decay else None,
                        weights_initializer=slim.variance_scaling_initializer(),
                        activation_fn=tf.nn.relu, normalizer_fn=batch_norm, padding="SAME"), \
            slim.arg_scope([batch_norm], decay=BATCH_NORM_DECAY, epsilon=BATCH_NORM_EPSILON, scale=False) as sc:
        return sc


def ssd_300_inception_v2(inputs, num_classes=21, is_training=False, params=None, reuse=None,
                         scope="ssd_300_inception_v2"):
    """inputs: float32 [B, 300, 300, 3] in [-1, 1]. is_training: batch norm mode.

    Returns ((logits [B, 1917, C], localisations [B, 1917, 4]), end_points).
    """
    params = (params or SSD300_INCEPTION_PARAMS).replace(num_classes=num_classes)
    with tf.compat.v1.variable_scope(scope, "ssd_inception_v2", [inputs], reuse=reuse) as sc, \
            slim.arg_scope([batch_norm], **batch_norm_mode(params, is_training)):
        # The scope object re-entered: the base's variables directly under it, as TF-Slim's under InceptionV2/.
        net, end_points = inception_v2.inception_v2_base(inputs, final_endpoint="Mixed_5c", scope=sc)
        with slim.arg_scope([slim.conv2d], activation_fn=tf.nn.relu6):
            feature_maps.multi_resolution_feature_maps(net, "Mixed_5c", EXTRA_DEPTHS, end_points)
        with slim.arg_scope([slim.conv2d], normalizer_fn=None, biases_initializer=tf.compat.v1.zeros_initializer()):
            return multibox_layers(end_points, params)


ssd_300_inception_v2.default_image_size = 300
ssd_300_inception_v2.default_params = SSD300_INCEPTION_PARAMS
ssd_300_inception_v2.mean_rgb = INCEPTION_MEAN_RGB
