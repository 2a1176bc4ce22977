"""notebooks/ssd_notebook.ipynb executes headless, cell by cell, and draws its figures.

Run twice: from notebooks/ with no quickstart or VOC model (those sections print how to get them), and from the
repository root with a quickstart-shaped folder (a tiny synthetic VOC set and a randomly initialised
ssd_300_vgg_lite saved as training saves it) so that every cell's code path runs.
"""
import json
import os
import re

import nbformat
import pytest
from jupyter_client.kernelspec import KernelSpecManager
from jupyter_client.manager import KernelManager
from nbclient import NotebookClient

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
NOTEBOOK = os.path.join(ROOT, "notebooks", "ssd_notebook.ipynb")
CELL_TIMEOUT = 300


def execute(cwd):
    """The executed notebook. Its kernel is ipykernel on this interpreter (sys.executable), whatever kernelspecs
    the machine has registered: no kernel directories, so jupyter_client falls back to ipykernel's native spec."""
    nb = nbformat.read(NOTEBOOK, as_version=4)
    km = KernelManager(kernel_name="python3", kernel_spec_manager=KernelSpecManager(kernel_dirs=[]))
    NotebookClient(nb, km=km, timeout=CELL_TIMEOUT, allow_errors=False,
                   resources={"metadata": {"path": cwd}}).execute()
    return nb


def outputs(nb):
    return [out for cell in nb.cells if cell.cell_type == "code" for out in cell.outputs]


def png_count(nb):
    return sum("image/png" in out.get("data", {}) for out in outputs(nb))


def stdout(nb):
    return "".join(out.get("text", "") for out in outputs(nb) if out.output_type == "stream")


def check_face(text):
    """The converted Caffe face SSD finds Grace Hopper's face, and only it, with a score >= 0.5."""
    scores = [float(s) for s in re.findall(r"^\s+face\s+(\d\.\d{4})\s", text, flags=re.M)]
    assert scores and scores[0] >= 0.99, text
    assert sum(s >= 0.5 for s in scores) == 1, scores


def check_video(text):
    """The video section: the face SSD over the 24-frame clip finds a face on its first frame."""
    assert re.search(r"hopper\.mp4: 24 frames in [\d.]+ s, [\d.]+ frames/s; detections >= 0\.5 per class: face \d+",
                     text), text
    assert re.search(r"first JSON line: frame 0, time 0\.0 s, best face 0\.9\d{3}", text), text


def test_committed_without_outputs():
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.outputs == [] and c.execution_count is None for c in code)


def test_executes_from_notebooks_dir_without_models(tmp_path, monkeypatch):
    monkeypatch.setenv("SSD_QUICKSTART_DIR", str(tmp_path / "no_quickstart"))
    monkeypatch.setenv("SSD_MODEL_DIR", str(tmp_path / "no_model"))
    nb = execute(os.path.join(ROOT, "notebooks"))  # about 20 s on 2 cores
    text = stdout(nb)
    check_face(text)
    assert "No quickstart model" in text and "make quickstart" in text
    assert "No model at" in text
    check_video(text)
    assert png_count(nb) == 3  # the face detections, the anchors, frames of the annotated video


@pytest.fixture()
def quickstart_dir(tmp_path):
    """The layout quickstart.py writes: synthetic_voc/ (VOC layout), train/ (checkpoint + ssd_config.json),
    eval/results.json; the model is randomly initialised (the notebook's code path, not its accuracy)."""
    from datasets.synthetic_voc import SYNTHETIC_CLASSES, generate_synthetic_voc
    from training.checkpoints import save_initial_model
    out = tmp_path / "quickstart_out"
    generate_synthetic_voc(str(out / "synthetic_voc"), num_train=1, num_test=3, seed=0)
    save_initial_model(str(out / "train"), class_names=SYNTHETIC_CLASSES, seed=0, global_step=1)
    (out / "eval").mkdir()
    (out / "eval" / "results.json").write_text(json.dumps({"num_images": 3, "mAP_VOC07": 0.0, "mAP_VOC12": 0.0}))
    return out


@pytest.mark.slow
def test_executes_from_root_with_models(quickstart_dir, monkeypatch):
    monkeypatch.setenv("SSD_QUICKSTART_DIR", str(quickstart_dir))
    monkeypatch.setenv("SSD_MODEL_DIR", str(quickstart_dir / "train"))
    nb = execute(ROOT)
    text = stdout(nb)
    check_face(text)
    assert "quickstart model ssd_300_vgg_lite" in text
    assert "quickstart evaluation on 3 test images" in text
    assert "model ssd_300_vgg_lite" in text and "No model at" not in text
    check_video(text)
    assert png_count(nb) == 5  # face, anchors, the quickstart grid, the chosen model on the photograph, video
