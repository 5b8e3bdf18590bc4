"""mnn-fp32 and mnn-int8 (workstation only): MNN's own converter and quantizer (the `[mnn]` extra).

Both run MNN's compiled tools (`_tools.mnnconvert`, `_tools.mnnquant`, in the MNN wheel) in a
child process, with a timeout: they print a lot, and a crash there must not take `invoke models`
down. The wheel's `mnnconvert` / `mnnquant` scripts are not used: on import they
`pip install` aliyun-log-python-sdk and send usage logs to a remote service, and 3.6.1's
`mnnquant` script passes three strings where `_tools.mnnquant` wants an argv list (it aborts).

INT8: MNN's post-training quantization, KL activation ranges and MAX_ABS per-channel weights,
calibrated on the same photographs as int8.onnx; MNN's calibrator resizes each photograph to one
size (CALIBRATION_SIZE), where quantize.py feeds three scales. The result goes through the same
INT8 gate (recall against fp32 on unseen photographs).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional, Sequence

from ...config import BGR_MEAN
from ...errors import ModelError
from ...files import write_atomic

TOOL_TIMEOUT = 900.0  # seconds; conversion takes under 1 s, quantization about 10 s here
CALIBRATION_SIZE = (640, 480)  # (W, H)
MISSING = "MNN is not installed on the workstation (pip install -e '.[mnn]')"
# The child process: argv[1] is the tool, argv[2:] its argv (MNN's C++ tools read their own).
_CHILD = "import sys, _tools; getattr(_tools, sys.argv[1])([sys.argv[1]] + sys.argv[2:])"


def missing() -> Optional[str]:
    """Why the MNN variants cannot be built here, or None."""
    try:
        import _tools  # noqa: F401  (MNN's compiled converter and quantizer)
        import MNN  # noqa: F401
    except ImportError:
        return MISSING
    return None


def _run_tool(tool: str, args: Sequence[str], output: Path, cwd: str) -> None:
    try:
        run = subprocess.run(
            [sys.executable, "-c", _CHILD, tool, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=TOOL_TIMEOUT,
        )
    except subprocess.TimeoutExpired:
        raise ModelError(f"MNN {tool} did not finish in {TOOL_TIMEOUT:.0f} s") from None
    # The tools return success even when they fail: the output file is the proof.
    if run.returncode != 0 or not output.is_file() or output.stat().st_size == 0:
        last = (run.stderr.strip() or run.stdout.strip() or "no output").splitlines()[-1]
        raise ModelError(f"MNN {tool} failed (exit {run.returncode}): {last[:200]}")


def convert_mnn(onnx_path: Path, target: Path) -> Path:
    """`target` (.mnn, fp32) from an ONNX model."""
    with tempfile.TemporaryDirectory(prefix="retinaface-mnn-") as tmp:
        out = Path(tmp) / "model.mnn"
        args = ["-f", "ONNX", "--modelFile", str(onnx_path), "--MNNModel", str(out)]
        _run_tool("mnnconvert", args + ["--bizCode", "MNN"], out, tmp)
        write_atomic(target, out.read_bytes())
    return target


def quantize_mnn(
    fp32_mnn: Path,
    target: Path,
    images: Sequence[Path],
    bits: int = 8,
    size=CALIBRATION_SIZE,
) -> Path:
    """`target` (.mnn, int8) from an fp32 .mnn, calibrated on `images` (BGR minus the mean).

    Every operator is quantized: MNN's `skip_quant_op_names` with the head convolutions' names
    (what quantize.py keeps in float) changed nothing here (same bytes, same recall).
    """
    if not images:
        raise ModelError("MNN quantization: no calibration images")
    with tempfile.TemporaryDirectory(prefix="retinaface-mnnquant-") as tmp:
        folder = Path(tmp) / "calibration"
        folder.mkdir()
        for index, image in enumerate(images):  # copies: MNN skips symbolic links
            shutil.copyfile(image, folder / f"{index:04d}{Path(image).suffix.lower()}")
        config = {
            "format": "BGR",
            "mean": list(BGR_MEAN),
            "normal": [1.0, 1.0, 1.0],
            "width": int(size[0]),
            "height": int(size[1]),
            "path": str(folder) + "/",
            "used_image_num": len(images),
            "feature_quantize_method": "KL",
            "weight_quantize_method": "MAX_ABS",
            "quant_bits": int(bits),
        }
        config_path = Path(tmp) / "quant.json"
        config_path.write_text(json.dumps(config))
        out = Path(tmp) / "model-int8.mnn"
        _run_tool("mnnquant", [str(fp32_mnn), str(out), str(config_path)], out, tmp)
        write_atomic(target, out.read_bytes())
    return target
