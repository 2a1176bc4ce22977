"""Runs an SSD checkpoint (trained, native or converted from Caffe) on images: JSON and annotated PNGs out.

    python detect_ssd.py --checkpoint_path=checkpoints/ssd_300_vgg --image=photos/ \\
        --output_json=dets.json --output_dir=annotated/ [--model_name=ssd_300_vgg] [--select_threshold=0.01] \\
        [--nms_threshold=0.45] [--top_k=400] [--keep_top_k=200] [--draw_threshold=0.5]
    python detect_ssd.py --model=export/model.onnx --image=photos/ --output_json=dets.json   # an export

--checkpoint_path is a checkpoint prefix or a directory (its latest checkpoint); the model is rebuilt from the
ssd_config.json beside it. --model=<model.onnx | model.tflite | SavedModel folder> runs an export of
export_ssd.py through its own runtime instead (ONNX Runtime, LiteRT, TensorFlow; inference/runtimes.py), with
the post-processing values it was exported with, so an export can be checked before it ships.
--image is an image file or a folder of them (.jpg .jpeg .png .bmp .gif .webp .tif
.tiff, not recursive). The post-processing flags override the model's defaults (Caffe's DetectionOutput
values for converted models).

JSON: {"images": [{"path", "height", "width", "detections": [{"label", "class", "score",
"bbox": [ymin, xmin, ymax, xmax]}, ...]}]}, boxes relative to the image and clipped to it, detections sorted by
score. --output_dir receives <image name>.png for each image with the detections scoring at least
--draw_threshold drawn. Every output appears complete or not at all; an unreadable image stops the run.
"""
import argparse
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter; set before it is imported

from common.errors import ConfigError, DatasetError, run_main  # noqa: E402
from datasets.pixel_boxes import relative_to_voc  # noqa: E402

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    parser.add_argument("--checkpoint_path", default=None, help="checkpoint prefix or directory")
    parser.add_argument("--model", default=None, help="an export instead: model.onnx, model.tflite or a SavedModel")
    parser.add_argument("--model_name", default=None, help="expected model name (checked against the config)")
    parser.add_argument("--image", required=True, help="an image file or a folder of images")
    parser.add_argument("--output_json", default=None, help="write the detections here")
    parser.add_argument("--output_dir", default=None, help="write annotated PNGs here")
    parser.add_argument("--select_threshold", type=float, default=None, help="keep scores above this")
    parser.add_argument("--nms_threshold", type=float, default=None, help="NMS IoU threshold")
    parser.add_argument("--top_k", type=int, default=None, help="candidates per class before NMS")
    parser.add_argument("--keep_top_k", type=int, default=None, help="detections kept per image")
    parser.add_argument("--draw_threshold", type=float, default=0.5,
                        help="annotated images show the detections scoring at least this")
    args = parser.parse_args(argv)
    if (args.checkpoint_path is None) == (args.model is None):
        raise ConfigError("--checkpoint_path", "give either --checkpoint_path or --model")
    for name in ("top_k", "keep_top_k", "select_threshold", "nms_threshold"):
        if args.model and getattr(args, name) is not None:
            raise ConfigError(f"--{name}", "an export keeps the post-processing it was exported with (export_ssd.py)")
    for name in ("top_k", "keep_top_k"):
        value = getattr(args, name)
        if value is not None and value < 1:
            raise ConfigError(f"--{name}", f"must be >= 1, got {value}")
    for name in ("select_threshold", "nms_threshold"):
        value = getattr(args, name)
        if value is not None and not 0.0 <= value <= 1.0:
            raise ConfigError(f"--{name}", f"must be in [0, 1], got {value}")
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
    import numpy as np
    order = np.argsort(-result["scores"], kind="stable")
    detections = []
    for i in order:
        label = int(result["classes"][i])
        box = np.clip(result["boxes"][i], 0.0, 1.0)
        detections.append({"label": label,
                           "class": class_names[label - 1] if 0 < label <= len(class_names) else str(label),
                           "score": round(float(result["scores"][i]), 6),
                           "bbox": [round(float(v), 6) for v in box]})
    return {"path": path, "height": int(image.shape[0]), "width": int(image.shape[1]), "detections": detections}


def annotate(image, record, min_score):
    """A PIL image with the record's detections scoring >= min_score drawn: box, class name and score."""
    from PIL import Image, ImageDraw, ImageFont
    import matplotlib
    canvas = Image.fromarray(image)
    draw = ImageDraw.Draw(canvas)
    height, width = image.shape[:2]
    line = max(1, round(max(height, width) / 300))
    try:
        font = ImageFont.load_default(size=max(11, 4 * line + 8))
    except TypeError:  # Pillow < 10.1: the fixed bitmap font
        font = ImageFont.load_default()
    colours = matplotlib.colormaps["tab10"]
    for det in reversed(record["detections"]):  # the best drawn last, on top
        if det["score"] < min_score:
            continue
        # VOC's 1-based inclusive pixels (the project's one conversion), shifted to PIL's 0-based ones.
        box = [int(round(v)) - 1 for v in relative_to_voc(det["bbox"], height, width)]
        box[2:] = max(box[0], box[2]), max(box[1], box[3])  # a box thinner than a pixel: one pixel, not inverted
        colour = tuple(int(255 * c) for c in colours(det["label"] % 10)[:3])
        draw.rectangle(box, outline=colour, width=line)
        text = f"{det['class']} {det['score']:.2f}"
        left, top, right, bottom = draw.textbbox((box[0], box[1]), text, font=font)
        top_y = box[1] - (bottom - top) - 2 if box[1] - (bottom - top) - 2 >= 0 else box[1]
        draw.rectangle([box[0], top_y, box[0] + right - left + 4, top_y + bottom - top + 2], fill=colour)
        draw.text((box[0] + 2, top_y), text, fill=(255, 255, 255), font=font)
    return canvas


def _png_names(paths):
    """<name>.png per image, unique even for photo.jpg next to photo.png."""
    names, seen = [], {}
    for path in paths:
        stem = os.path.splitext(os.path.basename(path))[0]
        count = seen.get(stem, 0)
        seen[stem] = count + 1
        names.append(f"{stem}.png" if count == 0 else f"{stem}_{count}.png")
    return names


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    paths = list_images(args.image)
    import contextlib
    from common import fileio
    from nets import caffe_ssd  # noqa: F401  (registers the caffe_ssd model with nets_factory)
    from nets import detection

    records = []
    with contextlib.ExitStack() as stack:
        if args.model:
            from inference import runtimes
            detector = stack.enter_context(runtimes.open_model(args.model))
        else:
            detector = stack.enter_context(detection.Detector(
                args.checkpoint_path, model_name=args.model_name, select_threshold=args.select_threshold,
                nms_threshold=args.nms_threshold, top_k=args.top_k, keep_top_k=args.keep_top_k))
        # Annotated images are written into a staging folder that becomes --output_dir only when all are done.
        stage = stack.enter_context(fileio.staging_dir(args.output_dir)) if args.output_dir else None
        class_names = list(detector.class_names)
        for path, png in zip(paths, _png_names(paths)):
            image = read_image(path)
            record = image_record(path, image, detector.detect(image), class_names)
            records.append(record)
            if stage:
                annotate(image, record, args.draw_threshold).save(os.path.join(stage, png))
            best = record["detections"][:1]
            summary = f", best {best[0]['class']} {best[0]['score']:.3f}" if best else ""
            print(f"{path}: {len(record['detections'])} detections{summary}", flush=True)
    if args.output_json:
        fileio.write_json(args.output_json, {"images": records})
    return 0


if __name__ == "__main__":
    run_main(main)
