"""onnxruntime on the CPU: any .onnx variant (the engine is imported when a model loads)."""

from ..errors import ModelError


class OnnxRuntimeBackend(object):
    """`spinning=False`: idle intra-op workers sleep instead of busy-waiting, so other threads
    of the process (capture, JPEG, the next benchmark cell) get the cores."""

    def __init__(self, model_path, threads=None, spinning=True, **options):
        try:
            import onnxruntime as ort
        except ImportError:
            raise ModelError(
                "backend onnxruntime: the onnxruntime package is not installed"
            ) from None
        session_options = ort.SessionOptions()
        if threads:
            session_options.intra_op_num_threads = int(threads)
            session_options.inter_op_num_threads = 1
        if not spinning:
            session_options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(
                str(model_path), session_options, providers=["CPUExecutionProvider"]
            )
        except Exception as error:
            raise ModelError(
                "cannot load model {}: {}".format(model_path, str(error).splitlines()[0][:160])
            ) from None
        self.input_name = self.session.get_inputs()[0].name
        self.fixed_size = static_size(self.session.get_inputs()[0].shape)

    def run(self, blob):
        return self.session.run(None, {self.input_name: blob})


def static_size(shape):
    """(W, H) if an input shape [N, 3, H, W] has fixed integer H and W, else None."""
    height, width = shape[2], shape[3]
    if isinstance(height, int) and isinstance(width, int):
        return (width, height)
    return None
