"""SSD-512 with a VGG-16 base, as the Caffe SSD's VGG_VOC0712_SSD_512x512.

The SSD-300 graph (ssd_vgg_300.ssd_vgg) with stride-2 conv8_2 and conv9_2 and one more block, block12
(Caffe conv10_1 1x1 128, conv10_2 4x4 pad 1 256), giving feature maps 64, 32, 16, 8, 4, 2, 1 and
24,564 anchors.
"""
from nets.ssd_params import SSDParams
from nets.ssd_vgg_300 import ssd_vgg

# Anchor sizes of the Caffe VOC model (examples/ssd/ssd_pascal_512.py: min_ratio 15, max_ratio 90, step 15,
# plus 7% / 15% for conv4_3), which VGG_VOC0712_SSD_512x512's deploy prototxt carries.
SSD512_PARAMS = SSDParams(
    img_shape=(512, 512),
    num_classes=21,
    feat_layers=("block4", "block7", "block8", "block9", "block10", "block11", "block12"),
    feat_shapes=((64, 64), (32, 32), (16, 16), (8, 8), (4, 4), (2, 2), (1, 1)),
    anchor_min_sizes=((35.84,), (76.8,), (153.6,), (230.4,), (307.2,), (384.0,), (460.8,)),
    anchor_max_sizes=((76.8,), (153.6,), (230.4,), (307.2,), (384.0,), (460.8,), (537.6,)),
    anchor_ratios=((2.0,), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0, 3.0), (2.0,), (2.0,)),
    anchor_steps=(8, 16, 32, 64, 128, 256, 512),
    anchor_offset=0.5,
    anchor_flip=True,
    anchor_clip=False,
    normalizations=(20, -1, -1, -1, -1, -1, -1),
    prior_variances=(0.1, 0.1, 0.2, 0.2),
)

# The Caffe COCO model VGG_coco_SSD_512x512: 81 classes and the anchors of examples/ssd/ssd_coco.py's rule at
# 512 (weiliu89/caffe, branch ssd; the script itself writes the 300 model): min_ratio 10, max_ratio 90 over
# the 6 layers after conv4_3 (step floor(80 / 5) = 16: 10, 26, 42, 58, 74, 90 % of 512), plus 4% / 10% for
# conv4_3, as VGG_coco_SSD_512x512's deploy prototxt carries them.
SSD512_COCO_PARAMS = SSD512_PARAMS.replace(
    num_classes=81,
    anchor_min_sizes=((20.48,), (51.2,), (133.12,), (215.04,), (296.96,), (378.88,), (460.8,)),
    anchor_max_sizes=((51.2,), (133.12,), (215.04,), (296.96,), (378.88,), (460.8,), (542.72,)),
)

EXTRA_BLOCKS_512 = (
    ("block8", 256, 512, 3, 2, 1),
    ("block9", 128, 256, 3, 2, 1),
    ("block10", 128, 256, 3, 2, 1),
    ("block11", 128, 256, 3, 2, 1),
    ("block12", 128, 256, 4, 1, 1),
)


def ssd_512_vgg(inputs, num_classes=21, is_training=False, params=None, reuse=None, scope="ssd_512_vgg"):
    params = (params or SSD512_PARAMS).replace(num_classes=num_classes)
    return ssd_vgg(inputs, params, EXTRA_BLOCKS_512, is_training=is_training, reuse=reuse, scope=scope)


ssd_512_vgg.default_image_size = 512
ssd_512_vgg.default_params = SSD512_PARAMS


def ssd_512_vgg_coco(inputs, num_classes=81, is_training=False, params=None, reuse=None, scope="ssd_512_vgg"):
    """ssd_512_vgg with the Caffe COCO model's anchors and 81 classes; same variables and scope."""
    return ssd_512_vgg(inputs, num_classes, is_training, params or SSD512_COCO_PARAMS, reuse, scope)


ssd_512_vgg_coco.default_image_size = 512
ssd_512_vgg_coco.default_params = SSD512_COCO_PARAMS
