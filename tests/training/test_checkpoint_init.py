"""Initialising the lite SSD from checkpoints written by the tests: a vgg_16-scoped classifier (fc6/fc7
decimated onto conv6/conv7), a checkpoint with wrong shapes (all listed), missing variables, scopes."""
import numpy as np
import pytest
import tensorflow as tf

from common.errors import CheckpointError
from nets import nets_factory
from training import checkpoint_init
from training.checkpoint_init import variable_name

MODEL = "ssd_300_vgg_lite"
# The lite model divides VGG's channels by 8: conv1 8, conv2 16, conv3 32, conv4/conv5 64, fc6/fc7 4096/8.
VGG_LITE = {"conv1": (2, 3, 8), "conv2": (2, 8, 16), "conv3": (3, 16, 32), "conv4": (3, 32, 64),
            "conv5": (3, 64, 64)}
EXTRA_SCOPES = tuple(f"{MODEL}/block{i}" for i in (8, 9, 10, 11)) + ("*_box",)


def write_checkpoint(prefix, tensors):
    """A checkpoint holding exactly `tensors` (name -> array)."""
    with tf.Graph().as_default():
        variables = [tf.compat.v1.get_variable(n, initializer=tf.constant(v)) for n, v in tensors.items()]
        saver = tf.compat.v1.train.Saver(variables)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            saver.save(session, prefix, write_meta_graph=False, write_state=False)
    return prefix


def vgg16_lite_tensors(seed=0):
    """A TF-Slim vgg_16 classifier's variables, channels divided by 8 as the lite SSD's base."""
    rng = np.random.default_rng(seed)
    out = {}
    for block, (n, cin, cout) in VGG_LITE.items():
        for i in range(1, n + 1):
            out[f"vgg_16/{block}/{block}_{i}/weights"] = rng.normal(size=(3, 3, cin, cout)).astype(np.float32)
            out[f"vgg_16/{block}/{block}_{i}/biases"] = rng.normal(size=(cout,)).astype(np.float32)
            cin = cout
    out["vgg_16/fc6/weights"] = rng.normal(size=(7, 7, 64, 512)).astype(np.float32)
    out["vgg_16/fc6/biases"] = rng.normal(size=(512,)).astype(np.float32)
    out["vgg_16/fc7/weights"] = rng.normal(size=(1, 1, 512, 512)).astype(np.float32)
    out["vgg_16/fc7/biases"] = rng.normal(size=(512,)).astype(np.float32)
    out["vgg_16/fc8/weights"] = rng.normal(size=(1, 1, 512, 1000)).astype(np.float32)
    out["vgg_16/fc8/biases"] = rng.normal(size=(1000,)).astype(np.float32)
    return out


@pytest.fixture
def lite_graph():
    """A graph with the lite SSD's variables (6 classes); yields its model variables."""
    model = nets_factory.build_model(nets_factory.default_config(MODEL, num_classes=6))
    with tf.Graph().as_default() as graph:
        model.network_fn(tf.compat.v1.placeholder(tf.float32, [1, 300, 300, 3]))
        yield graph, tf.compat.v1.global_variables()


def test_subsample_classifier_is_caffes_fc_reduction():
    rng = np.random.default_rng(1)
    fc6 = rng.normal(size=(7, 7, 8, 16)).astype(np.float32)
    conv6 = checkpoint_init.subsample_classifier(fc6, (3, 3, 8, 4))
    for i, r in enumerate((0, 3, 6)):
        for j, c in enumerate((0, 3, 6)):
            for k, o in enumerate((0, 4, 8, 12)):
                assert conv6[i, j, :, k].tolist() == fc6[r, c, :, o].tolist()
    fc7 = rng.normal(size=(1, 1, 16, 16)).astype(np.float32)
    np.testing.assert_array_equal(checkpoint_init.subsample_classifier(fc7, (1, 1, 4, 4))[0, 0],
                                  fc7[0, 0][np.ix_([0, 4, 8, 12], [0, 4, 8, 12])])
    np.testing.assert_array_equal(checkpoint_init.subsample_classifier(np.arange(16.0), (4,)), [0, 4, 8, 12])
    assert checkpoint_init.subsample_classifier(fc6, (3, 3, 8, 5)) is None      # 16 is not a multiple of 5
    assert checkpoint_init.subsample_classifier(fc6, (5, 5, 8, 4)) is None      # 7 taps: no even 5-tap grid


