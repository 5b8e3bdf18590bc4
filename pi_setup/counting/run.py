"""One variant counted under the dynamic qemu with our plugin, on an emulated Pi's root filesystem.

The guest is the emulated Pi's own Python with the packages `invoke deploy` put in its venv
(onnxruntime and numpy wheels) over Debian's (OpenCV, torch), so the instructions counted are
those of the Pi's real runtimes. Traps handled here: the root filesystem's alternatives symlinks
(libblas.so.3 ...) are absolute, so their folders go on LD_LIBRARY_PATH; hash randomization is
off (PYTHONHASHSEED=0: with it, two runs of the same loop differed by 10 %); one thread.
The guest gets host paths (the root filesystem's python, its venv's site-packages): qemu 7.2's
-L prefix does not translate statx, which trixie's glibc uses, so Python finds its own library
only through the host path of its executable (sys.prefix = <rootfs>/usr).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional

from pi_setup import emulator
from pi_setup.counting import marks
from pi_setup.errors import EmulatorError

REPO = Path(__file__).resolve().parents[2]
GUEST = Path(__file__).with_name("guest.py")
MARKER_FD = 1019
DEPLOY_DIR = "/home/pi/retinaface-pi"  # inventory.yaml: deploy_dir ~/retinaface-pi, user pi
RUN_TIMEOUT = 3600.0
CPUS = ("cortex-a72", "cortex-a76")
# qemu-arm 7.2 models no ARMv8 core in AArch32: cortex-a15 (ARMv7-A, NEON, VFPv4, no
# dot product) is the closest that advertises nothing a Pi 4 or 5 lacks in 32-bit mode.
QEMU_CPU = {"arm": {"cortex-a72": "cortex-a15", "cortex-a76": "cortex-a15"},
            "aarch64": {"cortex-a72": "cortex-a72", "cortex-a76": "cortex-a76"}}  # fmt: skip
ELF_MACHINES = {40: "arm", 183: "aarch64"}


@dataclass(frozen=True)
class Guest:
    """An emulated Pi's root filesystem as the counting qemu sees it."""

    host: str
    rootfs: Path
    target: str  # arm | aarch64
    python: str  # guest path, e.g. /usr/bin/python3.9
    site: str  # guest path of the deployed venv's site-packages
    runtimes: Dict[str, str] = field(default_factory=dict)


def release_for_host(host: str) -> emulator.Release:
    for release in emulator.RELEASES.values():
        if release.host == host:
            return release
    known = ", ".join(r.host for r in emulator.RELEASES.values())
    raise EmulatorError(f"--host {host}: counting runs on an emulated Pi ({known})")


def elf_target(path: Path) -> str:
    with open(path, "rb") as handle:
        head = handle.read(20)
    if head[:4] != b"\x7fELF":
        raise EmulatorError(f"{path}: not an ELF program")
    machine = int.from_bytes(head[18:20], "little")
    if machine not in ELF_MACHINES:
        raise EmulatorError(f"{path}: ELF machine {machine} is neither ARM nor AArch64")
    return ELF_MACHINES[machine]


def guest_for(host: str) -> Guest:
    """The deployed emulated Pi HOST, checked: root filesystem, venv, Python version."""
    release = release_for_host(host)
    if emulator.checked_rootfs(release) is None or not emulator.status(release).rootfs_ready:
        raise EmulatorError(
            f"{host}: no root filesystem yet: run `invoke emu-up --release {release.name}` and "
            f"`invoke deploy --host {host}` first"
        )
    return guest_in(host, emulator.status(release).rootfs)


def guest_in(host: str, rootfs: Path) -> Guest:
    """HOST's deployed root filesystem at ROOTFS (the live one, or a copy taken after deploy)."""
    cfg = rootfs / DEPLOY_DIR.lstrip("/") / "venv" / "pyvenv.cfg"
    try:
        text = cfg.read_text()[:4096]
    except OSError:
        raise EmulatorError(
            f"{host}: no deployed venv ({DEPLOY_DIR}/venv): run `invoke deploy --host {host}`"
        ) from None
    version = re.search(r"^version\s*=\s*(\d+)\.(\d+)", text, re.M)
    if not version:
        raise EmulatorError(f"{cfg}: names no Python version")
    minor = f"{version.group(1)}.{version.group(2)}"
    python = f"/usr/bin/python{minor}"
    if not (rootfs / python.lstrip("/")).is_file():
        raise EmulatorError(f"{host}: {python} is missing from its root filesystem")
    return Guest(
        host=host,
        rootfs=rootfs,
        target=elf_target(rootfs / python.lstrip("/")),
        python=python,
        site=f"{DEPLOY_DIR}/venv/lib/python{minor}/site-packages",
    )


def library_dirs(rootfs: Path) -> list:
    """Guest folders of the shared libraries the alternatives symlinks point to (absolute
    links, which the host would resolve outside the root filesystem)."""
    dirs = []
    alternatives = rootfs / "etc" / "alternatives"
    for link in sorted(alternatives.glob("lib*.so*")) if alternatives.is_dir() else []:
        target = os.readlink(link)
        folder = os.path.dirname(target)
        if target.startswith("/") and folder not in dirs:
            dirs.append(folder)
    return dirs


