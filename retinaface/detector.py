"""A face Detector over an inference backend (torch-free core; backends import lazily).

Backends: onnxruntime (any .onnx variant), opencv (cv2.dnn on a static-shape .onnx), torch
(a biubug6 .pth through retinaface.model). Pre-processing: BGR minus (104, 117, 123), at the
image's native size, a fixed `size` (W, H) or a long side; faces are mapped back to the original.
"""

import os

import numpy as np

from .anchors import prior_boxes
from .config import BGR_MEAN, CONF_THRESHOLD
from .errors import ModelError
from .imageio import clip_box
from .postprocess import detect_faces

BACKENDS = ("onnxruntime", "opencv", "torch")


def backend_for(model_path):
    """The default backend for a model file: .pth/.pt -> torch, anything else -> onnxruntime."""
    return "torch" if str(model_path).endswith((".pth", ".pt")) else "onnxruntime"


class OnnxRuntimeBackend(object):
    def __init__(self, model_path, threads=None, spinning=True):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "backend onnxruntime: the onnxruntime package is not installed"
            ) from None
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = int(threads)
            options.inter_op_num_threads = 1
        if not spinning:
            # Idle workers sleep instead of busy-waiting: other threads of the process get the cores.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(model_path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise ModelError(
                "cannot load model {}: {}".format(model_path, str(error).splitlines()[0][:160])
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.fixed_size = _static_size(self.session.get_inputs()[0].shape)

    def run(self, blob):
        return self.session.run(None, {self.input_name: blob})


class OpenCVBackend(object):
    """cv2.dnn; OpenCV 4.5 needs a static, simplified graph (the fp32-static-WxH variant)."""

    def __init__(self, model_path, threads=None):
        import cv2

        if threads:
            cv2.setNumThreads(int(threads))
        try:
            self.net = cv2.dnn.readNetFromONNX(str(model_path))
        except cv2.error as error:
            raise ModelError(
                "OpenCV DNN cannot read {} (use the fp32-static variant): {}".format(
                    model_path, str(error).strip().splitlines()[-1][:160]
                )
            ) from None
        self.fixed_size = _size_from_name(model_path)
        self.output_names = self.net.getUnconnectedOutLayersNames()

    def run(self, blob):
        self.net.setInput(blob)
        outputs = self.net.forward(self.output_names)
        # Order outputs by their last dimension: boxes 4, scores 2, landmarks 10.
        by_width = {o.shape[-1]: o.reshape(1, -1, o.shape[-1]) for o in outputs}
        return [by_width[4], by_width[2], by_width[10]]


class TorchBackend(object):
    def __init__(self, model_path, threads=None):
        try:
            import torch
        except ImportError:
            raise ModelError("backend torch: PyTorch is not installed on this host") from None
        from .model import load_model

        if threads:
            torch.set_num_threads(int(threads))
        self.torch = torch
        self.model = load_model(model_path)
        self.fixed_size = None

    def run(self, blob):
        with self.torch.no_grad():
            outputs = self.model(self.torch.from_numpy(blob))
        return [o.numpy() for o in outputs]


def _static_size(shape):
    """(W, H) if an input shape [N, 3, H, W] has fixed integer H and W, else None."""
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return (width, height)
    return None


def _size_from_name(model_path):
    """fp32-static-640x480.onnx -> (640, 480); None when the name carries no size."""
    stem = os.path.basename(str(model_path)).rsplit(".", 1)[0]
    tail = stem.rsplit("-", 1)[-1]
    try:
        width, height = parse_size(tail)
        return (width, height)
    except ValueError:
        return None


def parse_size(text):
    """'640x480' -> (640, 480)."""
    parts = str(text).lower().split("x")
    if len(parts) != 2 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise ValueError("size must be WIDTHxHEIGHT, e.g. 640x480, not {!r}".format(text))
    return int(parts[0]), int(parts[1])


def make_backend(name, model_path, threads=None, spinning=True):
    if not os.path.isfile(str(model_path)):
        raise ModelError("model file not found: {}".format(model_path))
    classes = {"onnxruntime": OnnxRuntimeBackend, "opencv": OpenCVBackend, "torch": TorchBackend}
    if name not in classes:
        raise ModelError("unknown backend {!r}: choose one of {}".format(name, ", ".join(BACKENDS)))
    if name == "onnxruntime":
        return OnnxRuntimeBackend(model_path, threads, spinning)
    return classes[name](model_path, threads)


class Detector(object):
    """Image in, faces out, with each stage callable on its own for the benchmark."""

    def __init__(
        self,
        model_path,
        backend=None,
        size=None,
        long_side=None,
        conf_threshold=CONF_THRESHOLD,
        threads=None,
        spinning=True,
    ):
        self.model_path = str(model_path)
        self.backend_name = backend or backend_for(model_path)
        self.backend = make_backend(self.backend_name, model_path, threads, spinning)
        # A static-shape model dictates the input size.
        self.size = self.backend.fixed_size or size
        self.long_side = None if self.size else long_side
        self.conf_threshold = conf_threshold

    def input_size(self, image):
        """(W, H) the network sees for `image`."""
        height, width = image.shape[:2]
        if self.size:
            return self.size
        if self.long_side:
            ratio = float(self.long_side) / max(height, width)
            return max(1, int(round(width * ratio))), max(1, int(round(height * ratio)))
        return width, height

    def preprocess(self, image):
        """BGR uint8 HxWx3 -> float32 blob (1, 3, h, w), minus the BGR mean.

        cv2.dnn.blobFromImage does resize (bilinear), mean subtraction and HWC->NCHW in one
        pass: the same numbers as the numpy steps, about 3x faster (OpenCV 4.5 has it too).
        """
        import cv2

        width, height = self.input_size(image)
        return cv2.dnn.blobFromImage(image, 1.0, (width, height), BGR_MEAN, False, False)

    def infer(self, blob):
        return self.backend.run(blob)

    def postprocess(self, outputs, blob_shape, image_shape):
        loc, conf, landms = (np.asarray(o)[0] for o in outputs)
        priors = prior_boxes(blob_shape[2], blob_shape[3])
        if priors.shape[0] != loc.shape[0]:
            raise ModelError(
                "model {} gave {} boxes for a {}x{} input, expected {}: not a RetinaFace-mnet0.25".format(
                    self.model_path, loc.shape[0], blob_shape[3], blob_shape[2], priors.shape[0]
                )
            )
        height, width = image_shape[:2]
        boxes, scores, points = detect_faces(
            loc, conf, landms, priors, width, height, self.conf_threshold
        )
        # Boxes are clipped to the picture (landmarks are not: they are the model's guess).
        return [
            {
                "box": [round(float(v), 2) for v in clip_box(box, width, height)],
                "score": round(float(score), 4),
                "landmarks": [[round(float(x), 2), round(float(y), 2)] for x, y in pts],
            }
            for box, score, pts in zip(boxes, scores, points)
        ]

    def detect(self, image):
        blob = self.preprocess(image)
        return self.postprocess(self.infer(blob), blob.shape, image.shape)
