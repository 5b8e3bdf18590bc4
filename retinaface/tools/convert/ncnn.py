"""ncnn-fp32 (workstation only): the torch model, traced, converted by pnnx to ncnn's .param/.bin.

pnnx (Tencent's converter, the `[ncnn]` extra) reads TorchScript. Its ONNX path was tried first:
it leaves the upsampling sizes (Shape -> Concat -> Resize) as `pnnx.Expression` layers that ncnn
cannot load, while from TorchScript the same sizes become ncnn `Interp` layers tied to the lateral
feature map, so one model takes any input size. Hence torch (pnnx's own requirement) and the .pth.
ncnn's INT8 tools (ncnn2table, ncnn2int8) are in neither the ncnn nor the pnnx wheel: no ncnn-int8.
"""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Optional, Tuple

from ...errors import ModelError
from ...files import write_atomic

PNNX_TIMEOUT = 600.0  # seconds; a conversion takes about 10 s here
# Two input shapes tell pnnx which dimensions are dynamic (H and W).
TRACE_SHAPE = (1, 3, 480, 640)
SECOND_SHAPE = (1, 3, 240, 320)
MISSING = (
    "ncnn converter not installed on the workstation (pip install -e '.[ncnn]': pnnx, ncnn, torch)"
)


def missing() -> Optional[str]:
    """Why ncnn-fp32 cannot be built here, or None."""
    try:
        import ncnn  # noqa: F401  (the parity check runs the converted model)
        import pnnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError:
        return MISSING
    return None


def _shape(shape) -> str:
    return "[" + ",".join(str(d) for d in shape) + "]f32"


def convert_ncnn(weights: Path, out_dir: Path, name: str = "ncnn-fp32") -> Tuple[Path, Path]:
    """Write `out_dir/<name>.param` and `<name>.bin` from a biubug6 .pth (fp32 weights)."""
    import pnnx
    import torch

    from ...model import load_model

    model = load_model(weights).eval()
    with tempfile.TemporaryDirectory(prefix="retinaface-pnnx-") as tmp:
        work = Path(tmp)
        traced = torch.jit.trace(model, torch.zeros(TRACE_SHAPE), check_trace=False)
        traced.save(str(work / "model.pt"))
        outputs = {
            "ncnnparam": "model.ncnn.param",
            "ncnnbin": "model.ncnn.bin",
            "ncnnpy": "model_ncnn.py",
            "pnnxparam": "model.pnnx.param",
            "pnnxbin": "model.pnnx.bin",
            "pnnxpy": "model_pnnx.py",
            "pnnxonnx": "model.pnnx.onnx",
        }
        argv = [pnnx.EXEC_PATH, "model.pt", "inputshape=" + _shape(TRACE_SHAPE)]
        argv += ["inputshape2=" + _shape(SECOND_SHAPE), "fp16=0", "device=cpu"]
        argv += [f"{key}={work / value}" for key, value in outputs.items()]
        try:
            run = subprocess.run(
                argv, cwd=tmp, capture_output=True, text=True, timeout=PNNX_TIMEOUT
            )
        except subprocess.TimeoutExpired:
            raise ModelError(f"pnnx did not finish in {PNNX_TIMEOUT:.0f} s") from None
        param, weights_bin = work / outputs["ncnnparam"], work / outputs["ncnnbin"]
        if run.returncode != 0 or not param.is_file() or not weights_bin.is_file():
            last = (run.stderr.strip() or run.stdout.strip() or "no output").splitlines()[-1]
            raise ModelError(f"pnnx failed (exit {run.returncode}): {last[:200]}")
        graph = param.read_text()
        leftovers = sorted({line.split()[0] for line in graph.splitlines() if "pnnx." in line})
        if leftovers:
            raise ModelError(f"pnnx left layers ncnn cannot run: {', '.join(leftovers)}")
        target_param, target_bin = Path(out_dir) / f"{name}.param", Path(out_dir) / f"{name}.bin"
        write_atomic(target_bin, weights_bin.read_bytes())
        write_atomic(target_param, graph.encode())
    return target_param, target_bin
