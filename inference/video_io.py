"""Video files and V4L2 cameras in, encoded video out, through PyAV (FFmpeg ships inside its wheel).

VideoSource opens a file or a camera, checks that it holds a decodable video stream, and yields its frames
with their timestamps; damage met while decoding (or a stream that ends before the frame count its header
declares) raises DamagedVideoError naming the first frame not decoded. It also reads the display rotation
that players apply (phones store portrait video as landscape frames and a display matrix turning them by 90
or 270 degrees), and VideoSource.upright turns a frame as players show it. VideoWriter encodes frames, H.264
(libx264) where the FFmpeg build has it, else MPEG-4 part 2, with the timestamps it is given.
"""
import fractions
import logging
import os

import av
import numpy as np

from common.errors import ConfigError, DatasetError

OUTPUT_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi"}
H264, FALLBACK = "libx264", "mpeg4"
# libx264's speed/size presets, fastest first. The default, "ultrafast", encodes a 1280x720 frame in 2.4-3.4
# CPU-ms where "veryfast" takes 7-14 and "medium" more than a light model's own time per frame (docs/video.md):
# on a small CPU the encoder competes with the detector for the cores. Its files are about twice as large.
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
X264_PRESET = "ultrafast"
X264_CRF = "21"
DEFAULT_RATE = fractions.Fraction(30)  # a camera that reports no frame rate
_log = logging.getLogger(__name__)


class DamagedVideoError(DatasetError):
    """The video decodes up to `frame` (0-based: the first frame that could not be decoded), then fails."""

    def __init__(self, path, frame, reason):
        self.frame = frame
        super().__init__(path, reason)


def _reason(err):
    """FFmpeg's message without PyAV's errno prefix and file name."""
    return getattr(err, "strerror", None) or str(err)


def output_format(path):
    """The FFmpeg muxer for an output file name (by its extension); ConfigError for another extension."""
    ext = os.path.splitext(path)[1].lower()
    if ext not in OUTPUT_FORMATS:
        raise ConfigError(path, f"unsupported video extension {ext or '(none)'}: use one of "
                                f"{' '.join(sorted(OUTPUT_FORMATS))}")
    return OUTPUT_FORMATS[ext]


def encoder_name():
    """libx264 where the FFmpeg build has it (PyAV's wheels do), else mpeg4 with a logged notice."""
    if H264 in av.codecs_available:
        return H264
    _log.warning("this FFmpeg build has no H.264 encoder (libx264): writing MPEG-4 part 2 video instead")
    return FALLBACK


def camera_device(camera):
    """--camera=0 -> /dev/video0; a path is kept."""
    text = str(camera)
    return f"/dev/video{text}" if text.isdigit() else text


def display_rotation(path):
    """Degrees counterclockwise (0, 90, 180 or 270) by which players turn the frames of the video at `path` for
    display: the display matrix of its first frame (FFmpeg's reading of the MP4 and MOV track matrix, or
    Matroska's projection). Quarter turns only, within a degree, as OpenCV's reader turns them: another angle
    is logged and left at 0. 0 too where there is no matrix, or no frame decodes (VideoSource.frames then says
    why)."""
    try:
        with av.open(path) as container:
            frame = next(container.decode(video=0), None)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return 0
    angle = frame.rotation if frame is not None else 0
    if abs(angle - round(angle / 90.0) * 90) > 1:
        _log.warning("%s: its display matrix turns the frames by %s degrees, not a quarter turn: frames are "
                     "detected and written as stored", path, angle)
        return 0
    return int(round(angle / 90.0)) * 90 % 360


def yuv420_planes(frame):
    """Writable uint8 views (Y [H, W], U, V [ceil(H / 2), ceil(W / 2)]) of a decoded yuv420p frame's own planes
    (copied first if the decoder still shares them, so that drawing never reaches a reference frame), with the
    frame's Y'CbCr matrix ("bt709" where tagged so, else "bt601") and range: (planes, matrix, full_range).
    None for any other pixel format."""
    if frame.format.name != "yuv420p":
        return None
    frame.make_writable()
    planes = tuple(np.frombuffer(p, np.uint8).reshape(p.height, p.line_size)[:, :p.width] for p in frame.planes)
    return planes, "bt709" if int(frame.colorspace) == 1 else "bt601", int(frame.color_range) == 2


