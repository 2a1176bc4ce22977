"""Drawing for the synthetic VOC dataset (synthetic_voc.py): background textures and object shapes.

Pure NumPy/Pillow, seeded by the caller's Generator: the same draws give the same pixels.
"""
import colorsys

import numpy as np
from PIL import Image, ImageDraw

NUM_TILES = 8                 # background tiles per dataset
NOISE_SIGMA = 4.0             # pixel noise, grey levels


# ---------------------------------------------------------------- backgrounds

def _value_noise(rng, size, cells, octaves):
    """[size, size] float32 fractal value noise in [0, 1]: bicubic-upsampled random grids, 1/2 per octave."""
    total = np.zeros((size, size), np.float32)
    for octave in range(octaves):
        n = cells * 2 ** octave + 1
        grid = Image.fromarray(rng.random((n, n), dtype=np.float32), mode="F")
        total += 0.5 ** octave * np.asarray(grid.resize((size, size), Image.BICUBIC))
    total -= total.min()
    return total / max(float(total.max()), 1e-6)


def _pattern(rng, kind, size):
    """[size, size] float32 in [0, 1]: one of four background textures."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32)
    if kind == "clouds":
        return _value_noise(rng, size, 3, 6)
    if kind == "grain":
        angle = rng.uniform(0, np.pi)
        freq = rng.uniform(6, 14) * 2 * np.pi / size
        warp = 6.0 * _value_noise(rng, size, 2, 3)
        p = 0.5 + 0.5 * np.sin(freq * (x * np.cos(angle) + y * np.sin(angle)) + warp)
        return 0.75 * p + 0.25 * _value_noise(rng, size, 24, 2)
    if kind == "brick":
        h = float(rng.integers(size // 14, size // 6))
        w, grout = 2 * h, max(2.0, h / 8)
        row = np.floor(y / h)
        xs = x + (row % 2) * w / 2
        lines = (y % h < grout) | (xs % w < grout)
        shade = np.asarray(rng.uniform(0.45, 1.0, 4096), np.float32)
        brick = shade[((row * 61 + np.floor(xs / w) * 17) % 4096).astype(np.int64)]
        return np.where(lines, 0.1, brick) * 0.8 + 0.2 * _value_noise(rng, size, 32, 2)
    if kind == "gravel":
        fine = _value_noise(rng, size, size // 10, 1)
        return 0.6 * (fine > 0.55) * fine + 0.4 * _value_noise(rng, size, 4, 5)
    raise ValueError(kind)


def hsv(h_deg, s, v):
    return np.array(colorsys.hsv_to_rgb((h_deg % 360.0) / 360.0, s, v), np.float32) * 255.0


def texture_tiles(rng, size):
    """NUM_TILES RGB [size, size] PIL images: a texture between two dull (saturation <= 0.2) colours, with
    pixel noise; and a [size, size, 3] float32 N(0, NOISE_SIGMA) tile that gives the objects theirs."""
    kinds = ("clouds", "grain", "brick", "gravel")
    tiles = []
    for i in range(NUM_TILES):
        p = _pattern(rng, kinds[i % len(kinds)], size)
        dark = hsv(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(0.2, 0.5))
        light = hsv(rng.uniform(0, 360), rng.uniform(0, 0.2), rng.uniform(0.55, 0.9))
        rgb = dark + (light - dark) * p[..., None] + rng.normal(0.0, NOISE_SIGMA, (size, size, 3))
        tiles.append(Image.fromarray(np.clip(rgb + 0.5, 0, 255).astype(np.uint8)))
    noise = rng.normal(0.0, NOISE_SIGMA, (size, size, 3)).astype(np.float32)
    return tiles, noise


# ---------------------------------------------------------------- objects

def _star(points, inner):
    angles = np.pi / 2 + np.arange(2 * points) * np.pi / points
    radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, inner)
    return np.stack([radii * np.cos(angles), -radii * np.sin(angles)], axis=1)


def _outline(rng, shape):
    """Unit polygon [k, 2] (x, y) of a shape, randomly rotated; None for the ellipse."""
    if shape == "ellipse":
        return None
    if shape == "rectangle":
        poly, turn = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], np.float64), rng.uniform(-8, 8)
    elif shape == "triangle":
        poly, turn = np.array([[0, -1], [1, 0.8], [-1, 0.8]], np.float64), rng.uniform(-15, 15)
    elif shape == "cross":
        t = rng.uniform(0.28, 0.42)
        poly = np.array([[-t, -1], [t, -1], [t, -t], [1, -t], [1, t], [t, t], [t, 1], [-t, 1],
                         [-t, t], [-1, t], [-1, -t], [-t, -t]], np.float64)
        turn = rng.uniform(-20, 20)
    elif shape == "star":
        poly, turn = _star(5, rng.uniform(0.4, 0.5)), rng.uniform(0, 72)
    elif shape == "hexagon":
        angles = np.arange(6) * np.pi / 3
        poly, turn = np.stack([np.cos(angles), np.sin(angles)], axis=1), rng.uniform(0, 60)
    else:
        raise ValueError(shape)
    a = np.deg2rad(turn)
    return poly @ np.array([[np.cos(a), np.sin(a)], [-np.sin(a), np.cos(a)]])


def coverage(rng, shape, w, h):
    """[h, w] uint8 anti-aliased coverage (255 = fully inside) of a shape filling a w x h box."""
    mask = Image.new("L", (2 * w, 2 * h), 0)
    draw = ImageDraw.Draw(mask)
    poly = _outline(rng, shape)
    if poly is None:
        draw.ellipse([0, 0, 2 * w - 1, 2 * h - 1], fill=255)
    else:
        lo, hi = poly.min(axis=0), poly.max(axis=0)
        poly = (poly - lo) / (hi - lo) * [2 * w - 1, 2 * h - 1]
        draw.polygon([tuple(p) for p in poly], fill=255)
    return mask.reduce(2)
