"""caffe_converter: the caffe.proto schema, binary and text reading, both layer formats, legacy blobs."""
import numpy as np
import pytest

from caffe_converter import caffe_pb, reader
from common.errors import CaffeModelError
from caffe_converter import caffe_writer

# Field numbers written out from BVLC caffe.proto and Wei Liu's SSD fork (weiliu89/caffe, branch ssd).
FIELD_NUMBERS = {
    "NetParameter": {"name": 1, "layers": 2, "input": 3, "input_dim": 4, "input_shape": 8, "layer": 100},
    "BlobProto": {"num": 1, "channels": 2, "height": 3, "width": 4, "data": 5, "shape": 7, "double_data": 8},
    "LayerParameter": {"name": 1, "type": 2, "bottom": 3, "top": 4, "blobs": 7, "include": 8, "exclude": 9,
                       "concat_param": 104, "convolution_param": 106, "eltwise_param": 110, "pooling_param": 121,
                       "relu_param": 123, "softmax_param": 125, "reshape_param": 133, "flatten_param": 135,
                       "batch_norm_param": 139, "scale_param": 142, "input_param": 143, "permute_param": 202,
                       "prior_box_param": 203, "detection_output_param": 204, "norm_param": 206},
    "V1LayerParameter": {"bottom": 2, "top": 3, "name": 4, "type": 5, "blobs": 6, "concat_param": 9,
                         "convolution_param": 10, "pooling_param": 19, "relu_param": 30, "softmax_param": 39},
    "PriorBoxParameter": {"min_size": 1, "max_size": 2, "aspect_ratio": 3, "flip": 4, "clip": 5, "variance": 6,
                          "img_size": 7, "img_h": 8, "img_w": 9, "step": 10, "step_h": 11, "step_w": 12,
                          "offset": 13},
    "DetectionOutputParameter": {"num_classes": 1, "share_location": 2, "background_label_id": 3, "nms_param": 4,
                                 "code_type": 6, "keep_top_k": 7, "variance_encoded_in_target": 8,
                                 "confidence_threshold": 9},
    "NormalizeParameter": {"across_spatial": 1, "scale_filler": 2, "channel_shared": 3, "eps": 4},
}


@pytest.mark.parametrize("message", sorted(FIELD_NUMBERS))
def test_schema_field_numbers(message):
    descriptor = getattr(caffe_pb, message).DESCRIPTOR
    for field, number in FIELD_NUMBERS[message].items():
        assert descriptor.fields_by_name[field].number == number, f"{message}.{field}"


def test_schema_defaults_are_caffes():
    p = caffe_pb.LayerParameter()
    assert p.prior_box_param.flip and not p.prior_box_param.clip and p.prior_box_param.offset == pytest.approx(0.5)
    assert p.norm_param.across_spatial and p.norm_param.channel_shared
    assert p.norm_param.eps == pytest.approx(1e-10) and p.batch_norm_param.eps == pytest.approx(1e-5)
    assert p.convolution_param.bias_term and p.convolution_param.group == 1
    assert p.detection_output_param.keep_top_k == -1 and p.concat_param.axis == 1


def test_real_caffemodel_ssd_layers(face_model):
    """The face SSD's binary training net: SSD-fork fields (PriorBox 203, Normalize 206, Permute 202) parse."""
    net = reader.read_caffemodel(face_model[1])
    layers = {l.name: l for l in reader.layers(net, phase=0)}
    prior = layers["conv4_3_norm_mbox_priorbox"].param.prior_box_param
    assert list(prior.min_size) == [30] and list(prior.max_size) == [60] and prior.step == 8
    assert not layers["conv4_3_norm"].param.norm_param.across_spatial
    assert list(layers["conv4_3_norm_mbox_loc_perm"].param.permute_param.order) == [0, 2, 3, 1]
    blobs = reader.layer_blobs(net)
    assert [b.shape for b in blobs["conv1_h"]] == [(32, 3, 7, 7), (32,)]
    assert [b.shape for b in blobs["data_bn"]] == [(3,), (3,), (1,)]
    assert reader.mean_values(net) == (104.0, 117.0, 123.0)  # the training data layer's transform_param