def test_vgg16_checkpoint_maps_onto_the_base_with_fc_subsampling(lite_graph, tmp_path):
    graph, variables = lite_graph
    tensors = vgg16_lite_tensors()
    prefix = write_checkpoint(str(tmp_path / "vgg_16.ckpt"), tensors)
    plan = checkpoint_init.plan_restore(variables, prefix, MODEL, "vgg_16", EXTRA_SCOPES)
    assert not plan.missing
    expected = {f"{MODEL}/{n[len('vgg_16/'):]}": v for n, v in tensors.items() if "/fc" not in n}
    expected[f"{MODEL}/conv6/weights"] = tensors["vgg_16/fc6/weights"][0::3, 0::3, :, 0::4]
    expected[f"{MODEL}/conv6/biases"] = tensors["vgg_16/fc6/biases"][0::4]
    expected[f"{MODEL}/conv7/weights"] = tensors["vgg_16/fc7/weights"][:, :, 0::4, 0::4]
    expected[f"{MODEL}/conv7/biases"] = tensors["vgg_16/fc7/biases"][0::4]
    assert set(plan.values) == set(expected)
    assert plan.sources[f"{MODEL}/conv6/weights"] == ("vgg_16/fc6/weights", "subsampled from [7, 7, 64, 512]")
    init = checkpoint_init.CheckpointInitializer(plan, variables)
    by_name = {variable_name(v): v for v in variables}
    with tf.compat.v1.Session(graph=graph) as session:
        session.run(tf.compat.v1.global_variables_initializer())
        gamma_before = session.run(by_name[f"{MODEL}/block4_box/L2Normalization/gamma"])
        init(session)
        for name, value in expected.items():
            np.testing.assert_array_equal(session.run(by_name[name]), value, err_msg=name)
        # Excluded variables keep their initialisation (gamma: Caffe's 20).
        np.testing.assert_array_equal(session.run(by_name[f"{MODEL}/block4_box/L2Normalization/gamma"]),
                                      gamma_before)
        assert np.all(gamma_before == 20.0)


def test_missing_variables_fail_with_their_names_unless_ignored(lite_graph, tmp_path):
    _, variables = lite_graph
    prefix = write_checkpoint(str(tmp_path / "vgg_16.ckpt"), vgg16_lite_tensors())
    with pytest.raises(CheckpointError) as err:
        checkpoint_init.plan_restore(variables, prefix, MODEL, "vgg_16")
    text = str(err.value)
    assert "not in the checkpoint" in text and f"{MODEL}/block8/conv1x1/weights" in text
    assert f"{MODEL}/block4_box/L2Normalization/gamma" in text
    plan = checkpoint_init.plan_restore(variables, prefix, MODEL, "vgg_16", ignore_missing_vars=True)
    assert f"{MODEL}/block11/conv3x3/weights" in plan.missing
    assert f"{MODEL}/conv6/weights" in plan.values
    assert any("keep their initialisation" in n for n in plan.notices)


def test_wrong_shapes_are_all_listed_with_both_shapes(lite_graph, tmp_path):
    _, variables = lite_graph
    tensors = {variable_name(v): np.zeros(v.shape, np.float32) for v in variables}
    tensors[f"{MODEL}/conv1/conv1_1/weights"] = np.zeros((3, 3, 3, 16), np.float32)
    tensors[f"{MODEL}/block8/conv3x3/biases"] = np.zeros((99,), np.float32)
    prefix = write_checkpoint(str(tmp_path / "bad.ckpt"), tensors)
    with pytest.raises(CheckpointError) as err:
        checkpoint_init.plan_restore(variables, prefix, MODEL)
    text = str(err.value)
    assert "2 variables do not fit" in text
    assert f"{MODEL}/conv1/conv1_1/weights (checkpoint {MODEL}/conv1/conv1_1/weights): checkpoint " \
           f"[3, 3, 3, 16], model [3, 3, 3, 8]" in text
    assert f"{MODEL}/block8/conv3x3/biases" in text and "checkpoint [99], model [64]" in text


def test_other_number_of_classes_excludes_class_heads_with_a_notice(lite_graph, tmp_path):
    _, variables = lite_graph
    tensors = {}
    for v in variables:
        shape = list(v.shape)
        name = variable_name(v)
        if "conv_cls" in name:
            shape[-1] = shape[-1] // 6 * 21  # the same anchors, 21 classes
        tensors[name] = np.full(shape, 0.5, np.float32)
    plan = checkpoint_init.plan_restore(variables, write_checkpoint(str(tmp_path / "voc.ckpt"), tensors), MODEL)
    cls = sorted(n for n in tensors if "conv_cls" in n)
    assert len(cls) == 12 and sorted(plan.excluded) == cls
    assert set(plan.values) == set(tensors) - set(cls)
    assert any("another number of classes" in n for n in plan.notices)


def test_unreadable_checkpoint_and_scope_rules(tmp_path):
    with pytest.raises(CheckpointError, match="unreadable checkpoint"):
        checkpoint_init.plan_restore([], str(tmp_path / "nothing"), MODEL)
    assert checkpoint_init.parse_scopes(" a/b, c ,,") == ("a/b", "c")
    assert checkpoint_init.parse_scopes(None) == ()
    name = f"{MODEL}/block4_box/conv_cls/weights"
    assert checkpoint_init.matches_scope(name, f"{MODEL}/block4_box")          # TF-Slim prefix
    assert checkpoint_init.matches_scope(name, "*_box/conv_cls")               # glob, and below it
    assert not checkpoint_init.matches_scope(name, "*_box/conv_loc")
    assert not checkpoint_init.matches_scope(name, "")

    class Var:
        def __init__(self, name):
            self.name = name + ":0"
    names = [f"{MODEL}/conv1/conv1_1/weights", f"{MODEL}/block4_box/conv_cls/weights",
             f"{MODEL}/block10_box/conv_loc/biases"]
    chosen = checkpoint_init.variables_to_train([Var(n) for n in names], (f"{MODEL}/block[0-9]+_box",))
    assert [variable_name(v) for v in chosen] == names[1:]
    assert len(checkpoint_init.variables_to_train([Var(n) for n in names])) == 3


