"""Reading Caffe models without Caffe: binary `.caffemodel` (NetParameter) and text `deploy.prototxt`.

Both layer formats are read: the current `layer` (LayerParameter, type a string) and the old V1 `layers`
(V1LayerParameter, type an enum); `Layer.type` is always Caffe's type string ("Convolution", ...). Blobs are
returned as float32 NumPy arrays in Caffe's own layout (convolution weights [out, in / group, kh, kw]), with
the shape from `BlobProto.shape`, or from the legacy num/channels/height/width fields.
Every failure raises CaffeModelError naming the file and the reason.
"""
import collections

import numpy as np
from google.protobuf import message as pb_message
from google.protobuf import text_format

from caffe_converter import caffe_pb
from common.errors import CaffeModelError

Layer = collections.namedtuple("Layer", ["name", "type", "bottoms", "tops", "param"])
Layer.__doc__ = """One layer: `param` is its LayerParameter (or V1LayerParameter) message, whose
`convolution_param`, `pooling_param`, ... fields read the same in both formats."""

# V1LayerParameter.LayerType -> the type string of the current format (Caffe's upgrade_proto.cpp).
_V1_TYPES = {
    "ABSVAL": "AbsVal", "ACCURACY": "Accuracy", "ARGMAX": "ArgMax", "BNLL": "BNLL", "CONCAT": "Concat",
    "CONTRASTIVE_LOSS": "ContrastiveLoss", "CONVOLUTION": "Convolution", "DATA": "Data",
    "DECONVOLUTION": "Deconvolution", "DROPOUT": "Dropout", "DUMMY_DATA": "DummyData",
    "EUCLIDEAN_LOSS": "EuclideanLoss", "ELTWISE": "Eltwise", "EXP": "Exp", "FLATTEN": "Flatten",
    "HDF5_DATA": "HDF5Data", "HDF5_OUTPUT": "HDF5Output", "HINGE_LOSS": "HingeLoss", "IM2COL": "Im2col",
    "IMAGE_DATA": "ImageData", "INFOGAIN_LOSS": "InfogainLoss", "INNER_PRODUCT": "InnerProduct",
    "LRN": "LRN", "MEMORY_DATA": "MemoryData", "MULTINOMIAL_LOGISTIC_LOSS": "MultinomialLogisticLoss",
    "MVN": "MVN", "POOLING": "Pooling", "POWER": "Power", "RELU": "ReLU", "SIGMOID": "Sigmoid",
    "SIGMOID_CROSS_ENTROPY_LOSS": "SigmoidCrossEntropyLoss", "SILENCE": "Silence", "SOFTMAX": "Softmax",
    "SOFTMAX_LOSS": "SoftmaxWithLoss", "SPLIT": "Split", "SLICE": "Slice", "TANH": "TanH",
    "WINDOW_DATA": "WindowData", "THRESHOLD": "Threshold", "NONE": "None",
}
_TEST = 1  # caffe.Phase.TEST


def parse_prototxt(text, path="<prototxt>"):
    """Text-format NetParameter. Unknown fields (training-only options, other forks' fields) are skipped;
    a field given twice keeps the last value, as Caffe's text parser does."""
    net = caffe_pb.NetParameter()
    try:
        text_format.Merge(text, net, allow_unknown_field=True)
    except text_format.ParseError as err:
        raise CaffeModelError(path, f"not a valid Caffe prototxt: {err}") from None
    if not net.layer and not net.layers:
        raise CaffeModelError(path, "the prototxt defines no layers")
    return net


def read_prototxt_text(path):
    try:
        with open(path, "r", encoding="utf-8") as f:
            return f.read()
    except (OSError, UnicodeDecodeError) as err:
        raise CaffeModelError(path, f"cannot read the prototxt: {err}") from None


def read_prototxt(path):
    return parse_prototxt(read_prototxt_text(path), path)


def read_caffemodel(path):
    """Binary NetParameter with its weights."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as err:
        raise CaffeModelError(path, f"cannot read the caffemodel: {err.strerror}") from None
    net = caffe_pb.NetParameter()
    try:
        net.ParseFromString(data)
    except pb_message.DecodeError as err:
        raise CaffeModelError(path, f"not a valid caffemodel (truncated or corrupt): {err}") from None
    if not net.layer and not net.layers:
        raise CaffeModelError(path, "the caffemodel holds no layers (empty, truncated or not a caffemodel)")
    return net


def _rule_met(rule, phase):
    # Caffe's Net::StateMeetsRule for a net state with level 0 and no stages.
    if rule.HasField("phase") and rule.phase != phase:
        return False
    if rule.HasField("min_level") and rule.min_level > 0:
        return False
    if rule.HasField("max_level") and rule.max_level < 0:
        return False
    return not rule.stage


def _included(layer, phase):
    if layer.include:
        return any(_rule_met(r, phase) for r in layer.include)
    return not any(_rule_met(r, phase) for r in layer.exclude)


def layer_type(layer):
    if isinstance(layer, caffe_pb.V1LayerParameter):
        name = caffe_pb.V1LayerParameter.LayerType.Name(layer.type)
        return _V1_TYPES.get(name, name.title())
    return layer.type


def layers(net, phase=_TEST):
    """The net's layers in order (both formats), keeping those that Caffe runs in `phase` (TEST)."""
    raw = list(net.layer) if net.layer else list(net.layers)
    return [Layer(l.name, layer_type(l), tuple(l.bottom), tuple(l.top), l) for l in raw if _included(l, phase)]


