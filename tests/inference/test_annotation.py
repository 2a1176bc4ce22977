"""inference/annotation.py: the detection records, and the drawing on a video's decoded 4:2:0 planes against the
RGB picture (Pillow) converted by FFmpeg's swscale, the independent reference of the colour conversion."""
import av
import numpy as np
import pytest

from inference import annotation, video_io
from inference.synthetic_clip import synthetic_frames
from tests.inference import clips

# Boxes at odd and even pixels, one touching the frame's edge (its label goes inside), one thinner than its line.
DETECTIONS = [
    {"label": 15, "class": "person", "score": 0.97, "bbox": [0.21, 0.403, 0.93, 0.58]},
    {"label": 7, "class": "car", "score": 0.81, "bbox": [0.0, 0.0, 0.5, 0.333]},
    {"label": 12, "class": "dog", "score": 0.66, "bbox": [0.6, 0.7, 0.601, 0.99]},
    {"label": 3, "class": "bird", "score": 0.2, "bbox": [0.1, 0.1, 0.2, 0.2]},  # below the threshold
]
THRESHOLD = 0.5


def yuv420_frame(rgb, colorspace="ITU601", color_range="MPEG"):
    """An RGB picture as a decoded yuv420p frame of that Y'CbCr matrix and range (swscale converts it)."""
    frame = av.VideoFrame.from_ndarray(rgb, format="rgb24").reformat(
        format="yuv420p", dst_colorspace=colorspace, dst_color_range=color_range)
    frame.colorspace = {"ITU601": 6, "ITU709": 1}[colorspace]  # the tag a decoder sets (AVCOL_SPC_*)
    frame.color_range = {"MPEG": 1, "JPEG": 2}[color_range]
    return frame


def to_rgb(frame, colorspace="ITU601", color_range="MPEG"):
    return frame.reformat(format="rgb24", src_colorspace=colorspace, src_color_range=color_range).to_ndarray()


@pytest.mark.parametrize("colorspace, color_range", [("ITU601", "MPEG"), ("ITU709", "MPEG"), ("ITU601", "JPEG")])
def test_drawing_on_the_planes_shows_the_rgb_picture(colorspace, color_range):
    rgb = next(iter(synthetic_frames(1, 240, 320, seed=3)))[0]
    frame = yuv420_frame(rgb, colorspace, color_range)
    plain = frame.to_ndarray()
    background = to_rgb(frame, colorspace, color_range)  # the picture as the video shows it before drawing
    expected = np.asarray(annotation.annotate(background, DETECTIONS, THRESHOLD)).astype(int)

    planes, matrix, full_range = video_io.yuv420_planes(frame)
    assert (matrix, full_range) == ({"ITU601": "bt601", "ITU709": "bt709"}[colorspace], color_range == "JPEG")
    annotation.annotate_yuv420(planes, DETECTIONS, THRESHOLD, matrix, full_range)
    drawn = to_rgb(frame, colorspace, color_range).astype(int)

    changed = np.abs(expected - background).max(axis=-1) > 0
    assert 0.03 < changed.mean() < 0.3
    # Luma is untouched outside the drawing (chroma may be painted up to the next 2x2 block's edge).
    luma_changed = (frame.to_ndarray() != plain)[:240]
    assert not (luma_changed & ~changed).any()
    # Inside the drawing: the RGB picture's pixels, up to 4:2:0 chroma at the colour edges and rounding.
    difference = np.abs(drawn - expected).max(axis=-1)
    assert np.median(difference[changed]) <= 4 and np.mean(difference[changed]) < 12
    # A filled label's inside is the label's tab10 colour exactly, up to rounding through Y'CbCr.
    x0, y0 = 0.403 * 320, 0.21 * 240  # the person's box; its label sits above it
    label_inside = drawn[int(y0) - 4, int(x0) + 1]
    assert np.abs(label_inside - annotation._colour(15)).max() <= 3


