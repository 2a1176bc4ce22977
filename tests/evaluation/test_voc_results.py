"""VOC results files: writing, reading anyone's files, and clear errors on malformed ones."""
import os

import numpy as np
import pytest

from common.errors import DatasetError
from evaluation.voc_metric import ClassDetections
from evaluation.voc_results import (infer_split, read_results, read_results_file, results_filename,
                                    write_results)

CLASSES = ("cat", "dog", "diningtable")


def test_results_filename_is_the_devkits():
    assert results_filename("test", "diningtable") == "comp4_det_test_diningtable.txt"


def test_write_then_read_keeps_the_detections_in_rank_order(tmp_path):
    rng = np.random.default_rng(0)
    n = 50
    scores = np.round(rng.random(n), 2)  # ties
    boxes = rng.uniform(1, 400, (n, 4))
    ids = np.array([f"{i:06d}" for i in rng.integers(0, 20, n)])
    dets = {"cat": ClassDetections(ids, scores, boxes), "dog": ClassDetections.empty()}
    paths = write_results(str(tmp_path), "test", dets, CLASSES)
    assert sorted(os.listdir(tmp_path)) == sorted(results_filename("test", c) for c in CLASSES)
    assert paths == [str(tmp_path / results_filename("test", c)) for c in CLASSES]
    assert (tmp_path / "comp4_det_test_dog.txt").read_text() == ""

    read, notes = read_results(str(tmp_path), "test", CLASSES)
    assert notes == []
    order = np.argsort(-scores, kind="stable")  # written best first, ties in their given order
    cat = read["cat"]
    assert cat.image_ids.tolist() == ids[order].tolist()
    np.testing.assert_array_equal(cat.scores, scores[order])
    np.testing.assert_allclose(cat.boxes, boxes[order], atol=5e-4)
    assert cat.source == str(tmp_path / "comp4_det_test_cat.txt")
    assert len(read["dog"]) == 0 and len(read["diningtable"]) == 0


def test_written_scores_keep_float32_precision(tmp_path):
    scores = np.array([0.123456789, 1e-7, 0.98765432], dtype=np.float32).astype(np.float64)
    dets = {"cat": ClassDetections(["a", "b", "c"], scores, np.ones((3, 4)))}
    write_results(str(tmp_path), "val", dets, ("cat",))
    back = read_results_file(str(tmp_path / "comp4_det_val_cat.txt"))
    np.testing.assert_array_equal(back.scores.astype(np.float32), np.sort(scores.astype(np.float32))[::-1])


def test_write_is_all_or_nothing(tmp_path):
    out = tmp_path / "results"
    with pytest.raises(ValueError, match="horse"):
        write_results(str(out), "test", {"horse": ClassDetections.empty()}, CLASSES)
    assert not out.exists()


def test_reading_is_tolerant_of_whitespace_blank_lines_and_exponents(tmp_path):
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_bytes(b"\xef\xbb\xbf000005  0.5\t1 2 3 4\r\n\n   \n 000007 5e-1 1.5E1 2 3.0 4   \n000009 -2 1 1 9 9")
    dets = read_results_file(str(path))
    assert dets.image_ids.tolist() == ["000005", "000007", "000009"]
    np.testing.assert_array_equal(dets.scores, [0.5, 0.5, -2])
    np.testing.assert_array_equal(dets.boxes, [[1, 2, 3, 4], [15, 2, 3, 4], [1, 1, 9, 9]])


def test_empty_file_means_no_detections(tmp_path):
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_text("\n  \n")
    assert len(read_results_file(str(path))) == 0


@pytest.mark.parametrize("bad_line, reason", [
    ("000007 0.5 1 2 3", "5 fields"),
    ("000007 0.5 1 2 3 4 5", "7 fields"),
    ("000007 high 1 2 3 4", "'high' is not a finite number"),
    ("000007 nan 1 2 3 4", "'nan' is not a finite number"),
    ("000007 0.5 1 2 inf 4", "'inf' is not a finite number"),
])
def test_malformed_line_names_the_file_and_the_line(tmp_path, bad_line, reason):
    path = tmp_path / "comp4_det_test_cat.txt"
    path.write_text(f"000005 0.9 1 2 3 4\n\n{bad_line}\n000009 0.1 1 2 3 4\n")
    with pytest.raises(DatasetError) as info:
        read_results_file(str(path))
    message = str(info.value)
    assert message.startswith(f"{path}: line 3: {reason}")
    assert bad_line in message and "\n" not in message


def test_unknown_class_files_are_ignored_and_missing_ones_are_empty(tmp_path):
    (tmp_path / "comp4_det_test_cat.txt").write_text("000005 0.9 1 2 3 4\n")
    (tmp_path / "comp4_det_test_horse.txt").write_text("000005 0.9 1 2 3 4\n")
    (tmp_path / "comp4_det_val_dog.txt").write_text("garbage\n")  # another split: not read
    dets, notes = read_results(str(tmp_path), "test", CLASSES)
    assert len(dets["cat"]) == 1 and len(dets["dog"]) == 0 and len(dets["diningtable"]) == 0
    assert any("comp4_det_test_horse.txt" in n for n in notes)
    assert any("dog" in n and "diningtable" in n for n in notes)


def test_no_results_file_of_the_split_is_an_error(tmp_path):
    (tmp_path / "comp4_det_val_cat.txt").write_text("")
    with pytest.raises(DatasetError, match="no comp4_det_test_<class>.txt"):
        read_results(str(tmp_path), "test", CLASSES)
    with pytest.raises(DatasetError, match="does not exist"):
        read_results(str(tmp_path / "missing"), "test", CLASSES)


def test_infer_split(tmp_path):
    (tmp_path / "comp4_det_my_test_cat.txt").write_text("")
    (tmp_path / "comp4_det_my_test_diningtable.txt").write_text("")
    assert infer_split(str(tmp_path), CLASSES) == "my_test"
    (tmp_path / "comp4_det_val_dog.txt").write_text("")
    with pytest.raises(DatasetError, match="my_test.*val"):
        infer_split(str(tmp_path), CLASSES)
