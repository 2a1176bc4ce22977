"""train_ssd_network.py on COCO records (--dataset_name=coco), then COCO -> VOC fine-tuning through the
script (--checkpoint_class_map=coco_to_voc). The class-map rows themselves are checked in
tests/training/test_checkpoint_init.py; here the two commands run end to end."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image


ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "train_ssd_network.py")
CATEGORIES = [{"id": 1, "name": "person"}, {"id": 3, "name": "car"}, {"id": 18, "name": "dog"}]


def write_tiny_coco(root, num_images=6, seed=0, categories=CATEGORIES):
    """Textured images of 96x128 with float boxes (one half a pixel outside), a crowd region and an image
    without objects."""
    rng = np.random.default_rng(seed)
    os.makedirs(os.path.join(root, "images"))
    images, annotations = [], []
    for n in range(num_images):
        image_id = 1000 + 17 * n
        pixels = rng.integers(0, 256, (96 // 8, 128 // 8, 3), dtype=np.uint8)
        Image.fromarray(pixels).resize((128, 96), Image.BILINEAR).save(os.path.join(root, "images", f"{image_id}.jpg"))
        images.append({"id": image_id, "file_name": f"{image_id}.jpg", "width": 128, "height": 96})
        for k in range(0 if n == 3 else 3):
            w, h = float(rng.uniform(20, 60)), float(rng.uniform(20, 50))
            x, y = float(rng.uniform(0, 128 - w)), float(rng.uniform(0, 96 - h))
            if n == 2 and k == 1:  # half a pixel outside the image, as some COCO boxes (kept unclipped)
                x = -0.5
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": categories[k]["id"],
                                "bbox": [round(x, 2), round(y, 2), round(w, 2), round(h, 2)],
                                "area": round(w * h * 0.7, 2), "iscrowd": int(n == 1 and k == 0)})
    path = os.path.join(root, "instances.json")
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)
    return path, os.path.join(root, "images")


def run(*args):
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, SCRIPT, "--model_name=ssd_300_vgg_lite", "--batch_size=2",
                           "--log_every_n_steps=1", "--save_interval_secs=0", "--optimizer=adam",
                           "--learning_rate=0.001", "--learning_rate_decay_type=fixed", "--seed=1",
                           "--num_summary_images=0", *args], capture_output=True, text=True, env=env, cwd=ROOT,
                          timeout=600)


@pytest.mark.slow
def test_train_on_coco_records_then_fine_tune_onto_voc_classes(tmp_path):
    from datasets.coco_to_tfrecords import convert_coco

    path, images = write_tiny_coco(str(tmp_path / "coco"))
    convert_coco(path, images, str(tmp_path / "records"), "coco_tiny", num_threads=1)
    coco_dir = tmp_path / "train_coco"
    proc = run(f"--train_dir={coco_dir}", f"--dataset_dir={tmp_path / 'records'}", "--dataset_name=coco",
               "--dataset_split_name=coco_tiny", "--max_number_of_steps=2")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "step 2" in proc.stdout
    with open(coco_dir / "ssd_config.json") as f:
        assert json.load(f)["class_names"] == ["person", "car", "dog"]

    # A dataset of VOC class names (in another order, one without a COCO source).
    voc_categories = [{"id": i + 1, "name": n} for i, n in enumerate(("dog", "sofa", "person", "car"))]
    path, images = write_tiny_coco(str(tmp_path / "voc"), num_images=4, seed=1, categories=voc_categories)
    convert_coco(path, images, str(tmp_path / "records"), "voc_names", num_threads=1)
    proc = run(f"--train_dir={tmp_path / 'train_voc'}", f"--dataset_dir={tmp_path / 'records'}", "--dataset_name=coco",
               "--dataset_split_name=voc_names", f"--checkpoint_path={coco_dir}", "--checkpoint_class_map=coco_to_voc",
               "--max_number_of_steps=1")
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = proc.stdout + proc.stderr
    assert "start from the checkpoint's mapped classes: background and 3 of 4 (3->dog, 1->person, 2->car)" in out


def test_class_map_needs_a_checkpoint(tmp_path, capsys):
    import train_ssd_network
    from common.errors import run_main

    with pytest.raises(SystemExit) as info:
        run_main(train_ssd_network.main, [f"--train_dir={tmp_path}", f"--dataset_dir={tmp_path}", "--dataset_name=coco",
                                          "--dataset_split_name=x",
                                          "--checkpoint_class_map=coco_to_voc"])
    assert info.value.code == 1
    assert "--checkpoint_class_map: goes with --checkpoint_path" in capsys.readouterr().err
