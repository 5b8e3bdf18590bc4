"""Anchors equal a faithful port of biubug6's PriorBox loop (the study's, in bench_local), bit for bit."""

import numpy as np
import pytest

from retinaface.anchors import prior_boxes
from retinaface.tools.bench_local import study_prior_box as biubug6_prior_box


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