class VideoSource:
    """The first video stream of a file, or a V4L2 camera (camera=0 or a /dev/video* path).

    Attributes: width, height (of the frames as players show them, upright), rate (frames per second, a
    Fraction), time_base (of the timestamps), declared_frames (the header's frame count, 0 when unknown:
    cameras, some containers), rotation (display_rotation's: 0 for cameras; the stored frames are
    coded_width x coded_height).
    frames() yields av.VideoFrame objects in presentation order, as stored; upright(frame) turns one as players
    show it. The caller closes the source.
    """

    def __init__(self, path=None, camera=None):
        self.is_camera = camera is not None
        self.path = camera_device(camera) if self.is_camera else path
        if self.is_camera:
            if not os.path.exists(self.path):
                raise DatasetError(self.path, "no such camera (V4L2 device); `ls /dev/video*` lists them")
            try:
                self.container = av.open(self.path, format="v4l2")
            except (av.FFmpegError, OSError) as err:
                raise DatasetError(self.path, f"cannot open the camera: {_reason(err)}") from None
        else:
            if not os.path.isfile(self.path):
                raise DatasetError(self.path, "no such video file")
            try:
                self.container = av.open(self.path)
            except (av.FFmpegError, OSError, ValueError) as err:
                raise DatasetError(self.path, f"not a readable video ({_reason(err)})") from None
        try:
            self._check()
        except DatasetError:
            self.container.close()
            raise
        stream = self.stream
        if not self.is_camera:
            # Abort on the first corrupt bit instead of concealing it, so damage is reported at its frame.
            stream.codec_context.options = {"err_detect": "explode"}
        stream.thread_type = "AUTO"  # FFmpeg's frame and slice threads
        self.coded_width, self.coded_height = stream.codec_context.width, stream.codec_context.height
        self.rotation = 0 if self.is_camera else display_rotation(self.path)
        self.width, self.height = (self.coded_height, self.coded_width) if self.rotation in (90, 270) else \
            (self.coded_width, self.coded_height)
        self.rate = stream.average_rate or stream.guessed_rate or DEFAULT_RATE
        self.time_base = stream.time_base or 1 / self.rate
        self.declared_frames = 0 if self.is_camera else int(stream.frames or 0)

    def _check(self):
        fmt = self.container.format.name
        if fmt == "image2" or fmt.endswith("_pipe"):
            raise DatasetError(self.path, f"is a still image ({fmt}), not a video: detect on it as an image")
        if not self.container.streams.video:
            kinds = sorted({s.type for s in self.container.streams}) or ["no streams"]
            raise DatasetError(self.path, f"holds no video stream ({', '.join(kinds)})")
        self.stream = self.container.streams.video[0]
        if self.stream.codec_context is None:
            tag = getattr(self.stream, "codec_tag", None)
            raise DatasetError(self.path, f"unsupported video codec{f' {tag!r}' if tag else ''}: "
                                          "this FFmpeg build has no decoder for it")
        if not self.stream.codec_context.width or not self.stream.codec_context.height:
            raise DatasetError(self.path, "the video stream has no frame size (damaged header?)")

    def _duration(self):
        """Seconds the header says the video lasts, or None."""
        if self.stream.duration and self.stream.time_base:
            return float(self.stream.duration * self.stream.time_base)
        if self.container.duration:
            return self.container.duration / av.time_base
        return None

    def frames(self, max_frames=None):
        """Yields av.VideoFrame; raises DamagedVideoError on decoding damage or a stream cut short."""
        count, last_end = 0, None
        try:
            for frame in self.container.decode(self.stream):
                if max_frames is not None and count >= max_frames:
                    return
                if frame.width != self.coded_width or frame.height != self.coded_height:
                    raise DamagedVideoError(self.path, count, f"frame {count} changes size to {frame.width}x"
                                                              f"{frame.height} from {self.coded_width}x"
                                                              f"{self.coded_height}")
                if frame.pts is not None:
                    last_end = float(frame.pts * self.time_base + 1 / self.rate)
                count += 1
                yield frame
        except av.FFmpegError as err:
            raise DamagedVideoError(self.path, count, f"damaged at frame {count}: {_reason(err)}") from None
        if self.is_camera or (max_frames is not None and count >= max_frames):
            return
        if count == 0:
            raise DamagedVideoError(self.path, 0, "no frame could be decoded")
        if self.declared_frames and count < self.declared_frames:
            raise DamagedVideoError(self.path, count, f"truncated at frame {count}: the stream ends after {count} "
                                                      f"of the {self.declared_frames} frames its header declares")
        duration = self._duration()
        if not self.declared_frames and duration and last_end is not None and \
                last_end < duration - max(2 / self.rate, 0.25):
            raise DamagedVideoError(self.path, count, f"truncated at frame {count}: the stream ends at "
                                                      f"{last_end:.2f} s of the {duration:.2f} s its header declares")

    def upright(self, frame):
        """(frame, rgb): a decoded frame as players show it, turned by `rotation`, as an rgb24 av.VideoFrame and
        its uint8 [height, width, 3] RGB array; the frame itself and None where the video is not turned."""
        if not self.rotation:
            return frame, None
        rgb = np.ascontiguousarray(np.rot90(frame.to_ndarray(format="rgb24"), self.rotation // 90))
        return av.VideoFrame.from_ndarray(rgb, format="rgb24"), rgb

    def close(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class VideoWriter:
    """Encodes frames into `path`: width x height at `rate` frames per second, timestamps in `time_base`
    (default 1 / rate; AVI, which keeps no timestamps, numbers the frames at 1 / rate whatever pts says).
    container_format: FFmpeg's muxer name (default: from path's extension, which a temporary name may lack).
    x264_preset: libx264's speed/size preset (X264_PRESETS). write(frame, pts) takes uint8 [H, W, 3] RGB or an
    av.VideoFrame."""

    def __init__(self, path, width, height, rate, time_base=None, container_format=None, faststart=False,
                 x264_preset=X264_PRESET):
        if x264_preset not in X264_PRESETS:
            raise ValueError(f"x264_preset must be one of {', '.join(X264_PRESETS)}, got {x264_preset!r}")
        container_format = container_format or output_format(path)
        # AVI keeps no timestamps; FFmpeg's H.264 decoder then plays its frames out of order: MPEG-4 part 2.
        self.codec = FALLBACK if container_format == "avi" else encoder_name()
        options = {"movflags": "faststart"} if faststart and container_format in ("mp4", "mov") else {}
        self.container = av.open(path, "w", format=container_format, options=options)
        try:
            self.stream = self.container.add_stream(self.codec, rate=fractions.Fraction(rate))
            self.stream.width, self.stream.height = width, height
            # 4:2:0 chroma needs even sides; libx264 takes odd ones in 4:4:4.
            odd = width % 2 or height % 2
            self.pix_fmt = self.stream.pix_fmt = "yuv444p" if odd and self.codec == H264 else "yuv420p"
            # AVI has a frame rate but no timestamps: frames are numbered there, at 1 / rate.
            self.constant_rate = container_format == "avi"
            if self.constant_rate or not time_base:
                time_base = 1 / fractions.Fraction(rate)
            self.stream.codec_context.time_base = fractions.Fraction(time_base)
            self.stream.time_base = self.stream.codec_context.time_base
            if self.codec == H264:
                self.stream.codec_context.options = {"preset": x264_preset, "crf": X264_CRF}
            else:
                self.stream.codec_context.bit_rate = 8 * width * height  # about 0.3 bits per pixel at 25/s
        except (av.FFmpegError, ValueError) as err:
            self.container.close()
            raise ConfigError(path, f"cannot encode {width}x{height} video with {self.codec}: {_reason(err)}") \
                from None
        self.frames = 0

    def write(self, frame, pts):
        if not isinstance(frame, av.VideoFrame):
            frame = av.VideoFrame.from_ndarray(frame, format="rgb24")
        frame.pts = self.frames if self.constant_rate else int(pts)
        frame.time_base = self.stream.codec_context.time_base
        # FFmpeg reads pict_type as an instruction; a decoded frame's I/P/B type would force the encoder's hand.
        frame.pict_type = av.video.frame.PictureType.NONE
        self.container.mux(self.stream.encode(frame))
        self.frames += 1

    def close(self):
        """Flushes the encoder and writes the trailer: the file is complete after this."""
        try:
            self.container.mux(self.stream.encode(None))
        finally:
            self.container.close()

    def abort(self):
        self.container.close()

    def __enter__(self):
        return self

    def __exit__(self, exc_type, *exc):
        if exc_type is None:
            self.close()
        else:
            self.abort()
