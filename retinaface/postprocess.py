"""Decode RetinaFace outputs into faces: threshold, top-k, NMS, keep-k (pure numpy, torch-free).

Follows biubug6 detect.py: decode with variances (0.1, 0.2), scores = softmax column 1,
Girshick's py_cpu_nms with the "+1" pixel area convention.
"""

import numpy as np

from .config import KEEP_TOP_K, NMS_THRESHOLD, PRE_NMS_TOP_K, VARIANCES


def decode_boxes(loc, priors, variances=VARIANCES):
    """Offsets (N, 4) + priors (N, 4) -> boxes x1, y1, x2, y2 normalized to 0..1."""
    centers = priors[:, :2] + loc[:, :2] * variances[0] * priors[:, 2:]
    sizes = priors[:, 2:] * np.exp(loc[:, 2:] * variances[1])
    corners = centers - sizes / 2
    return np.concatenate([corners, corners + sizes], axis=1)


def decode_landmarks(pre, priors, variances=VARIANCES):
    """Offsets (N, 10) + priors -> 5 (x, y) points per anchor, normalized, shape (N, 10)."""
    offsets = pre.reshape(-1, 5, 2) * variances[0] * priors[:, None, 2:]
    return (priors[:, None, :2] + offsets).reshape(-1, 10)


def nms(dets, threshold):
    """Greedy NMS (Girshick's py_cpu_nms, "+1" areas); dets (N, 5) sorted or not; returns indices."""
    x1, y1, x2, y2, scores = dets[:, 0], dets[:, 1], dets[:, 2], dets[:, 3], dets[:, 4]
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = scores.argsort()[::-1]
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        xx1 = np.maximum(x1[i], x1[order[1:]])
        yy1 = np.maximum(y1[i], y1[order[1:]])
        xx2 = np.minimum(x2[i], x2[order[1:]])
        yy2 = np.minimum(y2[i], y2[order[1:]])
        w = np.maximum(0.0, xx2 - xx1 + 1)
        h = np.maximum(0.0, yy2 - yy1 + 1)
        inter = w * h
        overlap = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[np.where(overlap <= threshold)[0] + 1]
    return np.array(keep, dtype=np.int64)


def detect_faces(
    loc,
    conf,
    landms,
    priors,
    scale_x,
    scale_y,
    conf_threshold,
    nms_threshold=NMS_THRESHOLD,
    top_k=PRE_NMS_TOP_K,
    keep_k=KEEP_TOP_K,
):
    """One image's raw outputs -> (boxes (K, 4), scores (K,), landmarks (K, 5, 2)) in pixels.

    `scale_x`, `scale_y` turn normalized coordinates into original-image pixels
    (network input size divided by any resize factor).
    """
    scores = conf[:, 1]
    candidates = np.where(scores > conf_threshold)[0]
    # Decode only the survivors of the threshold: the rest never matter.
    order = candidates[np.argsort(-scores[candidates], kind="stable")][:top_k]
    scale = np.array([scale_x, scale_y, scale_x, scale_y], dtype=np.float32)
    boxes = decode_boxes(loc[order], priors[order]) * scale
    points = decode_landmarks(landms[order], priors[order]) * np.tile(scale[:2], 5)
    kept_scores = scores[order]
    dets = np.hstack([boxes, kept_scores[:, None]]).astype(np.float32, copy=False)
    keep = nms(dets, nms_threshold)[:keep_k]
    return boxes[keep], kept_scores[keep], points[keep].reshape(-1, 5, 2)
