"""Writes Caffe models for the tests with the project's own schema (caffe_converter/caffe_pb.py): small nets
for one layer type each, and Caffe SSD's VGG SSD-300 / SSD-512 deploy nets in Caffe's layer naming, with
random weights scaled so that activations stay O(1) and the class scores are spread out.
"""
import numpy as np
from google.protobuf import text_format

from caffe_converter import caffe_pb


def _varint(n):
    out = bytearray()
    while True:
        byte, n = n & 0x7F, n >> 7
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def blob(array, legacy=False):
    """BlobProto of a float array. `legacy`: the old num/channels/height/width fields instead of `shape`.

    The packed `data` field (number 5) is handed to protobuf's parser as wire bytes: the same encoding
    `blob.data.extend` would produce, at memory speed rather than ~0.5 us a value.
    """
    array = np.asarray(array, np.float32)
    proto = caffe_pb.BlobProto()
    if legacy:
        dims = (1,) * (4 - array.ndim) + array.shape
        proto.num, proto.channels, proto.height, proto.width = dims
    else:
        proto.shape.dim.extend(array.shape)
    payload = array.astype("<f4").tobytes()
    proto.MergeFromString(b"\x2a" + _varint(len(payload)) + payload)
    return proto


class NetBuilder:
    """Appends layers to a NetParameter with Caffe's text-format field names."""

    def __init__(self, name, input_shape, input_name="data"):
        self.net = caffe_pb.NetParameter(name=name)
        self.net.input.append(input_name)
        self.net.input_shape.add().dim.extend(input_shape)

    def add(self, name, type_, bottoms, tops=None, **params):
        layer = self.net.layer.add(name=name, type=type_)
        layer.bottom.extend([bottoms] if isinstance(bottoms, str) else bottoms)
        layer.top.extend([tops or name] if isinstance(tops or name, str) else tops)
        for field, value in params.items():
            text_format.Merge(value, getattr(layer, field))
        return layer

    def prototxt(self):
        return text_format.MessageToString(self.net)


def with_weights(net, weights, legacy=False):
    """A copy of `net` carrying {layer name: [arrays]} as its blobs (what a .caffemodel holds)."""
    model = caffe_pb.NetParameter()
    model.CopyFrom(net)
    for layer in model.layer:
        for array in weights.get(layer.name, []):
            layer.blobs.append(blob(array, legacy))
    return model


def write_model(directory, name, net, weights, legacy=False):
    """Writes <name>.prototxt and <name>.caffemodel; returns their paths."""
    prototxt, caffemodel = directory / f"{name}.prototxt", directory / f"{name}.caffemodel"
    prototxt.write_text(text_format.MessageToString(net))
    caffemodel.write_bytes(with_weights(net, weights, legacy).SerializeToString())
    return str(prototxt), str(caffemodel)


def write_deploy_model(out_dir, net, weights):
    """Writes <out_dir>/deploy.prototxt and <out_dir>/model.caffemodel through a temporary folder beside them,
    so that a stopped run leaves no half-written model; returns their paths."""
    import os
    import pathlib
    import tempfile
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out, prefix=".caffe_writer.") as tmp:
        prototxt, caffemodel = write_model(pathlib.Path(tmp), "model", net, weights)
        paths = str(out / "deploy.prototxt"), str(out / "model.caffemodel")
        os.replace(caffemodel, paths[1])
        os.replace(prototxt, paths[0])
    return paths


# Caffe SSD's VGG models (ssd_pascal.py / ssd_pascal_512.py): the extra layers and the PriorBox parameters.
VGG_SSD = {
    "ssd_300_vgg": dict(
        size=300,
        extra=[(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 1, 0), (128, 256, 3, 1, 0)],
        sources=["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2"],
        min_sizes=[30, 60, 111, 162, 213, 264], max_sizes=[60, 111, 162, 213, 264, 315],
        ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]], steps=[8, 16, 32, 64, 100, 300]),
    "ssd_512_vgg": dict(
        size=512,
        extra=[(256, 512, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1), (128, 256, 3, 2, 1),
               (128, 256, 4, 1, 1)],
        sources=["conv4_3_norm", "fc7", "conv6_2", "conv7_2", "conv8_2", "conv9_2", "conv10_2"],
        min_sizes=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
        max_sizes=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6],
        ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]], steps=[8, 16, 32, 64, 128, 256, 512]),
}
# The COCO releases (VGG_coco_SSD_300x300: weiliu89/caffe examples/ssd/ssd_coco.py's PriorBox sizes).
VGG_SSD["ssd_300_vgg_coco"] = dict(VGG_SSD["ssd_300_vgg"], min_sizes=[21, 45, 99, 153, 207, 261],
                                   max_sizes=[45, 99, 153, 207, 261, 315])
