"""Anchors equal a faithful port of biubug6's PriorBox loop, bit for bit."""

from itertools import product
from math import ceil

import numpy as np
import pytest

from retinaface.anchors import prior_boxes


def biubug6_prior_box(height, width):
    """layers/functions/prior_box.py of biubug6/Pytorch_Retinaface, with torch.Tensor -> float32."""
    min_sizes, steps = [[16, 32], [64, 128], [256, 512]], [8, 16, 32]
    feature_maps = [[ceil(height / step), ceil(width / step)] for step in steps]
    anchors = []
    for k, f in enumerate(feature_maps):
        for i, j in product(range(f[0]), range(f[1])):
            for min_size in min_sizes[k]:
                s_kx = min_size / width
                s_ky = min_size / height
                dense_cx = [x * steps[k] / width for x in [j + 0.5]]
                dense_cy = [y * steps[k] / height for y in [i + 0.5]]
                for cy, cx in product(dense_cy, dense_cx):
                    anchors += [cx, cy, s_kx, s_ky]
    return np.array(anchors, dtype=np.float32).reshape(-1, 4)


@pytest.mark.parametrize("height,width", [(480, 640), (240, 320), (301, 517), (33, 47), (640, 640)])
def test_anchors_equal_biubug6_loop(height, width):
    ours = prior_boxes(height, width)
    reference = biubug6_prior_box(height, width)
    assert ours.shape == reference.shape
    assert np.array_equal(ours, reference)


def test_anchor_count_at_vga():
    assert prior_boxes(480, 640).shape == (12600, 4)


def test_anchors_are_cached_and_read_only():
    first = prior_boxes(120, 160)
    assert prior_boxes(120, 160) is first
    with pytest.raises(ValueError):
        first[0, 0] = 1.0
