"""Array helpers shared by the inference paths."""
import numpy as np

# TensorFlow feeds an array to session.run without copying it when its data starts on a 64-byte boundary
# (EIGEN_MAX_ALIGN_BYTES); NumPy aligns to 16 bytes, so a fed batch is otherwise copied (2-2.5 ms for eight
# 1280x720 frames on the 2-core Zen 3).
FEED_ALIGNMENT = 64


def aligned_empty(shape, dtype=np.uint8):
    """An uninitialised C-contiguous array whose data is FEED_ALIGNMENT-aligned: a batch to fill and feed to
    TensorFlow without a copy."""
    dtype = np.dtype(dtype)
    size = int(np.prod(shape)) * dtype.itemsize
    raw = np.empty(size + FEED_ALIGNMENT, np.uint8)
    offset = -raw.ctypes.data % FEED_ALIGNMENT
    return raw[offset:offset + size].view(dtype).reshape(shape)
