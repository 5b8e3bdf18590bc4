"""TensorFlow Lite backend (NAME = tflite): tflite-runtime's Interpreter, or ai-edge-litert's, or
TensorFlow's, whichever imports first (imported when the backend is made, never at module level).

Runs on the Pi: Python 3.7+, numpy 1.16+, no torch. The interpreter applies its default XNNPACK
delegate (fp32, and int8 models with per-channel weights); `threads` is num_threads.
Models from retinaface.tools.convert.tflite are NHWC with a fixed input size; int8 models take and
give int8 tensors, (de)quantized here with each tensor's scale and zero point.
"""

import numpy as np

from ..errors import ModelError

NAME = "tflite"
# (module, what to install) in the order tried: the Pi's wheel first.
INTERPRETERS = (
    ("tflite_runtime.interpreter", "tflite-runtime"),
    ("ai_edge_litert.interpreter", "ai-edge-litert"),
    ("tensorflow.lite", "tensorflow"),
)
OUTPUT_WIDTHS = (4, 2, 10)  # boxes, scores, landmarks: the order the Detector expects


def interpreter_class():
    """(Interpreter class, module name) of the first TFLite interpreter that imports here."""
    tried = []
    for module, package in INTERPRETERS:
        try:
            loaded = __import__(module, fromlist=["Interpreter"])
            return loaded.Interpreter, module
        except Exception as error:  # ImportError, or a wheel built for another numpy
            first = (str(error).strip().splitlines() or [type(error).__name__])[0][:120]
            tried.append("{} ({})".format(package, first))
    raise ModelError("backend tflite: no TFLite interpreter imports here: " + "; ".join(tried))


class TFLiteBackend(object):
    def __init__(self, model_path, threads=None, **options):
        interpreter, self.module = interpreter_class()
        kwargs = {"model_path": str(model_path)}
        if threads:
            kwargs["num_threads"] = int(threads)
        try:
            self.interpreter = interpreter(**kwargs)
            self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as error:
            raise ModelError(
                "cannot load model {}: {}".format(model_path, str(error).strip()[:160])
            ) from None
        inputs = self.interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4:
            raise ModelError("{}: expected one 4-d image input".format(model_path))
        self.input = inputs[0]
        shape = [int(v) for v in self.input["shape"]]
        # NHWC (TFLite's own layout) unless the channels come second.
        self.nhwc = shape[3] == 3 or shape[1] != 3
        height, width = (shape[1], shape[2]) if self.nhwc else (shape[2], shape[3])
        signature = [int(v) for v in self.input.get("shape_signature", shape)]
        dynamic = any(v < 0 for v in signature[1:])
        self.fixed_size = None if dynamic else (width, height)
        self.outputs = self.interpreter.get_output_details()
        widths = sorted(int(o["shape"][-1]) for o in self.outputs)
        if widths != sorted(OUTPUT_WIDTHS):
            raise ModelError(
                "{}: outputs of widths {} are not RetinaFace's boxes 4, scores 2, landmarks 10".format(
                    model_path, widths
                )
            )

    def run(self, blob):
        """blob (1, 3, H, W) float32 -> [boxes (1,N,4), scores (1,N,2), landmarks (1,N,10)]."""
        data = np.ascontiguousarray(blob.transpose(0, 2, 3, 1)) if self.nhwc else blob
        if self.fixed_size is None and tuple(data.shape) != tuple(self.input["shape"]):
            self.interpreter.resize_tensor_input(self.input["index"], list(data.shape))
            self.interpreter.allocate_tensors()
            self.input = self.interpreter.get_input_details()[0]
            self.outputs = self.interpreter.get_output_details()
        self.interpreter.set_tensor(self.input["index"], _quantize(data, self.input))
        self.interpreter.invoke()
        by_width = {}
        for detail in self.outputs:
            value = _dequantize(self.interpreter.get_tensor(detail["index"]), detail)
            by_width[value.shape[-1]] = value.reshape(1, -1, value.shape[-1])
        return [by_width[width] for width in OUTPUT_WIDTHS]


def _quantize(data, detail):
    """A float tensor in the input's type: int8/uint8 inputs take round(x / scale) + zero point."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        return data.astype(np.float32, copy=False)
    scale, zero = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(data / scale) + zero, info.min, info.max).astype(dtype)


def _dequantize(value, detail):
    """An output tensor as float32: integer outputs are (q - zero point) * scale."""
    if value.dtype == np.float32:
        return value
    scale, zero = detail["quantization"]
    return (value.astype(np.float32) - zero) * np.float32(scale)
