"""Converts a Caffe SSD model (.caffemodel [+ deploy.prototxt]) into a TensorFlow checkpoint, without Caffe.

    python caffe_to_tensorflow.py --model_name=ssd_300_vgg --num_classes=21 \\
        --caffemodel_path=VGG_VOC0712_SSD_300x300_iter_120000.caffemodel [--prototxt_path=deploy.prototxt] \\
        --output_dir=./checkpoints/ssd_300_vgg
    python caffe_to_tensorflow.py --model_name=ssd_300_vgg_coco --labelmap_path=labelmap_coco.prototxt \\
        --caffemodel_path=VGG_coco_SSD_300x300_iter_400000.caffemodel --prototxt_path=deploy.prototxt \\
        --output_dir=./checkpoints/ssd_300_vgg_coco
    python caffe_to_tensorflow.py --model_name=caffe_ssd --caffemodel_path=M.caffemodel \\
        --prototxt_path=deploy.prototxt --mean_values=104,177,123 --output_dir=./checkpoints/face

--output_dir receives model.ckpt.* and ssd_config.json together (or nothing, on any error). Converted models
take RGB images like every model of the project; --mean_values are given in the Caffe model's BGR order.
"""
import os
import sys

import numpy as np

from caffe_converter import net_spec, reader
from caffe_converter.caffe_ssd import MODEL_NAME as CAFFE_SSD
from caffe_converter.vgg_mapping import MODEL_NAMES as VGG_MODELS
from cli import flags
from common import fileio
from common.errors import CaffeModelError, ConfigError, run_main
from datasets.voc_classes import VOC_CLASSES
from nets.ssd_vgg_300 import VGG_MEAN_RGB

VGG_MEAN_BGR = VGG_MEAN_RGB[::-1]  # Caffe's mean_value order
CHECKPOINT_NAME = "model.ckpt"


def parse_args(argv):
    parser = flags.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model_name", required=True, choices=VGG_MODELS + (CAFFE_SSD,),
                        help="ssd_300_vgg / ssd_512_vgg: Caffe's VGG SSD onto the project's network; caffe_ssd: "
                             "the network built from the deploy prototxt (any backbone)")
    parser.add_argument("--caffemodel_path", required=True, help="the .caffemodel with the weights")
    parser.add_argument("--prototxt_path", default=None,
                        help="deploy prototxt: required for caffe_ssd; for VGG models its PriorBox, Normalize and "
                             "DetectionOutput parameters are used and checked against the network")
    parser.add_argument("--output_dir", required=True, help="receives the checkpoint and ssd_config.json")
    parser.add_argument("--num_classes", type=int, default=None,
                        help="classes including background (default: the prototxt's DetectionOutput, else 21)")
    parser.add_argument("--mean_values", default=None,
                        help="per-channel mean in the model's (BGR) order, e.g. 104,117,123 (default: the "
                             "caffemodel's transform_param, else 104,117,123 for VGG)")
    parser.add_argument("--input_scale", type=float, default=1.0,
                        help="caffe_ssd: factor applied after mean subtraction (e.g. 0.007843 for MobileNet-SSD)")
    parser.add_argument("--channel_order", default="BGR", choices=("BGR", "RGB"),
                        help="the channel order the Caffe model was trained with")
    parser.add_argument("--class_names", default=None, help="comma-separated names of labels 1..N")
    parser.add_argument("--labels_file", default=None, help="file with the names of labels 1..N, one a line")
    parser.add_argument("--labelmap_path", default=None,
                        help="the Caffe SSD label map (e.g. labelmap_coco.prototxt): class names from its "
                             "display_name, and COCO category ids from its name fields")
    return parser.parse_args(argv)


def _mean_rgb(args, caffe_net):
    if args.mean_values:
        try:
            mean = [float(v) for v in args.mean_values.split(",")]
        except ValueError:
            mean = []
        if len(mean) != 3:
            raise ConfigError(None, f"--mean_values must be three numbers, got '{args.mean_values}'")
    else:
        mean = reader.mean_values(caffe_net) or (VGG_MEAN_BGR if args.model_name in VGG_MODELS else None)
        if mean is None:
            raise ConfigError(None, "--mean_values is required: the caffemodel does not record its mean")
        print(f"mean values (model order): {', '.join(f'{v:g}' for v in mean)}")
    mean = list(mean)
    return mean[::-1] if args.channel_order == "BGR" else mean


def _class_names(args, num_classes):
    names = None
    if args.labelmap_path:
        names, _ = reader.read_labelmap(args.labelmap_path, num_classes)
    elif args.labels_file:
        from datasets.voc_to_tfrecords import read_labels_file
        names = list(read_labels_file(args.labels_file))
    elif args.class_names:
        names = [n.strip() for n in args.class_names.split(",")]
    elif num_classes == len(VOC_CLASSES) + 1:
        names = list(VOC_CLASSES)
    if names is not None and len(names) != num_classes - 1:
        raise ConfigError(args.labels_file or "--class_names",
                          f"{len(names)} class names for {num_classes - 1} classes")
    return names


