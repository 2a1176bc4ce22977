"""Caffe SSD's VGG SSD-300 and SSD-512 (random weights, written by caffe_writer in Caffe's layer naming),
converted onto ssd_300_vgg / ssd_512_vgg, must detect what OpenCV's Caffe runtime detects."""
import json

import numpy as np
import pytest

import caffe_to_tensorflow
from inference.detector import Detector
from caffe_converter import caffe_writer
from tests.caffe_converter import reference

MEAN_BGR = (104.0, 117.0, 123.0)


def _convert_and_compare(model_name, tmp_path, grace_hopper, vgg_ssd_model, num_classes=21, model=None, extra=()):
    model = model or vgg_ssd_model(model_name)
    prototxt, caffemodel = model["prototxt"], model["caffemodel"]
    out = tmp_path / "checkpoint"
    caffe_to_tensorflow.main([f"--model_name={model_name}", f"--num_classes={num_classes}",
                              f"--caffemodel_path={caffemodel}", f"--prototxt_path={prototxt}", f"--output_dir={out}",
                              *extra])
    size = caffe_writer.VGG_SSD[model_name]["size"]
    image = grace_hopper(size)
    det_out, conf, loc, priors = reference.opencv_forward(
        prototxt, caffemodel, image, MEAN_BGR, ["detection_out", "mbox_conf_flatten", "mbox_loc", "mbox_priorbox"],
        fusion=True)
    with Detector(str(out)) as det:
        probabilities, decoded = det.raw(image)
        ours = det.detect(image)
    num_priors = priors.shape[2] // 4
    np.testing.assert_allclose(probabilities[0], conf.reshape(num_priors, num_classes), atol=1e-3)
    boxes = reference.caffe_decode(loc.reshape(-1, 4), priors[0, 0].reshape(-1, 4), priors[0, 1].reshape(-1, 4))
    np.testing.assert_allclose(decoded[0], boxes[:, [1, 0, 3, 2]], atol=1e-3)
    labels, scores, ref_boxes = reference.opencv_detections(det_out)
    assert len(scores) >= 100 and scores[99] > 0.1  # the random model's scores are spread, not all tiny
    top100 = (labels[:100], scores[:100], ref_boxes[:100])
    fraction = reference.matched_fraction(top100, (ours["classes"], ours["scores"], ours["boxes"]), 0.9, 0.01)
    assert fraction >= 0.95
    return out


def test_ssd_300_vgg_matches_opencv(tmp_path, grace_hopper, vgg_ssd_model):
    out = _convert_and_compare("ssd_300_vgg", tmp_path, grace_hopper, vgg_ssd_model)
    with open(out / "ssd_config.json") as f:
        config = json.load(f)
    assert config["model_name"] == "ssd_300_vgg" and config["mean_rgb"] == [123.0, 117.0, 104.0]
    assert config["params"]["anchor_min_sizes"][0] == [30.0]
    assert config["class_names"][0] == "aeroplane"


@pytest.mark.slow
def test_ssd_512_vgg_matches_opencv(tmp_path, grace_hopper, vgg_ssd_model):
    out = _convert_and_compare("ssd_512_vgg", tmp_path, grace_hopper, vgg_ssd_model)
    with open(out / "ssd_config.json") as f:
        params = json.load(f)["params"]
    # The prototxt's priors (Caffe's VOC SSD-512: conv4_3 at 35.84 / 76.8) replace the network's defaults.
    assert params["anchor_min_sizes"][0] == [35.84] and params["anchor_max_sizes"][-1] == [537.6]
    assert params["feat_shapes"] == [[64, 64], [32, 32], [16, 16], [8, 8], [4, 4], [2, 2], [1, 1]]


