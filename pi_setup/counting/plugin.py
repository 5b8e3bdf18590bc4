"""Build the insn_count TCG plugin at first use and cache it outside the checkout.

The plugin API header (include/qemu/qemu-plugin.h) ships in no Debian binary package: it comes
from Debian's `qemu` source package of the installed qemu-user version, fetched with
`apt-get source --download-only` through a private apt configuration (a deb-src entry with the
same Signed-By keyring as the system's deb entries), so the host's apt sources stay untouched and
apt checks the archive against the signed Sources index.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Callable, Optional

from deploy.paths import cache_dir
from pi_setup.errors import EmulatorError

SOURCE = Path(__file__).with_name("insn_count.c")
HEADER = "include/qemu/qemu-plugin.h"
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
MIRROR = "http://deb.debian.org/debian"
APT_TIMEOUT = 15 * 60
GCC_TIMEOUT = 120
# The dynamic qemu-user: qemu-user-static's binaries reject -plugin.
QEMU = {"arm": "/usr/bin/qemu-arm", "aarch64": "/usr/bin/qemu-aarch64"}

Progress = Callable[[str], None]


def counting_cache() -> Path:
    return cache_dir() / "counting"


def qemu_version() -> str:
    """The installed qemu-user package version (e.g. 1:7.2+dfsg-7+deb12u18+b3)."""
    out = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Status} ${Version}", "qemu-user"],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    words = out.stdout.split()
    if out.returncode != 0 or "installed" not in words or not words:
        raise EmulatorError(
            "counting needs Debian's dynamically linked qemu-user (qemu-user-static rejects "
            "-plugin): run `apt-get install --no-install-recommends qemu-user libglib2.0-dev gcc`"
        )
    return words[-1]


def source_version(binary_version: str) -> str:
    """The source version of a binary version: a binNMU suffix (+bN) is not in the source."""
    base, _, tail = binary_version.rpartition("+b")
    return base if base and tail.isdigit() else binary_version


def _apt_argv(conf_dir: Path) -> list:
    return [
        "apt-get", "-q",
        "-o", f"Dir::Etc::SourceList={conf_dir / 'sources.list'}",
        "-o", "Dir::Etc::SourceParts=/dev/null",
        "-o", f"Dir::State::Lists={conf_dir / 'lists'}",
        "-o", f"Dir::Cache={conf_dir / 'cache'}",
    ]  # fmt: skip


def _suite() -> str:
    with open("/etc/os-release") as handle:
        fields = dict(line.rstrip("\n").split("=", 1) for line in handle if "=" in line)
    codename = fields.get("VERSION_CODENAME", "").strip('"')
    if not codename.isalpha():
        raise EmulatorError("/etc/os-release names no Debian codename: cannot fetch qemu's source")
    return codename


def header_dir(progress: Progress = lambda _m: None) -> Path:
    """A folder holding qemu-plugin.h of the installed qemu-user's source version (cached)."""
    version = source_version(qemu_version())
    upstream = version.split(":")[-1].split("-")[0].split("+")[0]  # 1:7.2+dfsg-7 -> 7.2
    target = counting_cache() / f"qemu-{version.replace(':', '_')}" / "include"
    if (target / "qemu-plugin.h").is_file():
        return target
    progress(f"fetching qemu {version} source (apt-get source, for {HEADER})")
    work = Path(tempfile.mkdtemp(prefix="qemu-src.", dir=_ensure(counting_cache())))
    try:
        suite = _suite()
        (work / "lists" / "partial").mkdir(parents=True)
        (work / "sources.list").write_text(
            f"deb-src [signed-by={KEYRING}] {MIRROR} {suite} main\n"
            f"deb-src [signed-by={KEYRING}] {MIRROR}-security {suite}-security main\n"
            f"deb-src [signed-by={KEYRING}] {MIRROR} {suite}-updates main\n"
        )
        _run(_apt_argv(work) + ["update"], work, "apt-get update (deb-src)")
        _run(
            _apt_argv(work) + ["source", "--download-only", f"qemu={version}"],
            work, f"apt-get source --download-only qemu={version}",
        )  # fmt: skip
        (orig,) = list(work.glob("qemu_*.orig.tar.*")) or [None]
        if orig is None:
            raise EmulatorError(f"apt-get source qemu={version} left no .orig tarball in {work}")
        with tarfile.open(orig) as archive:
            member = next(
                (m for m in archive if m.isfile() and m.name.endswith("/" + HEADER)), None
            )
            if member is None:
                raise EmulatorError(f"{orig.name} has no {HEADER}")
            data = archive.extractfile(member).read()
        partial = work / "qemu-plugin.h"
        partial.write_bytes(data)
        target.mkdir(parents=True, exist_ok=True)
        os.replace(partial, target / "qemu-plugin.h")
        progress(f"qemu-plugin.h of qemu {upstream} cached in {target}")
        return target
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def _run(argv: list, cwd: Path, what: str, timeout: float = APT_TIMEOUT) -> None:
    try:
        out = subprocess.run(argv, cwd=str(cwd), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise EmulatorError(f"{what}: no answer within {timeout:.0f} s") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise EmulatorError(f"{what} failed: {last}")


def compile_plugin(source: Path, include: Path, target: Path) -> Path:
    """gcc SOURCE against INCLUDE/qemu-plugin.h and glib into TARGET (temp name, then rename)."""
    if not shutil.which("gcc"):
        raise EmulatorError("counting needs gcc to build its qemu plugin: apt-get install gcc")
    glib = subprocess.run(
        ["pkg-config", "--cflags", "glib-2.0"], capture_output=True, text=True, timeout=30
    )
    if glib.returncode != 0:
        raise EmulatorError(
            "counting needs glib's headers to build its qemu plugin: apt-get install libglib2.0-dev"
        )
    partial = target.with_name(f".{target.name}.{os.getpid()}.part")
    argv = ["gcc", "-O2", "-Wall", "-Wextra", "-Werror", "-Wno-unused-parameter", "-shared",
            "-fPIC", f"-I{include}", *glib.stdout.split(), str(source), "-o", str(partial)]  # fmt: skip
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=GCC_TIMEOUT)
        if out.returncode != 0:
            first = (out.stderr.strip().splitlines() or ["(no output)"])[0]
            raise EmulatorError(f"building the counting plugin failed: {first}")
        os.replace(partial, target)
    finally:
        partial.unlink(missing_ok=True)
    return target


def plugin_path(progress: Progress = lambda _m: None, source: Optional[Path] = None) -> Path:
    """The built plugin for this source and this qemu's header, building it at first use."""
    source = source or SOURCE
    include = header_dir(progress)
    digest = hashlib.sha256(
        source.read_bytes() + (include / "qemu-plugin.h").read_bytes()
    ).hexdigest()[:12]
    target = _ensure(counting_cache()) / f"insn_count-{digest}.so"
    if not target.is_file():
        progress(f"building the counting plugin {target.name}")
        compile_plugin(source, include, target)
    return target
