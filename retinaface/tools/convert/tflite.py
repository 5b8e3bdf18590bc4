"""tflite-fp32 and tflite-int8 from the fp32 ONNX (workstation only: the `.[tflite]` extra).

onnx2tf turns the ONNX graph, its input fixed to 1x3x480x640, into a TensorFlow SavedModel in
NHWC (its own float32 .tflite is tflite-fp32); TensorFlow's TFLiteConverter then writes the
full-integer tflite-int8 (int8 weights per channel, int8 activations, int8 input and outputs),
calibrated on the same photographs as the ONNX INT8 variants at the model's one input size.
A Pi runs one size: 640x480, like fp32-static (the Detector takes it from the model).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

import numpy as np

from ...config import BGR_MEAN
from ...errors import ModelError
from ...files import write_atomic

VARIANTS = ("tflite-fp32", "tflite-int8")
GATED = ("tflite-int8",)  # through the INT8 recall gate
SIZE = (640, 480)  # (W, H)
PARITY_SEEDS = (0, 1)
INSTALL = "pip install -e '.[tflite]'"
# onnx2tf checks its conversion on sample images it would download (no network here, and none
# is needed): it reads them from this file in its working directory, made from our photographs.
_ONNX2TF_SAMPLES = "calibration_image_sample_data_20x128x128x3_float32.npy"


def missing() -> Optional[str]:
    """Why the TFLite variants cannot be built here (the extra is not installed), or None."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's C++ INFO/WARNING lines
    for module in ("onnx2tf", "tensorflow"):
        try:
            __import__(module)
        except ImportError as error:
            return f"{module} is not installed on the workstation ({INSTALL}): {error}"
    return None


def calibration_inputs(images: Sequence[Path], size=SIZE) -> List[np.ndarray]:
    """NHWC float32 inputs (BGR minus the mean) of each photograph at the model's input size,
    resized as the Detector resizes a frame for a fixed-size model."""
    import cv2

    from ...imageio import read_image

    width, height = size
    blobs = []
    for path in images:
        blob = cv2.dnn.blobFromImage(read_image(path), 1.0, (width, height), BGR_MEAN, False, False)
        blobs.append(np.ascontiguousarray(blob.transpose(0, 2, 3, 1)))
    if not blobs:
        raise ModelError("no calibration images for tflite-int8")
    return blobs


@contextlib.contextmanager
def _working_dir(path: Path):
    before = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def saved_model(fixed_onnx: bytes, work: Path, samples: Sequence[np.ndarray]) -> Path:
    """onnx2tf's SavedModel (NHWC) of a fixed-size ONNX graph, with its float32 .tflite beside."""
    import cv2
    import onnx2tf

    work.mkdir(parents=True, exist_ok=True)
    (work / "fixed.onnx").write_bytes(fixed_onnx)
    small = [cv2.resize(s[0], (128, 128)) for s in samples]
    picked = np.stack([small[i % len(small)] for i in range(20)]).astype(np.float32)
    # onnx2tf's samples are RGB in [0, 1]; it only uses them to compare ONNX and TF outputs.
    np.save(str(work / _ONNX2TF_SAMPLES), (picked[..., ::-1] + np.float32(BGR_MEAN[::-1])) / 255.0)
    with _working_dir(work):
        try:
            onnx2tf.convert(
                input_onnx_file_path="fixed.onnx",
                output_folder_path="saved_model",
                copy_onnx_input_output_names_to_tflite=True,
                non_verbose=True,
            )
        except Exception as error:  # onnx2tf raises plain exceptions for unsupported graphs
            raise ModelError(f"onnx2tf could not convert the fp32 model: {error}"[:300]) from None
    return work / "saved_model"


def int8_model(saved: Path, calibration: Sequence[np.ndarray]) -> bytes:
    """Full-integer TFLite bytes: int8 weights and activations, int8 input and outputs."""
    import tensorflow as tf

    def representative():
        for blob in calibration:
            yield [blob]

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    converter.inference_input_type = tf.int8
    converter.inference_output_type = tf.int8
    return converter.convert()


def parity(reference_onnx: bytes, tflite_path: Path, size=SIZE, seeds=PARITY_SEEDS) -> dict:
    """Max abs difference per output (boxes, scores, landmarks) between the fp32 ONNX model and
    a TFLite model on random inputs at its size (the same input range as the ONNX parity)."""
    import onnxruntime as ort

    from ...backends.tflite import TFLiteBackend

    session = ort.InferenceSession(reference_onnx, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name
    backend = TFLiteBackend(tflite_path)
    width, height = size
    worst = {"boxes": 0.0, "scores": 0.0, "landmarks": 0.0}
    for seed in seeds:
        rng = np.random.default_rng(seed)
        blob = rng.uniform(-120, 150, size=(1, 3, height, width)).astype(np.float32)
        reference = session.run(None, {input_name: blob})
        for key, a, b in zip(list(worst), reference, backend.run(blob)):
            if a.shape != b.shape:
                raise ModelError(f"{tflite_path}: output {key} {b.shape}, ONNX gives {a.shape}")
            worst[key] = max(worst[key], float(np.abs(a - b).max()))
    return worst


def versions() -> Dict[str, str]:
    import onnx2tf
    import tensorflow as tf

    return {"onnx2tf": onnx2tf.__version__, "tensorflow": tf.__version__}


def build(
    fp32_bytes: bytes,
    out_dir: Path,
    calib_images: Sequence[Path],
    size=SIZE,
    progress: Callable[[str], None] = lambda message: None,
) -> Dict[str, dict]:
    """Write tflite-fp32.tflite and tflite-int8.tflite into out_dir; their manifest entries
    (without digests: the caller describes the files)."""
    from ..graph import fix_input_size

    width, height = size
    calibration = calibration_inputs(calib_images, size)
    made = versions()
    with tempfile.TemporaryDirectory(prefix="retinaface-tflite-") as tmp:
        fixed = fix_input_size(fp32_bytes, size)
        progress(f"tflite-fp32.tflite: onnx2tf {made['onnx2tf']} at {width}x{height} (NHWC)")
        saved = saved_model(fixed, Path(tmp), calibration)
        floats = sorted(saved.glob("*_float32.tflite"))
        if len(floats) != 1:
            raise ModelError(f"onnx2tf wrote no float32 .tflite in {saved}")
        fp32_path = Path(out_dir) / "tflite-fp32.tflite"
        write_atomic(fp32_path, floats[0].read_bytes())
        progress(
            f"tflite-int8.tflite: TensorFlow {made['tensorflow']} full-integer, calibrated on "
            f"{len(calibration)} photographs"
        )
        int8_path = Path(out_dir) / "tflite-int8.tflite"
        write_atomic(int8_path, int8_model(saved, calibration))
    common = {"backend": "tflite", "input_size": [width, height], "layout": "NHWC"}
    common["converter"] = made
    by_output = parity(fp32_bytes, fp32_path, size)
    return {
        "tflite-fp32": dict(
            common,
            file=fp32_path.name,
            parity={
                "reference": "fp32.onnx",
                "sizes_hw": [[height, width]],
                "max_abs_diff": max(by_output.values()),
                "max_abs_diff_by_output": by_output,
            },
        ),
        "tflite-int8": dict(
            common,
            file=int8_path.name,
            quantization="full integer: int8 per-channel weights, int8 activations, int8 input "
            "and outputs (TFLiteConverter, TFLITE_BUILTINS_INT8); no layer in float",
            calibration=[Path(p).name for p in calib_images],
        ),
    }
