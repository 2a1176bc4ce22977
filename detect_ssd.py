"""Runs an SSD checkpoint (trained, native or converted from Caffe) on images: JSON and annotated PNGs out.

    python detect_ssd.py --checkpoint_path=checkpoints/ssd_300_vgg --image=photos/ \\
        --output_json=dets.json --output_dir=annotated/ [--model_name=ssd_300_vgg] [--select_threshold=0.01] \\
        [--nms_threshold=0.45] [--top_k=400] [--keep_top_k=200] [--draw_threshold=0.5] [--optimize] \\
        [--precision=float32|bf16|float16]
    python detect_ssd.py --checkpoint_path=checkpoints/ssd_300_vgg --video=clip.mp4 \
        --output_video=annotated.mp4 --output_json=dets.jsonl [--batch_size=8] [--every_n_frames=1] [--max_frames=N]
    python detect_ssd.py --checkpoint_path=checkpoints/ssd_300_vgg --camera=0 --output_video=camera.mp4
    python detect_ssd.py --model=export/model.onnx --image=photos/ --output_json=dets.json   # an export

--checkpoint_path is a checkpoint prefix or a directory (its latest checkpoint); the model is rebuilt from the
ssd_config.json beside it. --model=<model.onnx | model.tflite | SavedModel folder> runs an export of
export_ssd.py through its own runtime instead (ONNX Runtime, LiteRT, TensorFlow; inference/runtimes.py), with
the post-processing values it was exported with, so an export can be checked before it ships. --optimize runs
the checkpoint's optimised graph (as export_ssd.py --optimize and bench_inference.py --optimize), and
--precision=bf16 TensorFlow's bfloat16 path on CPUs with AVX512_BF16 or AMX.
--image is an image file or a folder of them (.jpg .jpeg .png .bmp .gif .webp .tif
.tiff, not recursive). The post-processing flags override the model's defaults (Caffe's DetectionOutput
values for converted models).

JSON: {"images": [{"path", "height", "width", "detections": [{"label", "class", "score",
"bbox": [ymin, xmin, ymax, xmax]}, ...]}]}, boxes relative to the image and clipped to it, detections sorted by
score. --output_dir receives <image name>.png for each image with the detections scoring at least
--draw_threshold drawn. Every output appears complete or not at all; an unreadable image stops the run.

--video (a file) or --camera (a V4L2 device: 0 for /dev/video0, or its path; Ctrl-C ends the run) stream through
the same detector (inference/video.py): --output_video gets the annotated video (same size, frame rate and frame
count; H.264; a phone video stored turned is turned upright first, as players show it), --output_json one JSON
object per detected frame: {"frame", "time_s", "detections": [...]}.
--every_n_frames=n detects every n-th frame; the frames between carry the last boxes in the video. A video
damaged part-way keeps the frames before the damage, then exits 1 naming the frame (docs/video.md).
"""
import os
import sys

from cli import flags
from common.errors import ConfigError, DatasetError, run_main
from common.precision import PRECISIONS
from inference import video_io

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def parse_args(argv):
    parser = flags.script_parser(__doc__)
    parser.add_argument("--checkpoint_path", default=None, help="checkpoint prefix or directory")
    parser.add_argument("--model", default=None, help="an export instead: model.onnx, model.tflite or a SavedModel")
    parser.add_argument("--model_name", default=None, help="expected model name (checked against the config)")
    parser.add_argument("--image", default=None, help="an image file or a folder of images")
    parser.add_argument("--video", default=None, help="a video file (instead of --image)")
    parser.add_argument("--camera", default=None, help="a V4L2 camera: 0 for /dev/video0, or a device path")
    parser.add_argument("--output_video", default=None, help="video: write the annotated video here (.mp4 ...)")
    parser.add_argument("--optimize", action="store_true",
                        help="run the optimised graph (frozen, batch norms folded, Winograd + XLA on CPUs except "
                        "for depthwise networks; inference/graph_optimization.py): 1.5-3x faster on CPUs")
    parser.add_argument("--precision", default="float32", choices=PRECISIONS,
                        help="bf16: oneDNN bfloat16 on CPUs with AVX512_BF16 / AMX; float16: GPUs "
                        "(common/precision.py); with --optimize only for depthwise networks (no XLA)")
    parser.add_argument("--batch_size", type=int, default=8, help="video: frames per detector run")
    parser.add_argument("--every_n_frames", type=int, default=1, help="video: detect every n-th frame")
    parser.add_argument("--max_frames", type=int, default=None, help="video: stop after this many frames")
    parser.add_argument("--no_progress", action="store_true", help="video: no progress bar")
    parser.add_argument("--x264_preset", default=video_io.X264_PRESET, choices=video_io.X264_PRESETS,
                        help="video: libx264's speed/size preset; slower presets write smaller files and take CPU "
                        "time from the detector")
    parser.add_argument("--output_json", default=None, help="write the detections here")
    parser.add_argument("--output_dir", default=None, help="write annotated PNGs here")
    flags.add_post_processing_flags(parser)
    parser.add_argument("--draw_threshold", type=float, default=0.5,
                        help="annotated images show the detections scoring at least this")
    args = parser.parse_args(argv)
    if (args.checkpoint_path is None) == (args.model is None):
        raise ConfigError("--checkpoint_path", "give either --checkpoint_path or --model")
    given = flags.post_processing_overrides(args)
    if args.model and (args.optimize or args.precision != "float32"):
        raise ConfigError("--optimize" if args.optimize else "--precision",
                          "is for --checkpoint_path; an export runs as it was exported")
    if args.model and given:
        raise ConfigError(f"--{next(iter(given))}", "an export keeps the post-processing it was exported with "
                                                   "(export_ssd.py)")
    if sum(v is not None for v in (args.image, args.video, args.camera)) != 1:
        raise ConfigError("--image", "give exactly one of --image, --video and --camera")
    stream = args.image is None
    flags.check_at_least(args, batch_size=1, every_n_frames=1, max_frames=1)
    if stream and args.output_dir:
        raise ConfigError("--output_dir", "is for --image; a video's annotations go to --output_video")
    if not stream and args.output_video:
        raise ConfigError("--output_video", "is for --video and --camera; annotated images go to --output_dir")
    flags.check_post_processing(args)
    return args


