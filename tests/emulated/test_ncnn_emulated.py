"""ncnn 1.0.20261020 (the registry's manylinux_2_31 armv7l cp39 wheel) on the emulated bullseye Pi.

Through the user's commands: `invoke fetch-engines --host pi4-emu --engines ncnn` (pip download,
checked against the sha256 in wheels/lock.yaml), `invoke deploy --host pi4-emu` (the wheel
installed offline from the release's wheelhouse by bullseye's pip 20.3.4, which knows PEP 600's
manylinux_2_31 tag; the model's .param and its .bin both shipped), then on the Pi `runner detect`
and `runner bench` with ncnn-fp32 find the faces x86 finds. MNN has no armv7l wheel: the same
bench lists mnn-fp32 as skipped with its reason. (MNN on a Pi needs the 64-bit emulated Pi.)
"""

from __future__ import annotations

import json

import pytest

from .conftest import invoke, ssh
from .deploys import deploy_once, upload_images
from .test_runner_emulated import (
    DEPLOY_DIR,
    IMAGE_NAMES,
    IMAGES,
    REMOTE,
    SIZE,
    assert_same_faces,
    manifest,  # noqa: F401  (fixture)
    models,  # noqa: F401  (fixture)
)

VENV_PY = f"{DEPLOY_DIR}/venv/bin/python"
NCNN_WHEEL = "ncnn-1.0.20261020-cp39-cp39-manylinux_2_31_armv7l.whl"


@pytest.fixture
def ncnn_pi(emulators, bullseye, build_models, real_wheels, manifest):  # noqa: F811
    """pi4-emu as a user deploys it, plus `invoke fetch-engines --host pi4-emu --engines ncnn`
    (real_wheels: onnxruntime 1.8.1 and the cross-built numpy wheel)."""
    assert "ncnn-fp32" in manifest["models"], (
        f"ncnn-fp32 not built: {manifest.get('not_built')} (pip install -e '.[ncnn]')"
    )
    out = invoke("fetch-engines", "--host", "pi4-emu", "--engines", "ncnn", timeout=900)
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"{NCNN_WHEEL} (3,313,327 bytes" in out.stdout, out.stdout
    deploy_once(emulators, bullseye)  # the wheels changed: a new release
    upload_images(bullseye)
    return bullseye


def test_ncnn_installs_offline_with_bullseyes_pip(ncnn_pi):
    pip = ssh(ncnn_pi, f"{VENV_PY} -m pip --version", timeout=300)
    assert pip.stdout.startswith("pip 20.3.4"), pip.stdout  # PEP 600 (manylinux_2_31) since 20.3
    wheelhouse = ssh(ncnn_pi, f"ls {DEPLOY_DIR}/current/wheelhouse {DEPLOY_DIR}/current/models")
    assert NCNN_WHEEL in wheelhouse.stdout.split(), wheelhouse.stdout
    assert {"ncnn-fp32.param", "ncnn-fp32.bin"} <= set(wheelhouse.stdout.split())
    probe = f"{VENV_PY} -c 'import ncnn, numpy; print(ncnn.__version__, numpy.__version__)'"
    out = ssh(ncnn_pi, probe, timeout=600)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[0] == "1.0.20261020", out.stdout


def _x86_faces(model, image):
    from retinaface.detector import Detector
    from retinaface.imageio import read_image

    return Detector(str(model), backend="ncnn", size=SIZE).detect(read_image(str(image)))


def test_runner_detect_finds_the_x86_faces(ncnn_pi, models):  # noqa: F811
    """`runner detect` on the .param (the backend follows the suffix): x86's faces, IoU 0.9."""
    model = models["ncnn-fp32"]
    for image in IMAGE_NAMES:
        x86 = _x86_faces(model, IMAGES / image)
        assert x86, f"{image}: no face on x86, the comparison would prove nothing"
        cmd = (
            f"{VENV_PY} -m retinaface.runner detect --model {DEPLOY_DIR}/current/models/{model.name} "
            f"--image {REMOTE}/images/{image} --size {SIZE[0]}x{SIZE[1]} "
            f"--json {REMOTE}/faces.json > /dev/null && cat {REMOTE}/faces.json"
        )
        out = ssh(ncnn_pi, cmd, timeout=1200)
        assert out.returncode == 0, f"{image}: {out.stderr[-2000:]}"
        result = json.loads(out.stdout)
        assert result["backend"] == "ncnn", result
        assert_same_faces(result["faces"], x86, f"ncnn {model.name} {image}", 0.9)


def test_runner_bench_measures_ncnn_and_skips_mnn_with_its_reason(ncnn_pi, models):  # noqa: F811
    """`runner bench` on the Pi: the ncnn cell runs (times under qemu mean nothing) and finds
    x86's faces; mnn-fp32, with no wheel for armv7l, is skipped with the reason."""
    cmd = (
        f"{VENV_PY} -m retinaface.runner bench --models {DEPLOY_DIR}/current/models "
        f"--image {REMOTE}/images/group.jpg --variants ncnn-fp32,mnn-fp32 "
        f"--size {SIZE[0]}x{SIZE[1]} --runs 2 --warmup 0 --min-time 0 "
        f"--json {REMOTE}/bench.json > /dev/null && cat {REMOTE}/bench.json"
    )
    out = ssh(ncnn_pi, cmd, timeout=2400)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout)
    cells = result["variants"]
    assert cells["ncnn-fp32"]["status"] == "ok", cells["ncnn-fp32"]
    assert cells["ncnn-fp32"]["backend"] == "ncnn"
    x86 = len(_x86_faces(models["ncnn-fp32"], IMAGES / "group.jpg"))
    assert cells["ncnn-fp32"]["faces"] == x86, (cells["ncnn-fp32"]["faces"], x86)
    assert result["host"]["versions"]["ncnn"] == "1.0.20261020", result["host"]
    assert cells["mnn-fp32"]["status"] == "skipped", cells["mnn-fp32"]
    assert "MNN cannot be imported on this host" in cells["mnn-fp32"]["skipped"]
