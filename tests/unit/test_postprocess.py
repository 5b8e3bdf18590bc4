"""NMS and decoding equal biubug6's reference implementations."""

import numpy as np
import pytest
import torch

from retinaface.anchors import prior_boxes
from retinaface.postprocess import decode_boxes, decode_landmarks, detect_faces, nms
from retinaface.tools.bench_local import py_cpu_nms


def biubug6_decode(loc, priors, variances):
    boxes = torch.cat(
        (
            priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:],
            priors[:, 2:] * torch.exp(loc[:, 2:] * variances[1]),
        ),
        1,
    )
    boxes[:, :2] -= boxes[:, 2:] / 2
    boxes[:, 2:] += boxes[:, :2]
    return boxes


def biubug6_decode_landm(pre, priors, variances):
    return torch.cat(
        [
            priors[:, :2] + pre[:, 2 * k : 2 * k + 2] * variances[0] * priors[:, 2:]
            for k in range(5)
        ],
        dim=1,
    )


@pytest.mark.parametrize("seed", range(5))
def test_nms_equals_reference(seed):
    rng = np.random.default_rng(seed)
    corners = rng.uniform(0, 200, size=(300, 2))
    sizes = rng.uniform(5, 60, size=(300, 2))
    dets = np.hstack([corners, corners + sizes, rng.uniform(size=(300, 1))]).astype(np.float32)
    for threshold in (0.3, 0.4, 0.7):
        assert list(nms(dets, threshold)) == py_cpu_nms(dets, threshold)


def test_nms_suppresses_the_weaker_of_two_overlapping_boxes():
    dets = np.array([[0, 0, 10, 10, 0.9], [1, 1, 11, 11, 0.8], [50, 50, 60, 60, 0.7]], np.float32)
    assert list(nms(dets, 0.4)) == [0, 2]


def test_decode_equals_biubug6():
    priors = prior_boxes(240, 320)
    rng = np.random.default_rng(1)
    loc = rng.normal(size=(priors.shape[0], 4)).astype(np.float32)
    landm = rng.normal(size=(priors.shape[0], 10)).astype(np.float32)
    reference = biubug6_decode(torch.from_numpy(loc), torch.from_numpy(priors.copy()), (0.1, 0.2))
    np.testing.assert_allclose(decode_boxes(loc, priors), reference.numpy(), rtol=1e-6, atol=1e-6)
    reference = biubug6_decode_landm(
        torch.from_numpy(landm), torch.from_numpy(priors.copy()), (0.1, 0.2)
    )
    np.testing.assert_allclose(
        decode_landmarks(landm, priors), reference.numpy(), rtol=1e-6, atol=1e-6
    )


def test_detect_faces_applies_threshold_and_scale():
    priors = prior_boxes(64, 64)
    n = priors.shape[0]
    loc, landm = np.zeros((n, 4), np.float32), np.zeros((n, 10), np.float32)
    conf = np.zeros((n, 2), np.float32)
    conf[:, 0] = 1.0
    conf[3, :] = (0.05, 0.95)  # one confident anchor
    boxes, scores, points = detect_faces(loc, conf, landm, priors, 640, 640, conf_threshold=0.6)
    assert scores.tolist() == pytest.approx([0.95])
    cx, cy, w, h = priors[3] * np.array([640, 640, 640, 640])
    np.testing.assert_allclose(
        boxes[0], [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], rtol=1e-5
    )
    np.testing.assert_allclose(points[0], np.tile([cx, cy], (5, 1)), rtol=1e-5)
