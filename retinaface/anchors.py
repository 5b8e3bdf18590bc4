"""Prior boxes (anchors) for RetinaFace, vectorized and cached per input size (torch-free).

Bit-identical to biubug6's PriorBox triple loop: order level, row, column, min_size; each row
(cx, cy, w, h) normalized by the input width and height; computed in float64 then stored as float32.
"""

import math
from functools import lru_cache

import numpy as np

from .config import MIN_SIZES, STEPS


@lru_cache(maxsize=16)
def prior_boxes(height, width):
    """Anchors for an input of `height` x `width` pixels, shape (N, 4), read-only, cached."""
    levels = []
    for sizes, step in zip(MIN_SIZES, STEPS):
        rows, cols = int(math.ceil(height / float(step))), int(math.ceil(width / float(step)))
        ys, xs = np.meshgrid(np.arange(rows), np.arange(cols), indexing="ij")
        cx = (xs + 0.5) * step / width
        cy = (ys + 0.5) * step / height
        level = np.empty((rows, cols, len(sizes), 4), dtype=np.float64)
        for k, size in enumerate(sizes):
            level[:, :, k, 0] = cx
            level[:, :, k, 1] = cy
            level[:, :, k, 2] = float(size) / width
            level[:, :, k, 3] = float(size) / height
        levels.append(level.reshape(-1, 4))
    anchors = np.concatenate(levels).astype(np.float32)
    anchors.setflags(write=False)
    return anchors
