"""Model variants: portable optimization, INT8 that keeps its faces, the INT8 gate, metrics."""

import json
import shutil

import cv2
import numpy as np
import onnx
import pytest

from retinaface.detector import Detector
from retinaface.errors import ModelError
from retinaface.files import sha256_file
from retinaface.imageio import read_image
from retinaface.tools.export import export_models
from retinaface.tools.optimize import non_portable_ops
from tests.paths import IMAGES
from tests.unit.test_export import assert_same_faces


def manifest_of(models_dir):
    return json.loads((models_dir / "manifest.json").read_text())


def test_every_variant_is_in_the_manifest_with_matching_digest(models_dir):
    models = manifest_of(models_dir)["models"]
    assert {"torch", "fp32", "fp32-opt", "fp32-static-640x480", "int8", "int8-qop"} <= set(models)
    for entry in models.values():
        path = models_dir / entry["file"]
        assert sha256_file(path) == entry["sha256"] and path.stat().st_size == entry["bytes"]


def test_optimized_model_has_fewer_nodes_and_the_same_outputs(models_dir):
    models = manifest_of(models_dir)["models"]
    assert models["fp32-opt"]["nodes"] < models["fp32"]["nodes"]
    assert models["fp32-opt"]["parity"]["max_abs_diff"] < 1e-3
    assert models["fp32-opt"]["agreement"]["recall"] == 1.0


def test_optimized_model_is_portable(models_dir):
    data = (models_dir / "fp32-opt.onnx").read_bytes()
    assert non_portable_ops(data) == []
    ops = {n.op_type for n in onnx.load_from_string(data).graph.node}
    assert "FusedConv" in ops  # the optimizer really ran


def test_nchwc_model_is_detected_as_not_portable(tmp_path, models_dir):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.optimized_model_filepath = str(tmp_path / "all.onnx")
    ort.InferenceSession(str(models_dir / "fp32.onnx"), options, providers=["CPUExecutionProvider"])
    assert non_portable_ops((tmp_path / "all.onnx").read_bytes())


def test_int8_is_quantized_per_channel_and_keeps_its_faces(models_dir):
    model = onnx.load(str(models_dir / "int8.onnx"))
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") > 20 and ops.count("DequantizeLinear") > 20
    weight_scales = [
        i
        for i in model.graph.initializer
        if i.name.endswith("_scale") and len(i.dims) == 1 and i.dims[0] > 1
    ]
    assert weight_scales, "per-channel weights have one scale per output channel"
    agreement = manifest_of(models_dir)["models"]["int8"]["agreement"]
    assert (
        agreement["recall"] >= 0.95 and agreement["precision"] >= 0.9 and agreement["ap50"] >= 0.95
    )


def test_int8_qop_writes_integer_operators_the_pis_onnxruntime_runs(models_dir):
    """QOperator form: QLinearConv and com.microsoft QLinearLeakyRelu in the graph itself (no
    runtime fusion needed), Softmax and the nine head convolutions in float, loadable on 1.8."""
    from retinaface.tools.portable import problems

    data = (models_dir / "int8-qop.onnx").read_bytes()
    ops = [(n.domain, n.op_type) for n in onnx.load_from_string(data).graph.node]
    assert ops.count(("", "QLinearConv")) == 47
    assert ops.count(("com.microsoft", "QLinearLeakyRelu")) == 38
    assert ("", "LeakyRelu") not in ops and ("", "Softmax") in ops
    assert ops.count(("", "Conv")) == 9  # the heads
    assert problems(data, "1.8") == []
    entry = manifest_of(models_dir)["models"]["int8-qop"]
    assert entry["onnxruntime_min"] == "1.8" and "QOperator" in entry["quantization"]
    assert entry["agreement"]["recall"] >= 0.95 and entry["agreement"]["precision"] >= 0.9


def test_int8_finds_the_group_faces(models_dir):
    image = read_image(IMAGES / "group.jpg")
    reference = Detector(models_dir / "fp32.onnx").detect(image)
    for variant in ("int8", "int8-qop"):
        found = Detector(models_dir / f"{variant}.onnx").detect(image)
        assert_same_faces(found, reference, min_iou=0.8)


def test_opencv_backend_equals_onnxruntime_on_the_static_variant(models_dir):
    path = models_dir / "fp32-static-640x480.onnx"
    image = read_image(IMAGES / "src_meeting.jpg")
    via_ort = Detector(path, backend="onnxruntime").detect(image)
    via_cv = Detector(path, backend="opencv").detect(image)
    assert len(via_ort) == 5
    assert_same_faces(via_cv, via_ort, min_iou=0.95)


def test_int8_gate_fails_on_broken_calibration_and_keeps_old_models(tmp_path, models_dir):
    out = tmp_path / "build" / "models"
    shutil.copytree(models_dir, out)
    shutil.copytree(models_dir.parent / "weights", tmp_path / "build" / "weights")
    shutil.copytree(models_dir.parent / "cache", tmp_path / "build" / "cache")
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    calib = tmp_path / "calib"
    calib.mkdir()
    cv2.imwrite(str(calib / "blank.png"), np.zeros((480, 640, 3), np.uint8))
    with pytest.raises(ModelError, match="INT8 gate: int8 recall"):
        export_models(out, calib=calib)
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert not (tmp_path / "build" / "models.staging").exists()


def test_missing_calibration_folder_is_a_clear_error(tmp_path, models_dir):
    with pytest.raises(ModelError, match="image folder not found"):
        export_models(
            tmp_path / "models",
            weights=models_dir / "retinaface-mnet025.pth",
            calib=tmp_path / "nope",
        )


def test_static_variant_has_no_empty_resize_inputs(models_dir):
    """OpenCV 4.5.1 (Debian bullseye) rejects Resize nodes with empty optional inputs."""
    graph = onnx.load(str(models_dir / "fp32-static-640x480.onnx")).graph
    constants = {i.name for i in graph.initializer}
    resizes = [n for n in graph.node if n.op_type == "Resize"]
    assert len(resizes) == 2
    for node in resizes:
        assert all(node.input) and node.input[2] in constants
