"""Default boxes ("anchors", Caffe's PriorBox), computed once in NumPy: they are constants of the network.

Boxes are [ymin, xmin, ymax, xmax] relative to the image. Order, as Caffe concatenates `mbox_priorbox`:
feature layer, then location row-major (y, then x), then per location: for each min_size the min square,
the sqrt(min * max) square, then each aspect ratio r followed by 1/r (flip). The same order is produced by
reshaping an NHWC head output [B, H, W, A * k] to [B, H * W * A, k], so heads and anchors line up.
"""
import math

import numpy as np


def _expanded_ratios(aspect_ratios, flip):
    """Caffe PriorBoxLayer::LayerSetUp: [1, r1, 1/r1, r2, 1/r2, ...] without near-duplicates."""
    ratios = [1.0]
    for r in aspect_ratios:
        r = float(r)
        if any(abs(r - q) < 1e-6 for q in ratios):
            continue
        ratios.append(r)
        if flip:
            ratios.append(1.0 / r)
    return ratios


def num_anchors_per_location(min_sizes, max_sizes=(), aspect_ratios=(), flip=True):
    ratios = _expanded_ratios(aspect_ratios, flip)
    return len(min_sizes) * len(ratios) + len(max_sizes)


def prior_box(feat_shape, img_shape, min_sizes, max_sizes=(), aspect_ratios=(), flip=True, clip=False,
              step=None, offset=0.5):
    """Caffe SSD's PriorBox for one feature map.

    Args:
      feat_shape: (H, W) of the feature map. img_shape: (H, W) of the network input, in pixels.
      min_sizes, max_sizes: PriorBox min_size / max_size lists (pixels); max_sizes empty or as long as min_sizes.
      aspect_ratios: PriorBox aspect_ratio list (1 is implied). flip: add 1/r for each r.
      step: a number, (step_h, step_w), or None for img / feat. offset: centre offset in cells.
    Returns:
      float32 [H * W * A, 4] boxes [ymin, xmin, ymax, xmax] relative to the image.
    """
    fh, fw = feat_shape
    ih, iw = img_shape
    if step is None or step == 0:
        step_h, step_w = ih / fh, iw / fw
    elif isinstance(step, (tuple, list)):
        step_h, step_w = step
    else:
        step_h = step_w = step
    if max_sizes and len(max_sizes) != len(min_sizes):
        raise ValueError("max_sizes must be empty or as long as min_sizes")
    ratios = _expanded_ratios(aspect_ratios, flip)
    # Half-extents (h/2, w/2) per anchor at one location, in Caffe's order.
    extents = []
    for i, min_size in enumerate(min_sizes):
        extents.append((min_size / 2.0, min_size / 2.0))
        if max_sizes:
            s = math.sqrt(min_size * max_sizes[i])
            extents.append((s / 2.0, s / 2.0))
        for r in ratios[1:]:
            extents.append((min_size / math.sqrt(r) / 2.0, min_size * math.sqrt(r) / 2.0))
    extents = np.array(extents, dtype=np.float64)  # [A, 2] (half_h, half_w)
    cy = (np.arange(fh, dtype=np.float64) + offset) * step_h
    cx = (np.arange(fw, dtype=np.float64) + offset) * step_w
    cy, cx = np.meshgrid(cy, cx, indexing="ij")
    cy = cy.reshape(-1, 1)
    cx = cx.reshape(-1, 1)
    boxes = np.stack([(cy - extents[:, 0]) / ih, (cx - extents[:, 1]) / iw,
                      (cy + extents[:, 0]) / ih, (cx + extents[:, 1]) / iw], axis=-1)
    boxes = boxes.reshape(-1, 4)
    if clip:
        boxes = np.clip(boxes, 0.0, 1.0)
    return boxes.astype(np.float32)


def layer_num_anchors(params):
    """Anchors per location for each feature layer of an SSDParams."""
    return [num_anchors_per_location(params.anchor_min_sizes[i], params.anchor_max_sizes[i],
                                     params.anchor_ratios[i], params.anchor_flip)
            for i in range(len(params.feat_layers))]


def ssd_anchors(params):
    """All anchors of an SSDParams, float32 [N, 4], feature layers concatenated in order."""
    return np.concatenate([
        prior_box(params.feat_shapes[i], params.img_shape, params.anchor_min_sizes[i],
                  params.anchor_max_sizes[i], params.anchor_ratios[i], params.anchor_flip,
                  params.anchor_clip, params.anchor_steps[i], params.anchor_offset)
        for i in range(len(params.feat_layers))], axis=0)


def linear_scale_sizes(image_size, num_layers, min_scale=0.2, max_scale=0.95):
    """(min_sizes, max_sizes) in pixels of TF OD API's ssd_anchor_generator scales, one per layer:
    s_k = min_scale + (max_scale - min_scale) k / (num_layers - 1), and max_size s_{k+1} (1.0 after the
    last layer), as the interpolated sqrt(s_k s_{k+1}) square that PriorBox's max_size gives."""
    scales = [min_scale + (max_scale - min_scale) * k / (num_layers - 1) for k in range(num_layers)] + [1.0]
    return (tuple((scales[k] * image_size,) for k in range(num_layers)),
            tuple((scales[k + 1] * image_size,) for k in range(num_layers)))
