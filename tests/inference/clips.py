"""Test clips: moving synthetic shapes (inference/synthetic_clip.py's frames) encoded here with plain PyAV,
independently of inference/video_io.py's writer, and damaged copies of them."""
import fractions

import av
import numpy as np

from inference.synthetic_clip import synthetic_frames


def assert_same_detections(got, expected, atol=1e-5):
    """Two frames' detection records agree: the same labels and classes in the same order, scores and boxes
    within atol (a batch of frames and a single image may run different CPU kernels: last-digit differences)."""
    assert [(d["label"], d["class"]) for d in got] == [(d["label"], d["class"]) for d in expected]
    np.testing.assert_allclose([d["score"] for d in got], [d["score"] for d in expected], atol=atol)
    np.testing.assert_allclose(np.reshape([d["bbox"] for d in got], (-1, 4)),
                               np.reshape([d["bbox"] for d in expected], (-1, 4)), atol=atol)


def encode_clip(path, num_frames=30, height=120, width=160, rate=fractions.Fraction(30000, 1001),
                codec="libx264", container_format=None, faststart=True, seed=0, pix_fmt="yuv420p",
                display_rotation=None):
    """Writes the clip; returns its frames (uint8 [H, W, 3] RGB, before encoding). display_rotation: degrees
    counterclockwise of a display matrix for players to turn the frames by (as phones record portrait video)."""
    options = {"movflags": "faststart"} if faststart and str(path).endswith(".mp4") else {}
    frames = [frame for frame, _ in synthetic_frames(num_frames, height, width, seed=seed)]
    with av.open(str(path), "w", format=container_format, options=options) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if display_rotation is not None:
            stream.set_display_rotation(display_rotation)
        for frame in frames:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode(None))
    return frames


def decode(path):
    """(RGB frames, presentation times in seconds, average rate, (width, height)) of the first video stream,
    decoded with PyAV's defaults."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        return ([f.to_ndarray(format="rgb24") for f in decoded], [float(f.time) for f in decoded],
                stream.average_rate, (stream.width, stream.height))


def opencv_frames(path):
    """RGB frames as OpenCV's FFmpeg reader returns them: turned by the display matrix (its default,
    CAP_PROP_ORIENTATION_AUTO), an implementation independent of ours and PyAV's."""
    import cv2
    capture = cv2.VideoCapture(str(path))
    assert capture.get(cv2.CAP_PROP_ORIENTATION_AUTO) == 1
    frames = []
    while True:
        ok, bgr = capture.read()
        if not ok:
            break
        frames.append(np.ascontiguousarray(bgr[..., ::-1]))
    capture.release()
    return frames


def decodable_frames(path):
    """How many frames PyAV decodes before the first error (FFmpeg's strict err_detect) or the end."""
    count = 0
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.codec_context.options = {"err_detect": "explode"}
        try:
            for _ in container.decode(stream):
                count += 1
        except av.FFmpegError:
            pass
    return count


def truncated_copy(src, dst, fraction=0.6):
    data = open(src, "rb").read()
    open(dst, "wb").write(data[:int(len(data) * fraction)])


def corrupted_copy(src, dst, at=0.5, length=600, seed=0):
    """The file with `length` bytes at `at` of its size overwritten by random bytes (the header intact)."""
    data = bytearray(open(src, "rb").read())
    start = int(len(data) * at)
    data[start:start + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    open(dst, "wb").write(bytes(data))
