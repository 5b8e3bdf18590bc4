"""The TFLite variants (the `.[tflite]` extra, installed by CI) and the tflite backend on x86.

Built by the session's export (tests/conftest.py models_dir): tflite-fp32 matches the fp32 ONNX,
tflite-int8 passes the INT8 gate and a badly calibrated one is refused; the runner's JSON faces
equal fp32's; without any TFLite interpreter the runner lists the variants as skipped.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from retinaface.errors import ModelError
from tests.paths import REPO

IMAGES = REPO / "data" / "images"
SIZE = (640, 480)


def _iou(a, b) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


@pytest.fixture(scope="module")
def manifest(models_dir) -> dict:
    data = json.loads((models_dir / "manifest.json").read_text())
    assert "tflite-fp32" in data["models"], (
        f"no TFLite variants: {data.get('not_built')} (CI installs the extra: pip install -e '.[tflite]')"
    )
    return data


def _photo_blob(name="group.jpg"):
    """A photograph as the Detector feeds a 640x480 model: (1, 3, 480, 640), BGR minus the mean."""
    import cv2

    from retinaface.config import BGR_MEAN
    from retinaface.imageio import read_image

    return cv2.dnn.blobFromImage(read_image(IMAGES / name), 1.0, SIZE, BGR_MEAN, False, False)


def test_fp32_parity_with_the_onnx_model(models_dir, manifest):
    """Manifest parity (random inputs) and a photograph: boxes, scores, landmarks of tflite-fp32
    equal fp32.onnx's to float rounding."""
    from retinaface.backends.tflite import TFLiteBackend
    from retinaface.tools.export import onnx_outputs

    parity = manifest["models"]["tflite-fp32"]["parity"]
    assert parity["reference"] == "fp32.onnx" and parity["max_abs_diff"] < 1e-3, parity
    backend = TFLiteBackend(models_dir / "tflite-fp32.tflite", threads=2)
    blob = _photo_blob()
    reference = onnx_outputs(models_dir / "fp32.onnx", blob)
    for name, a, b in zip(("boxes", "scores", "landmarks"), reference, backend.run(blob)):
        assert b.dtype == np.float32 and a.shape == b.shape, (name, a.shape, b.shape)
        assert float(np.abs(a - b).max()) < 1e-3, name


def test_backend_reads_layout_size_and_quantization(models_dir):
    """int8 model: NHWC int8 input quantized here, int8 outputs dequantized, ordered 4, 2, 10."""
    from retinaface.backends.tflite import TFLiteBackend

    backend = TFLiteBackend(models_dir / "tflite-int8.tflite")
    assert backend.fixed_size == SIZE and backend.nhwc
    assert np.dtype(backend.input["dtype"]) == np.int8
    boxes, scores, landmarks = backend.run(_photo_blob())
    assert boxes.shape == (1, 12600, 4) and scores.shape == (1, 12600, 2)
    assert landmarks.shape == (1, 12600, 10)
    assert all(o.dtype == np.float32 for o in (boxes, scores, landmarks))
    # softmaxed: each anchor's two scores sum to 1 within two int8 steps of 1/256
    assert float(np.abs(scores.sum(axis=-1) - 1).max()) <= 2 / 256 + 1e-6
    assert float(scores[..., 1].max()) > 0.9  # group.jpg has faces


def test_int8_passed_the_gate(manifest):
    entry = manifest["models"]["tflite-int8"]
    assert entry["backend"] == "tflite" and entry["agreement"]["recall"] >= 0.95, entry["agreement"]
    assert entry["calibration"] and "group.jpg" not in entry["calibration"]


def _runner_faces(model: Path, image: str, tmp_path: Path, *extra) -> list:
    out = tmp_path / (model.stem + ".json")
    proc = subprocess.run(
        [sys.executable, "-m", "retinaface.runner", "detect", "--model", str(model),
         "--image", str(IMAGES / image), "--json", str(out), *extra],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())["faces"]


@pytest.mark.parametrize("image", ["group.jpg", "selfie.jpg"])
def test_runner_json_faces_equal_fp32(models_dir, manifest, tmp_path, image):
    """`runner detect --json` on the .tflite files (backend from the suffix) against fp32.onnx at
    the same 640x480: fp32 the same faces to 0.01 px, int8 every clear face at IoU >= 0.8."""
    reference = _runner_faces(models_dir / "fp32.onnx", image, tmp_path, "--size", "640x480")
    assert reference, f"{image}: no face, the comparison would prove nothing"
    fp32 = _runner_faces(models_dir / "tflite-fp32.tflite", image, tmp_path)
    assert len(fp32) == len(reference)
    for ours, theirs in zip(fp32, reference):
        assert np.allclose(ours["box"], theirs["box"], atol=0.05), (ours, theirs)
        assert abs(ours["score"] - theirs["score"]) <= 1e-3
    int8 = _runner_faces(models_dir / "tflite-int8.tflite", image, tmp_path)
    for face in reference:
        if face["score"] >= 0.7:
            best = max((_iou(face["box"], f["box"]) for f in int8), default=0.0)
            assert best >= 0.8, (image, face, best)


