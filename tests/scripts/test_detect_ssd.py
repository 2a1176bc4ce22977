"""detect_ssd.py: images or a folder in, JSON and annotated PNGs out, for converted and native models."""
import json
import os
import re
import shutil
import subprocess
import sys

import matplotlib.cbook
import numpy as np
import pytest
from PIL import Image

import detect_ssd
from common.errors import CheckpointError, ConfigError, DatasetError
from datasets.pixel_boxes import relative_to_voc
from tests.caffe_converter import reference

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture()
def images(tmp_path):
    """A folder: the 512 x 600 colour portrait, a grey 200 x 300 copy, and a file that is not an image."""
    folder = tmp_path / "images"
    folder.mkdir()
    shutil.copy(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False), folder / "grace.jpg")
    with Image.open(folder / "grace.jpg") as image:
        image.convert("L").resize((200, 300)).save(folder / "grace.png")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_face_folder_json_and_annotations(face_checkpoint, face_model, images, tmp_path):
    checkpoint, (prototxt, caffemodel) = face_checkpoint, face_model
    out_json, out_dir = tmp_path / "dets.json", tmp_path / "annotated"
    assert detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={images}", f"--output_json={out_json}",
                            f"--output_dir={out_dir}", "--select_threshold=0.1"]) == 0
    with open(out_json) as f:
        records = json.load(f)["images"]
    assert [r["path"] for r in records] == [str(images / "grace.jpg"), str(images / "grace.png")]
    assert [(r["height"], r["width"]) for r in records] == [(600, 512), (300, 200)]
    for record in records:
        scores = [d["score"] for d in record["detections"]]
        assert scores == sorted(scores, reverse=True) and min(scores) > 0.1
        assert all(0.0 <= v <= 1.0 for d in record["detections"] for v in d["bbox"])
        best = record["detections"][0]
        assert best["label"] == 1 and best["class"] == "face" and best["score"] > 0.99
    # The face where OpenCV's Caffe runtime finds it on the same photograph (resized by OpenCV, hence IoU 0.9).
    image = np.asarray(Image.open(images / "grace.jpg").convert("RGB"))
    net_out = reference.opencv_forward(prototxt, caffemodel,
                                       np.asarray(Image.fromarray(image).resize((300, 300), Image.BILINEAR)),
                                       (104, 177, 123))
    _, _, boxes = reference.opencv_detections(net_out)
    assert reference.iou(boxes[0], records[0]["detections"][0]["bbox"]) > 0.95
    assert sorted(os.listdir(out_dir)) == ["grace.png", "grace_1.png"]
    with Image.open(out_dir / "grace.png") as annotated:
        drawn = np.asarray(annotated.convert("RGB"))
    assert drawn.shape == image.shape
    ymin, xmin, ymax, xmax = records[0]["detections"][0]["bbox"]
    # The bottom edge's pixel row: VOC's 1-based inclusive ymax (datasets/pixel_boxes.py), made 0-based.
    row = int(round(relative_to_voc(records[0]["detections"][0]["bbox"], *image.shape[:2])[3])) - 1
    columns = slice(int(xmin * image.shape[1]) + 5, int(xmax * image.shape[1]) - 5)
    assert np.abs(drawn[row, columns].astype(int) - image[row, columns]).mean() > 20  # the box's bottom edge


def test_native_model_single_image_with_overrides(native_checkpoint, images, tmp_path):
    out_json = tmp_path / "dets.json"
    detect_ssd.main([f"--checkpoint_path={native_checkpoint}", "--model_name=ssd_300_vgg_lite",
                     f"--image={images / 'grace.jpg'}", f"--output_json={out_json}", "--keep_top_k=5",
                     "--select_threshold=0.0"])
    with open(out_json) as f:
        (record,) = json.load(f)["images"]
    assert len(record["detections"]) == 5  # keep_top_k overrides the model's 200
    from datasets.voc_classes import VOC_CLASSES
    assert all(1 <= d["label"] <= 20 and d["class"] == VOC_CLASSES[d["label"] - 1] for d in record["detections"])


