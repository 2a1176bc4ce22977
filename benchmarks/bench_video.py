"""Frames per second of the video path (inference/video.py, what detect_ssd.py --video runs: decode, RGB,
detection at the frame's size, drawing, H.264 encoding, JSON lines) against the detector alone on the same
model and batch (bench_inference.py's measurement: a batch of uint8 images at the network's input size into
session.run), in the same process, alternating so that both see the same machine load.

    python benchmarks/bench_video.py [--models=ssd_300_vgg_lite,ssd_300_vgg] [--sizes=300x300,1280x720]
        [--batch_size=8] [--num_frames=48] [--boxes_drawn=5] [--checkpoint_path=DIR] [--smoke]

Without --checkpoint_path each model gets random weights (speed does not depend on them). A random model's
scores are not a trained one's (it puts hundreds of boxes above 0.5), so the drawing threshold is set per clip
to the score of the --boxes_drawn-th best detection of its first frames: about that many boxes are drawn on
each frame, as a trained model draws on a busy scene. Clips are synthetic_clip.py's moving shapes at 30
frames/s. Prints one JSON line per model and clip size: frames_per_second of the video path,
images_per_second of the detector (median of the batches timed just before and just after), pipeline_cost =
1 - frames_per_second / images_per_second (goal: <= 0.15 at 1280x720), busy_seconds per stage, and the
process's CPU time per frame and per reference image (pipeline_cpu_share: the part of the video path's CPU time
not spent as the detector alone spends it; steadier than the clock on a shared machine).
"""
import json
import os
import sys
import tempfile
import time
import types

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from cli import flags  # noqa: E402  (first: it sets TensorFlow's environment defaults)


def parse_args(argv):
    parser = flags.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", default="ssd_300_vgg_lite,ssd_300_vgg", help="comma-separated model names")
    parser.add_argument("--sizes", default="300x300,1280x720", help="comma-separated WIDTHxHEIGHT clip sizes")
    parser.add_argument("--checkpoint_path", default=None, help="a trained model instead of random weights "
                        "(then --models is that model's name)")
    parser.add_argument("--batch_size", type=int, default=8)
    parser.add_argument("--num_frames", type=int, default=48, help="frames per clip (timed)")
    parser.add_argument("--reference_batches", type=int, default=4, help="detector batches timed per side")
    parser.add_argument("--boxes_drawn", type=int, default=5, help="about this many boxes drawn per frame")
    parser.add_argument("--smoke", action="store_true", help="the lite model on one small clip (for tests)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.models, args.sizes, args.num_frames, args.batch_size, args.reference_batches = \
            "ssd_300_vgg_lite", "160x96", 8, 4, 1
    try:
        args.sizes = [tuple(int(v) for v in s.split("x")) for s in args.sizes.split(",")]
        assert all(len(s) == 2 and min(s) >= 16 for s in args.sizes)
    except (ValueError, AssertionError):
        parser.error(f"--sizes: expected WIDTHxHEIGHT,... (sides >= 16), got {args.sizes!r}")
    args.models = [m for m in args.models.split(",") if m]
    if args.batch_size < 1 or args.num_frames < args.batch_size or args.reference_batches < 1:
        parser.error("--batch_size and --reference_batches must be >= 1, --num_frames >= --batch_size")
    return args


def batch_seconds(detector, images, batches):
    """bench_inference.py's timing: seconds of each session.run of the detection fetches on `images`, and the
    process's CPU seconds (all threads) over them."""
    times, cpu = [], time.process_time()
    for _ in range(batches):
        start = time.perf_counter()
        detector.session.run(detector.detection_fetches, {detector.images: images})
        times.append(time.perf_counter() - start)
    return times, time.process_time() - cpu


def draw_threshold(detector, clip, batch_size, boxes):
    """The median over the clip's first frames of their `boxes`-th best score."""
    import numpy as np
    from inference import video_io
    with video_io.VideoSource(clip) as source:
        frames = [f.to_ndarray(format="rgb24") for f, _ in zip(source.frames(), range(batch_size))]
    scores = [np.sort(r["scores"])[::-1] for r in detector.detect_batch(np.stack(frames))]
    return float(np.median([s[min(boxes, len(s)) - 1] if len(s) else 1.0 for s in scores]))


def run(args, workdir):
    import numpy as np
    from benchmarks import bench_inference, make_random_checkpoint
    from inference import session_options, synthetic_clip, video, video_io
    from inference.detector import Detector

    clips = {}
    for width, height in args.sizes:
        path = os.path.join(workdir, f"clip_{width}x{height}.mp4")
        synthetic_clip.write_synthetic_clip(path, num_frames=args.num_frames, height=height, width=width, rate=30)
        clips[(width, height)] = path
    results = []
    for model_name in args.models:
        if args.checkpoint_path:
            checkpoint = args.checkpoint_path
        else:  # random batch norm statistics and heads: a batch norm network's scores spread out, boxes get drawn
            checkpoint = os.path.dirname(make_random_checkpoint.write_random_checkpoint(
                tempfile.mkdtemp(dir=workdir), model_name))
        with Detector(checkpoint, model_name=model_name) as det:
            images = bench_inference._images(types.SimpleNamespace(image=None, batch_size=args.batch_size),
                                             det.model.image_size)
            batch_seconds(det, images, 1)  # warm-up
            for (width, height), clip in clips.items():
                threshold = draw_threshold(det, clip, args.batch_size, args.boxes_drawn)
                out = os.path.join(workdir, "out.mp4"), os.path.join(workdir, "out.jsonl")
                with video_io.VideoSource(clip) as source:  # warm-up: the first run at this frame size
                    video.detect_video(det, source, *out, batch_size=args.batch_size,
                                       max_frames=args.batch_size, draw_threshold=threshold, progress=False)
                before, cpu_before = batch_seconds(det, images, args.reference_batches)
                load = os.getloadavg()[0]
                cpu = time.process_time()
                with video_io.VideoSource(clip) as source:
                    summary = video.detect_video(det, source, *out, batch_size=args.batch_size,
                                                 draw_threshold=threshold, progress=False)
                cpu = time.process_time() - cpu
                after, cpu_after = batch_seconds(det, images, args.reference_batches)
                ips = args.batch_size / float(np.median(before + after))
                cpu_per_image = (cpu_before + cpu_after) / (2 * args.reference_batches * args.batch_size)
                drawn = sum(summary["detections_per_class"].values()) / max(summary["detected_frames"], 1)
                result = {"model_name": model_name, "clip": f"{width}x{height}", "frames": summary["frames"],
                          "batch_size": args.batch_size, "frames_per_second": summary["frames_per_second"],
                          "images_per_second": round(ips, 3),
                          "pipeline_cost": round(1 - summary["frames_per_second"] / ips, 4),
                          # CPU time (all threads) is less at the mercy of other processes than the clock.
                          "cpu_ms_per_frame": round(1000 * cpu / summary["frames"], 2),
                          "cpu_ms_per_image": round(1000 * cpu_per_image, 2),
                          "pipeline_cpu_share": round(1 - cpu_per_image * summary["frames"] / cpu, 4),
                          "boxes_drawn_per_frame": round(drawn, 2), "codec": video_io.encoder_name(),
                          "busy_seconds": summary["busy_seconds"], "seconds": summary["seconds"],
                          "device": session_options.device_description(),
                          "load_average": [round(load, 2), round(os.getloadavg()[0], 2)]}
                print(json.dumps(result), flush=True)
                results.append(result)
    return results


def main(argv=None):
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench_video_") as workdir:
        run(args, workdir)
    return 0


if __name__ == "__main__":
    from common.errors import run_main
    run_main(main)
