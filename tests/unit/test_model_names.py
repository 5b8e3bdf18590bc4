"""One set of model names everywhere; paths from the project root; a clone is all one needs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from retinaface.errors import ModelError
from retinaface.manifest import model_file
from retinaface.names import check_model, parse_names
from retinaface.tools import evaluate
from retinaface.tools.paths import PROJECT_ROOT
from tests.paths import REPO

NAMES = ("fp32", "fp32-opt", "fp32-static-640x480", "int8", "int8-qop", "torch")


@pytest.fixture(scope="module")
def clone(tmp_path_factory, models_dir):
    """A fresh clone (no ../shared beside it) with the session's models in its build/."""
    root = tmp_path_factory.mktemp("clone") / "retinaface-pi"
    subprocess.run(["git", "clone", "-q", "--no-local", str(REPO), str(root)], check=True)
    shutil.copytree(models_dir, root / "build" / "models")
    assert not (root.parent / "shared").exists()
    return root


def invoke(clone, cwd, *argv, home=None):
    env = dict(os.environ, PYTHONPATH=str(clone))
    if home:
        env["HOME"] = str(home)
    # -P: like the `invoke` script, do not put the current folder first on sys.path.
    return subprocess.run(
        [sys.executable, "-P", "-m", "invoke", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_error_line(result) -> str:
    assert result.returncode != 0 and "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("name", NAMES)
def test_detect_takes_every_variant_name_from_any_folder(clone, tmp_path, name):
    out = tmp_path / "faces.json"
    image = clone / "data" / "images" / "group.jpg"
    result = invoke(
        clone,
        clone / "deploy",
        "detect",
        "--image",
        str(image),
        "--model",
        name,
        "--json",
        str(out),
    )
    assert result.returncode == 0, result.stderr
    assert len(json.loads(out.read_text())["faces"]) == 11
    assert not (clone / "deploy" / "build").exists()  # models came from <project>/build/models


def test_an_unknown_model_name_is_refused_with_the_known_ones(clone):
    image = clone / "data" / "images" / "group.jpg"
    line = one_error_line(invoke(clone, clone, "detect", "--image", str(image), "--model", "int9"))
    assert "'int9'" in line and all(n in line for n in ("fp32-opt", "fp32-static-WxH", "int8"))


def test_a_static_size_that_was_not_built_says_how_to_build_it(clone):
    image = clone / "data" / "images" / "group.jpg"
    result = invoke(clone, clone, "detect", "--image", str(image), "--model", "fp32-static-320x240")
    assert "invoke models --fixed-size 320x240" in one_error_line(result)


def test_remote_bench_refuses_an_unknown_variant_before_deploying(clone, tmp_path):
    result = invoke(clone, clone, "remote-bench", "--variants", "fp32,bogus", home=tmp_path)
    line = one_error_line(result)
    assert "'bogus'" in line and "fp32-static-WxH" in line
    assert not (tmp_path / "retinaface-pi").exists()  # nothing was deployed
    assert not (clone / "results").exists()


def test_the_runner_refuses_an_unknown_variant(clone):
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "retinaface.runner",
            "bench",
            "--models",
            "m",
            "--image",
            "i",
            "--variants",
            "fp32,bogus",
        ],
        cwd=clone,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2 and "unknown variant 'bogus'" in result.stderr


def test_names_and_paths_resolve_against_the_manifest(tmp_path):
    manifest = {"models": {"int8": {"file": "int8.onnx"}}, "not_built": {"torch": "no torch here"}}
    assert model_file("int8", manifest, tmp_path) == tmp_path / "int8.onnx"
    with pytest.raises(ModelError, match="not built: no torch here"):
        model_file("torch", manifest, tmp_path)
    own = tmp_path / "mine.onnx"
    own.write_bytes(b"x")
    assert model_file(str(own), manifest, tmp_path) == own
    with pytest.raises(ModelError, match="model file not found"):
        model_file(str(tmp_path / "other.onnx"), manifest, tmp_path)
    assert check_model("fp32-static-320x240") and parse_names("fp32, int8") == ["fp32", "int8"]
    with pytest.raises(ModelError, match="unknown variant 'fp32-static'"):
        parse_names("fp32-static")


def test_the_default_photographs_ship_in_the_repository_with_their_sources():
    assert evaluate.DEFAULT_IMAGES == PROJECT_ROOT / "data" / "images"
    sources = (REPO / "data" / "SOURCES.md").read_text()
    listed = set(re.findall(r"[\w-]+\.(?:jpg|png)", sources))
    shipped = {p.name for p in (REPO / "data" / "images").iterdir()}
    assert shipped <= listed
    calib, held_out = evaluate.default_split()
    assert {p.name for p in held_out} == set(evaluate.HELD_OUT) and len(calib) >= 5


def test_calib_dir_never_lists_the_default_set(tmp_path, monkeypatch):
    from retinaface.tools import export

    mine = tmp_path / "faces"
    mine.mkdir()
    shutil.copy(REPO / "data" / "images" / "selfie.jpg", mine / "me.jpg")

    def forbidden(*args, **kwargs):
        raise AssertionError("the default calibration set was listed")

    def stop(*args, **kwargs):
        raise ModelError("stopped after the image split")

    monkeypatch.setattr(evaluate, "default_split", forbidden)
    monkeypatch.setattr(export, "embedded_fp32", stop)
    with pytest.raises(ModelError, match="stopped after the image split"):
        export.export_models(tmp_path / "build" / "models", calib=mine)