VGG_SSD["ssd_512_vgg_coco"] = dict(VGG_SSD["ssd_512_vgg"], min_sizes=[20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8],
                                   max_sizes=[51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72])


def vgg_ssd_net(model_name, num_classes=21, prior_overrides=None, normalize="across_spatial: false "
                "channel_shared: false scale_filler { type: 'constant' value: 20 }"):
    """(NetParameter, {conv layer: (cin, cout, k)}) of Caffe SSD's VGG deploy net, in its layer naming."""
    cfg = VGG_SSD[model_name]
    b = NetBuilder(f"VGG_VOC0712_SSD_{cfg['size']}x{cfg['size']}_deploy", [1, 3, cfg["size"], cfg["size"]])
    convs = {}

    def conv(name, bottom, cin, cout, k, stride=1, pad=0, dilation=1, relu=True):
        b.add(name, "Convolution", bottom, convolution_param=f"num_output: {cout} kernel_size: {k} pad: {pad} "
              f"stride: {stride}" + (f" dilation: {dilation}" if dilation > 1 else ""))
        convs[name] = (cin, cout, k)
        if relu:  # Caffe SSD's names: relu1_1 .. relu5_3, relu6, relu7, conv6_1_relu ...
            base = name in ("fc6", "fc7") or int(name[4]) <= 5
            b.add(name.replace("conv", "relu").replace("fc", "relu") if base else f"{name}_relu", "ReLU",
                  name, name)

    bottom, cin = "data", 3
    for block, (n, cout) in enumerate(((2, 64), (2, 128), (3, 256), (3, 512), (3, 512)), start=1):
        for i in range(1, n + 1):
            conv(f"conv{block}_{i}", bottom, cin, cout, 3, pad=1)
            bottom, cin = f"conv{block}_{i}", cout
        pool = "kernel_size: 3 stride: 1 pad: 1" if block == 5 else "kernel_size: 2 stride: 2"
        b.add(f"pool{block}", "Pooling", bottom, pooling_param="pool: MAX " + pool)
        bottom = f"pool{block}"
    conv("fc6", bottom, 512, 1024, 3, pad=6, dilation=6)
    conv("fc7", "fc6", 1024, 1024, 1)
    bottom, cin = "fc7", 1024
    for i, (c1, c2, k, stride, pad) in enumerate(cfg["extra"], start=6):
        conv(f"conv{i}_1", bottom, cin, c1, 1)
        conv(f"conv{i}_2", f"conv{i}_1", c1, c2, k, stride, pad)
        bottom, cin = f"conv{i}_2", c2
    b.add("conv4_3_norm", "Normalize", "conv4_3", norm_param=normalize)
    channels = {name: cout for name, (_, cout, _) in convs.items()}
    channels["conv4_3_norm"] = 512
    locs, confs, priors = [], [], []
    for i, source in enumerate(cfg["sources"]):
        num_ratios = len(cfg["ratios"][i])
        anchors = 2 + 2 * num_ratios
        for kind, depth in (("loc", anchors * 4), ("conf", anchors * num_classes)):
            name = f"{source}_mbox_{kind}"
            conv(name, source, channels[source], depth, 3, pad=1, relu=False)
            b.add(f"{name}_perm", "Permute", name, permute_param="order: 0 order: 2 order: 3 order: 1")
            b.add(f"{name}_flat", "Flatten", f"{name}_perm", flatten_param="axis: 1")
            (locs if kind == "loc" else confs).append(f"{name}_flat")
        prior = (f"min_size: {cfg['min_sizes'][i]} max_size: {cfg['max_sizes'][i]} " +
                 " ".join(f"aspect_ratio: {r}" for r in cfg["ratios"][i]) +
                 " flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 "
                 f"step: {cfg['steps'][i]} offset: 0.5")
        if prior_overrides and source in prior_overrides:
            prior += " " + prior_overrides[source]
        b.add(f"{source}_mbox_priorbox", "PriorBox", [source, "data"], prior_box_param=prior)
        priors.append(f"{source}_mbox_priorbox")
    det = add_detection_output(b, locs, confs, priors, num_classes, top_k=400, keep_top_k=200)
    det.include.add(phase=1)  # TEST, as in the released deploy files
    return b.net, convs


