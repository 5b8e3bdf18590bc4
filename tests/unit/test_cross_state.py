"""The cross-build state (RETINAFACE_PI_CROSS_ROOT, /var/tmp/retinaface-pi/cross) is under the
emulator's checks (pi_setup.rootfs): another local user who plants a symlinked lock and a build
root with the right stamp in a shared sticky folder gets neither a truncated file nor root
running their toolchain. Run as the user's command (`invoke build-wheels --builder cross`) and
through the library; no debootstrap, no qemu."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from pi_setup import cross
from pi_setup.errors import WheelError
from tests.paths import REPO

NEIGHBOUR = "rfpi-neighbour"
TARGET = cross.TARGETS[cross.DEFAULT_TARGET]
# What the planted toolchain leaves behind when it runs (inside the planted root).
PROOF = "fake-toolchain-ran"


@pytest.fixture
def neighbour() -> int:
    """uid of a second, unprivileged local user (created when missing; the tests run as root)."""
    try:
        return pwd.getpwnam(NEIGHBOUR).pw_uid
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", NEIGHBOUR],
            check=True,
        )
        return pwd.getpwnam(NEIGHBOUR).pw_uid


@pytest.fixture
def shared():
    """A folder like /var/tmp: root's, world-writable, sticky (outside pytest's 0700 tmp)."""
    path = Path(tempfile.mkdtemp(prefix="rfpi-shared-", dir="/tmp"))
    os.chmod(path, 0o1777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _plant_root(root: Path) -> None:
    """A build root that passes the stamp check, whose gcc is a shell script (with the dash and
    libc it needs to run after chroot)."""
    (root / "usr/bin").mkdir(parents=True)
    for rel in ("proc", "sys", "dev", "bin", "lib/x86_64-linux-gnu", "lib64"):
        (root / rel).mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/dash", root / "bin/sh")
    shutil.copy("/lib/x86_64-linux-gnu/libc.so.6", root / "lib/x86_64-linux-gnu/libc.so.6")
    shutil.copy("/lib64/ld-linux-x86-64.so.2", root / "lib64/ld-linux-x86-64.so.2")
    gcc = root / f"usr/bin/{TARGET.triplet}-gcc"
    gcc.write_text(f"#!/bin/sh\necho owned > /{PROOF}\necho 'gcc 1.0'\n")
    gcc.chmod(0o755)
    (root / cross.ROOT_STAMP).write_text(cross.cache_key(TARGET) + "\n")


def _as_user(uid: int, action) -> None:
    """Run ACTION in a forked child that has become UID (a second local account)."""
    pid = os.fork()
    if pid == 0:
        code = 1
        try:
            os.setgroups([])
            os.setgid(pwd.getpwuid(uid).pw_gid)
            os.setuid(uid)
            action()
            code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.WEXITSTATUS(status) == 0, "the neighbour could not plant its files"


def test_planted_lock_and_build_root_are_refused_by_build_wheels(shared, neighbour, tmp_path):
    victim = tmp_path / "root-owned.conf"  # what root must never truncate
    victim.write_text("precious\n")
    state = shared / "cross"
    base = state / TARGET.name

    def plant():
        base.mkdir(parents=True)
        os.chmod(state, 0o755)
        (base / ".lock").symlink_to(victim)
        _plant_root(base / "root")

    _as_user(neighbour, plant)
    env = {**os.environ, "RETINAFACE_PI_CROSS_ROOT": str(state)}
    result = subprocess.run(
        [sys.executable, "-m", "invoke", "build-wheels", "--builder", "cross",
         "--packages", "numpy"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode != 0, result.stdout
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert str(state) in lines[0] and f"belongs to uid {neighbour}, another user" in lines[0]
    assert victim.read_text() == "precious\n"
    assert not (base / "root" / PROOF).exists()


def test_a_build_root_that_is_a_symlink_is_not_ready(tmp_path, monkeypatch):
    """Our own, checked state folder, but its root a symlink to a tree with the right stamp."""
    state = tmp_path / "cross"
    monkeypatch.setenv("RETINAFACE_PI_CROSS_ROOT", str(state))
    planted = tmp_path / "planted"
    _plant_root(planted)
    (state / TARGET.name).mkdir(parents=True)
    (state / TARGET.name / "root").symlink_to(planted)
    with pytest.raises(WheelError, match="the cross build root is not a real directory"):
        cross.root_ready(TARGET)
    with pytest.raises(WheelError, match="not a real directory"):
        cross.prepare(TARGET.name)
    assert not (planted / PROOF).exists()


def test_our_own_ready_root_passes_and_the_state_is_made_private(tmp_path, monkeypatch):
    state = tmp_path / "cross"
    monkeypatch.setenv("RETINAFACE_PI_CROSS_ROOT", str(state))
    (state / TARGET.name).mkdir(parents=True)
    _plant_root(state / TARGET.name / "root")
    assert cross.root_ready(TARGET)
    with cross.locked(TARGET):
        pass
    assert oct(state.stat().st_mode & 0o777) == "0o700"
    assert (state / TARGET.name / ".lock").is_file()
    (state / TARGET.name / "root" / cross.ROOT_STAMP).write_text("another key\n")
    assert not cross.root_ready(TARGET)


def test_a_group_writable_state_folder_is_refused(tmp_path, monkeypatch):
    state = tmp_path / "cross"
    monkeypatch.setenv("RETINAFACE_PI_CROSS_ROOT", str(state / "inner"))
    state.mkdir()
    os.chmod(state, 0o775)
    with pytest.raises(WheelError, match="other users may write in it"):
        with cross.locked(TARGET):
            pass
