"""Generated videos for the video tests, the benchmark, the notebook and the docs.

synthetic_frames / write_synthetic_clip: moving synthetic shapes. The shapes, colours and textures are the
synthetic VOC dataset's (datasets/synthetic_drawing.py, datasets/synthetic_voc.py): a textured background and
a few objects that move in straight lines and bounce off the borders. Seeded: the same arguments give the
same pixels before encoding. photo_frames / write_photo_clip: a slow pan and zoom over a photograph.
"""
import numpy as np
from PIL import Image

from common import fileio
from datasets.synthetic_drawing import coverage, texture_tiles
from datasets.synthetic_voc import CLASS_STYLES, SYNTHETIC_CLASSES, paint_object
from inference import video_io


def _objects(rng, height, width, num_objects, num_frames, class_names):
    """Per object: (class name, coverage mask, hue, [num_frames, 2] top-left (x, y) positions)."""
    objects = []
    for k in range(num_objects):
        name = class_names[k % len(class_names)]
        shape, hue = CLASS_STYLES[name]
        side = min(height, width)
        w = int(side * rng.uniform(0.2, 0.4))
        h = int(np.clip(w * rng.uniform(0.7, 1.4), 8, 0.9 * height))
        cover = np.asarray(coverage(rng, shape, w, h))
        # Bounce inside [0, width - w] x [0, height - h]: a triangle wave of a straight path.
        start = rng.uniform(0, 1, 2) * [width - w, height - h]
        speed = rng.uniform(0.5, 1.5, 2) * side / 60.0 * rng.choice([-1, 1], 2)
        path = start + np.arange(num_frames)[:, None] * speed
        span = np.array([width - w, height - h], np.float64)
        path = span - np.abs(np.mod(path, 2 * span) - span)
        objects.append((name, cover, hue, np.round(path).astype(int)))
    return objects


def synthetic_frames(num_frames, height, width, num_objects=3, seed=0, class_names=SYNTHETIC_CLASSES):
    """Yields (uint8 [height, width, 3] RGB frame, [(class name, [ymin, xmin, ymax, xmax] relative), ...])."""
    rng = np.random.default_rng(seed)
    tiles, noise = texture_tiles(rng, max(height, width, 64))
    background = tiles[0].crop((0, 0, width, height))
    objects = _objects(rng, height, width, num_objects, num_frames, class_names)
    for i in range(num_frames):
        image = background.copy()
        boxes = []
        for k, (name, cover, hue, path) in enumerate(objects):
            x, y = (int(v) for v in path[i])
            # The same generator state for every frame: the object keeps its colour and shading as it moves.
            paint_object(np.random.default_rng([seed, k]), image, noise, x, y, cover, hue)
            h, w = cover.shape
            boxes.append((name, [y / height, x / width, (y + h) / height, (x + w) / width]))
        yield np.asarray(image), boxes


def _write(path, frames, height, width, rate):
    """Encodes uint8 RGB frames at `rate` frames per second into `path`, atomically."""
    container_format = video_io.output_format(path)
    with fileio.atomic_path(path) as tmp:
        # faststart: the index (moov) first, so that a cut copy still decodes up to the cut (the damage tests).
        with video_io.VideoWriter(tmp, width, height, rate, container_format=container_format,
                                  faststart=True) as writer:
            for i, frame in enumerate(frames):
                writer.write(frame, pts=i)


def write_synthetic_clip(path, num_frames=48, height=240, width=320, rate=25, num_objects=3, seed=0):
    """Encodes synthetic_frames() into `path` (format from its extension, see video_io.OUTPUT_FORMATS) with
    the video writer's codec (H.264 where the FFmpeg build has it); returns the per-frame object boxes."""
    truth = []

    def frames():
        for frame, boxes in synthetic_frames(num_frames, height, width, num_objects, seed):
            truth.append(boxes)
            yield frame
    _write(path, frames(), height, width, rate)
    return truth


def photo_frames(photo, num_frames, height, width):
    """Yields uint8 [height, width, 3] RGB frames of a slow pan and zoom over `photo` (uint8 [H, W, 3]): the
    window shrinks from the photo's largest crop of the clip's aspect ratio to 80% of it, drifting across."""
    image = Image.fromarray(photo)
    ph, pw = photo.shape[:2]
    full_w = min(pw, ph * width / height)
    for i in range(num_frames):
        t = i / max(num_frames - 1, 1)
        w = full_w * (1.0 - 0.2 * t)
        h = w * height / width
        x0, y0 = (pw - w) * (0.2 + 0.6 * t), (ph - h) * (0.5 - 0.3 * t)
        yield np.asarray(image.resize((width, height), Image.BILINEAR, box=(x0, y0, x0 + w, y0 + h)))


def write_photo_clip(path, photo=None, num_frames=48, height=240, width=320, rate=25):
    """Encodes photo_frames() of `photo` (default: matplotlib's grace_hopper.jpg sample) into `path`."""
    if photo is None:
        import matplotlib.cbook
        with Image.open(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)) as im:
            photo = np.asarray(im.convert("RGB"))
    _write(path, photo_frames(photo, num_frames, height, width), height, width, rate)
