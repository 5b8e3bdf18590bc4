"""MNN: a `.mnn` model converted by MNN's own converter (fp32) or quantizer (int8).

MNN's Module API resizes to each input shape, so one model takes any H x W. CPU backend,
precision "normal" (fp32; "low" would allow fp16 where the CPU has it).
"""

import numpy as np

from ..config import INPUT_NAME, OUTPUT_NAMES
from ..errors import ModelError


class MnnBackend(object):
    def __init__(self, model_path, threads=None, **options):
        try:
            import MNN
        except ImportError:
            raise ModelError("backend mnn: the MNN package is not installed") from None
        config = {"backend": "CPU", "precision": "normal"}
        if threads:
            config["numThread"] = int(threads)
        self.expr = MNN.expr
        try:
            runtime = MNN.nn.create_runtime_manager((config,))
            self.module = MNN.nn.load_module_from_file(
                str(model_path), [INPUT_NAME], list(OUTPUT_NAMES), runtime_manager=runtime
            )
        except Exception as error:
            raise ModelError(
                "backend mnn: cannot load {}: {}".format(model_path, str(error)[:160])
            ) from None
        if self.module is None:
            raise ModelError("backend mnn: cannot load {}".format(model_path))
        self.fixed_size = None

    def run(self, blob):
        blob = np.ascontiguousarray(blob, dtype=np.float32)
        tensor = self.expr.const(blob, list(blob.shape), self.expr.NCHW)
        outputs = self.module.forward([tensor])
        return [np.array(o.read(), dtype=np.float32) for o in outputs]
