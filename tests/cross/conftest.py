"""Fixtures of the cross tier: armv7l wheels cross-built on this x86 machine, gated on the
emulated bullseye Pi (root needed, like the emulated tier).

The first run makes the cross build root (debootstrap + crossbuild-essential-armhf + crossenv,
a few minutes) and caches it beside the emulator's tarballs; later runs restore it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.fixtures.pi_probe_repo import make_probe_repo
from tests.paths import REPO


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/cross" in str(item.fspath):
            item.add_marker(pytest.mark.cross)


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
    """numpy (from PyPI, hash-pinned) and pi-probe (a local git repository) in one run."""
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