def test_bad_inputs_write_nothing(face_checkpoint, native_checkpoint, images, tmp_path):
    checkpoint = face_checkpoint
    out_json, out_dir = tmp_path / "dets.json", tmp_path / "annotated"
    outputs = [f"--output_json={out_json}", f"--output_dir={out_dir}"]
    (images / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(DatasetError, match="broken.jpg: cannot read the image"):
        detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={images}", *outputs])
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ConfigError, match="no images"):
        detect_ssd.main([f"--checkpoint_path={checkpoint}", f"--image={empty}", *outputs])
    with pytest.raises(ConfigError, match="is a caffe_ssd model, not ssd_300_vgg"):
        detect_ssd.main([f"--checkpoint_path={checkpoint}", "--model_name=ssd_300_vgg",
                         f"--image={images / 'grace.jpg'}", *outputs])
    with pytest.raises(CheckpointError):
        detect_ssd.main([f"--checkpoint_path={tmp_path / 'nowhere'}", f"--image={images / 'grace.jpg'}",
                         *outputs])
    assert not out_json.exists() and not out_dir.exists()
    assert sorted(os.listdir(tmp_path)) == ["empty", "images"]


def test_help_and_flag_errors():
    help_run = subprocess.run([sys.executable, "detect_ssd.py", "--help"], cwd=ROOT, capture_output=True,
                              text=True)
    assert help_run.returncode == 0 and "--checkpoint_path" in help_run.stdout
    with pytest.raises(ConfigError, match="--keep_top_k: must be >= 1"):
        detect_ssd.parse_args(["--checkpoint_path=x", "--image=y", "--keep_top_k=0"])


# ---------------------------------------------------------------- video (inference/video.py)

def test_video_detections_equal_the_image_path_on_the_decoded_frames(native_checkpoint, tmp_path, capsys):
    from tests.inference import clips
    clip, out, dets = tmp_path / "clip.mp4", tmp_path / "out.mp4", tmp_path / "dets.jsonl"
    clips.encode_clip(clip, num_frames=30)  # 160 x 120 at 29.97 frames/s
    common = [f"--checkpoint_path={native_checkpoint}", "--keep_top_k=20", "--select_threshold=0.05"]
    assert detect_ssd.main([*common, f"--video={clip}", f"--output_video={out}", f"--output_json={dets}",
                            "--batch_size=4", "--no_progress"]) == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith(f"{clip}: 30 frames in ") and "frames/s; detections >= 0.5 per class: " in summary
    # The same frames, decoded here with PyAV and saved losslessly, through --image.
    frames, times, rate, size = clips.decode(clip)
    folder = tmp_path / "frames"
    folder.mkdir()
    for i, frame in enumerate(frames):
        Image.fromarray(frame).save(folder / f"frame_{i:03d}.png")
    assert detect_ssd.main([*common, f"--image={folder}", f"--output_json={tmp_path / 'images.json'}"]) == 0
    with open(tmp_path / "images.json") as f:
        images = json.load(f)["images"]
    with open(dets) as f:
        lines = [json.loads(line) for line in f]
    assert [line["frame"] for line in lines] == list(range(30))
    assert [line["time_s"] for line in lines] == pytest.approx(times, abs=1e-6)
    for line, image in zip(lines, images):
        assert set(line) == {"frame", "time_s", "detections"} and line["detections"]
        clips.assert_same_detections(line["detections"], image["detections"])
    drawn, drawn_times, drawn_rate, drawn_size = clips.decode(out)
    assert (len(drawn), drawn_rate, drawn_size) == (len(frames), rate, size)
    assert drawn_times == pytest.approx(times, abs=1e-6)
    assert sorted(os.listdir(tmp_path)) == ["clip.mp4", "dets.jsonl", "frames", "images.json", "out.mp4"]


