"""The gate every built armv7l wheel passes before it enters the wheels folder.

Checks, in order (the first failure stops it; the message names the wheel, the check and the
file inside the wheel):
  arch      every ELF member is ARM 32-bit, EABI5, hard-float
  symbols   no GLIBC/GLIBCXX/CXXABI symbol version newer than the target release has
  needed    every NEEDED library exists in the target's root filesystem (the emulated Pi's) or
            in the wheel itself
  install   pip on the emulated Pi of that release installs it (tags and metadata accepted)
  selfcheck on the emulated Pi, a small computation with a known answer (when one is defined)
The emulated root filesystem is used through a chroot under the emulator's own lock; the wheel
is installed into a throw-away folder there, never into the system.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

from pi_setup import elf_check
from pi_setup.errors import EmulatorError, WheelError
from pi_setup.rootfs import CHROOT_ENV, in_namespace

Progress = Callable[[str], None]
SELF_CHECK_TIMEOUT = 900  # pip + import under qemu-user on a loaded machine


@dataclass(frozen=True)
class SelfCheck:
    """Python run on the emulated Pi after install; its last output line must equal `expect`."""

    code: str
    expect: str


# What a wheel of each package must compute on the target (the package's own version is
# substituted for {version}, so a wheel that imports an older copy from the system fails).
SELF_CHECKS: Dict[str, SelfCheck] = {
    "numpy": SelfCheck(
        code=(
            "import numpy as np; a = np.arange(1, 7, dtype=np.float64).reshape(2, 3); "
            "print(np.__version__, int((a @ a.T).sum()), float(np.linalg.det(np.array("
            "[[2.0, 1.0], [1.0, 3.0]]))).__round__(6), np.sin(np.pi / 2))"
        ),
        expect="{version} 155 5.0 1.0",
    ),
    "pi-probe": SelfCheck(
        code="import pi_probe; print(pi_probe.add(2, 40), pi_probe.bits())", expect="42 32"
    ),
}

# The Debian releases the emulated Pi knows; a wheel for another release cannot be gated here.
ABIS = {
    "bullseye": elf_check.BULLSEYE_ABI,
    # Debian trixie: glibc 2.41, gcc 14's libstdc++.
    "trixie": elf_check.TargetAbi(
        "trixie", (("GLIBC", (2, 41)), ("GLIBCXX", (3, 4, 33)), ("CXXABI", (1, 3, 15)))
    ),
}


def abi_for(release: str) -> elf_check.TargetAbi:
    try:
        return ABIS[release]
    except KeyError:
        raise WheelError(
            f"no wheel gate for Debian {release!r} (known: {', '.join(sorted(ABIS))})"
        ) from None


def elf_problems(
    wheel: Path, abi: elf_check.TargetAbi, libraries=None, where: str = ""
) -> Optional[Tuple[str, str]]:
    """(check name, problem) for the first ELF check WHEEL fails, or None. Without LIBRARIES
    (the target's library names) the `needed` check is left out."""
    elves = elf_check.wheel_elves(wheel)
    checks = [
        ("arch", lambda: elf_check.check_arch(elves)),
        ("symbols", lambda: elf_check.check_symbol_versions(elves, abi)),
    ]
    if libraries is not None:
        checks.append(("needed", lambda: elf_check.check_needed(elves, libraries, where)))
    for check, run in checks:
        problems = run()
        if problems:
            more = f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""
            return check, problems[0] + more
    return None


@dataclass(frozen=True)
class GateResult:
    """What the gate checked for one wheel (recorded in the manifest)."""

    release: str
    elf_files: int
    self_check: str  # the output line that matched, or "install only"

    def record(self) -> Dict[str, object]:
        return {
            "target": self.release,
            "checks": ["arch", "symbols", "needed", "install", "selfcheck"],
            "elf_files": self.elf_files,
            "self_check": self.self_check,
        }


def _fail(wheel: Path, check: str, problem: str) -> WheelError:
    return WheelError(f"gate: {wheel.name}: {check} check failed: {problem}")


def gate_wheel(
    wheel: Path, package: str, version: str, release: str, progress: Progress = lambda _m: None
) -> GateResult:
    """Run every check on WHEEL for Debian RELEASE's emulated Pi; raise WheelError on the first
    failure (one line: wheel, check, what)."""
    from pi_setup import emulator

    abi = abi_for(release)
    found = elf_problems(wheel, abi)  # no emulator needed for these: fail fast
    if found:
        raise _fail(wheel, *found)
    emu = emulator.release_of(release)
    emulator.check_root()
    with emulator.locked(emu):
        emulator.ensure_rootfs(emu, progress)
        rootfs = emulator.status(emu).rootfs
        libraries = elf_check.target_libraries(rootfs)
        found = elf_problems(wheel, abi, libraries, f"the emulated {release} root filesystem")
        if found:
            raise _fail(wheel, *found)
        elves = len(elf_check.wheel_elves(wheel))
        progress(f"gate: {wheel.name}: {elves} ELF files are armhf, {abi.name}-compatible")
        line = _install_and_check(wheel, package, version, emu, rootfs)
    progress(f"gate: {wheel.name}: installed on the emulated {release} Pi; self-check: {line}")
    return GateResult(release, elves, line)


def _install_and_check(wheel: Path, package: str, version: str, emu, rootfs: Path) -> str:
    """pip-install WHEEL into a scratch folder of the emulated root filesystem, run the package's
    self-check there, remove the folder; the self-check's output line."""
    check = SELF_CHECKS.get(package)
    scratch = Path(tempfile.mkdtemp(prefix="retinaface-pi-gate-", dir=str(rootfs / "tmp")))
    inside = "/tmp/" + scratch.name
    try:
        shutil.copy2(wheel, scratch / wheel.name)
        _in_emulator(
            wheel, "install", emu, rootfs,
            ["python3", "-m", "pip", "install", "-q", "--no-deps", "--no-index",
             "--disable-pip-version-check", "--target", f"{inside}/site",
             f"{inside}/{wheel.name}"],
        )  # fmt: skip
        if check is None:
            return "install only"
        for folder, _, files in os.walk(scratch):  # readable by the unprivileged self-check
            os.chmod(folder, 0o755)
            for name in files:
                os.chmod(os.path.join(folder, name), 0o644)
        script = f"cd / && PYTHONPATH={inside}/site exec python3 -s -c {shlex.quote(check.code)}"
        out = _in_emulator(
            wheel, "selfcheck", emu, rootfs, ["/bin/sh", "-c", script], unprivileged=True
        )
        lines = out.strip().splitlines()
        last = _printable(lines[-1] if lines else "")
        expect = check.expect.format(version=version)
        if last != expect:
            raise _fail(wheel, "selfcheck", f"printed {last!r}, expected {expect!r}")
        return last
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


# The self-check imports code a builder made: never as root, and without the host's /dev and
# /sys. In its own mount namespace: /proc, a /dev of five harmless nodes, then chroot as
# nobody (65534), no supplementary groups.
UNPRIVILEGED_SCRIPT = r"""set -euo pipefail
root=$1; shift
mount -t proc proc "$root/proc"
mount -t tmpfs -o mode=0755,nosuid,noexec dev "$root/dev"
for node in null:1:3 zero:1:5 full:1:7 random:1:8 urandom:1:9; do
    IFS=: read -r name major minor <<< "$node"
    mknod -m 0666 "$root/dev/$name" c "$major" "$minor"
done
exec chroot --userspec=65534:65534 --groups=65534 "$root" "$@"
"""
NOBODY = 65534


def _in_emulator(
    wheel: Path, check: str, emu, rootfs: Path, argv: List[str], unprivileged: bool = False
) -> str:
    """Run ARGV chrooted in the emulated root filesystem; its stdout, or the check's failure.
    `unprivileged`: as nobody, with a minimal /dev and no /sys (for code the builder made)."""
    command = in_namespace(rootfs, emu.host, argv)
    if unprivileged:
        command = ["unshare", "--mount", "--propagation", "private", "bash", "-c",
                   UNPRIVILEGED_SCRIPT, "gate-ns", str(rootfs), *argv]  # fmt: skip
    try:
        done = subprocess.run(
            command, env={**CHROOT_ENV, **({"HOME": "/"} if unprivileged else {})},
            capture_output=True, text=True, timeout=SELF_CHECK_TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired:
        raise _fail(wheel, check, f"no answer in {SELF_CHECK_TIMEOUT} s") from None
    except OSError as error:
        raise EmulatorError(f"cannot enter {rootfs}: {error}") from None
    if done.returncode != 0:
        err = _printable((done.stderr.strip().splitlines() or ["no output"])[-1])
        raise _fail(wheel, check, f"exit {done.returncode}: {err}")
    return done.stdout


def _printable(text: str, limit: int = 200) -> str:
    """TEXT from the emulated Pi as one safe line (no control characters, capped)."""
    clean = "".join(ch if ch.isprintable() else "?" for ch in text)
    return clean[:limit]


def admit(
    wheel: Path,
    dest: Path,
    package: str,
    version: str,
    release: str,
    progress: Progress = lambda _m: None,
) -> Tuple[Path, GateResult]:
    """Gate WHEEL (anywhere outside DEST), then move it into DEST under its own name.

    Nothing enters DEST when a check fails.
    """
    result = gate_wheel(wheel, package, version, release, progress)
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / wheel.name
    tmp = dest / f".{wheel.name}.gated"
    shutil.copy2(wheel, tmp)
    tmp.replace(target)
    return target, result


def gate_problems_offline(wheel: Path, release: str, rootfs: Path) -> List[str]:
    """The ELF checks alone against a root filesystem (no emulator start, no lock): for tests
    and for checking a wheel by hand."""
    found = elf_problems(wheel, abi_for(release), elf_check.target_libraries(rootfs), str(rootfs))
    return [] if found is None else [f"{found[0]}: {found[1]}"]
