"""Detection on a video stream: decoded frames in, an annotated video and JSON lines out, in bounded memory.

    decoder thread --(bounded queue)--> batches of batch_size frames -> detector.detect_batch
        --(bounded queue)--> drawing + encoder thread -> annotated video, JSON lines, progress

The detector is anything with `detect_batch(uint8 [B, H, W, 3] RGB) -> [dict(boxes [K, 4] relative
[ymin, xmin, ymax, xmax], scores [K], classes [K]), ...]` and `class_names` (inference/detector.Detector, or a
runtime of an export). Frames are detected at their decoded size, exactly as detect_ssd.py --image detects an
image (the detector resizes).

- The output video has the input's size, frame rate and frame count; each frame keeps its timestamp
  (shifted so that the first frame is at 0). Boxes are drawn on the decoded yuv420p planes
  (annotation.annotate_yuv420), other pixel formats through RGB; frames with nothing to draw are re-encoded as
  decoded.
- A video whose display matrix turns its frames (phone recordings: video_io.display_rotation) is turned
  upright first, as players show it: the detector, the boxes, the JSON lines and the output video (then
  without a display matrix, its sides swapped for a quarter turn) all see the upright frames.
- JSON lines: one object per detected frame, `{"frame": i, "time_s": t, "detections": [...]}` (frame: 0-based
  index in presentation order; time_s: seconds after the first frame; detections: the records of
  detect_ssd.py's image JSON, inference/annotation.py).
- every_n_frames=n detects frames 0, n, 2n, ...; the frames between are still written to the video, with the
  boxes of the last detected frame drawn on them, and get no JSON line.
- Both outputs are written under temporary names and renamed when complete. A video damaged part-way
  (DamagedVideoError at frame k) is the exception: frames 0..k-1 are detected and written, the outputs are
  closed (valid files) and renamed, and the error is raised again naming frame k and what was kept.
"""
import collections
import contextlib
import dataclasses
import itertools
import json
import os
import queue
import sys
import threading
import time

import numpy as np

from common import fileio
from common.arrays import aligned_empty
from common.errors import ConfigError
from inference import annotation, video_io

_END = object()
MAX_PENDING_FRAMES = 64  # frames held while their batch fills (with every_n_frames > 1); bounds the memory


@dataclasses.dataclass
class _Frame:
    index: int
    pts: int
    frame: object               # the decoded av.VideoFrame
    rgb: object = None          # uint8 [H, W, 3] for detected frames (and drawn ones, converted when needed)
    detected: bool = False
    detections: list = dataclasses.field(default_factory=list)


class _Error:
    def __init__(self, error):
        self.error = error


