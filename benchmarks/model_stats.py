"""Parameters, multiply-accumulates and anchors of networks from the factory (the model zoo's figures).

    python benchmarks/model_stats.py [--models=ssdlite_320_mobilenet_v2,ssd_300_resnet_v1_50] [--num_classes=21]

MACs: one image at the network's input size, summed over its convolutions (kh * kw * C_in / groups * C_out per
output pixel) and matrix products; the pre-processing, softmax, decoding and NMS are not counted. Parameters:
trainable variables (weights, biases, batch norm's beta and gamma), and the moving statistics apart.
Prints one JSON line per model.
"""
import json
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)


def conv_macs(graph):
    """Sum over Conv2D / DepthwiseConv2dNative / MatMul ops of their multiply-accumulates (static shapes)."""
    total = 0
    for op in graph.get_operations():
        if op.type in ("Conv2D", "DepthwiseConv2dNative"):
            n, oh, ow, cout = op.outputs[0].shape.as_list()  # n > 1 for dilated convs (SpaceToBatch)
            kh, kw, cin, _ = op.inputs[1].shape.as_list()
            # Conv2D: every output sums kh * kw * C_in products; depthwise: kh * kw (one input channel each).
            total += n * oh * ow * cout * kh * kw * (cin if op.type == "Conv2D" else 1)
        elif op.type == "MatMul":
            a, b = op.inputs[0].shape.as_list(), op.inputs[1].shape.as_list()
            total += a[0] * a[1] * b[1]
    return total


def model_stats(name, num_classes=21):
    import numpy as np
    import tensorflow as tf
    from box_ops import anchors as anchors_lib
    from nets import nets_factory
    with tf.Graph().as_default() as graph:
        fn = nets_factory.get_network_fn(name, num_classes)
        h, w = fn.params.img_shape
        fn(tf.compat.v1.placeholder(tf.float32, [1, h, w, 3]))
        trainable = sum(int(np.prod(v.shape)) for v in tf.compat.v1.trainable_variables())
        moving = sum(int(np.prod(v.shape)) for v in tf.compat.v1.global_variables() if "/moving_" in v.op.name)
        return {"model": name, "input": [h, w], "num_classes": num_classes,
                "anchors": int(anchors_lib.ssd_anchors(fn.params).shape[0]), "parameters": trainable,
                "moving_statistics": moving, "macs": conv_macs(graph)}


def main(argv=None):
    p = flags.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", default="ssd_300_vgg,ssd_300_resnet_v1_50,ssd_300_inception_v2,ssdlite_320_mobilenet_v2")
    p.add_argument("--num_classes", type=int, default=21, help="classes including the background")
    args = p.parse_args(argv)
    import tensorflow as tf
    tf.compat.v1.disable_eager_execution()
    for name in args.models.split(","):
        print(json.dumps(model_stats(name.strip(), args.num_classes)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
