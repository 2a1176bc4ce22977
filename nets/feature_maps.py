"""Extra feature maps after a base network, as TF OD API's feature_map_generators.multi_resolution_feature_maps
(the ssd_inception_v2 and ssdlite_mobilenet_v2 feature_map_layout): each a 1x1 conv to half the depth then
a 3x3 stride-2 'SAME' conv (depthwise-separable for SSDLite), named as the OD API names them.
"""
import tf_slim as slim


def multi_resolution_feature_maps(net, base_name, depths, end_points, use_depthwise=False, depth_multiplier=1.0,
                                  min_depth=16, first_index=2):
    """Adds one feature map per depth in `depths` after `net` (the end point named base_name) to end_points.

    Layer i (from first_index): `<base>_1_Conv2d_<i>_1x1_<d/2>` then `<base>_2_Conv2d_<i>_3x3_s2_<d>` (its
    depthwise part `..._depthwise`); channels max(int(d * depth_multiplier), min_depth). Returns the names.
    """
    names = []
    for i, d in enumerate(depths, start=first_index):
        half = max(int(d // 2 * depth_multiplier), min_depth)
        full = max(int(d * depth_multiplier), min_depth)
        net = slim.conv2d(net, half, [1, 1], scope=f"{base_name}_1_Conv2d_{i}_1x1_{d // 2}")
        name = f"{base_name}_2_Conv2d_{i}_3x3_s2_{d}"
        if use_depthwise:
            net = slim.separable_conv2d(net, None, [3, 3], depth_multiplier=1, stride=2, scope=name + "_depthwise")
            net = slim.conv2d(net, full, [1, 1], scope=name)
        else:
            net = slim.conv2d(net, full, [3, 3], stride=2, scope=name)
        end_points[name] = net
        names.append(name)
    return names