def test_the_gate_refuses_a_badly_calibrated_int8(models_dir, manifest, tmp_path):
    """tflite-int8 calibrated on a blank frame loses faces: the gate names it and refuses."""
    from retinaface.tools.convert import tflite
    from retinaface.tools.evaluate import evaluate_variants, held_out_images, int8_below_gate
    from retinaface.tools.export import GATED
    from retinaface.tools.graph import fix_input_size

    staging = tmp_path / "models"
    staging.mkdir()
    shutil.copy(models_dir / "fp32.onnx", staging / "fp32.onnx")
    fixed = fix_input_size((models_dir / "fp32.onnx").read_bytes(), SIZE)
    blank = [np.zeros((1, SIZE[1], SIZE[0], 3), np.float32)]
    saved = tflite.saved_model(fixed, tmp_path / "work", blank)
    (staging / "tflite-int8.tflite").write_bytes(tflite.int8_model(saved, blank))
    variants = {
        "fp32": {"file": "fp32.onnx", "backend": "onnxruntime"},
        "tflite-int8": {"file": "tflite-int8.tflite", "backend": "tflite"},
    }
    metrics = evaluate_variants(staging, variants, held_out_images())
    assert metrics["tflite-int8"]["recall"] < 0.95, metrics["tflite-int8"]
    assert "tflite-int8" in GATED  # export_models refuses the build on what int8_below_gate names
    assert [v for v, _ in int8_below_gate(metrics, [v for v in GATED if v in metrics])] == [
        "tflite-int8"
    ]
    good = {"tflite-int8": manifest["models"]["tflite-int8"]["agreement"]}
    assert int8_below_gate(good, ["tflite-int8"]) == []


def test_a_file_that_is_not_a_tflite_model_is_one_line(tmp_path):
    from retinaface.backends.tflite import TFLiteBackend

    bad = tmp_path / "broken.tflite"
    bad.write_bytes(b"not a flatbuffer at all" * 10)
    with pytest.raises(ModelError, match="cannot load model .*broken.tflite"):
        TFLiteBackend(bad)
    proc = subprocess.run(
        [sys.executable, "-m", "retinaface.runner", "detect", "--model", str(bad),
         "--image", str(IMAGES / "selfie.jpg")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: cannot load model")


def test_without_an_interpreter_the_variants_are_skipped_with_the_reason(models_dir, manifest, tmp_path):
    """A Pi without tflite-runtime: `runner bench` runs the rest and says why tflite cannot run."""
    out = tmp_path / "bench.json"
    code = (
        "import sys\n"
        "for blocked in ('tflite_runtime', 'ai_edge_litert', 'tensorflow'):\n"
        "    sys.modules[blocked] = None\n"
        "from retinaface.runner import main\n"
        f"sys.exit(main(['bench', '--models', {str(models_dir)!r}, '--image',"
        f" {str(IMAGES / 'selfie.jpg')!r}, '--variants', 'fp32,tflite-fp32,tflite-int8',"
        f" '--runs', '2', '--warmup', '0', '--min-time', '0', '--json', {str(out)!r}]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    results = json.loads(out.read_text())["variants"]
    assert results["fp32"]["status"] == "ok"
    for name in ("tflite-fp32", "tflite-int8"):
        assert results[name]["status"] == "skipped", results[name]
        assert "tflite_runtime cannot be imported on this host" in results[name]["skipped"]
        assert "ai_edge_litert cannot be imported" in results[name]["skipped"]


def test_quantize_and_dequantize_follow_scale_and_zero_point():
    from retinaface.backends.tflite import _dequantize, _quantize

    detail = {"dtype": np.int8, "quantization": (1.07, -14)}
    data = np.array([0.0, 1.07, -15.0, 1000.0, -1000.0], np.float32)
    assert _quantize(data, detail).tolist() == [-14, -13, -28, 127, -128]
    assert _quantize(data, {"dtype": np.float32, "quantization": (0.0, 0)}) is data
    out = _dequantize(np.array([-128, -127, 127], np.int8), {"quantization": (1 / 256, -128)})
    assert out.dtype == np.float32 and out.tolist() == [0.0, 1 / 256, 255 / 256]
