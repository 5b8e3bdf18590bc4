"""The torch-free runner on the emulated Pis finds the same faces as on x86.

bullseye: torch 1.7.1 on the .pth, OpenCV 4.5.1 DNN on the static simplified ONNX.
trixie: onnxruntime 1.21 on the fp32, fp32-opt and int8 ONNX variants.
Each emulator gets a real `invoke deploy --host pi4-emu[-trixie]` (runner wheel in a venv with the
system site packages, the model variants of build/models; on pi4-emu also onnxruntime 1.8.1 and
the numpy wheel, as a user deploys it); the test images are copied beside. The fixtures that deploy
are in conftest.py and deploys.py: each test names the deploy it needs, in any order.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from retinaface.config import CONF_THRESHOLD

from .conftest import IMAGES, ssh_argv
from .deploys import DEPLOY_DIR, IMAGE_NAMES, REMOTE  # noqa: F401  (re-exported)

SIZE = (320, 240)


@pytest.fixture(scope="session")
def manifest(build_models) -> dict:
    """build/models/manifest.json of this session's export (tests/emulated/deploys.py)."""
    from retinaface.manifest import load_manifest

    return load_manifest(build_models)


@pytest.fixture(scope="session")
def models(manifest, build_models) -> dict:
    """Model file of each variant of the manifest."""
    return {name: build_models / e["file"] for name, e in manifest["models"].items()}


def _variants(manifest: dict, backend: str) -> list:
    """The variants the model build meant for BACKEND (fp32, fp32-opt, int8 … for onnxruntime)."""
    return sorted(k for k, e in manifest["models"].items() if e.get("backend") == backend)


def _x86_faces(model: Path, backend: str, image: Path) -> list:
    from retinaface.detector import Detector
    from retinaface.imageio import read_image

    detector = Detector(str(model), backend=backend, size=SIZE)
    return detector.detect(read_image(str(image)))


def _remote_faces(st, model: Path, backend: str, image: str) -> list:
    """Run the deployed runner (its venv, the release's model file) on one image."""
    cmd = (
        f"{DEPLOY_DIR}/venv/bin/python -m retinaface.runner detect "
        f"--model {DEPLOY_DIR}/current/models/{model.name} --image {REMOTE}/images/{image} "
        f"--backend {backend} --size {SIZE[0]}x{SIZE[1]} --json {REMOTE}/faces.json >&2 "
        f"&& cat {REMOTE}/faces.json"
    )
    proc = subprocess.run(ssh_argv(st) + [cmd], capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{backend} on {model.name}: {proc.stderr[-2000:]}"
    return json.loads(proc.stdout)["faces"]


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def assert_same_faces(arm: list, x86: list, what: str, min_iou: float = 0.9) -> None:
    """Same count, and each x86 face has its own ARM face with IoU >= MIN_IOU."""
    assert len(arm) == len(x86), f"{what}: {len(arm)} faces on armv7l, {len(x86)} on x86"
    free = list(arm)
    for face in x86:
        best = max(free, key=lambda other: _iou(face["box"], other["box"]))
        iou = _iou(face["box"], best["box"])
        assert iou >= min_iou, f"{what}: x86 face {face['box']} best armv7l IoU {iou:.3f}"
        free.remove(best)


def assert_same_clear_faces(
    arm: list, x86: list, what: str, min_iou: float = 0.8, clear: float = CONF_THRESHOLD + 0.1
) -> int:
    """Each face scored >= CLEAR on one side has a partner with IoU >= MIN_IOU on the other;
    returns how many faces were so checked (0: the comparison proved nothing).

    For frames decoded by two different JPEG decoders and OpenCV builds (the Pi's and x86's):
    a face within 0.1 of the threshold may land on either side of it (seen: 23 faces on armv7l,
    24 on x86 in a crowd frame); every clearly detected face must still match."""
    checked = 0
    for ours, theirs, side in ((x86, arm, "x86"), (arm, x86, "armv7l")):
        for face in ours:
            if face["score"] < clear:
                continue
            checked += 1
            iou = max((_iou(face["box"], other["box"]) for other in theirs), default=0.0)
            assert iou >= min_iou, (
                f"{what}: {side} face {face['box']} (score {face['score']}) has no partner "
                f"(best IoU {iou:.3f})"
            )
    return checked


def _check(st, files: dict, variant: str, backend: str) -> None:
    model = files[variant]
    for image in IMAGE_NAMES:
        x86 = _x86_faces(model, backend, IMAGES / image)
        assert x86, f"{image}: no face on x86, the comparison would prove nothing"
        arm = _remote_faces(st, model, backend, image)
        # INT8 kernels round differently across onnxruntime releases and CPUs (x86 VNNI vs ARM
        # NEON): a box moves by a pixel or two (seen: IoU 0.897 on trixie's 1.21), fp32 does not.
        min_iou = 0.85 if variant.startswith("int8") else 0.9
        assert_same_faces(arm, x86, f"{backend} {model.name} {image}", min_iou)


def test_iou_matcher_can_fail():
    face = {"box": [0, 0, 10, 10]}
    with pytest.raises(AssertionError, match="faces on armv7l"):
        assert_same_faces([face], [face, face], "count")
    with pytest.raises(AssertionError, match="IoU"):
        assert_same_faces([{"box": [5, 5, 15, 15]}], [face], "shifted")
    assert_same_faces([{"box": [0, 0, 10, 10.2]}], [face], "close")
    sure, borderline = (
        {"box": [0, 0, 10, 10], "score": 0.99},
        {"box": [20, 20, 30, 30], "score": 0.62},
    )
    assert assert_same_clear_faces([sure], [sure, borderline], "borderline face dropped") == 2
    assert assert_same_clear_faces([borderline], [borderline], "nothing clear") == 0
    with pytest.raises(AssertionError, match="x86 face"):
        assert_same_clear_faces([borderline], [sure, borderline], "clear face lost")
    with pytest.raises(AssertionError, match="armv7l face"):
        assert_same_clear_faces([sure, dict(sure, box=[50, 50, 60, 60])], [sure], "extra face")


@pytest.fixture
def bullseye_runner(pi4_emu_deployed):
    return pi4_emu_deployed


@pytest.fixture
def trixie_runner(trixie_deployed):
    return trixie_deployed


def test_bullseye_torch_171(bullseye_runner, models):
    _check(bullseye_runner, models, "torch", "torch")


def test_bullseye_opencv_451_dnn_static_onnx(bullseye_runner, models, manifest):
    """OpenCV 4.5.1 DNN reads the static simplified export (its fixed input size wins)."""
    variants = _variants(manifest, "opencv")
    assert variants, "the model build made no variant for the opencv backend"
    for variant in variants:
        _check(bullseye_runner, models, variant, "opencv")


def test_trixie_onnxruntime_121(trixie_runner, models, manifest):
    """onnxruntime 1.21 on every ONNX variant meant for it: fp32, fp32-opt and int8."""
    variants = _variants(manifest, "onnxruntime")
    assert "fp32" in variants and "int8" in variants, variants
    for variant in variants:
        _check(trixie_runner, models, variant, "onnxruntime")
