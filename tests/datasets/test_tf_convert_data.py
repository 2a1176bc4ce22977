"""The command line tf_convert_data.py: flags of INTERFACES.md, output, strict and --skip_invalid runs.

Two runs go through a real subprocess (TensorFlow's start-up makes each cost seconds); the bad-input
cases call the script's `main` through `run_main` in this process, which is what `__main__` does.
"""
import os
import subprocess
import sys

import pytest

from voc_testdata import BAD_CASES, SPLITS, read_records, write_voc_dir
import tf_convert_data
from common.errors import run_main

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SCRIPT = os.path.join(ROOT, "tf_convert_data.py")
FLAGS = ("--dataset_name", "--dataset_dir", "--output_name", "--output_dir", "--split", "--samples_per_file",
         "--num_threads", "--skip_invalid", "--labels_file")


def _script(*args):
    return subprocess.run([sys.executable, SCRIPT, *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def _main(capsys, *args):
    with pytest.raises(SystemExit) as exit_info:
        run_main(tf_convert_data.main, list(args))
    out, err = capsys.readouterr()
    return exit_info.value.code, out, err


def test_help_lists_the_interface_flags():
    result = _script("--help")
    assert result.returncode == 0
    for flag in FLAGS:
        assert flag in result.stdout


def test_skip_invalid_run(tmp_path):
    voc_dir = write_voc_dir(tmp_path / "VOC")
    for case in ("unknown_class", "truncated_png"):  # 000002.xml and 000006.png
        BAD_CASES[case][0](voc_dir)
    out = tmp_path / "records"
    result = _script("--dataset_name=pascalvoc", f"--dataset_dir={voc_dir}", "--output_name=voc_2007_trainval",
                     f"--output_dir={out}", "--split=trainval", "--samples_per_file=3", "--num_threads=2",
                     "--skip_invalid")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert (f"skipped: {voc_dir}/Annotations/000002.xml: object 2: unknown class 'spaceship' "
            "(not among the 20 class names)") in lines
    assert f"skipped: {voc_dir}/JPEGImages/000006.png: truncated PNG (no IEND chunk)" in lines
    assert "6/6 images processed" in result.stdout
    assert "wrote 4 images (5 objects, 2 difficult) of 20 classes in 2 shards, skipped 2" in result.stdout
    files = ["voc_2007_trainval_000.tfrecord", "voc_2007_trainval_001.tfrecord", "voc_2007_trainval_metadata.json"]
    assert lines[-3:] == [f"  {out}/{name}" for name in files]
    assert sorted(os.listdir(out)) == files
    assert [len(read_records(out / f)) for f in files[:2]] == [3, 1]


def test_strict_run_fails_with_one_line_and_no_output(tmp_path):
    voc_dir = write_voc_dir(tmp_path / "VOC")
    BAD_CASES["truncated_jpeg"][0](voc_dir)
    out = tmp_path / "records"
    result = _script(f"--dataset_dir={voc_dir}", "--output_name=x", f"--output_dir={out}", "--split=trainval",
                     "--samples_per_file=1")
    assert result.returncode == 1
    [error] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert error.startswith(f"error: {voc_dir}/JPEGImages/000002.jpg: ") and "truncated" in error
    assert result.stderr.rstrip().endswith(error) and "wrote" not in result.stdout
    assert not out.exists() or os.listdir(out) == []
    assert sorted(os.listdir(tmp_path)) == ["VOC"]


@pytest.mark.parametrize("case", sorted(BAD_CASES))
def test_each_bad_input_stops_a_strict_run(case, tmp_path, capsys):
    voc_dir = write_voc_dir(tmp_path / "VOC")
    damage, bad_file, word = BAD_CASES[case]
    damage(voc_dir)
    out = tmp_path / "records"
    out.mkdir()  # an existing, empty output folder stays empty
    code, stdout, stderr = _main(capsys, f"--dataset_dir={voc_dir}", "--output_name=x", f"--output_dir={out}",
                                 "--split=trainval", "--samples_per_file=1")
    assert code == 1
    [line] = stderr.splitlines()
    assert line.startswith(f"error: {voc_dir}/{bad_file}: ") and word in line
    assert os.listdir(out) == []
    assert "wrote" not in stdout


def test_labels_file(tmp_path, capsys):
    voc_dir = write_voc_dir(tmp_path / "VOC")
    labels = tmp_path / "labels.txt"
    labels.write_text("# my classes\nsofa\nbird\ncar\n")
    args = [f"--dataset_dir={voc_dir}", "--output_name=mine", f"--output_dir={tmp_path / 'out'}", "--split=test",
            f"--labels_file={labels}"]
    code, stdout, _ = _main(capsys, *args)
    assert code == 0 and f"wrote {len(SPLITS['test'])} images (3 objects, 0 difficult) of 3 classes" in stdout
    labels.write_text("sofa\nbird\nsofa\n")
    code, _, stderr = _main(capsys, *args)
    assert code == 1 and stderr == f"error: {labels}: line 3: duplicate class name 'sofa' (first on line 1)\n"


@pytest.mark.parametrize("flag,message", [
    ("--num_threads=0", "error: --num_threads: must be >= 1, got 0"),
    ("--samples_per_file=0", "error: --samples_per_file: must be >= 1, got 0"),
    ("--output_name=a/b", "error: --output_name: must be a file name prefix, got 'a/b'"),
])
def test_bad_flag_values(flag, message, tmp_path, capsys):
    code, _, stderr = _main(capsys, f"--dataset_dir={tmp_path}", "--output_name=x", flag)
    assert code == 1 and stderr.splitlines() == [message]


def test_missing_dataset_dir(tmp_path, capsys):
    code, _, stderr = _main(capsys, f"--dataset_dir={tmp_path / 'none'}", "--output_name=x",
                            f"--output_dir={tmp_path / 'out'}")
    assert code == 1 and stderr == f"error: {tmp_path / 'none'}: dataset directory does not exist\n"
    code, _, stderr = _main(capsys, "--dataset_name=coco", f"--dataset_dir={tmp_path}", "--output_name=x")
    assert code == 1 and "--annotations_file: required with --dataset_name=coco" in stderr
