"""A generated video of moving synthetic shapes, for the video tests, the benchmark and the notebook.

The shapes, colours and textures are the synthetic VOC dataset's (datasets/synthetic_drawing.py,
datasets/synthetic_voc.py): a textured background and a few objects that move in straight lines and bounce
off the borders. Seeded: the same arguments give the same pixels before encoding.
"""
import numpy as np
from common import fileio
from datasets.synthetic_drawing import coverage, texture_tiles
from datasets.synthetic_voc import CLASS_STYLES, paint_object
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


def synthetic_frames(num_frames, height, width, num_objects=3, seed=0, class_names=tuple(CLASS_STYLES)):
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


def write_synthetic_clip(path, num_frames=48, height=240, width=320, rate=25, num_objects=3, seed=0):
    """Encodes synthetic_frames() into `path` (format from its extension, see video_io.OUTPUT_FORMATS) with
    the video writer's codec (H.264 where the FFmpeg build has it); returns the per-frame object boxes."""
    truth = []
    container_format = video_io.output_format(path)
    with fileio.atomic_path(path) as tmp:
        # faststart: the index (moov) first, so that a cut copy still decodes up to the cut (the damage tests).
        with video_io.VideoWriter(tmp, width, height, rate, container_format=container_format,
                                  faststart=True) as writer:
            for i, (frame, boxes) in enumerate(synthetic_frames(num_frames, height, width, num_objects, seed)):
                writer.write(frame, pts=i)
                truth.append(boxes)
    return truth
