"""inference/video_io.py (and the clips of inference/synthetic_clip.py): reading and writing video, checked
by decoding with plain PyAV."""
import colorsys
import fractions

import av
import numpy as np
import pytest

from common.errors import ConfigError, DatasetError
from inference import synthetic_clip, video_io
from tests.inference import clips


@pytest.mark.parametrize("name,rate", [("out.mp4", fractions.Fraction(30000, 1001)), ("out.mkv", 25),
                                       ("out.avi", 15)])
def test_writer_keeps_size_rate_and_timestamps(tmp_path, name, rate):
    frames = [frame for frame, _ in synthetic_clip.synthetic_frames(12, 72, 96)]
    path = tmp_path / name
    # Timestamps in a time base finer than the frame period, one frame period apart but the 6th held twice.
    time_base = fractions.Fraction(1, 90000)
    ticks = int(round(1 / (rate * time_base)))
    pts = [i * ticks + (ticks if i > 5 else 0) for i in range(12)]
    with video_io.VideoWriter(str(path), 96, 72, rate, time_base) as writer:
        for frame, t in zip(frames, pts):
            writer.write(frame, t)
    decoded, times, decoded_rate, size = clips.decode(path)
    assert len(decoded) == 12 and size == (96, 72)
    if name == "out.avi":  # AVI keeps no timestamps, only a frame rate: frames are numbered at 1 / rate
        np.testing.assert_allclose(times, np.arange(12) / rate, atol=1e-3)
    else:
        np.testing.assert_allclose(times, [float(t * time_base) for t in pts], atol=1e-3)
    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.name == ("mpeg4" if name == "out.avi" else "h264")
    # Lossy, but the same picture.
    assert np.abs(np.asarray(decoded, float) - np.asarray(frames, float)).mean() < 6


def test_odd_frame_sizes_are_kept(tmp_path):
    frames = [frame for frame, _ in synthetic_clip.synthetic_frames(4, 71, 97)]
    with video_io.VideoWriter(str(tmp_path / "odd.mp4"), 97, 71, 25) as writer:
        for i, frame in enumerate(frames):
            writer.write(frame, i)
    decoded, _, rate, size = clips.decode(tmp_path / "odd.mp4")
    assert len(decoded) == 4 and size == (97, 71) and rate == 25


def test_synthetic_clip_boxes_follow_the_drawn_shapes(tmp_path):
    (first, boxes0), (_, boxes1) = list(synthetic_clip.synthetic_frames(2, 120, 160, num_objects=2, seed=3))
    for (name, box), (_, moved) in zip(boxes0, boxes1):
        assert box != moved  # the objects move
        ymin, xmin, ymax, xmax = (int(round(v * s)) for v, s in zip(box, (120, 160, 120, 160)))
        inside = first[ymin:ymax, xmin:xmax].astype(float)
        hue = synthetic_clip.CLASS_STYLES[name][1]
        # The box holds its class's saturated colour: its most saturated pixels have the family's hue.
        rgb = inside.reshape(-1, 3)
        saturation = rgb.max(1) - rgb.min(1)
        top = rgb[saturation >= np.percentile(saturation, 90)].mean(0)
        h = colorsys.rgb_to_hsv(*(top / 255))[0] * 360
        assert min(abs(h - hue), 360 - abs(h - hue)) < 30, (name, h)


def test_stream_cut_short_of_its_declared_frames_names_the_frame(tmp_path):
    clips.encode_clip(tmp_path / "clip.avi", num_frames=40, height=96, width=128, codec="mpeg4")
    clips.truncated_copy(tmp_path / "clip.avi", tmp_path / "cut.avi", fraction=0.8)
    good = clips.decodable_frames(tmp_path / "cut.avi")
    assert 0 < good < 40
    with video_io.VideoSource(str(tmp_path / "cut.avi")) as source:
        assert source.declared_frames == 40
        seen = []
        with pytest.raises(video_io.DamagedVideoError, match=f"(truncated|damaged) at frame {good}: ") as err:
            for frame in source.frames():
                seen.append(frame.to_ndarray(format="rgb24"))
    assert err.value.frame == good == len(seen)
    # The frames before the damage are the ones PyAV decodes.
    np.testing.assert_array_equal(seen[3], clips.decode(tmp_path / "clip.avi")[0][3])