def add_detection_output(b, locs, confs, priors, num_classes, top_k, keep_top_k):
    """Caffe SSD's tail: mbox_loc / mbox_conf / mbox_priorbox concatenated, the softmax over classes and the
    DetectionOutput layer; returns the DetectionOutput layer."""
    b.add("mbox_loc", "Concat", locs, concat_param="axis: 1")
    b.add("mbox_conf", "Concat", confs, concat_param="axis: 1")
    b.add("mbox_priorbox", "Concat", priors, concat_param="axis: 2")
    b.add("mbox_conf_reshape", "Reshape", "mbox_conf",
          reshape_param=f"shape {{ dim: 0 dim: -1 dim: {num_classes} }}")
    b.add("mbox_conf_softmax", "Softmax", "mbox_conf_reshape", softmax_param="axis: 2")
    b.add("mbox_conf_flatten", "Flatten", "mbox_conf_softmax", flatten_param="axis: 1")
    return b.add("detection_out", "DetectionOutput", ["mbox_loc", "mbox_conf_flatten", "mbox_priorbox"],
                 detection_output_param=f"num_classes: {num_classes} share_location: true "
                 f"background_label_id: 0 nms_param {{ nms_threshold: 0.45 top_k: {top_k} }} code_type: CENTER_SIZE "
                 f"keep_top_k: {keep_top_k} confidence_threshold: 0.01")


