"""`build-wheels --builder cross`: plans, rendered scripts and one-line errors (no root needed)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pi_setup import cross
from pi_setup.errors import WheelError
from tests.fixtures.pi_probe_repo import make_probe_repo
from tests.paths import REPO


def test_numpy_default_is_the_hash_pinned_sdist():
    plan = cross.make_plan("numpy")
    (numpy,) = plan.packages
    assert (numpy.name, numpy.version, numpy.spec) == ("numpy", "1.24.4", "numpy==1.24.4")
    assert numpy.requirements == "/work/req-numpy.txt"
    assert numpy.source == {
        "index": "https://pypi.org/simple",
        "sdist_sha256": "80f5e3a4e498641401868df4208b74581206afbee7cf7b8329daae82676d9463",
    }
    assert plan.target.wheel_suffix == "-cp39-cp39-linux_armv7l.whl"


def test_other_numpy_version_is_built_unpinned():
    (numpy,) = cross.make_plan("numpy==1.25.2").packages
    assert (numpy.version, numpy.requirements, numpy.source["sdist_sha256"]) == ("1.25.2", "", None)


def test_pi_probe_needs_a_git_source(tmp_path):
    with pytest.raises(WheelError, match="pi-probe: built from a local git repository"):
        cross.make_plan("pi-probe")
    with pytest.raises(WheelError, match="not a git repository"):
        cross.make_plan("pi-probe", source=str(tmp_path))
    repo = make_probe_repo(tmp_path / "probe")
    (probe,) = cross.make_plan("pi-probe", source=str(repo)).packages
    assert probe.spec == "/work/src/pi-probe"
    assert probe.source["repo"] == f"workstation:{repo.resolve()}"


@pytest.mark.parametrize(
    "packages, message",
    [
        ("torch", "--packages torch: not cross-built: its build runs host tools"),
        ("torchvision", "--packages torchvision: not cross-built"),
        ("scipy", "--packages 'scipy': the cross builder knows numpy, pi-probe"),
        ("numpy==1.2;rm", "bad version"),
        (" , ", "name at least one package"),
    ],
)
def test_bad_packages_are_one_line_errors(packages, message):
    with pytest.raises(WheelError, match=message.replace("(", r"\(").replace(";", ";")) as error:
        cross.make_plan(packages)
    assert "\n" not in str(error.value)


def test_unknown_target():
    with pytest.raises(
        WheelError, match=r"--target 'buster-cp37': unknown \(known: bullseye-cp39\)"
    ):
        cross.make_plan("numpy", target="buster-cp37")


def test_scripts_parse_and_pin_what_they_install(tmp_path):
    text = cross.script_text("numpy,pi-probe", source=str(make_probe_repo(tmp_path / "p")))
    assert "crossenv==1.6.2" in text and "Cython==0.29.37" in text
    assert "libpython3.9-dev:armhf" in text and "crossbuild-essential-armhf" in text
    assert "--require-hashes -r /work/req-numpy.txt" in text
    assert "/work/src/pi-probe" in text and "export NPY_BLAS_ORDER=''" in text
    for script in (cross.render_root_script(cross.TARGETS["bullseye-cp39"]), text):
        checked = subprocess.run(["bash", "-n"], input=script, text=True, capture_output=True)
        assert checked.returncode == 0, checked.stderr


def test_cache_key_follows_the_recipe(monkeypatch):
    target = cross.TARGETS["bullseye-cp39"]
    key = cross.cache_key(target)
    monkeypatch.setattr(cross, "CROSSENV_VERSION", "1.6.3")
    assert cross.cache_key(target) != key
    assert cross.tarball_path(target).name.startswith("bullseye-cp39-")


def _invoke(*args):
    return subprocess.run(
        [sys.executable, "-m", "invoke", "build-wheels", *args],
        cwd=str(REPO), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_cli_print_script_and_bad_package():
    shown = _invoke("--builder", "cross", "--print-script")
    assert shown.returncode == 0, shown.stderr
    assert (
        "cross-pip" in shown.stdout and "# === numpy==1.24.4 (sdist sha256 80f5e3a4" in shown.stdout
    )
    bad = _invoke("--builder", "cross", "--packages", "torch")
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines() == [
        "error: --packages torch: not cross-built: its build runs host tools (protoc, code "
        "generators) that need a two-stage cross setup; build it on a Pi or pi4-emu"
    ]