def test_ssd_300_vgg_without_prototxt(vgg_ssd_model, tmp_path):
    """Only the caffemodel: the network's own parameters, and the same weights as with the deploy prototxt."""
    import tensorflow as tf
    model = vgg_ssd_model("ssd_300_vgg")
    for name, extra in (("plain", []), ("deploy", [f"--prototxt_path={model['prototxt']}"])):
        caffe_to_tensorflow.main(["--model_name=ssd_300_vgg", f"--caffemodel_path={model['caffemodel']}",
                                  f"--output_dir={tmp_path / name}", *extra])
    plain, deploy = (tf.train.load_checkpoint(str(tmp_path / n)) for n in ("plain", "deploy"))
    names = sorted(plain.get_variable_to_shape_map())
    assert names == sorted(deploy.get_variable_to_shape_map()) and len(names) == 2 * 23 + 2 * 12 + 1
    for name in names:
        np.testing.assert_array_equal(plain.get_tensor(name), deploy.get_tensor(name), err_msg=name)
    # conv1_1 takes RGB: Caffe's BGR input channels reversed, kernels [kh, kw, in, out].
    caffe_kernel = model["weights"]["conv1_1"][0]
    np.testing.assert_array_equal(plain.get_tensor("ssd_300_vgg/conv1/conv1_1/weights"),
                                  caffe_kernel[:, ::-1].transpose(2, 3, 1, 0))
    with open(tmp_path / "plain" / "ssd_config.json") as f:
        config = json.load(f)
    from nets import nets_factory
    assert config["params"] == json.loads(json.dumps(nets_factory.get_params("ssd_300_vgg").to_dict()))


COCO_NAMES = ["person", "bicycle", "car"] + [f"thing{i}" for i in range(4, 81)]
COCO_IDS = [1, 2, 3] + [i for i in range(4, 91) if i not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)][:77]


def write_labelmap(path):
    """A label map in the layout of the SSD fork's data/coco/labelmap_coco.prototxt (items out of order)."""
    items = [("none_of_the_above", 0, "background")] + [(str(i), k + 1, n)
                                                       for k, (i, n) in enumerate(zip(COCO_IDS, COCO_NAMES))]
    items = items[40:] + items[:40]
    path.write_text("".join(f'item {{\n  name: "{name}"\n  label: {label}\n  display_name: "{display}"\n}}\n'
                            for name, label, display in items))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("model_name", ["ssd_300_vgg_coco", "ssd_512_vgg_coco"])
def test_vgg_coco_matches_opencv(tmp_path, tmp_path_factory, grace_hopper, model_name):
    """The Caffe COCO release layout: 81 classes, ssd_coco.py's PriorBox sizes, labelmap_coco's names."""
    net, convs = caffe_writer.vgg_ssd_net(model_name, num_classes=81)
    weights = caffe_writer.vgg_ssd_weights(convs, seed=5)
    prototxt, caffemodel = caffe_writer.write_model(tmp_path_factory.mktemp(model_name), model_name, net, weights)
    labelmap = write_labelmap(tmp_path / "labelmap_coco.prototxt")
    out = _convert_and_compare(model_name, tmp_path, grace_hopper, None, num_classes=81,
                               model={"prototxt": prototxt, "caffemodel": caffemodel},
                               extra=[f"--labelmap_path={labelmap}"])
    with open(out / "ssd_config.json") as f:
        config = json.load(f)
    from nets import nets_factory
    assert config["model_name"] == model_name and config["num_classes"] == 81
    assert config["class_names"] == COCO_NAMES and config["coco_category_ids"] == COCO_IDS
    # The prototxt's PriorBox sizes (caffe_writer's, from ssd_coco.py's rule) become params equal to the defaults.
    assert config["params"] == json.loads(json.dumps(nets_factory.get_params(model_name).to_dict()))


def test_bad_labelmap(tmp_path, vgg_ssd_model, capsys):
    from common.errors import run_main
    model = vgg_ssd_model("ssd_300_vgg")
    labelmap = write_labelmap(tmp_path / "labelmap_coco.prototxt")
    with pytest.raises(SystemExit) as info:
        run_main(caffe_to_tensorflow.main, ["--model_name=ssd_300_vgg", f"--caffemodel_path={model['caffemodel']}",
                                            f"--labelmap_path={labelmap}", f"--output_dir={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert info.value.code == 1 and "81 labels (background included), the model has 21 classes" in err
    assert not (tmp_path / "out").exists()
