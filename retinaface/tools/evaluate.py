"""Agreement of each model variant with the fp32 torch detections (workstation side).

The reference is the fp32 ONNX model's faces with score >= 0.5 (fp32 equals torch to ~1e-5; see
each variant's `parity` in the manifest). For each variant: recall and
precision at IoU 0.5 over its faces with score >= 0.5, AP@0.5 over all its detections
(score >= 0.02, fp32 faces as ground truth), and the landmark error of matched faces divided by
the reference box size (sqrt of its area).
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Sequence

import numpy as np

from ..errors import ModelError
from .paths import PROJECT_ROOT

# The photographs the tool uses by default ship in the repository (data/SOURCES.md).
DEFAULT_IMAGES = PROJECT_ROOT / "data" / "images"
# Held out of the default calibration set, so the INT8 gate is judged on unseen photographs.
HELD_OUT = ("crowd.jpg", "group.jpg", "src_meeting.jpg", "selfie.jpg", "einstein.png")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp")
SCORE = 0.5
AP_SCORE = 0.02
IOU = 0.5
INT8_MIN_RECALL = 0.95
INT8_GATED = ("int8", "int8-qop")  # both quantized forms must keep the fp32 faces


def list_images(folder: Path) -> List[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ModelError(f"image folder not found: {folder}")
    images = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise ModelError(f"no images (jpg, png, bmp, webp) in {folder}")
    return images


def default_split(folder: Path = DEFAULT_IMAGES):
    """(calibration, evaluation) photographs of the default set: the held-out ones evaluate."""
    images = list_images(folder)
    return [p for p in images if p.name not in HELD_OUT], [p for p in images if p.name in HELD_OUT]


def held_out_images(folder: Path = DEFAULT_IMAGES) -> List[Path]:
    """The default evaluation photographs alone (the calibration ones are not listed)."""
    images = [Path(folder) / name for name in HELD_OUT]
    missing = [p.name for p in images if not p.is_file()]
    if missing:
        raise ModelError(f"held-out photographs missing from {folder}: {', '.join(missing)}")
    return images


def iou(a: Sequence[float], b: Sequence[float]) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def match(reference: List[dict], found: List[dict]):
    """Greedy matching by descending score: [(found_index, reference_index or None)]."""
    taken = set()
    pairs = []
    for i in sorted(range(len(found)), key=lambda k: -found[k]["score"]):
        best, best_iou = None, IOU
        for j, ref in enumerate(reference):
            overlap = iou(found[i]["box"], ref["box"])
            if j not in taken and overlap >= best_iou:
                best, best_iou = j, overlap
        if best is not None:
            taken.add(best)
        pairs.append((i, best))
    return pairs


def average_precision(hits: List[bool], scores: List[float], positives: int) -> float:
    """VOC all-point AP from per-detection hit flags."""
    if positives == 0:
        return 1.0 if not hits else 0.0
    order = np.argsort(-np.asarray(scores, dtype=np.float64), kind="stable")
    tp = np.cumsum(np.asarray(hits, dtype=np.float64)[order])
    fp = np.cumsum(1.0 - np.asarray(hits, dtype=np.float64)[order])
    recall = np.concatenate([[0.0], tp / positives, [1.0]])
    precision = np.concatenate([[1.0], tp / np.maximum(tp + fp, 1e-12), [0.0]])
    for k in range(len(precision) - 2, -1, -1):
        precision[k] = max(precision[k], precision[k + 1])
    steps = np.where(recall[1:] != recall[:-1])[0]
    return float(np.sum((recall[steps + 1] - recall[steps]) * precision[steps + 1]))


def landmark_error(ref: dict, face: dict) -> float:
    x1, y1, x2, y2 = ref["box"]
    scale = max(1e-6, ((x2 - x1) * (y2 - y1)) ** 0.5)
    diffs = np.asarray(ref["landmarks"]) - np.asarray(face["landmarks"])
    return float(np.linalg.norm(diffs, axis=1).mean() / scale)


def agreement(reference: Dict[str, List[dict]], found: Dict[str, List[dict]]) -> dict:
    """Metrics of one variant's detections (score >= 0.02) against the reference faces."""
    positives = matched = kept = 0
    hits, scores, errors = [], [], []
    for name, refs in reference.items():
        dets = found[name]
        positives += len(refs)
        strong = [f for f in dets if f["score"] >= SCORE]
        kept += len(strong)
        for i, j in match(refs, strong):
            if j is not None:
                matched += 1
                errors.append(landmark_error(refs[j], strong[i]))
        for i, j in match(refs, dets):
            hits.append(j is not None)
            scores.append(dets[i]["score"])
    return {
        "recall": matched / positives if positives else 1.0,
        "precision": matched / kept if kept else 1.0,
        "ap50": average_precision(hits, scores, positives),
        "landmark_nme": float(np.mean(errors)) if errors else 0.0,
        "reference_faces": positives,
        "found_faces": kept,
    }


def int8_below_gate(metrics: Dict[str, dict], variants: Sequence[str] = INT8_GATED) -> list:
    """[(variant, recall)] of the INT8 variants whose recall is below INT8_MIN_RECALL."""
    recalls = [(name, metrics[name]["recall"]) for name in variants]
    return [(name, recall) for name, recall in recalls if recall < INT8_MIN_RECALL]


def evaluate_variants(
    models_dir: Path, variants: Dict[str, dict], images: List[Path]
) -> Dict[str, dict]:
    """Agreement of every ONNX variant in a manifest with the fp32 reference on `images`."""
    from ..detector import Detector
    from ..imageio import read_image

    photos = {p.name: read_image(p) for p in images}
    references = {}  # per input size: a static variant is compared at its own size

    def reference_at(size):
        if size not in references:
            fp32 = Detector(models_dir / variants["fp32"]["file"], size=size, conf_threshold=SCORE)
            references[size] = {name: fp32.detect(image) for name, image in photos.items()}
        return references[size]

    results = {}
    for name, entry in variants.items():
        backend = entry.get("backend", "onnxruntime")
        if name == "torch" or backend == "torch":  # every other engine's variant is compared
            continue
        detector = Detector(models_dir / entry["file"], backend=backend, conf_threshold=AP_SCORE)
        found = {n: detector.detect(image) for n, image in photos.items()}
        results[name] = agreement(reference_at(detector.size), found)
        results[name]["images"] = sorted(photos)
    return results


def format_table(metrics: Dict[str, dict]) -> str:
    """A Markdown table of the agreement metrics, one row per variant."""
    lines = [
        "| variant | recall@0.5 | precision@0.5 | AP@0.5 | landmark NME | faces (ref / found) |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in metrics.items():
        lines.append(
            f"| {name} | {m['recall']:.3f} | {m['precision']:.3f} | {m['ap50']:.3f} | "
            f"{m['landmark_nme']:.4f} | {m['reference_faces']} / {m['found_faces']} |"
        )
    return "\n".join(lines)
