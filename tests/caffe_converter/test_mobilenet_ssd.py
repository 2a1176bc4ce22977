"""chuanqi305's Caffe MobileNet-SSD (depthwise convolutions, BatchNorm + Scale after each, input scaled by
0.007843), written with random weights by caffe_writer, converted with --model_name=caffe_ssd and run by the
project's detection path, plain and optimised, detects what OpenCV's DNN detects: its top-100 reproduced."""
import numpy as np
import pytest

import caffe_to_tensorflow
from caffe_converter import caffe_ssd
from inference.detector import Detector
from caffe_converter import caffe_writer
from tests.caffe_converter import reference

MEAN_BGR, SCALE = (127.5, 127.5, 127.5), 0.007843


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    root = tmp_path_factory.mktemp("mobilenet_ssd")
    net, convs = caffe_writer.mobilenet_ssd_net()
    prototxt, caffemodel = caffe_writer.write_model(root, "deploy", net, caffe_writer.mobilenet_ssd_weights(convs, 3))
    caffe_to_tensorflow.main(["--model_name=caffe_ssd", f"--caffemodel_path={caffemodel}",
                              f"--prototxt_path={prototxt}", "--mean_values=127.5,127.5,127.5",
                              f"--input_scale={SCALE}", f"--output_dir={root / 'checkpoint'}"])
    return prototxt, caffemodel, str(root / "checkpoint")


def test_architecture_is_mobilenet_ssd(model):
    net, convs = caffe_writer.mobilenet_ssd_net()
    depthwise = [n for n, (cin, cout, _, group, _) in convs.items() if group == cin == cout > 1]
    # conv0, 13 depthwise + 13 pointwise, 4 x 2 extra layers: each followed by BatchNorm (and Scale)
    assert len(depthwise) == 13 and sum(1 for layer in net.layer if layer.type == "BatchNorm") == 35
    spec = caffe_ssd.net_spec.spec_from_prototxt_text(open(model[0]).read())
    # conv11 19x19 x 3 priors, conv13 10x10 x 6, then 5, 3, 2, 1 x 6
    assert spec.anchors.shape[0] == 19 * 19 * 3 + (10 * 10 + 5 * 5 + 3 * 3 + 2 * 2 + 1) * 6


@pytest.mark.parametrize("optimize", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_top_100_equal_opencv(model, grace_hopper, optimize):
    prototxt, caffemodel, checkpoint = model
    image = grace_hopper(300)
    out = reference.opencv_forward(prototxt, caffemodel, image, MEAN_BGR, ["detection_out"], fusion=True,
                                   scale=SCALE)[0]
    labels, scores, boxes = reference.opencv_detections(out)
    assert len(scores) == 100 and len(set(labels)) > 5 and scores[0] - scores[-1] > 0.05  # real NMS work
    with Detector(checkpoint, keep_top_k=200, optimize=optimize) as det:
        ours = det.detect(image)
    assert reference.matched_fraction((labels, scores, boxes), (ours["classes"], ours["scores"], ours["boxes"]),
                                      0.9, 0.01) == 1.0
    np.testing.assert_allclose(ours["scores"][:100], scores, atol=1e-3)