def _put(q, item, stop):
    """q.put that gives up when `stop` is set (the consumer has gone)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _decode(source, max_frames, every_n_frames, out, stop, busy):
    """Decoder thread: _Frame items (RGB for the frames to detect) into `out`, then _END or an _Error."""
    step = max(1, int(round(1 / (source.rate * source.time_base))))  # pts ticks per frame
    first = previous = None
    try:
        frames = source.frames(max_frames)
        for index in itertools.count():
            start = time.perf_counter()
            frame = next(frames, None)
            if frame is None or stop.is_set():
                break
            if frame.pts is not None and first is None:
                first = frame.pts
            pts = None if frame.pts is None else frame.pts - first
            if pts is None or (previous is not None and pts <= previous):  # missing or not increasing
                pts = 0 if previous is None else previous + step
            previous = pts
            detect = index % every_n_frames == 0
            if source.rotation:  # detected, drawn and written upright, as players show the video
                frame, rgb = source.upright(frame)
                rgb = rgb if detect else None
            else:
                rgb = frame.to_ndarray(format="rgb24") if detect else None
            busy["decode"] += time.perf_counter() - start
            if not _put(out, _Frame(index, pts, frame, rgb), stop):
                return
        _put(out, _END, stop)
    except BaseException as err:  # noqa: B902 (handed to the main thread, which raises it)
        _put(out, _Error(err), stop)


class _Encoder(threading.Thread):
    """Drawing + encoder thread: writes each frame (annotated where it has boxes to draw) and its JSON line."""

    def __init__(self, items, writer, lines, time_base, draw_threshold, progress, stop, busy):
        super().__init__(daemon=True)
        self.busy = busy
        self.items, self.writer, self.lines, self.time_base = items, writer, lines, time_base
        self.draw_threshold, self.progress, self.stop = draw_threshold, progress, stop
        self.frames = self.detected = 0
        self.per_class = collections.Counter()
        self.error = None

    def run(self):
        try:
            while not self.stop.is_set():  # set when the run is abandoned: stop writing at once
                try:
                    item = self.items.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is _END:
                    return
                start = time.perf_counter()
                self._write(item)
                self.busy["encode"] += time.perf_counter() - start
        except BaseException as err:  # noqa: B902 (raised again by the main thread)
            self.error = err
            self.stop.set()

    def _write(self, item):
        if self.writer is not None:
            frame = item.frame
            if annotation.drawn(item.detections, self.draw_threshold):
                yuv = video_io.yuv420_planes(frame) if self.writer.pix_fmt == "yuv420p" else None
                if yuv is not None:  # drawn on the decoded planes: what the encoder takes, no RGB round trip
                    annotation.annotate_yuv420(yuv[0], item.detections, self.draw_threshold, *yuv[1:])
                else:
                    rgb = item.rgb if item.rgb is not None else frame.to_ndarray(format="rgb24")
                    frame = np.asarray(annotation.annotate(rgb, item.detections, self.draw_threshold))
            self.writer.write(frame, item.pts)
        if item.detected:
            self.detected += 1
            self.per_class.update(d["class"] for d in item.detections if d["score"] >= self.draw_threshold)
            if self.lines is not None:
                self.lines.write(json.dumps({"frame": item.index, "time_s": round(float(item.pts * self.time_base), 6),
                                             "detections": item.detections}) + "\n")
        self.frames += 1
        if self.progress is not None:
            self.progress.update(1)


def _progress_bar(source, max_frames, enabled):
    if not enabled:
        return None
    from tqdm import tqdm
    total = source.declared_frames or None
    if max_frames is not None:
        total = min(total, max_frames) if total else max_frames
    return tqdm(total=total, unit="frame", desc=os.path.basename(source.path), file=sys.stderr,
                mininterval=0.5, dynamic_ncols=True)


def check_outputs(source_path, output_video=None, output_json=None):
    """ConfigError unless the outputs are distinct files other than the input, and the video's extension is
    one the writer knows (video_io.OUTPUT_FORMATS)."""
    paths = [os.path.realpath(p) for p in (output_video, output_json) if p]
    if len(set(paths)) < len(paths):
        raise ConfigError(output_video, "the annotated video and the detections JSON are the same file")
    if source_path and os.path.realpath(source_path) in paths:
        raise ConfigError(source_path, "is the input: the output would replace it")
    if output_video:
        video_io.output_format(output_video)


def detect_video(detector, source, output_video=None, output_json=None, batch_size=8, every_n_frames=1,
                 max_frames=None, draw_threshold=0.5, progress=True, x264_preset=video_io.X264_PRESET):
    """Runs `detector` over the frames of `source` (video_io.VideoSource); see the module docstring.

    Returns a summary dict: source, rotation (degrees counterclockwise the frames were turned upright by:
    video_io.display_rotation), frames, detected_frames, seconds, frames_per_second, draw_threshold,
    detections_per_class (detections scoring >= draw_threshold on the detected frames), output_video,
    output_json, busy_seconds (decode: decoding + RGB conversion; detect: detect_batch + records; encode:
    drawing, encoding, JSON lines). Raises video_io.DamagedVideoError after keeping the frames before the damage.
    """
    if batch_size < 1 or every_n_frames < 1 or (max_frames is not None and max_frames < 1):
        raise ValueError("batch_size, every_n_frames and max_frames must be >= 1")
    check_outputs(source.path, output_video, output_json)
    class_names = list(detector.class_names)
    start = time.perf_counter()
    damage = None
    with fileio.atomic_path(output_video) if output_video else contextlib.nullcontext() as video_tmp, \
            fileio.atomic_path(output_json) if output_json else contextlib.nullcontext() as json_tmp:
        writer = video_io.VideoWriter(video_tmp, source.width, source.height, source.rate, source.time_base,
                                      container_format=video_io.output_format(output_video),
                                      x264_preset=x264_preset) \
            if output_video else None
        lines = open(json_tmp, "w") if output_json else None
        bar = _progress_bar(source, max_frames, progress)
        stop = threading.Event()
        busy = dict.fromkeys(("decode", "detect", "encode"), 0.0)
        decoded, to_encode = queue.Queue(maxsize=2 * batch_size), queue.Queue(maxsize=2 * batch_size)
        decoder = threading.Thread(target=_decode, args=(source, max_frames, every_n_frames, decoded, stop, busy),
                                   daemon=True)
        encoder = _Encoder(to_encode, writer, lines, source.time_base, draw_threshold, bar, stop, busy)
        decoder.start()
        encoder.start()
        try:
            damage = _detect_frames(detector, class_names, decoded, to_encode, batch_size, stop, encoder, busy,
                                    camera=source.is_camera)
            _put(to_encode, _END, stop)
            encoder.join()
            if encoder.error is not None:
                raise encoder.error
            if writer is not None:
                writer.close()
                writer = None
            if lines is not None:
                lines.close()
            if damage is not None and encoder.frames == 0:
                raise damage  # nothing before the damage: no output at all
        finally:
            stop.set()
            # Neither thread may still be using the source or the writer when they are closed.
            encoder.join(timeout=30)
            decoder.join(timeout=5)
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.abort()
            if lines is not None and not lines.closed:
                lines.close()
    seconds = time.perf_counter() - start
    summary = {"source": source.path, "rotation": source.rotation, "frames": encoder.frames,
               "detected_frames": encoder.detected,
               "seconds": round(seconds, 3), "frames_per_second": round(encoder.frames / max(seconds, 1e-9), 2),
               "draw_threshold": draw_threshold, "detections_per_class": dict(encoder.per_class.most_common()),
               "output_video": output_video, "output_json": output_json,
               # Wall seconds each stage spent working (not waiting on its queues): where the time goes.
               "busy_seconds": {k: round(v, 3) for k, v in busy.items()}}
    if damage is not None:
        kept = [p for p in (output_video, output_json) if p]
        where = f"; frames 0-{damage.frame - 1} were detected and kept in {' and '.join(kept)}" \
            if kept and damage.frame > 0 else ""
        raise video_io.DamagedVideoError(damage.path, damage.frame, damage.reason + where)
    return summary


def _detect_frames(detector, class_names, decoded, to_encode, batch_size, stop, encoder, busy, camera):
    """The main thread's loop: batches the frames to detect, runs the detector, hands every frame on in
    order. Returns the DamagedVideoError that ended the stream, or None; raises any other error."""
    pending, batch, last = [], [], []
    images = None  # the batch's frames, stacked into one aligned array reused from batch to batch

    def flush():
        nonlocal last, images
        if batch:
            start = time.perf_counter()
            shape = (len(batch),) + batch[0].rgb.shape
            if images is None or images.shape != shape:
                images = aligned_empty(shape, np.uint8)
            results = detector.detect_batch(np.stack([item.rgb for item in batch], out=images))
            for item, result in zip(batch, results):
                item.detected, item.detections = True, annotation.detection_records(result, class_names)
            busy["detect"] += time.perf_counter() - start
        for item in pending:
            if item.detected:
                last = item.detections
            else:
                item.detections = last
            if not _put(to_encode, item, stop):
                raise encoder.error or RuntimeError("the encoder thread stopped")
        pending.clear()
        batch.clear()

    try:
        return _detect_loop(decoded, batch, pending, flush, batch_size)
    except KeyboardInterrupt:
        if not camera:
            raise
        return None  # Ctrl-C ends a camera run: the frames handed on so far are kept


def _detect_loop(decoded, batch, pending, flush, batch_size):
    while True:
        item = decoded.get()
        if item is _END:
            flush()
            return None
        if isinstance(item, _Error):
            flush()
            if isinstance(item.error, video_io.DamagedVideoError):
                return item.error
            raise item.error
        pending.append(item)
        if item.rgb is not None:
            batch.append(item)
        if len(batch) == batch_size or len(pending) >= max(MAX_PENDING_FRAMES, batch_size):
            flush()


def summary_line(summary):
    """One line: frames, seconds, frames/s, detections per class."""
    per_class = ", ".join(f"{name} {count}" for name, count in summary["detections_per_class"].items()) or "none"
    detected = "" if summary["detected_frames"] == summary["frames"] else \
        f" ({summary['detected_frames']} detected)"
    turned = f", turned upright by {summary['rotation']} degrees" if summary.get("rotation") else ""
    return (f"{summary['source']}: {summary['frames']} frames{detected}{turned} in {summary['seconds']:.1f} s, "
            f"{summary['frames_per_second']:.1f} frames/s; detections >= {summary['draw_threshold']:g} per "
            f"class: {per_class}")
