"""Training from scratch with the documented default flags learns on data unlike the quickstart's.

The quickstart overrides several defaults (its light augmentation, weight decay, schedule and, until the
fix of issue 16, Adam's epsilon), so a default that stops SSD from learning went unseen there: Adam with
TF-Slim's epsilon of 1.0 trained to mAP 0.004 in 1,500 steps. This test runs the commands a new user
types, on a generated set of another shape (six Pascal VOC class names converted with VOC's own labels,
330-420 x 440-500 images, tiny `difficult` objects, border-cut `truncated` ones), stops half-way and
resumes, and asks for a mAP far above a random detector's on the held-out split.
"""
import json
import os
import subprocess
import sys

import pytest

from datasets.synthetic_voc import generate_synthetic_voc
from tests.evaluation.chance import random_detector_map

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SHAPES = ("ellipse", "cross", "triangle", "hexagon", "rectangle", "star")
NAMES = ("bird", "car", "cat", "dog", "person", "bottle")  # Pascal VOC classes, so VOC's labels convert them
STEPS = (150, 300)  # a first run, then the same command resumed to the second count


def run(argv):
    proc = subprocess.run([sys.executable] + argv, cwd=ROOT, capture_output=True, text=True, timeout=900,
                          env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_default_flags_learn_on_an_unseen_voc_layout_set(tmp_path):
    voc, records, train_dir, eval_dir = (str(tmp_path / d) for d in ("voc", "records", "train", "eval"))
    summary = generate_synthetic_voc(voc, num_train=160, num_test=48, image_size=((330, 420), (440, 500)),
                                     seed=11, class_names=SHAPES, names=NAMES)
    assert summary["num_difficult"] > 0 and summary["num_truncated"] > 0
    for split in ("trainval", "test"):
        run(["tf_convert_data.py", "--dataset_name=pascalvoc", f"--dataset_dir={voc}", f"--split={split}",
             f"--output_name=voc_2007_{split}", f"--output_dir={records}"])
    # The command: every flag not written here keeps its documented default (momentum and rate
    # schedule aside: Adam at 1e-3 as the report ran it; the Caffe SSD augmentation; weight decay 5e-4).
    logs = []
    for steps in STEPS:
        logs.append(run(["train_ssd_network.py", f"--train_dir={train_dir}", f"--dataset_dir={records}",
                         "--dataset_name=pascalvoc_2007", "--dataset_split_name=trainval",
                         "--model_name=ssd_300_vgg_lite", "--batch_size=8", "--optimizer=adam",
                         "--learning_rate=0.001", "--save_interval_secs=30", f"--max_number_of_steps={steps}",
                         "--log_every_n_steps=50"]))
    assert f"resumed from {train_dir}" in logs[1] and f"model.ckpt-{STEPS[0]}" in logs[1]
    assert "epsilon 1e-08" in logs[0]  # the optimiser line shows the epsilon actually used
    assert "no positive anchors" not in "".join(logs)
    metrics = os.path.join(eval_dir, "metrics.json")
    run(["eval_ssd_network.py", f"--checkpoint_path={train_dir}", f"--dataset_dir={records}",
         "--dataset_name=pascalvoc_2007", "--dataset_split_name=test", "--model_name=ssd_300_vgg_lite",
         f"--eval_dir={eval_dir}", f"--output_json={metrics}"])
    with open(metrics) as f:
        result = json.load(f)
    chance = random_detector_map(voc, list(NAMES))
    print(f"mAP_VOC07 {result['mAP_VOC07']:.4f}, random detector {chance:.4f}")
    scored = sorted(name for name, ap in result["AP_VOC07"].items() if ap is not None)
    assert scored == sorted(NAMES)  # the mAP is over the six classes present, not all twenty
    # Seen on the Zen 4 EPYC (unseeded, shared machine): 0.112 against a random detector's 0.0094. With
    # Adam's epsilon at 1.0 (the bug) as many images (150 steps of 16) gave 0.0004 on the set, and
    # 1,500 steps 0.004: no better than chance.
    assert result["mAP_VOC07"] > max(0.04, 4 * chance), (result["mAP_VOC07"], chance)
