"""inference/exports.py on a batch norm + depthwise network: SSDLite MobileNet-v2 (depth 0.35) with random batch
norm statistics, exported to ONNX (tf2onnx) and TFLite, must compute the network's outputs that TensorFlow
computes, in ONNX Runtime and LiteRT. The VGG exports are checked end to end in tests/scripts/test_export_ssd.py;
this covers what VGG has not: batch norm (folded by the converters) and depthwise convolutions, at [-1, 1] input
scaling."""
import numpy as np
import pytest

from inference import exports, runtimes
from inference.detector import Detector
from nets import nets_factory
from training.checkpoints import random_batch_norm_statistics, save_initial_model


@pytest.fixture(scope="module")
def ssdlite_checkpoint(tmp_path_factory):
    config = nets_factory.default_config("ssdlite_320_mobilenet_v2", class_names=["a", "b", "c"])
    config["params"]["depth_multiplier"] = 0.35
    # Random statistics and offsets keep the activations O(1) through the network, so every output depends on
    # the batch norms (a fresh network's activations vanish: every score would tie).
    out = str(tmp_path_factory.mktemp("ssdlite"))
    save_initial_model(out, config=config, seed=3, load_values=random_batch_norm_statistics(np.random.default_rng(7)))
    return out


@pytest.fixture(scope="module")
def images():
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)


def _spread(values):
    return float(np.std(values))


def test_onnx_runtime_computes_the_tensorflow_outputs(ssdlite_checkpoint, images, tmp_path):
    import onnx
    with Detector(ssdlite_checkpoint, portable=True) as plain:
        probabilities, boxes = plain.raw(images)
        path = str(tmp_path / "network.onnx")
        onnx.save(exports.onnx_model(plain, exports.network_outputs(plain)), path)
    assert _spread(probabilities) > 1e-3 and _spread(boxes) > 1e-2  # outputs that can disagree
    out = runtimes.OnnxRuntimeDetector(path, threads=2).run(images)
    np.testing.assert_allclose(out["probabilities"], probabilities, atol=2e-5)
    np.testing.assert_allclose(out["decoded_boxes"], boxes, atol=2e-5)


def test_litert_computes_the_tensorflow_outputs(ssdlite_checkpoint, images, tmp_path):
    with Detector(ssdlite_checkpoint, portable=True, batch_size=1, nms="per_class") as single:
        expected = [single.raw(image[None]) for image in images]
        outputs = exports.network_outputs(single)
        names = {k: t.op.name for k, t in outputs.items()}  # TFLite names its outputs by the graph's tensors
        path = tmp_path / "network.tflite"
        path.write_bytes(exports.tflite_model(single, outputs))
    model = runtimes.LiteRtDetector(str(path), threads=2)
    for image, (probabilities, boxes) in zip(images, expected):
        out = model.run(image[None])
        np.testing.assert_allclose(out[names["probabilities"]], probabilities, atol=2e-5)
        np.testing.assert_allclose(out[names["decoded_boxes"]], boxes, atol=2e-5)