@pytest.mark.parametrize("matrix, colorspace", [("bt601", "ITU601"), ("bt709", "ITU709")])
@pytest.mark.parametrize("full_range", [False, True])
def test_colours_convert_as_swscale_does(matrix, colorspace, full_range):
    for label in range(10):
        colour = annotation._colour(label)
        solid = av.VideoFrame.from_ndarray(np.full((2, 2, 3), colour, np.uint8), format="rgb24").reformat(
            format="yuv420p", dst_colorspace=colorspace, dst_color_range="JPEG" if full_range else "MPEG")
        yuv = solid.to_ndarray()
        reference = yuv[0, 0], yuv[2, 0], yuv[2, 1]  # Y, then the U and V samples of the 2x2 picture
        np.testing.assert_allclose(annotation._ycbcr(colour, matrix, full_range), reference, atol=1.0)


def test_drawing_never_reaches_the_decoders_reference_frames(tmp_path):
    """Frames drawn on as soon as they are decoded (the decoder may still predict later frames from them) leave
    the later frames as a plain decode gives them."""
    clip = tmp_path / "clip.mp4"
    clips.encode_clip(clip, num_frames=20, height=96, width=128)
    with video_io.VideoSource(str(clip)) as source:
        plain = [frame.to_ndarray() for frame in source.frames()]
    with video_io.VideoSource(str(clip)) as source:
        for i, frame in enumerate(source.frames()):
            np.testing.assert_array_equal(frame.to_ndarray(), plain[i])
            planes, _, _ = video_io.yuv420_planes(frame)
            for plane in planes:
                plane[...] = 255 - plane
            assert (frame.to_ndarray() != plain[i]).mean() > 0.9
    assert i == 19


def test_other_pixel_formats_are_not_drawn_on_as_planes():
    frame = av.VideoFrame.from_ndarray(np.zeros((8, 8, 3), np.uint8), format="rgb24")
    assert video_io.yuv420_planes(frame) is None
    assert video_io.yuv420_planes(frame.reformat(format="yuv444p")) is None


def test_detection_records_sort_clip_and_round():
    result = {"boxes": np.array([[0.1, -0.2, 0.5, 1.3], [0.123456789, 0.2, 0.3, 0.4]], np.float32),
              "scores": np.array([0.25, 0.75], np.float32), "classes": np.array([2, 9])}
    records = annotation.detection_records(result, ["aeroplane", "bicycle"])
    assert records == [
        {"label": 9, "class": "9", "score": round(float(np.float32(0.75)), 6),
         "bbox": [round(float(np.float32(v)), 6) for v in (0.123456789, 0.2, 0.3, 0.4)]},
        {"label": 2, "class": "bicycle", "score": round(float(np.float32(0.25)), 6),
         "bbox": [round(float(np.float32(0.1)), 6), 0.0, round(float(np.float32(0.5)), 6), 1.0]}]
    assert all(type(r["label"]) is int and type(r["score"]) is float for r in records)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_detection_records_round_as_python_does(dtype):
    """The records are rounded for the whole array at once: the same numbers as Python's round(v, 6) of each value,
    the plain definition, on many detections (including scores that tie and values at 6-decimal midpoints)."""
    rng = np.random.default_rng(0)
    boxes = rng.uniform(-0.1, 1.1, (5000, 4)).astype(dtype)
    boxes[:8, 0] = np.array([0.0000005, 0.0000015, 0.1234565, 0.9999995, 0.5, 0.25, 1e-9, 0.0], dtype)
    scores = np.round(rng.random(5000), 3).astype(dtype)  # many equal scores: the stable order
    classes = rng.integers(0, 25, 5000)
    names = [f"c{i}" for i in range(20)]
    records = annotation.detection_records({"boxes": boxes, "scores": scores, "classes": classes}, names)
    order = sorted(range(5000), key=lambda i: -float(scores[i]))
    expected = [{"label": int(classes[i]),
                 "class": names[classes[i] - 1] if 0 < classes[i] <= 20 else str(classes[i]),
                 "score": round(float(scores[i]), 6),
                 "bbox": [round(min(max(float(v), 0.0), 1.0), 6) for v in boxes[i]]} for i in order]
    assert records == expected
