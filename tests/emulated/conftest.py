"""Fixtures of the emulated tier: armv7l Pis (Debian armhf under qemu-user) with their own sshd.

The first use of a release builds its root filesystem from the Debian mirror (~12 min) or
restores it from the cache; the session stops every emulator it started and checks that no
process and no mount is left behind.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from deploy.paths import project_known_hosts
from pi_setup import emulator
from pi_setup.rootfs import mounts_under
from retinaface.files import sha256_file

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


_PENDING: list = []  # lines from background builds, shown by the next main-thread line


def _progress(msg: str) -> None:
    """A progress line shown live, even under pytest's fd capture: a cold build takes minutes.

    Only the main thread touches pytest's capture; background threads queue their lines.
    """
    line = f"\n[emu {time.strftime('%H:%M:%S')}] {msg}"
    if threading.current_thread() is not threading.main_thread():
        _PENDING.append(line)
        return
    lines = "".join(_PENDING.pop(0) for _ in range(len(_PENDING))) + (line if msg else "")
    capman = _CONFIG.pluginmanager.getplugin("capturemanager") if _CONFIG else None
    if capman is None:
        sys.__stderr__.write(lines)
        sys.__stderr__.flush()
        return
    with capman.global_and_fixture_disabled():
        sys.stderr.write(lines)
        sys.stderr.flush()


class Emulators:
    """Starts releases on demand (idempotent) and remembers them for the final stop."""

    def __init__(self) -> None:
        self.started: set = set()
        self.up_seconds: dict = {}
        self.deployed: dict = {}  # release -> (inputs digest, release id) deployed this session
        self.clean: set = set()  # built in this session, so already fresh
        self.builders: dict = {}
        self.first_build_past_debootstrap = threading.Event()

    def progress(self, msg: str) -> None:
        if "apt-get install" in msg:
            self.first_build_past_debootstrap.set()
        _progress(msg)

    def up(self, release: str) -> emulator.EmuStatus:
        """The release running; the first call of the session starts it on a fresh root filesystem."""
        first = release not in self.started
        began = time.monotonic()
        builder = self.builders.get(release)
        if builder is not None and builder.is_alive():
            log = emulator.state_root() / release / "build.log"
            self.progress(f"waiting for the background build of {release} (log {log})")
            deadline = time.monotonic() + emulator.DEBOOTSTRAP_TIMEOUT + emulator.APT_TIMEOUT
            while builder.is_alive() and time.monotonic() < deadline:
                builder.join(timeout=10)
                if _PENDING:
                    _progress("")  # show the background build's stage lines
        fresh = first and release not in self.clean
        st = emulator.up(release, progress=self.progress, fresh=fresh)
        if first:
            self.up_seconds[release] = time.monotonic() - began
        self.started.add(release)
        return st

    def prebuild(self, releases: list) -> None:
        """On a cold machine, build the second and later releases in the background.

        Each starts once the first build is past debootstrap (two at once thrash the disk and
        the mirror); the release lock makes a test that needs it wait for the build.
        """
        cold = [
            name
            for name in releases
            if not emulator._rootfs_ready(emulator.release_of(name))
            and not emulator.tarball_path(emulator.release_of(name)).exists()
        ]
        for name in cold[1:]:
            thread = threading.Thread(target=self._build, args=(name,), daemon=True)
            thread.start()
            self.builders[name] = thread

    def _build(self, name: str) -> None:
        release = emulator.release_of(name)
        self.first_build_past_debootstrap.wait(timeout=600)
        try:
            emulator.check_host(emulator.BUILD_BYTES, arch=release.arch)
            with emulator.locked(release):
                if not emulator._rootfs_ready(release):
                    emulator.ensure_rootfs(release, lambda m: _progress(f"({name}) {m}"))
                    self.clean.add(name)
        except Exception as error:  # the test that needs it builds again and reports
            _progress(f"background build of {name} failed: {error}")


@pytest.fixture(scope="session")
def emulators(request):
    emus = Emulators()
    wanted = {
        name
        for item in request.session.items
        for name in emulator.RELEASES
        if name.replace("-", "_") in getattr(item, "fixturenames", ())
    }
    emus.prebuild([name for name in ("bullseye", "trixie", "trixie-arm64") if name in wanted])
    yield emus
    for thread in emus.builders.values():
        thread.join(timeout=emulator.DEBOOTSTRAP_TIMEOUT + emulator.APT_TIMEOUT)
    for release in sorted(emus.started):
        emulator.down(release)
        leftover = emulator.emulator_pids(emulator.release_of(release))
        assert not leftover, f"{release}: processes left after emu-down: {leftover}"
        rootfs = emulator.status(emulator.release_of(release)).rootfs
        assert not mounts_under(rootfs), f"{release}: mounts left under {rootfs}"
    for release, seconds in sorted(emus.up_seconds.items()):
        _progress(f"first (fresh) emu-up of {release} in this session: {seconds:.1f} s\n")


@pytest.fixture
def bullseye(emulators) -> emulator.EmuStatus:
    return emulators.up("bullseye")


@pytest.fixture
def trixie(emulators) -> emulator.EmuStatus:
    return emulators.up("trixie")


@pytest.fixture
def trixie_arm64(emulators) -> emulator.EmuStatus:
    """The emulated 64-bit Pi 4 (pi4-64-emu): Debian trixie arm64, Cortex-A72."""
    return emulators.up("trixie-arm64")


@pytest.fixture
def trixie_arm64_pi5(emulators) -> emulator.EmuStatus:
    """The emulated Pi 5 (pi5-emu): the same image on a Cortex-A76."""
    return emulators.up("trixie-arm64-pi5")


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


# --- what the tests deploy (tests/emulated/deploys.py): each test names the one it needs ---


@pytest.fixture(scope="session")
def build_models(models_dir) -> Path:
    """build/models as this session's export made it (what `invoke deploy` ships)."""
    from .deploys import fresh_build_models

    return fresh_build_models(models_dir)