def guest_env(guest: Guest) -> dict:
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "HOME": "/home/pi",
        "LANG": "C.UTF-8",
        "PYTHONHASHSEED": "0",
        "PYTHONDONTWRITEBYTECODE": "1",  # never write .pyc into the checkout or the rootfs
        "PYTHONNOUSERSITE": "1",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        # host paths: trixie's loader stats the folders, and qemu 7.2 leaves statx untranslated
        "LD_LIBRARY_PATH": ":".join(
            str(guest.rootfs / d.lstrip("/")) for d in library_dirs(guest.rootfs)
        ),
    }


def qemu_argv(guest: Guest, plugin: Path, out: Path, cpu: str, script: list) -> list:
    qemu = "/usr/bin/qemu-aarch64" if guest.target == "aarch64" else "/usr/bin/qemu-arm"
    if not os.path.isfile(qemu):
        raise EmulatorError(
            f"counting needs Debian's dynamic {qemu} (qemu-user-static rejects -plugin): "
            "apt-get install --no-install-recommends qemu-user"
        )
    argv = [
        qemu, "-L", str(guest.rootfs), "-cpu", QEMU_CPU[guest.target][cpu],
        "-plugin", f"{plugin},out={out},fd={MARKER_FD}",
        str(guest.rootfs / guest.python.lstrip("/")), *script,
    ]  # fmt: skip
    if guest.target == "aarch64":
        # The guest's cpuinfo library reads /sys/devices/system/cpu, which -L does not cover:
        # the host's topology made it crash. A private mount namespace with one CPU in a tmpfs.
        setup = (
            "mount -t tmpfs none /sys/devices/system/cpu && "
            "echo 0 > /sys/devices/system/cpu/possible && "
            'echo 0 > /sys/devices/system/cpu/present && exec "$@"'
        )
        argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c", setup, "sh", *argv]
    return argv


@dataclass
class Counted:
    """One variant counted: instructions per frame per stage, with the mix."""

    host: str
    variant: str
    cpu: str
    qemu_cpu: str
    target: str
    size: tuple
    frames: int
    stages: Dict[str, Dict[str, int]]
    faces: list
    model: str
    sha256: Optional[str] = None

    def record(self) -> dict:
        """The JSON record (--json, bench.json): integers per stage, the mix per stage."""
        return {
            "host": self.host,
            "variant": self.variant,
            "cpu": self.cpu,
            "qemu_cpu": self.qemu_cpu,
            "target": self.target,
            "size": f"{self.size[0]}x{self.size[1]}",
            "frames": self.frames,
            "method": "instructions per frame, (count after N frames - after 1) / (N - 1), "
            "counted under qemu with insn_count.c; not a time",
            **{stage: self.stages[stage]["total"] for stage in marks.STAGES},
            "mix": {stage: {k: self.stages[stage][k] for k in marks.MIX} for stage in marks.STAGES},
            "faces": self.faces[-1] if self.faces else None,
            "model": self.model,
            "sha256": self.sha256,
        }


def count_one(
    guest: Guest,
    plugin: Path,
    model: Path,
    backend: str,
    image: Path,
    size: tuple,
    cpu: str,
    frames: int = 3,
    study: bool = False,
    timeout: float = RUN_TIMEOUT,
) -> tuple:
    """(per-frame stages, faces per frame) of one variant; an EmulatorError names what failed."""
    if cpu not in CPUS:
        raise EmulatorError(f"--cpu {cpu}: choose {' or '.join(CPUS)}")
    work = Path(tempfile.mkdtemp(prefix="retinaface-count."))  # 0700: ours alone
    try:
        out = work / "marks.txt"
        script = [
            str(GUEST), "--repo", str(REPO), "--site", str(guest.rootfs / guest.site.lstrip("/")),
            "--model", str(model),
            "--backend", backend, "--image", str(image), "--size", f"{size[0]}x{size[1]}",
            "--frames", str(frames), "--fd", str(MARKER_FD),
        ] + (["--study"] if study else [])  # fmt: skip
        argv = qemu_argv(guest, plugin, out, cpu, script)
        try:
            proc = subprocess.run(
                argv, env=guest_env(guest), capture_output=True, text=True, timeout=timeout
            )
        except subprocess.TimeoutExpired:
            raise EmulatorError(
                f"{guest.host}: counting {model.name} took over {timeout:.0f} s"
            ) from None
        if proc.returncode != 0:
            lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
            last = lines[-1][:300] if lines else f"exit code {proc.returncode}"
            raise EmulatorError(f"{guest.host}: counting {model.name} failed: {last}")
        try:
            faces = json.loads(proc.stdout.strip().splitlines()[-1])["faces"]
            _, found = marks.parse(out.read_text(errors="replace"))
            return marks.per_frame(found, frames), faces
        except (ValueError, KeyError, IndexError, OSError) as error:
            raise EmulatorError(f"{guest.host}: counting {model.name}: {error}") from None
    finally:
        shutil.rmtree(work, ignore_errors=True)
