"""inference/video.py: the streaming pipeline, against PyAV decoding the clips independently and the still-image
path (detect_batch on one frame, inference/annotation.py's drawing)."""
import json
import os
import re
import threading

import av
import numpy as np
import pytest

from common import arrays
from inference import annotation, video, video_io
from inference.detector import Detector
from tests.inference import clips


@pytest.fixture(scope="module")
def detector(native_checkpoint):  # tests/conftest.py: a random ssd_300_vgg_lite
    with Detector(native_checkpoint, keep_top_k=10) as det:
        yield det


class CountingDetector:
    """The detector, recording per call how many frames the source had decoded and how many it was given."""

    def __init__(self, detector, source):
        self.detector, self.calls, self.given, self.decoded, self.addresses = detector, [], 0, 0, []
        frames = source.frames

        def counted(max_frames=None):
            for frame in frames(max_frames):
                self.decoded += 1
                yield frame
        source.frames = counted

    @property
    def class_names(self):
        return self.detector.class_names

    def detect_batch(self, images):
        self.given += len(images)
        self.calls.append((self.decoded, self.given, threading.current_thread().name))
        self.addresses.append(images.ctypes.data)
        return self.detector.detect_batch(images)


class FailingDetector:
    """The detector, raising `error` on its call number `call` (1-based)."""

    def __init__(self, detector, call, error):
        self.detector, self.call, self.error, self.calls = detector, call, error, 0
        self.class_names = detector.class_names

    def detect_batch(self, images):
        self.calls += 1
        if self.calls == self.call:
            raise self.error
        return self.detector.detect_batch(images)


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


def test_frames_stream_through_in_bounded_memory(detector, tmp_path):
    """A 48-frame clip with batches of 2: the decoder never runs more than its queue ahead of the detector."""
    clip = tmp_path / "clip.mp4"
    clips.encode_clip(clip, num_frames=48, height=64, width=96)
    with video_io.VideoSource(str(clip)) as source:
        counting = CountingDetector(detector, source)
        summary = video.detect_video(counting, source, output_json=str(tmp_path / "d.jsonl"), batch_size=2,
                                     progress=False)
    assert summary["frames"] == summary["detected_frames"] == 48 and counting.given == 48
    assert len(counting.calls) == 24
    # Decoded but not yet detected: the decoder's queue (2 x batch), the batch being filled, one in hand.
    assert max(decoded - given for decoded, given, _ in counting.calls) <= 2 * 2 + 2 + 1
    assert [line["frame"] for line in read_lines(tmp_path / "d.jsonl")] == list(range(48))
    # Each batch is stacked into one reused array aligned for TensorFlow to take without a copy.
    assert len(set(counting.addresses)) == 1 and counting.addresses[0] % arrays.FEED_ALIGNMENT == 0


@pytest.mark.parametrize("shape,dtype", [((8, 72, 128, 3), np.uint8), ((3, 5), np.float32), ((1, 4), np.float64),
                                         ((7,), np.int16)])
def test_aligned_empty(shape, dtype):
    arrays_made = [arrays.aligned_empty(shape, dtype) for _ in range(3)]
    for a in arrays_made:
        assert a.shape == shape and a.dtype == dtype and a.flags.c_contiguous and a.flags.writeable
        assert a.ctypes.data % arrays.FEED_ALIGNMENT == 0
        a[...] = 1
    assert not any(np.shares_memory(a, b) for a, b in zip(arrays_made, arrays_made[1:]))


