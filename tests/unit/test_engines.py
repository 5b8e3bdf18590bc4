"""The ncnn and MNN variants: their backends, the parity and INT8 gates, deploy of ncnn's pair.

The session's models (conftest `models_dir`) are built with the `[ncnn]` and `[mnn]` extras
installed, as in CI: ncnn-fp32 (pnnx), mnn-fp32 and mnn-int8 (MNN's converter and quantizer).
"""

import functools
import json
import shutil

import numpy as np
import pytest

from deploy.errors import DeployError
from deploy.workflow.release import model_files
from retinaface.backends import backend_for, make_backend
from retinaface.bench.run import plan_variant
from retinaface.detector import Detector
from retinaface.errors import ModelError
from retinaface.files import sha256_file
from retinaface.imageio import read_image
from retinaface.tools.convert import mnn as mnn_convert
from retinaface.tools.convert.ncnn import convert_ncnn
from retinaface.tools.evaluate import INT8_MIN_RECALL
from retinaface.tools.export import (
    ENGINE_PARITY_MAX,
    PARITY_SIZES,
    check_engine_parity,
    engine_parity,
    export_models,
    onnx_outputs,
)
from tests.paths import IMAGES
from tests.unit.test_export import assert_same_faces

ENGINES = {"ncnn-fp32": "ncnn", "mnn-fp32": "mnn", "mnn-int8": "mnn"}


def manifest_of(models_dir):
    return json.loads((models_dir / "manifest.json").read_text())


def test_engine_variants_are_built_with_their_files_and_digests(models_dir):
    models = manifest_of(models_dir)["models"]
    for name, backend in ENGINES.items():
        assert models[name]["backend"] == backend
    assert models["ncnn-fp32"]["file"] == "ncnn-fp32.param"
    (weights,) = models["ncnn-fp32"]["companions"]
    assert weights["file"] == "ncnn-fp32.bin"
    assert sha256_file(models_dir / "ncnn-fp32.bin") == weights["sha256"]
    for name in ENGINES:
        assert sha256_file(models_dir / models[name]["file"]) == models[name]["sha256"]


@pytest.mark.parametrize("name", ["ncnn-fp32", "mnn-fp32"])
def test_fp32_engine_variants_match_fp32_onnx(models_dir, name):
    parity = manifest_of(models_dir)["models"][name]["parity"]
    diffs = parity["max_abs_diff_per_output"]
    print(f"{name}: max abs diff against fp32.onnx over {PARITY_SIZES}: {diffs}")
    assert parity["reference"] == "fp32.onnx"
    for output, limit in ENGINE_PARITY_MAX.items():
        assert diffs[output] <= limit


@pytest.mark.parametrize("name", list(ENGINES))
def test_engine_backend_runs_an_odd_size_like_onnxruntime(models_dir, name):
    """Any H x W, outputs in our contract: (1,N,4) boxes, (1,N,2) softmaxed scores, (1,N,10)."""
    entry = manifest_of(models_dir)["models"][name]
    backend = make_backend(ENGINES[name], models_dir / entry["file"], threads=1)
    assert backend.fixed_size is None
    blob = np.random.default_rng(3).uniform(-120, 150, (1, 3, 301, 517)).astype(np.float32)
    found = backend.run(blob)
    expected = onnx_outputs(models_dir / "fp32.onnx", blob)
    assert (
        [o.shape for o in found]
        == [o.shape for o in expected]
        == [
            (1, 6534, 4),
            (1, 6534, 2),
            (1, 6534, 10),
        ]
    )
    assert all(o.dtype == np.float32 for o in found)
    softmax_error = 1e-4 if name.endswith("fp32") else 1e-2  # int8: a quantized softmax
    np.testing.assert_allclose(found[1].sum(axis=-1), 1.0, atol=softmax_error)
    if name.endswith("fp32"):
        assert np.abs(found[1] - expected[1]).max() < 1e-3