def _convert_vgg(args, caffe_net, blobs):
    """(config, network_fn, image size, fill) for ssd_300_vgg / ssd_512_vgg."""
    from caffe_converter import vgg_mapping
    from nets import nets_factory
    params = nets_factory.get_params(args.model_name)
    post = dict(nets_factory.DEFAULT_POST_PROCESSING)
    prototxt = None
    if args.prototxt_path:
        prototxt = reader.read_prototxt(args.prototxt_path)
        spec = net_spec.analyse(prototxt, args.prototxt_path)
        vgg_mapping.check_geometry(spec, args.model_name, args.prototxt_path)
        params = vgg_mapping.params_from_spec(spec, params, args.prototxt_path)
        post.update(spec.post_processing)
    else:
        params = params.replace(num_classes=args.num_classes or params.num_classes)
        vgg_mapping.check_caffemodel_priors(reader.layers(caffe_net, phase=0), params, args.caffemodel_path)
    if args.num_classes and args.num_classes != params.num_classes:
        raise ConfigError(args.prototxt_path, f"--num_classes={args.num_classes} but the prototxt's "
                                              f"DetectionOutput has {params.num_classes}")
    network_fn = nets_factory.get_network_fn(args.model_name, params.num_classes, params=params)
    config = nets_factory.default_config(args.model_name, params.num_classes)
    config.update(params=params.to_dict(), post_processing=post,
                  class_names=_class_names(args, params.num_classes), mean_rgb=_mean_rgb(args, caffe_net))
    if args.labelmap_path:
        _, ids = reader.read_labelmap(args.labelmap_path, params.num_classes)
        if ids is not None:
            config["coco_category_ids"] = ids

    def fill(variable_shapes):
        return vgg_mapping.variables_from_caffemodel(args.model_name, params, blobs, variable_shapes,
                                                      args.caffemodel_path, rgb=args.channel_order == "BGR")
    return config, network_fn, params.img_shape, fill


def _convert_caffe_ssd(args, caffe_net, blobs):
    from caffe_converter import caffe_ssd
    if not args.prototxt_path:
        raise ConfigError(None, "--prototxt_path (the deploy prototxt) is required for caffe_ssd")
    text = reader.read_prototxt_text(args.prototxt_path)
    spec = net_spec.spec_from_prototxt_text(text, args.prototxt_path)
    if args.num_classes and args.num_classes != spec.num_classes:
        raise ConfigError(args.prototxt_path, f"--num_classes={args.num_classes} but the prototxt's "
                                              f"DetectionOutput has {spec.num_classes}")
    config = {"model_name": CAFFE_SSD, "num_classes": spec.num_classes,
              "class_names": _class_names(args, spec.num_classes), "mean_rgb": _mean_rgb(args, caffe_net),
              "post_processing": dict(spec.post_processing), "input_scale": args.input_scale,
              "channel_order": args.channel_order, "prototxt": text}
    values = caffe_ssd.variables_from_caffemodel(spec, blobs, args.caffemodel_path)
    model = caffe_ssd.build_from_config(config)
    return config, model.network_fn, spec.image_size, lambda shapes: values


def convert(args):
    """Reads, checks and maps everything, then writes the checkpoint and ssd_config.json atomically."""
    import tensorflow as tf
    from nets import model_config
    caffe_net = reader.read_caffemodel(args.caffemodel_path)
    blobs = reader.layer_blobs(caffe_net, args.caffemodel_path)
    build = _convert_vgg if args.model_name in VGG_MODELS else _convert_caffe_ssd
    config, network_fn, image_size, fill = build(args, caffe_net, blobs)
    config["caffe"] = {"caffemodel": os.path.basename(args.caffemodel_path),
                       "prototxt": os.path.basename(args.prototxt_path) if args.prototxt_path else None}
    with tf.Graph().as_default():
        images = tf.compat.v1.placeholder(tf.float32, [1, image_size[0], image_size[1], 3])
        try:
            network_fn(images)
        except ValueError as err:  # the network's feature maps differ from the model's
            raise CaffeModelError(args.prototxt_path or args.caffemodel_path, str(err)) from None
        variables = tf.compat.v1.global_variables()
        shapes = {v.op.name: tuple(v.shape.as_list()) for v in variables}
        values = fill(shapes)
        for v in variables:
            value = values.get(v.op.name)
            if value is None or tuple(value.shape) != shapes[v.op.name]:
                got = "nothing" if value is None else f"shape {list(value.shape)}"
                raise CaffeModelError(args.caffemodel_path, f"{v.op.name} {list(shapes[v.op.name])} gets {got}")
        extra = sorted(set(values) - set(shapes))
        if extra:
            raise CaffeModelError(args.caffemodel_path, f"converted weights with no variable: {extra[:5]}")
        feeds = {v: tf.compat.v1.placeholder(v.dtype.base_dtype, v.shape) for v in variables}
        assign = tf.group(*[v.assign(p) for v, p in feeds.items()])
        saver = tf.compat.v1.train.Saver(variables, save_relative_paths=True)
        with tf.compat.v1.Session() as sess, fileio.staging_dir(args.output_dir) as stage:
            sess.run(assign, {p: np.asarray(values[v.op.name], np.float32) for v, p in feeds.items()})
            saver.save(sess, os.path.join(stage, CHECKPOINT_NAME), write_meta_graph=False)
            model_config.save_model_config(stage, config)
    return config, len(variables)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if sum(bool(x) for x in (args.labelmap_path, args.labels_file, args.class_names)) > 1:
        raise ConfigError(None, "give at most one of --labelmap_path, --labels_file and --class_names")
    for path in (args.caffemodel_path, args.prototxt_path, args.labelmap_path):
        if path and not os.path.isfile(path):
            raise ConfigError(path, "no such file")
    config, count = convert(args)
    print(f"wrote {args.output_dir}: {config['model_name']}, {config['num_classes']} classes, {count} variables")
    return 0


if __name__ == "__main__":
    run_main(main)