def net_inputs(net, path="<prototxt>"):
    """Input blobs with their Caffe shapes: {name: (N, C, H, W)}, from `input` + `input_shape` / `input_dim`
    or from Input layers."""
    inputs = collections.OrderedDict()
    if net.input:
        if net.input_shape:
            shapes = [tuple(s.dim) for s in net.input_shape]
        else:
            dims = list(net.input_dim)
            shapes = [tuple(dims[4 * i:4 * i + 4]) for i in range(len(dims) // 4)]
        if len(shapes) != len(net.input):
            raise CaffeModelError(path, f"{len(net.input)} inputs but {len(shapes)} input shapes")
        inputs.update(zip(net.input, shapes))
    for layer in layers(net):
        if layer.type == "Input":
            shapes = [tuple(s.dim) for s in layer.param.input_param.shape]
            if len(shapes) == 1:
                shapes = shapes * len(layer.tops)
            if len(shapes) != len(layer.tops):
                raise CaffeModelError(path, f"Input layer '{layer.name}' gives {len(shapes)} shapes "
                                            f"for {len(layer.tops)} tops")
            inputs.update(zip(layer.tops, shapes))
    return inputs


def blob_array(blob, path="<caffemodel>", where="blob"):
    """One BlobProto as a float32 array in its Caffe shape (legacy blobs keep their 4-D num/c/h/w shape)."""
    if blob.HasField("shape"):
        shape = tuple(int(d) for d in blob.shape.dim)
    else:
        shape = (blob.num, blob.channels, blob.height, blob.width)
    if len(blob.data):
        values = np.array(blob.data, dtype=np.float32)
    elif len(blob.double_data):
        values = np.array(blob.double_data, dtype=np.float64).astype(np.float32)
    elif blob.raw_data:
        dtypes = {0: np.float64, 1: np.float32, 2: np.float16}  # caffe.Type DOUBLE, FLOAT, FLOAT16
        if blob.raw_data_type not in dtypes:
            raise CaffeModelError(path, f"{where}: unsupported raw data type {blob.raw_data_type}")
        values = np.frombuffer(blob.raw_data, dtype=np.dtype(dtypes[blob.raw_data_type]).newbyteorder("<"))
        values = values.astype(np.float32)
    else:
        values = np.zeros([0], np.float32)
    if values.size != int(np.prod(shape, dtype=np.int64)):
        raise CaffeModelError(path, f"{where}: shape {shape} needs {int(np.prod(shape))} values, "
                                    f"the file holds {values.size} (truncated or corrupt)")
    return values.reshape(shape)


def layer_blobs(net, path="<caffemodel>"):
    """{layer name: [float32 arrays]} for every layer that carries weights (any phase)."""
    out = collections.OrderedDict()
    for layer in (net.layer if net.layer else net.layers):
        if layer.blobs:
            out[layer.name] = [blob_array(b, path, f"layer '{layer.name}' blob {i}")
                               for i, b in enumerate(layer.blobs)]
    return out


def conform(array, expected_shape, path, where):
    """`array` reshaped to `expected_shape` when it fits as Caffe's Blob::ShapeEquals accepts (the same shape,
    or a legacy 4-D blob equal to the shape padded with leading ones); CaffeModelError otherwise."""
    expected_shape = tuple(int(d) for d in expected_shape)
    if array.shape == expected_shape:
        return array
    if array.ndim == 4 and len(expected_shape) <= 4 and \
            array.shape == (1,) * (4 - len(expected_shape)) + expected_shape:
        return array.reshape(expected_shape)
    raise CaffeModelError(path, f"{where} has shape {list(array.shape)}, the network expects "
                                f"{list(expected_shape)}")


def mean_values(net):
    """The per-channel mean of the model's data layer transform_param (Caffe's channel order), or None."""
    found = [tuple(l.transform_param.mean_value) for l in (net.layer if net.layer else net.layers)
             if l.HasField("transform_param") and len(l.transform_param.mean_value) == 3]
    return found[0] if found and all(f == found[0] for f in found) else None


def read_labelmap(path, num_classes=None):
    """An SSD label map prototxt (labelmap_coco.prototxt, labelmap_voc.prototxt) -> (names, ids).

    names: the display_name (else the name) of labels 1..N in label order (label 0, the background, is left
    out); ids: the items' `name` fields as ints when they all are (COCO's category ids in the COCO label
    map), else None. Labels must be 0..N without gaps or repeats; with num_classes, N + 1 must equal it.
    """
    labelmap = caffe_pb.LabelMap()
    try:
        text_format.Merge(read_prototxt_text(path), labelmap, allow_unknown_field=True)
    except text_format.ParseError as err:
        raise CaffeModelError(path, f"not a valid label map: {err}") from None
    items = sorted(labelmap.item, key=lambda item: item.label)
    labels = [item.label for item in items]
    if labels != list(range(len(items))) or not items:
        raise CaffeModelError(path, f"labels must be 0..N, each once (got {labels[:10]}{'...' if len(labels) > 10 else ''})")
    if num_classes is not None and len(items) != num_classes:
        raise CaffeModelError(path, f"{len(items)} labels (background included), the model has {num_classes} classes")
    names = [item.display_name or item.name for item in items[1:]]
    try:
        ids = [int(item.name) for item in items[1:]]
    except ValueError:
        ids = None
    return names, ids