@pytest.mark.parametrize("name", list(ENGINES))
def test_engine_variant_finds_the_faces_of_fp32(models_dir, name):
    entry = manifest_of(models_dir)["models"][name]
    image = read_image(IMAGES / "src_meeting.jpg")
    reference = Detector(models_dir / "fp32.onnx").detect(image)
    found = Detector(models_dir / entry["file"], backend=ENGINES[name], threads=2).detect(image)
    assert len(reference) == 5
    assert_same_faces(found, reference, min_iou=0.99 if name.endswith("fp32") else 0.8)


def test_the_default_backend_follows_the_model_suffix():
    assert backend_for("m/ncnn-fp32.param") == "ncnn"
    assert backend_for("mnn-int8.mnn") == "mnn"
    assert backend_for("fp32.onnx") == "onnxruntime"


def test_an_ncnn_param_without_its_bin_is_one_clear_error(tmp_path, models_dir):
    shutil.copyfile(models_dir / "ncnn-fp32.param", tmp_path / "ncnn-fp32.param")
    with pytest.raises(ModelError, match="has no weights file .*ncnn-fp32.bin"):
        make_backend("ncnn", tmp_path / "ncnn-fp32.param")


def test_parity_gate_refuses_an_ncnn_model_of_other_weights(tmp_path, models_dir):
    """A model converted from untrained weights is a real ncnn model, and not ours."""
    import torch

    from retinaface.model import RetinaFace

    torch.manual_seed(0)
    pth = tmp_path / "untrained.pth"
    torch.save(RetinaFace().state_dict(), str(pth))
    param, _ = convert_ncnn(pth, tmp_path)
    diffs = engine_parity(models_dir / "fp32.onnx", "ncnn", param, PARITY_SIZES[:1])
    with pytest.raises(ModelError, match="parity gate: ncnn-fp32 differs from fp32.onnx"):
        check_engine_parity("ncnn-fp32", diffs, tmp_path)


def test_int8_gate_refuses_a_bad_mnn_int8_and_keeps_the_previous_models(
    tmp_path, models_dir, monkeypatch
):
    """MNN's quantizer at 2 bits (really run) loses the faces: the gate refuses, nothing moves."""
    out = tmp_path / "build" / "models"
    shutil.copytree(models_dir, out)
    shutil.copytree(models_dir.parent / "weights", tmp_path / "build" / "weights")
    shutil.copytree(models_dir.parent / "cache", tmp_path / "build" / "cache")
    before = {p.name: sha256_file(p) for p in out.iterdir()}
    monkeypatch.setattr(
        mnn_convert, "quantize_mnn", functools.partial(mnn_convert.quantize_mnn, bits=2)
    )
    with pytest.raises(ModelError, match=f"INT8 gate: mnn-int8 recall .* below {INT8_MIN_RECALL}"):
        export_models(out)
    assert {p.name: sha256_file(p) for p in out.iterdir()} == before
    assert not (tmp_path / "build" / "models.staging").exists()


def test_mnn_int8_passed_the_int8_gate(models_dir):
    agreement = manifest_of(models_dir)["models"]["mnn-int8"]["agreement"]
    print(f"mnn-int8 agreement with fp32: {agreement}")
    assert agreement["recall"] >= INT8_MIN_RECALL


def test_deploy_ships_the_ncnn_weights_beside_the_param(tmp_path, models_dir):
    manifest = manifest_of(models_dir)
    rels = {item.rel for item in model_files(models_dir, manifest)}
    assert {"models/ncnn-fp32.param", "models/ncnn-fp32.bin", "models/mnn-int8.mnn"} <= rels
    out = tmp_path / "models"
    shutil.copytree(models_dir, out)
    (out / "ncnn-fp32.bin").write_bytes(b"not the weights")
    with pytest.raises(DeployError, match="ncnn-fp32.bin: sha256 .* differs from manifest.json"):
        model_files(out, manifest)


def test_the_runner_skips_ncnn_when_its_bin_changed(tmp_path, models_dir):
    out = tmp_path / "models"
    shutil.copytree(models_dir, out)
    manifest = manifest_of(out)
    assert plan_variant("ncnn-fp32", manifest, str(out), (640, 480)).skipped is None
    (out / "ncnn-fp32.bin").write_bytes(b"not the weights")
    plan = plan_variant("ncnn-fp32", manifest, str(out), (640, 480))
    assert "ncnn-fp32.bin: missing or sha256 differs" in plan.skipped
