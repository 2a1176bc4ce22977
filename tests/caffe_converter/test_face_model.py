"""The real Caffe SSD (OpenCV's ResNet-10 face detector) converted with --model_name=caffe_ssd and run by the
project's detection path must detect exactly what OpenCV's Caffe runtime detects."""
import json

import numpy as np
import pytest

from inference.detector import Detector
from tests.caffe_converter import reference

MEAN_BGR = (104.0, 177.0, 123.0)


@pytest.fixture(scope="module")
def detector(face_checkpoint):
    with Detector(face_checkpoint) as det:
        yield det


@pytest.fixture(scope="module")
def opencv_outputs(face_model, grace_hopper):
    return reference.opencv_forward(*face_model, grace_hopper(300), MEAN_BGR,
                                    ["detection_out", "mbox_conf_flatten", "mbox_loc", "mbox_priorbox"],
                                    fusion=True)


def test_detections_equal_opencv(detector, opencv_outputs, grace_hopper):
    labels, scores, boxes = reference.opencv_detections(opencv_outputs[0], min_score=0.15)
    ours = detector.detect(grace_hopper(300))
    keep = ours["scores"] > 0.15
    assert len(scores) == 4 and scores[0] > 0.999  # the face, and three weak candidates
    assert keep.sum() == len(scores)
    np.testing.assert_array_equal(ours["classes"][keep], labels)
    np.testing.assert_allclose(ours["scores"][keep], scores, atol=1e-3)
    for ref_box, box in zip(boxes, ours["boxes"][keep]):
        assert reference.iou(ref_box, box) >= 0.99


def test_raw_outputs_equal_opencv(detector, opencv_outputs, grace_hopper):
    probabilities, decoded = detector.raw(grace_hopper(300))
    _, conf, loc, priors = opencv_outputs
    num_priors = priors.shape[2] // 4
    np.testing.assert_allclose(probabilities[0], conf.reshape(num_priors, 2), atol=1e-4)
    boxes = reference.caffe_decode(loc.reshape(-1, 4), priors[0, 0].reshape(-1, 4), priors[0, 1].reshape(-1, 4))
    np.testing.assert_allclose(decoded[0], boxes[:, [1, 0, 3, 2]], atol=1e-4)


def test_configuration(face_checkpoint, face_model):
    with open(f"{face_checkpoint}/ssd_config.json") as f:
        config = json.load(f)
    assert config["model_name"] == "caffe_ssd" and config["num_classes"] == 2
    assert config["class_names"] == ["face"]
    assert config["mean_rgb"] == [123.0, 177.0, 104.0]  # --mean_values are BGR, the config RGB
    assert config["post_processing"] == {"select_threshold": 0.01, "nms_threshold": 0.45, "top_k": 400,
                                         "keep_top_k": 200}
    with open(face_model[0]) as f:
        assert config["prototxt"] == f.read()