# yuv420p frames are drawn on their planes (annotation.annotate_yuv420), others through RGB (annotation.annotate).
@pytest.mark.parametrize("pix_fmt", ["yuv420p", "yuv444p"])
def test_every_n_frames_draws_the_last_boxes_on_the_frames_between(detector, tmp_path, pix_fmt):
    clip, out = tmp_path / "clip.mkv", tmp_path / "out.mkv"
    clips.encode_clip(clip, num_frames=24, rate=25, container_format="matroska", pix_fmt=pix_fmt)
    with video_io.VideoSource(str(clip)) as source:
        summary = video.detect_video(detector, source, str(out), str(tmp_path / "d.jsonl"), batch_size=3,
                                     every_n_frames=4, max_frames=22, draw_threshold=0.0, progress=False)
    assert summary["frames"] == 22 and summary["detected_frames"] == 6
    lines = read_lines(tmp_path / "d.jsonl")
    assert [line["frame"] for line in lines] == [0, 4, 8, 12, 16, 20]
    frames, times, rate, _ = clips.decode(clip)
    drawn, drawn_times, drawn_rate, _ = clips.decode(out)
    assert len(drawn) == 22 and drawn_rate == rate == 25
    np.testing.assert_allclose(drawn_times, times[:22], atol=1e-3)
    for line in lines:
        # Each detected frame's detections are the still-image path's on the same decoded frame.
        expected = annotation.detection_records(detector.detect(frames[line["frame"]]), list(detector.class_names))
        clips.assert_same_detections(line["detections"], expected)
        assert line["time_s"] == pytest.approx(times[line["frame"]], abs=1e-3)
    for i in (0, 5, 10, 21):  # detected, and carrying the boxes of frames 4, 8 and 20
        boxes = lines[i // 4]["detections"]
        expected = np.asarray(annotation.annotate(frames[i], boxes, 0.0)).astype(int)
        changed = np.abs(expected - frames[i]).max(axis=-1) > 60  # box lines and labels
        assert changed.mean() > 0.01
        # The encoded frame shows the drawing: far closer to it than to the plain frame (4:2:0 H.264 blurs the
        # colour of one-pixel lines, hence no tighter bound).
        to_drawing = np.abs(drawn[i][changed] - expected[changed]).mean()
        assert to_drawing < 25 and to_drawing < 0.4 * np.abs(drawn[i][changed] - frames[i][changed]).mean()


@pytest.mark.parametrize("angle,quarters", [(90, 1), (-90, 3)])
def test_a_turned_video_is_detected_drawn_and_written_upright(detector, tmp_path, angle, quarters):
    """A phone-style clip (landscape frames, a display matrix turning them a quarter turn): the detector, the
    boxes and the output video see the frames as players show them (OpenCV's reader, turning by the matrix)."""
    clip, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    clips.encode_clip(clip, num_frames=10, height=72, width=128, display_rotation=angle)
    with video_io.VideoSource(str(clip)) as source:
        summary = video.detect_video(detector, source, str(out), str(tmp_path / "d.jsonl"), batch_size=4,
                                     draw_threshold=0.0, progress=False)
    assert summary["frames"] == summary["detected_frames"] == 10 and summary["rotation"] == angle % 360
    stored, times, rate, _ = clips.decode(clip)  # 128 x 72, as stored
    upright = [np.ascontiguousarray(np.rot90(frame, quarters)) for frame in stored]
    for frame, seen in zip(upright, clips.opencv_frames(clip), strict=True):
        assert frame.shape == seen.shape == (128, 72, 3) and np.abs(frame - seen.astype(float)).mean() < 2
    drawn, drawn_times, drawn_rate, size = clips.decode(out)
    assert size == (72, 128) and len(drawn) == 10 and drawn_rate == rate
    np.testing.assert_allclose(drawn_times, times, atol=1e-3)
    with av.open(str(out)) as container:  # upright as stored: no display matrix to turn it again
        assert next(container.decode(video=0)).rotation == 0
    lines = read_lines(tmp_path / "d.jsonl")
    assert [line["frame"] for line in lines] == list(range(10))
    for line in lines:
        frame = upright[line["frame"]]
        expected = annotation.detection_records(detector.detect(frame), list(detector.class_names))
        clips.assert_same_detections(line["detections"], expected)
        picture = np.asarray(annotation.annotate(frame, line["detections"], 0.0)).astype(int)
        changed = np.abs(picture - frame).max(axis=-1) > 60  # box lines and labels
        assert changed.mean() > 0.01
        got = drawn[line["frame"]].astype(int)
        to_drawing = np.abs(got[changed] - picture[changed]).mean()
        assert to_drawing < 25 and to_drawing < 0.4 * np.abs(got[changed] - frame[changed]).mean()
        # Elsewhere the stored picture, upright: not the picture turned the other way.
        kept, other_way = (np.abs(got[~changed] - f[~changed]).mean() for f in (frame, np.rot90(frame, 2)))
        assert kept < 10 and kept < 0.4 * other_way


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_damaged_video_keeps_the_frames_before_the_damage(detector, tmp_path, damage):
    clip, bad = tmp_path / "clip.mp4", tmp_path / f"{damage}.mp4"
    clips.encode_clip(clip, num_frames=40, height=96, width=128)
    (clips.truncated_copy if damage == "truncated" else clips.corrupted_copy)(clip, bad)
    good = clips.decodable_frames(bad)
    assert 0 < good < 40
    out, dets = tmp_path / "out.mp4", tmp_path / "d.jsonl"
    with video_io.VideoSource(str(bad)) as source:
        with pytest.raises(video_io.DamagedVideoError, match=f"at frame {good}: .*frames 0-{good - 1} were "
                                                             "detected and kept in") as err:
            video.detect_video(detector, source, str(out), str(dets), batch_size=4, progress=False)
    assert err.value.frame == good and str(bad) in str(err.value)
    assert [line["frame"] for line in read_lines(dets)] == list(range(good))
    frames, _, rate, size = clips.decode(out)
    assert len(frames) == good and size == (128, 96) and rate == clips.decode(clip)[2]
    assert sorted(os.listdir(tmp_path)) == sorted(["clip.mp4", f"{damage}.mp4", "out.mp4", "d.jsonl"])


def test_a_failing_detector_leaves_no_output(detector, tmp_path):
    clip = tmp_path / "clip.mp4"
    clips.encode_clip(clip, num_frames=12, height=64, width=96)

    with video_io.VideoSource(str(clip)) as source:
        with pytest.raises(RuntimeError, match="out of memory"):
            video.detect_video(FailingDetector(detector, 2, RuntimeError("out of memory")), source,
                               str(tmp_path / "out.mp4"), str(tmp_path / "d.jsonl"), batch_size=4, progress=False)
    assert os.listdir(tmp_path) == ["clip.mp4"]


def test_summary_line():
    summary = {"source": "in.mp4", "frames": 120, "detected_frames": 40, "seconds": 12.04, "frames_per_second": 9.97,
               "draw_threshold": 0.5, "detections_per_class": {"person": 31, "car": 4}}
    assert video.summary_line(summary) == ("in.mp4: 120 frames (40 detected) in 12.0 s, 10.0 frames/s; "
                                           "detections >= 0.5 per class: person 31, car 4")
    summary.update(rotation=270, detected_frames=120)  # a phone video, turned as players show it
    assert video.summary_line(summary) == ("in.mp4: 120 frames, turned upright by 270 degrees in 12.0 s, 10.0 "
                                           "frames/s; detections >= 0.5 per class: person 31, car 4")


def test_ctrl_c_ends_a_camera_run_and_keeps_what_was_written(detector, tmp_path):
    """A camera has no end: Ctrl-C (KeyboardInterrupt in the main thread) finishes the outputs with the frames
    handed on so far. A file plays the camera here (no V4L2 device on the test machines)."""
    clip, out, dets = tmp_path / "clip.mp4", tmp_path / "camera.mp4", tmp_path / "camera.jsonl"
    clips.encode_clip(clip, num_frames=24, height=64, width=96)

    with video_io.VideoSource(str(clip)) as source:
        source.is_camera = True
        summary = video.detect_video(FailingDetector(detector, 3, KeyboardInterrupt()), source, str(out), str(dets),
                                     batch_size=4, progress=False)
    assert summary["frames"] == 8
    with video_io.VideoSource(str(clip)) as source:
        with pytest.raises(KeyboardInterrupt):  # a file is not a camera: Ctrl-C aborts, and leaves nothing
            video.detect_video(FailingDetector(detector, 3, KeyboardInterrupt()), source,
                               str(tmp_path / "file.mp4"), None, batch_size=4, progress=False)
    assert [line["frame"] for line in read_lines(dets)] == list(range(8))
    assert len(clips.decode(out)[0]) == 8
    assert sorted(os.listdir(tmp_path)) == ["camera.jsonl", "camera.mp4", "clip.mp4"]


def test_progress_bar_shows_frames_rate_and_time_left(detector, tmp_path, capsys):
    clip = tmp_path / "clip.mp4"
    clips.encode_clip(clip, num_frames=10, height=64, width=96)
    with video_io.VideoSource(str(clip)) as source:
        video.detect_video(detector, source, batch_size=5, progress=True)
    err = capsys.readouterr().err
    # tqdm's bar: the file name, frames done of the header's count, elapsed<left, and the rate.
    assert "clip.mp4: 100%" in err and "10/10 [" in err and "frame/s]" in err
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+frame/s\]", err), err
