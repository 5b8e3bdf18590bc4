"""cv2.dnn; OpenCV 4.5 needs a static, simplified graph (the fp32-static-WxH variant)."""

import os

from ..errors import ModelError
from ..names import parse_size


class OpenCVBackend(object):
    def __init__(self, model_path, threads=None, **options):
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
        self.fixed_size = size_from_name(model_path)
        self.output_names = self.net.getUnconnectedOutLayersNames()

    def run(self, blob):
        self.net.setInput(blob)
        outputs = self.net.forward(self.output_names)
        # Order outputs by their last dimension: boxes 4, scores 2, landmarks 10.
        by_width = {o.shape[-1]: o.reshape(1, -1, o.shape[-1]) for o in outputs}
        return [by_width[4], by_width[2], by_width[10]]


def size_from_name(model_path):
    """fp32-static-640x480.onnx -> (640, 480); None when the name carries no size."""
    stem = os.path.basename(str(model_path)).rsplit(".", 1)[0]
    try:
        return parse_size(stem.rsplit("-", 1)[-1])
    except ValueError:
        return None
