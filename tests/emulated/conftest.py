"""Fixtures of the emulated tier: armv7l Pis (Debian armhf under qemu-user) with their own sshd.

The first use of a release builds its root filesystem from the Debian mirror (~12 min) or
restores it from the cache; the session stops every emulator it started and checks that no
process and no mount is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from deploy.hostkeys import project_known_hosts
from pi_setup import emulator

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO.parent / "shared" / "data" / "images"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/emulated" in str(item.fspath):
            item.add_marker(pytest.mark.emulated)


_CONFIG = None


def pytest_configure(config):
    global _CONFIG
    _CONFIG = config


def _progress(msg: str) -> None:
    """A progress line shown live, even under pytest's fd capture: a cold build takes minutes."""
    capman = _CONFIG.pluginmanager.getplugin("capturemanager") if _CONFIG else None
    line = f"\n[emu {time.strftime('%H:%M:%S')}] {msg}"
    if capman is None:
        sys.__stderr__.write(line)
        sys.__stderr__.flush()
        return
    with capman.global_and_fixture_disabled():
        sys.stderr.write(line)
        sys.stderr.flush()


class Emulators:
    """Starts releases on demand (idempotent) and remembers them for the final stop."""

    def __init__(self) -> None:
        self.started: set = set()
        self.up_seconds: dict = {}
        self.deployed: set = set()  # releases deployed to in this session

    def up(self, release: str) -> emulator.EmuStatus:
        """The release running; the first call of the session starts it on a fresh root filesystem."""
        first = release not in self.started
        began = time.monotonic()
        st = emulator.up(release, progress=_progress, fresh=first)
        if first:
            self.up_seconds[release] = time.monotonic() - began
        self.started.add(release)
        return st


@pytest.fixture(scope="session")
def emulators():
    emus = Emulators()
    yield emus
    for release in sorted(emus.started):
        emulator.down(release)
        leftover = emulator.emulator_pids(emulator.release_of(release))
        assert not leftover, f"{release}: processes left after emu-down: {leftover}"
        rootfs = emulator.status(emulator.release_of(release)).rootfs
        assert not emulator._mounts_under(rootfs), f"{release}: mounts left under {rootfs}"
    for release, seconds in sorted(emus.up_seconds.items()):
        _progress(f"first (fresh) emu-up of {release} in this session: {seconds:.1f} s\n")


@pytest.fixture
def bullseye(emulators) -> emulator.EmuStatus:
    return emulators.up("bullseye")


@pytest.fixture
def trixie(emulators) -> emulator.EmuStatus:
    return emulators.up("trixie")


def ssh_argv(st: emulator.EmuStatus) -> list:
    """An OpenSSH client command for the emulator that trusts only the project's known_hosts."""
    return [
        "ssh", "-i", str(st.key_file), "-p", str(st.port),
        "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes",
        "-o", f"UserKnownHostsFile={project_known_hosts()}",
        "-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=20",
        f"pi@{st.address}",
    ]  # fmt: skip


def ssh(st: emulator.EmuStatus, command: str, timeout: float = 300, **kwargs):
    """Run COMMAND on the emulator as pi over real ssh; return the CompletedProcess."""
    return subprocess.run(
        ssh_argv(st) + [command], capture_output=True, text=True, timeout=timeout, **kwargs
    )


def invoke(*args: str, timeout: float = 3600, env=None) -> subprocess.CompletedProcess:
    """Run `invoke ARGS` from the repository like a user does."""
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=str(REPO),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env if env is not None else dict(os.environ),
    )
