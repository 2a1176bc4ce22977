"""caffe_to_tensorflow.py on bad input: one clear error naming the file and the reason, and nothing written."""
import os
import subprocess
import sys

import pytest
from google.protobuf import text_format

import caffe_to_tensorflow
from common.errors import CaffeModelError, ConfigError
from caffe_converter import caffe_writer

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _convert(out, *flags):
    return caffe_to_tensorflow.main([f"--output_dir={out}", *flags])


def _assert_nothing_written(out):
    assert not out.exists()
    if out.parent.exists():
        assert not os.listdir(out.parent), "staging left behind"


@pytest.fixture()
def truncated(face_model, tmp_path):
    path = tmp_path / "truncated.caffemodel"
    with open(face_model[1], "rb") as f:
        data = f.read()
    path.write_bytes(data[: len(data) // 3])
    return str(path)


def test_truncated_caffemodel(face_model, truncated, tmp_path):
    out = tmp_path / "out" / "face"
    with pytest.raises(CaffeModelError, match="truncated.caffemodel: not a valid caffemodel"):
        _convert(out, "--model_name=caffe_ssd", f"--caffemodel_path={truncated}",
                 f"--prototxt_path={face_model[0]}", "--mean_values=104,177,123")
    _assert_nothing_written(out)


def test_truncated_caffemodel_exit_status(face_model, truncated, tmp_path):
    out = tmp_path / "out" / "face"
    proc = subprocess.run([sys.executable, os.path.join(ROOT, "caffe_to_tensorflow.py"), "--model_name=caffe_ssd",
                           f"--caffemodel_path={truncated}", f"--prototxt_path={face_model[0]}",
                           f"--output_dir={out}"], capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"error: {truncated}: not a valid caffemodel")
    _assert_nothing_written(out)


def test_unknown_layer_type(face_model, tmp_path):
    prototxt = tmp_path / "prelu.prototxt"
    with open(face_model[0]) as f:
        prototxt.write_text(f.read().replace('type: "ReLU"', 'type: "PReLU"', 1))
    out = tmp_path / "out" / "face"
    with pytest.raises(CaffeModelError, match="prelu.prototxt: layer 'conv1_relu' has type 'PReLU'"):
        _convert(out, "--model_name=caffe_ssd", f"--caffemodel_path={face_model[1]}",
                 f"--prototxt_path={prototxt}", "--mean_values=104,177,123")
    _assert_nothing_written(out)


def test_caffe_ssd_blob_shapes_must_fit(face_model, tmp_path):
    prototxt = tmp_path / "narrow.prototxt"
    with open(face_model[0]) as f:
        # conv1_h as a 5x5 kernel: every blob shape downstream still fits, its weights do not.
        prototxt.write_text(f.read().replace("pad: 3\n    kernel_size: 7", "pad: 2\n    kernel_size: 5", 1))
    out = tmp_path / "out" / "face"
    with pytest.raises(CaffeModelError, match=r"layer 'conv1_h' blob 0 has shape \[32, 3, 7, 7\], the network "
                                              r"expects \[32, 3, 5, 5\]"):
        _convert(out, "--model_name=caffe_ssd", f"--caffemodel_path={face_model[1]}",
                 f"--prototxt_path={prototxt}", "--mean_values=104,177,123")
    _assert_nothing_written(out)


def test_vgg_blob_shapes_must_fit(vgg_ssd_model, tmp_path):
    out = tmp_path / "out" / "vgg"
    with pytest.raises(CaffeModelError, match=r"layer 'conv4_3_norm_mbox_conf' weights has shape "
                                              r"\[84, 512, 3, 3\], the network expects \[44, 512, 3, 3\]"):
        _convert(out, "--model_name=ssd_300_vgg", "--num_classes=11",
                 f"--caffemodel_path={vgg_ssd_model('ssd_300_vgg')['caffemodel']}")
    _assert_nothing_written(out)


def _vgg_prototxt(tmp_path, edit=None, **net_args):
    net, _ = caffe_writer.vgg_ssd_net("ssd_300_vgg", **net_args)
    if edit:
        edit({l.name: l for l in net.layer})
    path = tmp_path / "deploy.prototxt"
    path.write_text(text_format.MessageToString(net))
    return str(path)


@pytest.mark.parametrize("case,message", [
    ("stride", r"layer 'conv6_2' is kernel/stride/pad/dilation/group .* ssd_300_vgg's block8/conv3x3 is"),
    ("normalize", r"Normalize 'conv4_3_norm' must be across_spatial false"),
    ("offset", r"PriorBox 'fc7_mbox_priorbox': offset 0.3 differs from the other PriorBox layers' 0.5"),
    ("pool", r"layer 'pool5' must be 3x3 stride 1 pad 1 MAX pooling"),
])
def test_vgg_prototxt_must_fit_the_network(case, message, vgg_ssd_model, tmp_path):
    edits = {
        "stride": lambda layers: layers["conv6_2"].convolution_param.stride.__setitem__(0, 1),
        "pool": lambda layers: setattr(layers["pool5"].pooling_param, "pool", 1),
        "offset": None, "normalize": None,
    }
    prototxt = _vgg_prototxt(
        tmp_path, edits[case],
        **({"prior_overrides": {"fc7": "offset: 0.3"}} if case == "offset" else {}),
        **({"normalize": "across_spatial: true channel_shared: false"} if case == "normalize" else {}))
    out = tmp_path / "out" / "vgg"
    with pytest.raises(CaffeModelError, match=message):
        _convert(out, "--model_name=ssd_300_vgg", f"--prototxt_path={prototxt}",
                 f"--caffemodel_path={vgg_ssd_model('ssd_300_vgg')['caffemodel']}")
    _assert_nothing_written(out)


def test_vgg_num_classes_must_agree_with_prototxt(vgg_ssd_model, tmp_path):
    model = vgg_ssd_model("ssd_300_vgg")
    out = tmp_path / "out" / "vgg"
    with pytest.raises(ConfigError, match="--num_classes=11 but the prototxt's DetectionOutput has 21"):
        _convert(out, "--model_name=ssd_300_vgg", "--num_classes=11", f"--prototxt_path={model['prototxt']}",
                 f"--caffemodel_path={model['caffemodel']}")
    _assert_nothing_written(out)


def test_vgg_caffemodel_priors_must_agree_without_prototxt(vgg_ssd_model, tmp_path):
    """Without a prototxt the network's anchors are used; a caffemodel whose own PriorBox layers say otherwise
    must not convert silently."""
    model = vgg_ssd_model("ssd_300_vgg")
    net, _ = caffe_writer.vgg_ssd_net("ssd_300_vgg", prior_overrides={"conv6_2": "min_size: 100"})
    _, caffemodel = caffe_writer.write_model(tmp_path, "other_priors", net, model["weights"])
    out = tmp_path / "out" / "vgg"
    with pytest.raises(CaffeModelError, match="PriorBox 'conv6_2_mbox_priorbox' .* pass the deploy prototxt"):
        _convert(out, "--model_name=ssd_300_vgg", f"--caffemodel_path={caffemodel}")
    _assert_nothing_written(out)


def test_missing_arguments(face_model, tmp_path):
    out = tmp_path / "out" / "face"
    with pytest.raises(ConfigError, match="--prototxt_path .* is required for caffe_ssd"):
        _convert(out, "--model_name=caffe_ssd", f"--caffemodel_path={face_model[1]}", "--mean_values=1,2,3")
    with pytest.raises(ConfigError, match="nope.caffemodel: no such file"):
        _convert(out, "--model_name=caffe_ssd", f"--caffemodel_path={tmp_path / 'nope.caffemodel'}")
    with pytest.raises(ConfigError, match="--mean_values must be three numbers"):
        _convert(out, "--model_name=caffe_ssd", f"--caffemodel_path={face_model[1]}",
                 f"--prototxt_path={face_model[0]}", "--mean_values=1,2")
    _assert_nothing_written(out)
