"""A face Detector over an inference backend (torch-free core; backends import lazily).

Backends (retinaface.backends): onnxruntime (any .onnx variant), opencv (cv2.dnn on a
static-shape .onnx), torch (a biubug6 .pth through retinaface.model). Pre-processing: BGR minus
(104, 117, 123), at the image's native size, a fixed `size` (W, H) or a long side; faces are
mapped back to the original.
"""

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

from .anchors import prior_boxes
from .backends import backend_for, make_backend
from .config import BGR_MEAN, CONF_THRESHOLD
from .errors import ModelError, SettingError
from .imageio import clip_box
from .names import parse_size  # noqa: F401 (deploy.sweep imports it from here)
from .postprocess import detect_faces


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
        self.backend = make_backend(self.backend_name, model_path, threads, spinning=spinning)
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


@dataclass
class DetectConfig:
    """One image through one model (the detect command)."""

    model: str
    image: str
    json: Optional[str] = None  # write the result record here
    out: Optional[str] = None  # write an annotated image here (the extension names the format)
    backend: Optional[str] = None  # None: from the model file
    size: Optional[Tuple[int, int]] = None  # (W, H) the input is resized to
    long_side: Optional[int] = None
    conf_threshold: float = CONF_THRESHOLD
    threads: Optional[int] = None

    def check(self):
        conf = self.conf_threshold
        if not isinstance(conf, (int, float)) or math.isnan(conf) or not 0.0 < conf <= 1.0:
            raise SettingError(
                "conf_threshold",
                "{{setting}}: a score threshold is in (0, 1] (scores are probabilities), "
                "not {}".format(conf),
            )
        if self.long_side is not None and int(self.long_side) < 1:
            raise SettingError(
                "long_side", "{{setting}} must be at least 1, not {}".format(self.long_side)
            )
        return self


def run_detect(config):
    """Detect faces in `config.image`; returns the result record (also written to config.json)."""
    from .imageio import annotate, check_output_image, read_image, write_image, write_json

    config.check()
    if config.out:
        check_output_image(config.out)  # before any work, not after the inference
    image = read_image(config.image)
    detector = Detector(
        config.model,
        backend=config.backend,
        size=config.size,
        long_side=config.long_side,
        conf_threshold=config.conf_threshold,
        threads=config.threads,
    )
    faces = detector.detect(image)
    result = {
        "image": str(config.image),
        "width": int(image.shape[1]),
        "height": int(image.shape[0]),
        "model": str(config.model),
        "backend": detector.backend_name,
        "faces": faces,
    }
    if config.json:
        write_json(config.json, result)
    if config.out:
        write_image(config.out, annotate(image, faces))
    return result
