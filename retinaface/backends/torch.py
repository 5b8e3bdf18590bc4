"""PyTorch on a biubug6 .pth, through retinaface.model (imported only when a model loads)."""

from ..errors import ModelError


class TorchBackend(object):
    def __init__(self, model_path, threads=None, **options):
        try:
            import torch
        except ImportError:
            raise ModelError("backend torch: PyTorch is not installed on this host") from None
        from ..model import load_model

        if threads:
            torch.set_num_threads(int(threads))
        self.torch = torch
        self.model = load_model(model_path)
        self.fixed_size = None

    def run(self, blob):
        with self.torch.no_grad():
            outputs = self.model(self.torch.from_numpy(blob))
        return [o.numpy() for o in outputs]
