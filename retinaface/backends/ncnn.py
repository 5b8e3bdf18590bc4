"""ncnn: a pnnx-converted model, `<name>.param` (the graph) beside `<name>.bin` (the weights).

The model path is the .param file; the .bin is found beside it. Inputs of any size (the graph
keeps the upsampling tied to its lateral feature map). fp16 storage and arithmetic are off:
the `ncnn-fp32` variant computes in fp32 on every CPU, as on the x86 it was checked on.
"""

import os

import numpy as np

from ..errors import ModelError

# pnnx names the blobs in the order of the traced outputs: boxes, scores, landmarks.
INPUT = "in0"
OUTPUTS = ("out0", "out1", "out2")


def weights_file(param_path):
    """The .bin beside a .param (ncnn-fp32.param -> ncnn-fp32.bin)."""
    stem, _ = os.path.splitext(str(param_path))
    return stem + ".bin"


class NcnnBackend(object):
    def __init__(self, model_path, threads=None, **options):
        try:
            import ncnn
        except ImportError:
            raise ModelError("backend ncnn: the ncnn package is not installed") from None
        param, weights = str(model_path), weights_file(model_path)
        if not param.endswith(".param"):
            raise ModelError("backend ncnn: {} is not an ncnn .param file".format(param))
        if not os.path.isfile(weights):
            raise ModelError("backend ncnn: {} has no weights file {}".format(param, weights))
        self.ncnn = ncnn
        self.net = ncnn.Net()
        opt = self.net.opt
        if threads:
            opt.num_threads = int(threads)
        opt.use_fp16_packed = opt.use_fp16_storage = opt.use_fp16_arithmetic = False
        opt.use_bf16_storage = False
        if self.net.load_param(param) != 0 or self.net.load_model(weights) != 0:
            raise ModelError("backend ncnn: cannot load {} / {}".format(param, weights))
        if list(self.net.input_names()) != [INPUT] or set(self.net.output_names()) != set(OUTPUTS):
            raise ModelError(
                "backend ncnn: {} has blobs {} -> {}, expected {} -> {}".format(
                    param, self.net.input_names(), self.net.output_names(), INPUT, OUTPUTS
                )
            )
        self.fixed_size = None

    def run(self, blob):
        image = np.ascontiguousarray(blob[0], dtype=np.float32)  # (3, H, W); ncnn has no batch
        extractor = self.net.create_extractor()
        extractor.input(INPUT, self.ncnn.Mat(image))
        outputs = []
        for name in OUTPUTS:
            status, mat = extractor.extract(name)
            if status != 0:
                raise ModelError("backend ncnn: extracting {} failed ({})".format(name, status))
            outputs.append(np.array(mat, dtype=np.float32)[None])
        return outputs
