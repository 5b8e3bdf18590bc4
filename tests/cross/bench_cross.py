"""Benchmark: the same package compiled by the cross builder and on the emulated Pi, in one run.

    sudo python3 -m tests.cross.bench_cross [--package pi-probe]

Both sides time the same step, `pip wheel --no-deps --no-build-isolation <source>`, in the same
process: in the cross build root (x86 gcc for arm-linux-gnueabihf, crossenv) and chrooted in the
emulated bullseye root filesystem (the Pi's own gcc and Python, every instruction run by
qemu-arm). The emulated side first apt-installs gcc and python3-dev there (not timed). Prints
both times and the ratio cross / emulated. Needs root; uses the emulated root filesystem, so
run it while nothing else uses the emulator.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from pi_setup import cross, emulator
from pi_setup.rootfs import CHROOT_ENV, in_namespace
from tests.fixtures.pi_probe_repo import make_probe_repo

EMU_APT = ("gcc", "libc6-dev", "python3-dev", "python3-setuptools", "python3-wheel", "python3-pip")


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def _run(argv, env, timeout=7200) -> float:
    began = time.monotonic()
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - began
    if done.returncode != 0:
        raise SystemExit(
            f"failed: {' '.join(argv[-3:])}: {done.stdout[-1500:]}{done.stderr[-1500:]}"
        )
    return seconds


def _tree(repo: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    archive = subprocess.run(
        ["git", "-C", str(repo), "archive", "--format=tar", "v0.1.0"],
        capture_output=True,
        check=True,
    )
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True)


def bench(package: str) -> None:
    if package != "pi-probe":
        raise SystemExit("only pi-probe is built by both builders from the same local source")
    target = cross.TARGETS[cross.DEFAULT_TARGET]
    print(f"machine: {os.cpu_count()} cores, {_cpu()}; load {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        repo = make_probe_repo(Path(tmp) / "repo")

        # cross: build root ready (made or restored, not timed), then the timed pip wheel
        with cross.locked(target):
            cross.ensure_build_root(target, print)
            root = cross._dirs(target)["root"]
            cross._refresh_network_files(root)
            src = root / "work/bench-src"
            shutil.rmtree(src, ignore_errors=True)
            _tree(repo, src)
            out = "/work/bench-out"
            shutil.rmtree(root / out.lstrip("/"), ignore_errors=True)
            argv = [f"{cross.CROSSENV_DIR}/bin/cross-pip", "wheel", "--no-deps",
                    "--no-build-isolation", "--no-cache-dir", "-w", out, "/work/bench-src"]  # fmt: skip
            cross_s = _run(cross._chroot(root, argv), cross.chroot_env())
            print(
                f"cross:    {cross_s:7.1f} s  ({sorted(p.name for p in (root / out.lstrip('/')).iterdir())})",
                flush=True,
            )

        # emulated: the Pi's own toolchain inside the emulated root filesystem
        release = emulator.release_of("bullseye")
        with emulator.locked(release):
            emulator.ensure_rootfs(release, print)
            rootfs = emulator.status(release).rootfs
            print(f"emulated: apt-get install {' '.join(EMU_APT)} (not timed)", flush=True)
            install = (
                "apt-get update -q && apt-get install -y -q --no-install-recommends "
                + " ".join(EMU_APT)
            )
            _run(
                in_namespace(rootfs, release.host, ["/bin/sh", "-c", install]),
                CHROOT_ENV,
            )
            scratch = Path(tempfile.mkdtemp(prefix="bench-", dir=str(rootfs / "tmp")))
            try:
                _tree(repo, scratch / "src")
                inside = "/tmp/" + scratch.name
                argv = ["python3", "-m", "pip", "wheel", "--no-deps", "--no-build-isolation",
                        "--no-cache-dir", "-w", f"{inside}/out", f"{inside}/src"]  # fmt: skip
                emu_s = _run(
                    in_namespace(rootfs, release.host, argv), CHROOT_ENV
                )
                print(
                    f"emulated: {emu_s:7.1f} s  ({sorted(p.name for p in (scratch / 'out').iterdir())})",
                    flush=True,
                )
            finally:
                shutil.rmtree(scratch, ignore_errors=True)
    print(f"ratio cross / emulated: {cross_s / emu_s:.3f} (goal <= 0.2)")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--package", default="pi-probe", help="package built both ways")
    args = parser.parse_args(argv)
    bench(args.package)


if __name__ == "__main__":
    sys.exit(main())
