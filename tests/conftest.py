"""Fixtures shared by every tier."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.paths import IMAGES, REPO, SHARED  # noqa: F401  (re-exported for fixtures)


def pytest_runtest_setup(item):
    """A `root` test run by another user fails with what to do (a skip would hide it in CI)."""
    if item.get_closest_marker("root") and os.geteuid() != 0:
        pytest.fail("needs root (chroot, chown or seteuid): run as root, or -m 'not root'")


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """The model variants exported once per test session from the embedded trained weights."""
    from retinaface.tools.export import export_models

    out = tmp_path_factory.mktemp("build") / "models"
    export_models(out)
    return out


@pytest.fixture(scope="session")
def weights_path(models_dir) -> Path:
    return models_dir / "retinaface-mnet025.pth"


def _note(message: str) -> None:
    sys.__stderr__.write(f"\n[cross {time.strftime('%H:%M:%S')}] {message}")
    sys.__stderr__.flush()


class CrossRun:
    """One `invoke build-wheels --builder cross` run as a user types it, and what it left."""

    def __init__(self, result: subprocess.CompletedProcess, wheels: Path, seconds: float, repo):
        self.result = result
        self.wheels = wheels
        self.seconds = seconds
        self.probe_repo = repo

    @property
    def manifest(self) -> dict:
        return json.loads((self.wheels / "manifest.json").read_text())["wheels"]

    def wheel(self, prefix: str) -> Path:
        (found,) = sorted(self.wheels.glob(f"{prefix}-*.whl"))
        return found


@pytest.fixture(scope="session")
def cross_run(tmp_path_factory) -> CrossRun:
    """numpy (from PyPI, hash-pinned) and pi-probe (a local git repository) in one run of
    `invoke build-wheels --builder cross` (the cross tier's subject; the emulated tier deploys
    its numpy wheel, so one session compiles numpy once)."""
    from tests.fixtures.pi_probe_repo import make_probe_repo

    base = tmp_path_factory.mktemp("cross")
    repo = make_probe_repo(base / "pi_probe")
    wheels = base / "wheels"
    argv = [sys.executable, "-m", "invoke", "build-wheels", "--builder", "cross"]
    argv += ["--packages", "numpy,pi-probe", "--source", str(repo), "--wheels-dir", str(wheels)]
    _note("invoke build-wheels --builder cross --packages numpy,pi-probe (a few minutes)")
    began = time.monotonic()
    result = subprocess.run(
        argv, cwd=str(REPO), capture_output=True, text=True, timeout=3 * 3600,
        env=dict(os.environ),
    )  # fmt: skip
    seconds = time.monotonic() - began
    _note(f"cross build finished in {seconds:.0f} s (exit {result.returncode})\n")
    return CrossRun(result, wheels, seconds, repo)