def test_v1_layers_and_legacy_blobs(tmp_path):
    net = caffe_pb.NetParameter(name="old")
    net.input.append("data")
    net.input_dim.extend([1, 3, 8, 8])
    weights, bias = np.arange(54, dtype=np.float32).reshape(2, 3, 3, 3), np.array([0.5, -1], np.float32)
    conv = net.layers.add(name="conv1", type=caffe_pb.V1LayerParameter.CONVOLUTION, bottom=["data"], top=["conv1"])
    conv.convolution_param.num_output, conv.convolution_param.kernel_size[:] = 2, [3]
    conv.blobs.extend([caffe_writer.blob(weights, legacy=True), caffe_writer.blob(bias, legacy=True)])
    net.layers.add(name="relu1", type=caffe_pb.V1LayerParameter.RELU, bottom=["conv1"], top=["conv1"])
    loss = net.layers.add(name="loss", type=caffe_pb.V1LayerParameter.SOFTMAX_LOSS, bottom=["conv1"], top=["loss"])
    loss.include.add(phase=0)  # TRAIN only
    path = tmp_path / "old.caffemodel"
    path.write_bytes(net.SerializeToString())
    model = reader.read_caffemodel(str(path))
    assert [(l.name, l.type) for l in reader.layers(model)] == [("conv1", "Convolution"), ("relu1", "ReLU")]
    assert reader.net_inputs(model) == {"data": (1, 3, 8, 8)}
    blobs = reader.layer_blobs(model)
    assert blobs["conv1"][1].shape == (1, 1, 1, 2)  # legacy num / channels / height / width
    np.testing.assert_array_equal(reader.conform(blobs["conv1"][1], (2,), "m", "bias"), bias)
    np.testing.assert_array_equal(reader.conform(blobs["conv1"][0], (2, 3, 3, 3), "m", "w"), weights)
    with pytest.raises(CaffeModelError, match=r"shape \[1, 1, 1, 2\], the network expects \[3\]"):
        reader.conform(blobs["conv1"][1], (3,), "m", "bias")
    text = reader.parse_prototxt('input: "data" input_dim: 1 input_dim: 3 input_dim: 8 input_dim: 8 '
                                 'layers { name: "conv1" type: CONVOLUTION bottom: "data" top: "conv1" '
                                 'convolution_param { num_output: 2 kernel_size: 3 } }')
    assert [(l.name, l.type) for l in reader.layers(text)] == [("conv1", "Convolution")]


def test_double_and_half_precision_blobs():
    values = np.array([[1.5, -2.25], [3.0, 0.125]])
    double = caffe_pb.BlobProto(double_data=values.ravel())
    double.shape.dim.extend([2, 2])
    np.testing.assert_array_equal(reader.blob_array(double), values.astype(np.float32))
    half = caffe_pb.BlobProto(raw_data_type=2, raw_data=values.astype("<f2").tobytes())
    half.shape.dim.extend([2, 2])
    np.testing.assert_array_equal(reader.blob_array(half), values.astype(np.float32))
    short = caffe_pb.BlobProto(data=[1.0, 2.0, 3.0])
    short.shape.dim.extend([2, 2])
    with pytest.raises(CaffeModelError, match="needs 4 values, the file holds 3"):
        reader.blob_array(short)


def test_prototxt_training_fields_phases_and_inputs():
    net = reader.parse_prototxt('''
        name: "x"
        layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 2 dim: 3 dim: 20 dim: 30 } } }
        layer { name: "train_data" type: "AnnotatedData" top: "data" include { phase: TRAIN }
                transform_param { mean_value: 104 resize_param { prob: 1 height: 300 } }
                annotated_data_param { batch_sampler { max_sample: 1 } } }
        layer { name: "c" type: "Convolution" bottom: "data" top: "c"
                param { lr_mult: 1 decay_mult: 1 } convolution_param { num_output: 4 kernel_size: 3
                weight_filler { type: "xavier" } bias_filler { type: "constant" value: 0 } engine: CAFFE }
                prior_box_param { min_size: 1 flip: true flip: false } }
        layer { name: "loss" type: "MultiBoxLoss" bottom: "c" top: "loss" multibox_loss_param { num_classes: 2 }
                exclude { phase: TEST } }
    ''')
    assert [l.name for l in reader.layers(net)] == ["data", "c"]
    assert [l.name for l in reader.layers(net, phase=0)] == ["data", "train_data", "c", "loss"]
    assert reader.net_inputs(net) == {"data": (2, 3, 20, 30)}
    assert reader.layers(net)[1].param.prior_box_param.flip is False  # a repeated singular field: the last wins


def test_unreadable_files_name_the_file(tmp_path, face_model):
    with open(face_model[1], "rb") as f:
        data = f.read()
    truncated = tmp_path / "truncated.caffemodel"
    truncated.write_bytes(data[: len(data) // 2])
    with pytest.raises(CaffeModelError, match="truncated.caffemodel: not a valid caffemodel"):
        reader.read_caffemodel(str(truncated))
    empty = tmp_path / "empty.caffemodel"
    empty.write_bytes(b"")
    with pytest.raises(CaffeModelError, match="holds no layers"):
        reader.read_caffemodel(str(empty))
    with pytest.raises(CaffeModelError, match="cannot read the caffemodel"):
        reader.read_caffemodel(str(tmp_path / "missing.caffemodel"))
    bad = tmp_path / "bad.prototxt"
    bad.write_text("layer { name: 'a' type: 'ReLU' ")
    with pytest.raises(CaffeModelError, match="bad.prototxt: not a valid Caffe prototxt"):
        reader.read_prototxt(str(bad))