def _lite_variables(num_classes, seed):
    """(graph, variables, {name: initial value}) of the lite SSD with `num_classes` classes."""
    model = nets_factory.build_model(nets_factory.default_config(MODEL, num_classes=num_classes))
    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.set_random_seed(seed)
        model.network_fn(tf.compat.v1.placeholder(tf.float32, [1, 300, 300, 3]))
        variables = tf.compat.v1.global_variables()
    return graph, variables


def test_coco_to_voc_class_map_starts_the_voc_heads_from_the_coco_rows(tmp_path):
    """A COCO lite checkpoint (81 classes) into a VOC lite model (21): each VOC head channel a * 21 + t equals
    the COCO channel a * 81 + s of the COCO class Caffe's coco_voc_map.txt gives it (background from
    background), every other channel keeps its initial value, and every other variable is copied."""
    from datasets.voc_classes import VOC_CLASSES

    coco_graph, coco_vars = _lite_variables(81, seed=1)
    with coco_graph.as_default(), tf.compat.v1.Session() as session:
        session.run(tf.compat.v1.global_variables_initializer())
        coco_values = {variable_name(v): session.run(v) for v in coco_vars}
        # Biases are zero-initialised: give them values so that a wrong row would show.
        for v in coco_vars:
            if variable_name(v).endswith("conv_cls/biases"):
                coco_values[variable_name(v)] = np.random.default_rng(2).normal(size=v.shape).astype(np.float32)
    prefix = write_checkpoint(str(tmp_path / "coco.ckpt"), coco_values)
    # Written out here from the pairs of Caffe's data/VOC0712/coco_voc_map.txt (COCO label, VOC label, name).
    caffe_pairs = [(1, 15), (2, 2), (3, 7), (4, 14), (5, 1), (6, 6), (7, 19), (9, 4), (15, 3), (16, 8), (17, 12),
                   (18, 13), (19, 17), (20, 10), (40, 5), (57, 9), (58, 18), (59, 16), (61, 11), (63, 20)]
    class_map = checkpoint_init.read_class_map("coco_to_voc", VOC_CLASSES)
    assert sorted((s, t) for s, t, _ in class_map.pairs) == sorted(caffe_pairs)
    assert (class_map.num_source, class_map.num_target) == (81, 21)

    voc_graph, voc_vars = _lite_variables(21, seed=7)
    with voc_graph.as_default():
        plan = checkpoint_init.plan_restore(voc_vars, prefix, MODEL, class_map=class_map)
        initializer = checkpoint_init.CheckpointInitializer(plan, voc_vars)
        with tf.compat.v1.Session() as session:
            session.run(tf.compat.v1.global_variables_initializer())
            initial = {variable_name(v): session.run(v) for v in voc_vars}
            initializer(session)
            after = {variable_name(v): session.run(v) for v in voc_vars}
    heads = [n for n in after if "conv_cls" in n]
    assert len(heads) == 12 and sorted(plan.partial) == sorted(heads)
    assert any("start from the checkpoint's mapped classes" in n for n in plan.notices)
    source_of = dict((t, s) for s, t in caffe_pairs)
    source_of[0] = 0
    for name in heads:
        coco, voc, init = coco_values[name], after[name], initial[name]
        num_anchors = voc.shape[-1] // 21
        assert coco.shape[-1] == num_anchors * 81
        for a in range(num_anchors):
            for t in range(21):
                expected = coco[..., a * 81 + source_of[t]] if t in source_of else init[..., a * 21 + t]
                np.testing.assert_array_equal(voc[..., a * 21 + t], expected, err_msg=f"{name} anchor {a} class {t}")
    for name in after:
        if name not in heads:
            np.testing.assert_array_equal(after[name], coco_values[name], err_msg=name)


def test_class_map_file_lines_are_checked(tmp_path):
    names = ("cat", "dog", "car")
    path = tmp_path / "map.txt"
    path.write_text("# coco label, model label, name\n16,1,cat\n17,2,dog\n\n")
    class_map = checkpoint_init.read_class_map(str(path), names, num_source=81)
    assert class_map.pairs == ((16, 1, "cat"), (17, 2, "dog")) and class_map.num_target == 4
    target, source = class_map.channels(2)
    assert list(target) == [0, 1, 2, 4, 5, 6] and list(source) == [0, 16, 17, 81, 97, 98]
    from common.errors import ConfigError
    for text, message in (("16,2,cat\n", "line 1: label 2 of the model is 'dog', not 'cat'"),
                          ("16,1,cat\n17,1,cat\n", "line 2: model label 1 mapped twice"),
                          ("16,9,cat\n", "out of range"), ("x,1,cat\n", "expected 'from,to,name'"),
                          ("90,1,cat\n", "out of range")):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            checkpoint_init.read_class_map(str(path), names, num_source=81)
