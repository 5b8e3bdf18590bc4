"""Every built model loads on the onnxruntime releases the Pi gets (1.8.1 buster, 1.9.1 bullseye).

Checked against onnxruntime's compatibility table (retinaface.tools.portable.ORT_COMPATIBILITY); the
emulated tier loads them on the real armv7l 1.8.1 build.
"""

import json

import onnx
import pytest
from onnx import TensorProto, helper

from retinaface.errors import ModelError
from retinaface.tools.portable import (
    make_portable,
    make_portable_file,
    oldest_onnxruntime,
    problems,
)


def tiny_model(nodes, opsets, ir_version=10):
    """A one-input, one-output model with NODES (x -> y) and the given opset imports."""
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    model.ir_version = ir_version
    return model.SerializeToString()


RELU = [helper.make_node("Relu", ["x"], ["y"])]
# What onnxruntime's quantizer stamps on its output (today's int8.onnx before the pass).
QUANTIZER_IMPORTS = [
    ("", 13),
    ("ai.onnx.ml", 5),
    ("ai.onnx.training", 1),
    ("com.microsoft", 1),
    ("com.microsoft.nchwc", 1),
    ("org.pytorch.aten", 1),
]


@pytest.mark.parametrize("release", ["1.8", "1.9"])
def test_every_built_model_loads_on_the_pi_releases(models_dir, release):
    manifest = json.loads((models_dir / "manifest.json").read_text())
    onnx_entries = {k: e for k, e in manifest["models"].items() if e["file"].endswith(".onnx")}
    assert {"fp32", "fp32-opt", "int8", "int8-qop"} <= set(onnx_entries)
    for name, entry in onnx_entries.items():
        data = (models_dir / entry["file"]).read_bytes()
        assert problems(data, release) == [], name
        model = onnx.load_from_string(data)
        assert model.ir_version <= 7, name
        declared = {o.domain for o in model.opset_import}
        assert declared == {n.domain for n in model.graph.node} | {""}, name
        assert entry["onnxruntime_min"] == oldest_onnxruntime(data), name
        assert tuple(map(int, entry["onnxruntime_min"].split("."))) <= (1, 8), name


def test_manifest_records_the_oldest_release_per_variant(models_dir):
    models = json.loads((models_dir / "manifest.json").read_text())["models"]
    # opset 13, IR 7: onnxruntime 1.6; FusedConv is verified from 1.8 on.
    assert models["fp32"]["onnxruntime_min"] == "1.6"
    assert models["int8"]["onnxruntime_min"] == "1.6"
    assert models["fp32-opt"]["onnxruntime_min"] == "1.8"
    assert models["int8-qop"]["onnxruntime_min"] == "1.8"  # QLinearLeakyRelu, verified from 1.8
    assert "onnxruntime_min" not in models["torch"]


def test_quantizer_imports_are_refused_then_dropped():
    data = tiny_model(RELU, QUANTIZER_IMPORTS)
    found = problems(data, "1.8")
    assert "unused opset import com.microsoft.nchwc 1" in found
    assert "unused opset import ai.onnx.ml 5" in found
    assert "IR version 10 > 7" in found
    fixed = make_portable(data)
    assert problems(fixed, "1.8") == []
    model = onnx.load_from_string(fixed)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", 13)]
    assert model.ir_version == 7
    assert [n.op_type for n in model.graph.node] == ["Relu"]


def test_the_table_gives_the_oldest_release():
    assert oldest_onnxruntime(tiny_model(RELU, [("", 11)], ir_version=6)) == "1.0"
    assert oldest_onnxruntime(tiny_model(RELU, [("", 13)], ir_version=7)) == "1.6"
    assert oldest_onnxruntime(tiny_model(RELU, [("", 14)], ir_version=7)) == "1.8"
    assert oldest_onnxruntime(tiny_model(RELU, [("", 15)], ir_version=8)) == "1.9"
    assert problems(tiny_model(RELU, [("", 15)], ir_version=8), "1.8") == [
        "IR version 8 > 7",
        "opset 15 > 14",
    ]


def test_an_operator_the_release_lacks_is_refused_and_the_file_kept(tmp_path):
    softmax = [helper.make_node("QLinearSoftmax", ["x"], ["y"], domain="com.microsoft")]
    data = tiny_model(softmax, [("", 13), ("com.microsoft", 1)], ir_version=7)
    assert problems(data, "1.9") == ["com.microsoft::QLinearSoftmax is not known to run on 1.9"]
    path = tmp_path / "q.onnx"
    path.write_bytes(data)
    with pytest.raises(ModelError, match="q.onnx: onnxruntime 1.8 cannot load it"):
        make_portable_file(path)
    assert path.read_bytes() == data
    newer = [helper.make_node("Gelu", ["x"], ["y"])]  # ONNX opset 20
    assert problems(tiny_model(newer, [("", 14)], ir_version=7), "1.8") == [
        "Gelu is not in ONNX opset 14"
    ]


def test_fused_conv_is_allowed_from_1_8():
    fused = [helper.make_node("FusedConv", ["x"], ["y"], domain="com.microsoft")]
    data = tiny_model(fused, [("", 13), ("com.microsoft", 1)], ir_version=7)
    assert problems(data, "1.8") == []
    assert oldest_onnxruntime(data) == "1.8"