def vgg_ssd_weights(convs, seed=0, input_std=60.0):
    """Random weights for vgg_ssd_net: He-scaled kernels (activations keep their scale through the ReLUs),
    the first layer divided by the pixels' spread, heads scaled so offsets are ~0.3 and logits ~2."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, (cin, cout, k) in convs.items():
        fan_in = cin * k * k
        std = np.sqrt(2.0 / fan_in)
        if name == "conv1_1":
            std /= input_std
        bias = 0.05
        if name.endswith("_mbox_loc"):
            std, bias = 0.3 / np.sqrt(fan_in), 0.1
        elif name.endswith("_mbox_conf"):
            std, bias = 2.0 / np.sqrt(fan_in), 0.5
        weights[name] = [(rng.standard_normal((cout, cin, k, k), np.float32) * np.float32(std)),
                         (rng.standard_normal(cout, np.float32) * np.float32(bias))]
    weights["conv4_3_norm"] = [rng.uniform(5.0, 20.0, 512).astype(np.float32)]
    return weights


# chuanqi305/MobileNet-SSD (MobileNetSSD_deploy, 300x300): MobileNet-v1 conv0..conv13 (depthwise 3x3 "convN/dw" +
# pointwise 1x1 "convN"), then conv14_1/2 .. conv17_1/2; every convolution without bias, followed by
# BatchNorm "<conv>/bn", Scale "<conv>/scale" (bias) and ReLU "<conv>/relu"; 1x1 heads on conv11 (3 priors:
# min_size 60, ratio 2), conv13 (6 priors) .. conv17_2. Input: (BGR - 127.5) * 0.007843.
MOBILENET_SSD = dict(
    size=300,
    # (pointwise depth, depthwise stride) of conv1 .. conv13
    body=[(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1), (512, 1),
          (512, 1), (1024, 2), (1024, 1)],
    extra=[(256, 512), (128, 256), (128, 256), (64, 128)],
    sources=["conv11", "conv13", "conv14_2", "conv15_2", "conv16_2", "conv17_2"],
    min_sizes=[60, 105, 150, 195, 240, 285], max_sizes=[None, 150, 195, 240, 285, 300],
    ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2, 3]])


def mobilenet_ssd_net(num_classes=21):
    """(NetParameter, {conv layer: (cin, cout, k, group, bias)}) of chuanqi305's MobileNet-SSD deploy net."""
    cfg = MOBILENET_SSD
    b = NetBuilder("MobileNet-SSD", [1, 3, cfg["size"], cfg["size"]])
    convs = {}

    def conv(name, bottom, cin, cout, k, stride=1, group=1, bn=True):
        pad = k // 2
        b.add(name, "Convolution", bottom, convolution_param=f"num_output: {cout} bias_term: {str(not bn).lower()} "
              f"kernel_size: {k} pad: {pad} stride: {stride}" + (f" group: {group}" if group > 1 else ""))
        convs[name] = (cin, cout, k, group, not bn)
        if bn:
            b.add(f"{name}/bn", "BatchNorm", name, name, batch_norm_param="use_global_stats: true eps: 1e-5")
            b.add(f"{name}/scale", "Scale", name, name, scale_param="bias_term: true")
            b.add(f"{name}/relu", "ReLU", name, name)
        return name

    bottom, cin = conv("conv0", "data", 3, 32, 3, stride=2), 32
    for i, (cout, stride) in enumerate(cfg["body"], start=1):
        conv(f"conv{i}/dw", bottom, cin, cin, 3, stride=stride, group=cin)
        bottom, cin = conv(f"conv{i}", f"conv{i}/dw", cin, cout, 1), cout
    for i, (c1, c2) in enumerate(cfg["extra"], start=14):
        conv(f"conv{i}_1", bottom, cin, c1, 1)
        bottom, cin = conv(f"conv{i}_2", f"conv{i}_1", c1, c2, 3, stride=2), c2
    channels = {name: cout for name, (_, cout, _, _, _) in convs.items()}
    locs, confs, priors = [], [], []
    for i, source in enumerate(cfg["sources"]):
        anchors = 1 + (cfg["max_sizes"][i] is not None) + 2 * len(cfg["ratios"][i])
        for kind, depth in (("loc", anchors * 4), ("conf", anchors * num_classes)):
            name = f"{source}_mbox_{kind}"
            conv(name, source, channels[source], depth, 1, bn=False)
            b.add(f"{name}_perm", "Permute", name, permute_param="order: 0 order: 2 order: 3 order: 1")
            b.add(f"{name}_flat", "Flatten", f"{name}_perm", flatten_param="axis: 1")
            (locs if kind == "loc" else confs).append(f"{name}_flat")
        prior = (f"min_size: {cfg['min_sizes'][i]} " +
                 (f"max_size: {cfg['max_sizes'][i]} " if cfg["max_sizes"][i] else "") +
                 " ".join(f"aspect_ratio: {r}" for r in cfg["ratios"][i]) +
                 " flip: true clip: false variance: 0.1 variance: 0.1 variance: 0.2 variance: 0.2 offset: 0.5")
        b.add(f"{source}_mbox_priorbox", "PriorBox", [source, "data"], prior_box_param=prior)
        priors.append(f"{source}_mbox_priorbox")
    add_detection_output(b, locs, confs, priors, num_classes, top_k=100, keep_top_k=100)
    return b.net, convs


def mobilenet_ssd_weights(convs, seed=0, input_std=0.5):
    """Random weights for mobilenet_ssd_net: He-scaled kernels, BatchNorm statistics (mean, variance, Caffe's
    moving-average factor 1) and Scale gamma / beta per channel, heads as vgg_ssd_weights'."""
    rng = np.random.default_rng(seed)
    weights = {}
    for name, (cin, cout, k, group, bias) in convs.items():
        fan_in = cin // group * k * k
        std = np.sqrt(2.0 / fan_in) / (input_std if name == "conv0" else 1.0)
        kernel_bias = 0.05
        if name.endswith("_mbox_loc"):
            std, kernel_bias = 0.3 / np.sqrt(fan_in), 0.1
        elif name.endswith("_mbox_conf"):  # smaller than VGG's: the activations here are larger
            std, kernel_bias = 0.5 / np.sqrt(fan_in), 0.5
        weights[name] = [rng.standard_normal((cout, cin // group, k, k), np.float32) * np.float32(std)]
        if bias:
            weights[name].append(rng.standard_normal(cout, np.float32) * np.float32(kernel_bias))
        else:
            weights[f"{name}/bn"] = [rng.normal(0.0, 0.2, cout).astype(np.float32),
                                     rng.uniform(0.5, 2.0, cout).astype(np.float32), np.ones(1, np.float32)]
            weights[f"{name}/scale"] = [rng.uniform(0.5, 1.5, cout).astype(np.float32),
                                        rng.normal(0.1, 0.2, cout).astype(np.float32)]
    return weights
