"""Static INT8 post-training quantization of the fp32 model (workstation side).

Per-channel int8 weights (needs opset >= 13), uint8 asymmetric activations, calibrated with
MinMax on face photographs at three scales. The nine 1x1 head convolutions stay in float:
their outputs are the box offsets and face scores, and quantizing them costs recall on
borderline faces. What was tried and what each gave is in the README (Model variants).

Two forms of the same calibration:
- `qdq` (int8.onnx): QuantizeLinear/DequantizeLinear pairs around float operators; each
  onnxruntime fuses what it knows. The Pi's 1.8.1 armv7l build fuses the convolutions into
  QLinearConv but leaves every LeakyReLU in float between a DQ and a Q.
- `qop` (int8-qop.onnx): QOperator form, integer operators written into the graph:
  QLinearConv and com.microsoft QLinearLeakyRelu, which 1.8.1 runs as they are. Only Conv and
  LeakyRelu are quantized: 1.8.1 has no QLinearSoftmax, and the rest is shape plumbing.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Iterable, List, Sequence

import numpy as np

from ..config import BGR_MEAN
from ..errors import ModelError

# Each photo at three scales: faces of many sizes give the activation ranges small faces need.
CALIBRATION_LONG_SIDES = (320, 640, 960)


def calibration_blobs(
    images: Iterable[Path], long_sides: Sequence[int] = CALIBRATION_LONG_SIDES
) -> List[np.ndarray]:
    """Network inputs for calibration: each photo resized to each long side, minus the BGR mean."""
    import cv2

    from ..imageio import read_image

    blobs = []
    for path in images:
        image = read_image(path)
        height, width = image.shape[:2]
        for long_side in long_sides:
            ratio = long_side / max(height, width)
            size = (max(32, round(width * ratio)), max(32, round(height * ratio)))
            blob = cv2.resize(image, size).astype(np.float32) - np.array(BGR_MEAN, np.float32)
            blobs.append(np.ascontiguousarray(blob.transpose(2, 0, 1)[None]))
    if not blobs:
        raise ModelError("no calibration images: give --calib a folder of face photographs")
    return blobs


def head_convolutions(model) -> List[str]:
    """Names of the box/score/landmark head convolutions (kept in float).

    torch's export names them `/ClassHead.0/conv1x1/Conv`, the embedded graph `/class_head/…`.
    """
    return [n.name for n in model.graph.node if n.op_type == "Conv" and "head" in n.name.lower()]


INT8_FORMS = ("qdq", "qop")
QOP_OPS = ["Conv", "LeakyRelu"]


def quantize_int8(fp32_bytes: bytes, calibration: List[np.ndarray], form: str = "qdq") -> bytes:
    """INT8 model bytes (`form` qdq or qop) from the fp32 model and calibration inputs."""
    import onnx
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from .graph import simplify

    class Reader(CalibrationDataReader):
        def __init__(self, blobs):
            self.items = iter([{"input": blob} for blob in blobs])

        def get_next(self):
            return next(self.items, None)

    if form not in INT8_FORMS:
        raise ModelError(f"unknown INT8 form {form!r}: give one of {', '.join(INT8_FORMS)}")
    with tempfile.TemporaryDirectory() as tmp:
        source, prepared, target = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        source.write_bytes(simplify(fp32_bytes))
        quant_pre_process(str(source), str(prepared), skip_symbolic_shape=True)
        excluded = head_convolutions(onnx.load(str(prepared)))
        quantize_static(
            str(prepared),
            str(target),
            Reader(calibration),
            quant_format=QuantFormat.QDQ if form == "qdq" else QuantFormat.QOperator,
            op_types_to_quantize=None if form == "qdq" else QOP_OPS,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            calibrate_method=CalibrationMethod.MinMax,
            nodes_to_exclude=excluded,
        )
        return target.read_bytes()