@pytest.fixture(scope="session")
def real_wheels(request) -> dict:
    """wheels/ holds the real onnxruntime 1.8.1 cp39 build (sha256 from the lock) and a numpy
    wheel verified by digest against its cross-build record, or built in this session."""
    from .deploys import (
        ORT_FILE,
        ORT_SHA256,
        chosen_numpy,
        install_cross_numpy,
        verified_numpy_wheel,
    )

    out = invoke(
        "fetch-ort", "--os", "buster", "--python", "3.9", "--version", "1.8.1",
        "--mirror", str(REPO.parent / "shared" / "wheels"), timeout=600,
    )  # fmt: skip
    assert out.returncode == 0, out.stdout + out.stderr
    wheels = REPO / "wheels"
    ort = wheels / ORT_FILE
    assert sha256_file(ort) == ORT_SHA256
    numpy_wheel = verified_numpy_wheel(wheels)
    if numpy_wheel is None:
        # The session's `invoke build-wheels --builder cross` run (the cross tier's subject,
        # gated on the emulated Pi) makes it: deploy takes it from wheels/ like a user's build.
        numpy_wheel = install_cross_numpy(request.getfixturevalue("cross_run"), wheels)
    shipped = chosen_numpy(wheels)
    assert shipped == numpy_wheel, (
        f"wheels/{shipped.name} would be deployed instead of the verified {numpy_wheel.name}: "
        "move it out of wheels/"
    )
    return {"onnxruntime": ort, "numpy": numpy_wheel}


@pytest.fixture
def pi4_emu_deployed(emulators, bullseye, build_models, real_wheels) -> emulator.EmuStatus:
    """pi4-emu (bullseye) as a user deploys it: the models, the runner, onnxruntime 1.8.1 and
    the numpy wheel; the test images beside."""
    from .deploys import deploy_once, upload_images

    deploy_once(emulators, bullseye)
    upload_images(bullseye)
    return bullseye


@pytest.fixture
def trixie_deployed(emulators, trixie, build_models) -> emulator.EmuStatus:
    """pi4-emu-trixie: the models and the runner (onnxruntime 1.21 is Debian's); the images."""
    from .deploys import deploy_once, upload_images

    deploy_once(emulators, trixie)
    upload_images(trixie)
    return trixie
