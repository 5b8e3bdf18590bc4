"""The backend registry and its one interface; config errors name settings, the cli flags."""

import inspect

import numpy as np
import pytest

from retinaface import backends
from retinaface.anchors import prior_boxes
from retinaface.backends import ENGINES, backend_class, backend_for, make_backend
from retinaface.bench.run import BenchConfig
from retinaface.cli import build_parser, error_line, flag
from retinaface.detector import DetectConfig
from retinaface.errors import ModelError, SettingError
from retinaface.live.streamer import StreamConfig


def test_backend_for_follows_the_suffix():
    assert backend_for("m/retinaface-mnet025.pth") == "torch"
    assert backend_for("m.pt") == "torch"
    assert backend_for("m/fp32.onnx") == "onnxruntime"
    assert backend_for("m/model.bin") == "onnxruntime"  # the default


def test_every_engine_has_the_one_interface():
    for name in ENGINES:
        cls = backend_class(name)
        parameters = inspect.signature(cls.__init__).parameters
        assert list(parameters)[:3] == ["self", "model_path", "threads"], name
        assert parameters["threads"].default is None, name
        assert any(p.kind is p.VAR_KEYWORD for p in parameters.values()), name
        assert callable(getattr(cls, "run", None)), name


def test_unknown_backend_and_missing_file_are_model_errors(tmp_path):
    with pytest.raises(ModelError, match="unknown backend 'tpu': choose one of onnxruntime"):
        backend_class("tpu")
    with pytest.raises(ModelError, match="model file not found"):
        make_backend("onnxruntime", tmp_path / "none.onnx")


def test_a_missing_engine_package_is_named(monkeypatch):
    engine = ENGINES["opencv"]._replace(requires="no_such_cv_module")
    monkeypatch.setitem(ENGINES, "opencv", engine)
    assert backends.missing_runtime("opencv").startswith("no_such_cv_module cannot be imported")
    assert backends.missing_runtime("onnxruntime") is None


@pytest.mark.parametrize(
    "name, file", [("onnxruntime", "fp32.onnx"), ("opencv", "fp32-static-640x480.onnx")]
)
def test_run_gives_boxes_softmaxed_scores_and_landmarks(models_dir, name, file):
    backend = make_backend(name, models_dir / file, threads=1, spinning=False)
    blob = np.random.default_rng(0).uniform(-120, 150, (1, 3, 480, 640)).astype(np.float32)
    boxes, scores, landmarks = backend.run(blob)
    anchors = prior_boxes(480, 640).shape[0]
    assert boxes.shape == (1, anchors, 4)
    assert scores.shape == (1, anchors, 2)
    assert landmarks.shape == (1, anchors, 10)
    assert np.allclose(scores.sum(axis=-1), 1.0, atol=1e-4)
    assert backend.fixed_size == (None if name == "onnxruntime" else (640, 480))


def _help(command, capsys):
    with pytest.raises(SystemExit):
        build_parser().parse_args([command, "--help"])
    return capsys.readouterr().out


@pytest.mark.parametrize(
    "command, config",
    [
        ("detect", lambda: DetectConfig(model="m.onnx", image="i.jpg", conf_threshold=7.0)),
        ("detect", lambda: DetectConfig(model="m.onnx", image="i.jpg", long_side=0)),
        ("bench", lambda: BenchConfig(models_dir="m", image="i.jpg", runs=0)),
        ("bench", lambda: BenchConfig(models_dir="m", image="i.jpg", windows=0)),
        ("bench", lambda: BenchConfig(models_dir="m", image="i.jpg", warmup=-1)),
        ("stream", lambda: StreamConfig(model="m.onnx", source="0", max_frames=0)),
    ],
)
def test_a_bad_setting_is_named_by_setting_in_the_library_and_by_flag_in_the_cli(
    command, config, capsys
):
    with pytest.raises(SettingError) as caught:
        config().check()
    error = caught.value
    assert str(error).startswith(error.setting) and "--" not in str(error)
    shown = error_line(error)
    assert shown.startswith(flag(error.setting))
    assert f" {flag(error.setting)} " in _help(command, capsys)  # a flag the user can give
