"""Make saved ONNX models loadable by the onnxruntime releases a 32-bit Pi gets (workstation side).

The Pi runs community armv7l builds: onnxruntime 1.9.1 (bullseye) or 1.8.1 (buster). Those
refuse a model that *declares* an opset import they do not know (ValidateOpsetForDomain), even
when no node uses it, and an IR version newer than theirs. Tools stamp such imports freely (the
quantizer declares ai.onnx.ml 5, com.microsoft.nchwc 1 …). `make_portable` drops every import the
graph does not use and lowers the IR version to the one its opset needs; `oldest_onnxruntime`
reads the result against onnxruntime's own compatibility table.
"""

from __future__ import annotations

from typing import List, Tuple

# ONNX Runtime compatibility table ("ONNX Runtime compatibility", onnxruntime.ai/docs/reference/
# compatibility.html; microsoft/onnxruntime docs/reference/compatibility.md): release -> (ONNX
# opset, ONNX ML opset, IR version) it implements. Oldest first.
ORT_COMPATIBILITY: Tuple[Tuple[str, int, int, int], ...] = (
    ("1.0", 11, 2, 6),
    ("1.3", 12, 2, 7),
    ("1.6", 13, 2, 7),
    ("1.8", 14, 2, 7),
    ("1.9", 15, 2, 8),
    ("1.11", 16, 2, 8),
    ("1.12", 17, 3, 8),
)

# The releases every model must load on: the Pi's community builds (1.8.1 buster, 1.9.1 bullseye).
PI_ONNXRUNTIME = "1.8"

# Contrib (com.microsoft) operators we allow, with the oldest release we know runs them:
# FusedConv (written by the ORT_ENABLE_EXTENDED optimizer) and QLinearLeakyRelu (written by the
# QOperator quantizer, int8-qop) run on the armv7l 1.8.1 build in the emulated tier
# (tests/emulated/test_real_onnxruntime.py). Anything else (e.g. QLinearSoftmax, unknown to
# 1.8.1) is refused.
CONTRIB_OPS = {"FusedConv": "1.8", "QLinearLeakyRelu": "1.8"}

STANDARD_DOMAINS = ("", "ai.onnx")


def _version_key(version: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in version.split("."))


def make_portable(onnx_bytes: bytes) -> bytes:
    """The same graph, declaring only the opset imports it uses and the IR version they need."""
    import onnx
    from onnx import helper

    model = onnx.load_from_string(onnx_bytes)
    used = {node.domain for node in model.graph.node}
    kept = [o for o in model.opset_import if o.domain in used or o.domain in STANDARD_DOMAINS]
    del model.opset_import[:]
    model.opset_import.extend(kept)
    if not model.functions:  # model-local functions are the IR 8 feature we would drop
        needed = helper.find_min_ir_version_for(list(model.opset_import), ignore_unknown=True)
        model.ir_version = min(model.ir_version, needed)
    return model.SerializeToString()


def problems(onnx_bytes: bytes, release: str = PI_ONNXRUNTIME) -> List[str]:
    """What keeps onnxruntime RELEASE (per the compatibility table) from loading the model."""
    import onnx
    from onnx import defs

    model = onnx.load_from_string(onnx_bytes)
    row = _row(release)
    _, opset_max, ml_max, ir_max = row
    found = []
    if model.ir_version > ir_max:
        found.append(f"IR version {model.ir_version} > {ir_max}")
    used = {node.domain for node in model.graph.node}
    opsets = {}
    for item in model.opset_import:
        domain = item.domain or "ai.onnx"
        opsets[domain] = item.version
        if item.domain not in STANDARD_DOMAINS and item.domain not in used:
            found.append(f"unused opset import {domain} {item.version}")
        elif domain == "ai.onnx" and item.version > opset_max:
            found.append(f"opset {item.version} > {opset_max}")
        elif domain == "ai.onnx.ml" and item.version > ml_max:
            found.append(f"ai.onnx.ml opset {item.version} > {ml_max}")
        elif domain not in ("ai.onnx", "ai.onnx.ml", "com.microsoft"):
            found.append(f"opset import {domain} {item.version} (not a domain {release} runs)")
    for node in model.graph.node:
        if node.domain in STANDARD_DOMAINS:
            try:
                defs.get_schema(node.op_type, opsets.get("ai.onnx", 0), "")
            except defs.SchemaError:
                found.append(f"{node.op_type} is not in ONNX opset {opsets.get('ai.onnx')}")
        elif node.domain == "com.microsoft":
            since = CONTRIB_OPS.get(node.op_type)
            if since is None or _version_key(since) > _version_key(release):
                found.append(f"com.microsoft::{node.op_type} is not known to run on {release}")
        elif node.domain != "ai.onnx.ml":
            found.append(f"{node.domain}::{node.op_type} (domain unknown to {release})")
    return sorted(set(found))


def oldest_onnxruntime(onnx_bytes: bytes) -> str:
    """The oldest onnxruntime release (compatibility table row) that loads this model."""
    for release, *_ in ORT_COMPATIBILITY:
        if not problems(onnx_bytes, release):
            return release
    raise ValueError("no onnxruntime release in the compatibility table loads this model")


def _row(release: str):
    rows = [r for r in ORT_COMPATIBILITY if _version_key(r[0]) <= _version_key(release)]
    if not rows:
        raise ValueError(f"onnxruntime {release} is older than the compatibility table")
    return rows[-1]


def make_portable_file(path) -> str:
    """Rewrite the model at PATH portable (atomically); return the oldest onnxruntime loading it.

    Refuses (ModelError) a model the Pi's releases cannot load even after the pass.
    """
    from pathlib import Path

    from ..errors import ModelError
    from ..files import write_atomic

    path = Path(path)
    data = make_portable(path.read_bytes())
    left = problems(data, PI_ONNXRUNTIME)
    if left:
        raise ModelError(
            f"{path.name}: onnxruntime {PI_ONNXRUNTIME} cannot load it: {'; '.join(left)}"
        )
    write_atomic(path, data)
    return oldest_onnxruntime(data)