def list_images(path):
    """The image files named by --image: the file itself, or the folder's images sorted by name."""
    if os.path.isdir(path):
        files = sorted(os.path.join(path, f) for f in os.listdir(path)
                       if f.lower().endswith(IMAGE_EXTENSIONS) and os.path.isfile(os.path.join(path, f)))
        if not files:
            raise ConfigError(path, f"no images ({' '.join(IMAGE_EXTENSIONS)}) in this folder")
        return files
    if not os.path.isfile(path):
        raise ConfigError(path, "no such image file or folder")
    return [path]


def read_image(path):
    """uint8 [H, W, 3] RGB, upright as its EXIF orientation says."""
    import numpy as np
    from PIL import Image, ImageOps
    try:
        with Image.open(path) as image:
            return np.asarray(ImageOps.exif_transpose(image).convert("RGB"))
    except (OSError, ValueError, Image.DecompressionBombError) as err:
        raise DatasetError(path, f"cannot read the image: {err}") from None


def image_record(path, image, result, class_names):
    """The JSON entry of one image: detections sorted by score, boxes relative and clipped to the image."""
    from inference.annotation import detection_records
    return {"path": path, "height": int(image.shape[0]), "width": int(image.shape[1]),
            "detections": detection_records(result, class_names)}


def _png_names(paths):
    """<name>.png per image, unique even for photo.jpg next to photo.png."""
    names, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}.png" if count == 0 else f"{stem}_{count}.png")
    return names


def _open_video(args):
    """The --video file or --camera device, checked before the model loads (video_io.VideoSource)."""
    from inference import video
    video.check_outputs(args.video, args.output_video, args.output_json)  # now, not after the run
    return video_io.VideoSource(path=args.video, camera=args.camera)


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    paths = list_images(args.image) if args.image is not None else []
    import contextlib
    from common import fileio
    from inference import annotation
    from inference.detector import Detector

    records = []
    with contextlib.ExitStack() as stack:
        source = None if args.image is not None else stack.enter_context(_open_video(args))
        if args.model:
            from inference import runtimes
            detector = stack.enter_context(runtimes.open_model(args.model))
        else:
            from inference import session_options
            detector = stack.enter_context(Detector(
                args.checkpoint_path, model_name=args.model_name, optimize=args.optimize,
                session_config=session_options.session_config(precision=args.precision),
                **flags.post_processing_overrides(args)))
        if source is not None:
            from inference import video
            summary = video.detect_video(detector, source, args.output_video, args.output_json, args.batch_size,
                                         args.every_n_frames, args.max_frames, args.draw_threshold,
                                         progress=not args.no_progress, x264_preset=args.x264_preset)
            print(video.summary_line(summary), flush=True)
            return 0
        # Annotated images are written into a staging folder that becomes --output_dir only when all are done.
        stage = stack.enter_context(fileio.staging_dir(args.output_dir)) if args.output_dir else None
        class_names = list(detector.class_names)
        for path, png in zip(paths, _png_names(paths)):
            image = read_image(path)
            record = image_record(path, image, detector.detect(image), class_names)
            records.append(record)
            if stage:
                annotation.annotate(image, record["detections"], args.draw_threshold).save(os.path.join(stage, png))
            best = record["detections"][:1]
            summary = f", best {best[0]['class']} {best[0]['score']:.3f}" if best else ""
            print(f"{path}: {len(record['detections'])} detections{summary}", flush=True)
    if args.output_json:
        fileio.write_json(args.output_json, {"images": records})
    return 0


if __name__ == "__main__":
    run_main(main)
