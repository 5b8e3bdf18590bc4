"""A real, portable optimization pass for the fp32 ONNX model (workstation side).

onnxslim first (constant folding, shape-op cleanup; chosen over onnxsim because it is a pure
Python wheel that installs anywhere without a native build), then onnxruntime's offline graph
optimizer at ORT_ENABLE_EXTENDED. Never ORT_ENABLE_ALL: on x86 that writes NCHWc kernels that
must not go to an ARM Pi. Unused opset imports that ORT stamps on the saved model are dropped,
so older runtimes (onnxruntime 1.9.1 on the Pi) see only the domains the graph uses.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

# Operator domains a portable model may use: standard ONNX and ORT's contrib ops (FusedConv).
PORTABLE_DOMAINS = ("", "ai.onnx", "com.microsoft")


def optimize_portable(onnx_bytes: bytes) -> bytes:
    """Simplified, ORT-EXTENDED-optimized ONNX bytes that run on any CPU onnxruntime."""
    import onnx
    import onnxruntime as ort

    from .graph import simplify

    slim = simplify(onnx_bytes)
    with tempfile.TemporaryDirectory() as tmp:
        source, target = Path(tmp) / "slim.onnx", Path(tmp) / "opt.onnx"
        source.write_bytes(slim)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        options.optimized_model_filepath = str(target)
        ort.InferenceSession(str(source), options, providers=["CPUExecutionProvider"])
        model = onnx.load(str(target))
    used = {node.domain for node in model.graph.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain in ("", "ai.onnx")]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    return model.SerializeToString()


def non_portable_ops(onnx_bytes: bytes) -> list:
    """Nodes or opset imports outside the portable domains (e.g. com.microsoft.nchwc)."""
    import onnx

    model = onnx.load_from_string(onnx_bytes)
    found = [
        f"{n.domain}::{n.op_type}" for n in model.graph.node if n.domain not in PORTABLE_DOMAINS
    ]
    found += [
        f"opset import {o.domain}" for o in model.opset_import if o.domain not in PORTABLE_DOMAINS
    ]
    found += [f"{n.op_type}" for n in model.graph.node if "nchwc" in n.op_type.lower()]
    return found