def test_stream_shorter_than_its_declared_duration(tmp_path):
    clips.encode_clip(tmp_path / "clip.mkv", num_frames=40, height=96, width=128, rate=25,
                      container_format="matroska")
    clips.truncated_copy(tmp_path / "clip.mkv", tmp_path / "cut.mkv")
    with video_io.VideoSource(str(tmp_path / "cut.mkv")) as source:
        assert source.declared_frames == 0  # Matroska declares a duration, not a frame count
        with pytest.raises(video_io.DamagedVideoError, match=r"truncated at frame \d+: the stream ends at "
                                                             r"[\d.]+ s of the 1.60 s its header declares"):
            list(source.frames())
    with video_io.VideoSource(str(tmp_path / "clip.mkv")) as source:
        assert len(list(source.frames())) == 40
        assert len(list(video_io.VideoSource(str(tmp_path / "clip.mkv")).frames(max_frames=7))) == 7


def test_names_and_devices(tmp_path):
    assert video_io.camera_device(0) == "/dev/video0" and video_io.camera_device("/dev/video2") == "/dev/video2"
    assert video_io.output_format("a/b.MKV") == "matroska"
    with pytest.raises(ConfigError, match="unsupported video extension .webm"):
        video_io.output_format("out.webm")
    with pytest.raises(DatasetError, match="no such camera"):
        video_io.VideoSource(camera=str(tmp_path / "video9"))


def test_without_libx264_the_writer_falls_back_to_mpeg4_and_says_so(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(av, "codecs_available", set(av.codecs_available) - {"libx264"})
    frames = [frame for frame, _ in synthetic_clip.synthetic_frames(3, 64, 96)]
    with caplog.at_level("WARNING", logger="inference.video_io"):
        with video_io.VideoWriter(str(tmp_path / "out.mp4"), 96, 64, 25) as writer:
            for i, frame in enumerate(frames):
                writer.write(frame, i)
    assert "no H.264 encoder (libx264): writing MPEG-4 part 2" in caplog.text
    with av.open(str(tmp_path / "out.mp4")) as container:
        assert container.streams.video[0].codec_context.name == "mpeg4"
    assert len(clips.decode(tmp_path / "out.mp4")[0]) == 3


# (the clip's display matrix, degrees counterclockwise; the rotation read; np.rot90's quarter turns)
TURNS = [(None, 0, 0), (90, 90, 1), (-90, 270, 3), (180, 180, 2), (-95, 0, 0)]


@pytest.mark.parametrize("angle,rotation,quarters", TURNS, ids=[str(t[0]) for t in TURNS])
def test_frames_are_turned_upright_as_players_show_them(tmp_path, caplog, angle, rotation, quarters):
    """A phone-style clip (landscape frames, a display matrix turning them) reads turned as OpenCV shows it;
    an angle that is not a quarter turn is left as stored, as OpenCV leaves it, with a logged notice."""
    clip = tmp_path / "clip.mp4"
    stored = clips.encode_clip(clip, num_frames=3, height=72, width=128, display_rotation=angle)
    with video_io.VideoSource(str(clip)) as source:
        assert source.rotation == rotation and (source.coded_width, source.coded_height) == (128, 72)
        assert (source.width, source.height) == ((72, 128) if rotation in (90, 270) else (128, 72))
        turned = [source.upright(frame) for frame in source.frames()]
    assert ("not a quarter turn" in caplog.text) == (angle == -95)
    reference = clips.opencv_frames(clip)
    assert len(turned) == len(reference) == 3
    for (frame, rgb), plain, seen in zip(turned, stored, reference):
        if not rotation:
            assert rgb is None
            rgb = frame.to_ndarray(format="rgb24")
        else:
            assert frame.format.name == "rgb24" and np.array_equal(frame.to_ndarray(format="rgb24"), rgb)
        assert rgb.shape == seen.shape == (source.height, source.width, 3) and rgb.flags.c_contiguous
        # The same picture as OpenCV's (the two convert YUV to RGB a little differently); turned any other
        # way it would be far off (the frames are not symmetric).
        assert np.abs(rgb.astype(float) - seen).mean() < 2
        assert np.abs(np.rot90(plain, quarters).astype(float) - seen).mean() < 6
        for other in {0, 1, 2, 3} - {quarters}:
            wrong = np.rot90(plain, other)
            if wrong.shape == seen.shape:
                assert np.abs(wrong.astype(float) - seen).mean() > 20
