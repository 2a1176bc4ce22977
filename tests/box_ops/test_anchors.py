"""Anchors against a PriorBox reference written here from the Caffe SSD definition (prior_box_layer.cpp)."""
import math

import numpy as np
import pytest

from box_ops import anchors
from nets.ssd_vgg_300 import SSD300_COCO_PARAMS, SSD300_PARAMS
from nets.ssd_vgg_512 import SSD512_COCO_PARAMS, SSD512_PARAMS


def caffe_prior_box(layer_w, layer_h, img_w, img_h, min_size, max_size, aspect_ratios, step, offset=0.5):
    """Straight transcription of PriorBoxLayer::Forward_cpu, one min and one max size, flip, no clip.

    Returns [layer_h * layer_w * A, 4] in Caffe's [xmin, ymin, xmax, ymax] order.
    """
    ars = [1.0]
    for ar in aspect_ratios:
        if any(abs(ar - a) < 1e-6 for a in ars):
            continue
        ars.append(ar)
        ars.append(1.0 / ar)
    out = []
    for h in range(layer_h):
        for w in range(layer_w):
            center_x = (w + offset) * step
            center_y = (h + offset) * step
            bw = bh = min_size
            out.append([(center_x - bw / 2.0) / img_w, (center_y - bh / 2.0) / img_h,
                        (center_x + bw / 2.0) / img_w, (center_y + bh / 2.0) / img_h])
            bw = bh = math.sqrt(min_size * max_size)
            out.append([(center_x - bw / 2.0) / img_w, (center_y - bh / 2.0) / img_h,
                        (center_x + bw / 2.0) / img_w, (center_y + bh / 2.0) / img_h])
            for ar in ars:
                if abs(ar - 1.0) < 1e-6:
                    continue
                bw = min_size * math.sqrt(ar)
                bh = min_size / math.sqrt(ar)
                out.append([(center_x - bw / 2.0) / img_w, (center_y - bh / 2.0) / img_h,
                            (center_x + bw / 2.0) / img_w, (center_y + bh / 2.0) / img_h])
    return np.array(out)


# The Caffe SSD VOC models' PriorBox layers, written out from ssd_pascal.py / ssd_pascal_512.py.
CAFFE_300 = dict(size=300, feat=[38, 19, 10, 5, 3, 1], min=[30, 60, 111, 162, 213, 264],
                 max=[60, 111, 162, 213, 264, 315], steps=[8, 16, 32, 64, 100, 300],
                 ratios=[[2], [2, 3], [2, 3], [2, 3], [2], [2]], count=8732)
# VOC SSD-512 (ssd_pascal_512.py): min_ratio 15, max_ratio 90, step 15, conv4_3 at 7% / 15%.
CAFFE_512 = dict(size=512, feat=[64, 32, 16, 8, 4, 2, 1], min=[35.84, 76.8, 153.6, 230.4, 307.2, 384.0, 460.8],
                 max=[76.8, 153.6, 230.4, 307.2, 384.0, 460.8, 537.6], steps=[8, 16, 32, 64, 128, 256, 512],
                 ratios=[[2], [2, 3], [2, 3], [2, 3], [2, 3], [2], [2]], count=24564)
# COCO SSD-512 (ssd_coco.py): min_ratio 10, conv4_3 at 4% / 10%.
CAFFE_512_COCO = dict(CAFFE_512, min=[20.48, 51.2, 133.12, 215.04, 296.96, 378.88, 460.8],
                      max=[51.2, 133.12, 215.04, 296.96, 378.88, 460.8, 542.72])
# COCO SSD-300 (ssd_coco.py): min_ratio 15, max_ratio 90, conv4_3 at 7% / 15%.
CAFFE_300_COCO = dict(CAFFE_300, min=[21, 45, 99, 153, 207, 261], max=[45, 99, 153, 207, 261, 315])


def caffe_script_sizes(min_dim, num_layers, min_ratio, max_ratio, first_min, first_max):
    """min/max sizes as the Caffe SSD example scripts compute them (ssd_pascal.py and friends)."""
    step = int(math.floor((max_ratio - min_ratio) / (num_layers - 2)))
    mins, maxs = [], []
    for ratio in range(min_ratio, max_ratio + 1, step):
        mins.append(min_dim * ratio / 100.0)
        maxs.append(min_dim * (ratio + step) / 100.0)
    return [min_dim * first_min / 100.0] + mins, [min_dim * first_max / 100.0] + maxs


def test_sizes_follow_the_caffe_example_scripts():
    assert caffe_script_sizes(300, 6, 20, 90, 10, 20) == (CAFFE_300["min"], CAFFE_300["max"])
    mins, maxs = caffe_script_sizes(512, 7, 15, 90, 7, 15)
    np.testing.assert_allclose(mins, CAFFE_512["min"])
    np.testing.assert_allclose(maxs, CAFFE_512["max"])
    assert caffe_script_sizes(300, 6, 15, 90, 7, 15) == (CAFFE_300_COCO["min"], CAFFE_300_COCO["max"])
    mins, maxs = caffe_script_sizes(512, 7, 10, 90, 4, 10)
    np.testing.assert_allclose(mins, CAFFE_512_COCO["min"])
    np.testing.assert_allclose(maxs, CAFFE_512_COCO["max"])


@pytest.mark.parametrize("caffe,params", [(CAFFE_300, SSD300_PARAMS), (CAFFE_512, SSD512_PARAMS),
                                          (CAFFE_512_COCO, SSD512_COCO_PARAMS), (CAFFE_300_COCO, SSD300_COCO_PARAMS)])
def test_anchors_equal_caffe_prior_box(caffe, params):
    ref = np.concatenate([
        caffe_prior_box(f, f, caffe["size"], caffe["size"], mn, mx, r, s)
        for f, mn, mx, r, s in zip(caffe["feat"], caffe["min"], caffe["max"], caffe["ratios"], caffe["steps"])])
    ours = anchors.ssd_anchors(params)
    assert ours.shape == (caffe["count"], 4) == ref.shape
    assert ours.dtype == np.float32
    # Ours are [ymin, xmin, ymax, xmax]; Caffe's [xmin, ymin, xmax, ymax].
    np.testing.assert_allclose(ours, ref[:, [1, 0, 3, 2]], atol=1e-6, rtol=0)


def test_prior_box_rectangular_steps_and_clip():
    boxes = anchors.prior_box((2, 3), (20, 30), [10], [20], [2], flip=False, clip=True, step=(10, 10))
    assert boxes.shape == (2 * 3 * 3, 4)
    assert boxes.min() >= 0 and boxes.max() <= 1
    # The third anchor at location (0, 0) has ratio 2: width 10*sqrt(2), height 10/sqrt(2), centre (5, 5).
    h = 10 / math.sqrt(2) / 2
    w = 10 * math.sqrt(2) / 2
    np.testing.assert_allclose(boxes[2], [max(0, (5 - h) / 20), max(0, (5 - w) / 30), (5 + h) / 20, (5 + w) / 30],
                               atol=1e-6)


def test_num_anchors_per_location():
    assert anchors.num_anchors_per_location([30], [60], [2], True) == 4
    assert anchors.num_anchors_per_location([60], [111], [2, 3], True) == 6
    assert anchors.num_anchors_per_location([60], [], [2, 3], False) == 3
    assert anchors.layer_num_anchors(SSD512_PARAMS) == [4, 6, 6, 6, 6, 4, 4]