def _one_line_error(capsys, argv):
    with pytest.raises(SystemExit) as exit_:
        from common.errors import run_main
        run_main(detect_ssd.main, argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_.value.code == 1 and err[-1].startswith("error: "), err
    return err[-1]


def test_video_bad_inputs_are_one_line_errors_and_write_nothing(native_checkpoint, tmp_path, capsys):
    from tests.inference import clips
    bad = tmp_path / "bad"
    bad.mkdir()
    clips.encode_clip(bad / "clip.avi", num_frames=6, codec="mpeg4")
    (bad / "unknown_codec.avi").write_bytes((bad / "clip.avi").read_bytes().replace(b"FMP4", b"QQQQ"))
    (bad / "notes.mp4").write_text("not a video\n")
    Image.new("RGB", (64, 48), (200, 30, 30)).save(bad / "still.jpg")
    with av_audio_file(bad / "sound.wav"):
        pass
    clips.encode_clip(bad / "index_last.mp4", num_frames=6, faststart=False)
    clips.truncated_copy(bad / "index_last.mp4", bad / "index_cut.mp4")
    outputs = [f"--output_video={tmp_path / 'out.mp4'}", f"--output_json={tmp_path / 'dets.jsonl'}"]
    run = [f"--checkpoint_path={native_checkpoint}", *outputs, "--no_progress"]
    expected = {  # file -> the reason, a regular expression
        "missing.mp4": r"no such video file",
        "notes.mp4": r"not a readable video \(Invalid data found when processing input\)",
        "still.jpg": r"is a still image \((image2|jpeg_pipe)\), not a video: detect on it as an image",
        "sound.wav": r"holds no video stream \(audio\)",
        "unknown_codec.avi": r"unsupported video codec.*: this FFmpeg build has no decoder for it",
        "index_cut.mp4": r"not a readable video \(Invalid data found when processing input\)",
    }
    for name, reason in expected.items():
        message = _one_line_error(capsys, [*run, f"--video={bad / name}"])
        assert re.fullmatch(f"error: {re.escape(str(bad / name))}: {reason}", message), message
    assert _one_line_error(capsys, [*run, "--camera=63"]) == \
        "error: /dev/video63: no such camera (V4L2 device); `ls /dev/video*` lists them"
    assert _one_line_error(capsys, [f"--checkpoint_path={native_checkpoint}", f"--video={bad / 'clip.avi'}",
                                    f"--output_video={tmp_path / 'out.gif'}"]).startswith(
        f"error: {tmp_path / 'out.gif'}: unsupported video extension .gif")
    assert _one_line_error(capsys, [f"--checkpoint_path={native_checkpoint}", f"--video={bad / 'clip.avi'}",
                                    f"--output_video={bad / 'clip.avi'}"]) == \
        f"error: {bad / 'clip.avi'}: is the input: the output would replace it"
    assert _one_line_error(capsys, [*run, f"--video={bad / 'clip.avi'}", f"--image={bad / 'still.jpg'}"]) == \
        "error: --image: give exactly one of --image, --video and --camera"
    assert _one_line_error(capsys, [*run, f"--video={bad / 'clip.avi'}", "--every_n_frames=0"]) == \
        "error: --every_n_frames: must be >= 1, got 0"
    # A truncated video with its index first: the frames before the cut are kept, and the error names the frame.
    clips.encode_clip(bad / "clip.mp4", num_frames=30)
    clips.truncated_copy(bad / "clip.mp4", bad / "cut.mp4", fraction=0.8)
    good = clips.decodable_frames(bad / "cut.mp4")
    message = _one_line_error(capsys, [*run, f"--video={bad / 'cut.mp4'}"])
    assert re.match(f"error: {re.escape(str(bad / 'cut.mp4'))}: (damaged|truncated) at frame {good}: ", message) \
        and message.endswith(f"frames 0-{good - 1} were detected and kept in {tmp_path / 'out.mp4'} and "
                         f"{tmp_path / 'dets.jsonl'}")
    assert len(clips.decode(tmp_path / "out.mp4")[0]) == good
    with open(tmp_path / "dets.jsonl") as f:
        assert [json.loads(line)["frame"] for line in f] == list(range(good))
    assert sorted(os.listdir(tmp_path)) == ["bad", "dets.jsonl", "out.mp4"]


class av_audio_file:
    """Writes a short silent WAV file (an audio stream, no video) with PyAV."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        import av
        with av.open(str(self.path), "w") as container:
            stream = container.add_stream("pcm_s16le", rate=8000)
            frame = av.AudioFrame.from_ndarray(np.zeros((1, 800), np.int16), format="s16", layout="mono")
            frame.sample_rate = 8000
            container.mux(stream.encode(frame))
            container.mux(stream.encode(None))
        return self.path

    def __exit__(self, *exc):
        return False


def test_model_flag_errors(tmp_path):
    """--model (an export) or --checkpoint_path, not both; an export keeps its post-processing; unknown files."""
    with pytest.raises(ConfigError, match="either --checkpoint_path or --model"):
        detect_ssd.parse_args(["--image=y"])
    with pytest.raises(ConfigError, match="either --checkpoint_path or --model"):
        detect_ssd.parse_args(["--checkpoint_path=x", "--model=m.onnx", "--image=y"])
    with pytest.raises(ConfigError, match="--top_k: an export keeps the post-processing"):
        detect_ssd.parse_args(["--model=m.onnx", "--image=y", "--top_k=5"])
    image = tmp_path / "x.png"
    Image.new("RGB", (8, 8)).save(image)
    (tmp_path / "model.pb").write_bytes(b"")
    (tmp_path / "model.onnx").write_bytes(b"not onnx")
    (tmp_path / "folder").mkdir()
    for model, message in ((tmp_path / "model.pb", "unknown model format"), (tmp_path / "none.onnx", "no such"),
                           (tmp_path / "model.onnx", "ONNX Runtime cannot load"),
                           (tmp_path / "folder", "not a SavedModel folder")):
        with pytest.raises(ConfigError, match=message):
            detect_ssd.main([f"--model={model}", f"--image={image}", f"--output_json={tmp_path / 'd.json'}"])
    assert not (tmp_path / "d.json").exists()


# ---------------------------------------------------------------- --optimize and --precision

def _top(out_json, n=5):
    with open(out_json) as f:
        (record,) = json.load(f)["images"]
    return record["detections"][:n]


def test_optimize_detects_what_the_plain_graph_does(native_checkpoint, images, tmp_path):
    common = [f"--checkpoint_path={native_checkpoint}", f"--image={images / 'grace.jpg'}", "--keep_top_k=5"]
    detect_ssd.main(common + [f"--output_json={tmp_path / 'plain.json'}"])
    detect_ssd.main(common + [f"--output_json={tmp_path / 'optimized.json'}", "--optimize"])
    plain, optimized = _top(tmp_path / "plain.json"), _top(tmp_path / "optimized.json")
    assert len(plain) == len(optimized) == 5
    for a, b in zip(plain, optimized):  # Winograd and folding change the float rounding only
        assert a["label"] == b["label"] and abs(a["score"] - b["score"]) < 1e-3
        assert reference.iou(a["bbox"], b["bbox"]) > 0.99


def test_precision_flag(native_checkpoint, face_checkpoint, images, tmp_path):
    from common.precision import cpu_supports_bf16, onednn_enabled
    image = f"--image={images / 'grace.jpg'}"
    with pytest.raises(ConfigError, match="--optimize: is for --checkpoint_path"):
        detect_ssd.parse_args([f"--model={tmp_path / 'model.onnx'}", image, "--optimize"])
    if not onednn_enabled():
        pytest.skip("bf16 needs TensorFlow's oneDNN optimisations (TF_ENABLE_ONEDNN_OPTS=1)")
    # The lite VGG's --optimize graph is XLA-compiled: the bfloat16 rewrite would not reach it.
    with pytest.raises(ConfigError, match="compiled by XLA"):
        detect_ssd.main([f"--checkpoint_path={native_checkpoint}", image, "--optimize", "--precision=bf16",
                         f"--output_json={tmp_path / 'never.json'}"])
    assert not (tmp_path / "never.json").exists()
    if not cpu_supports_bf16():
        return  # the bfloat16 kernels would be emulated: slow, and nothing to compare
    # In bf16 the real face SSD finds Grace Hopper's face where float32 does.
    common = [f"--checkpoint_path={face_checkpoint}", image, "--keep_top_k=1"]
    detect_ssd.main(common + [f"--output_json={tmp_path / 'f32.json'}"])
    detect_ssd.main(common + [f"--output_json={tmp_path / 'bf16.json'}", "--precision=bf16"])
    (a,), (b,) = _top(tmp_path / "f32.json", 1), _top(tmp_path / "bf16.json", 1)
    assert a["score"] > 0.9 and a["label"] == b["label"] and abs(a["score"] - b["score"]) < 0.02
    assert reference.iou(a["bbox"], b["bbox"]) > 0.9
