"""Cross-build armv7l wheels on this x86 machine: `invoke build-wheels --builder cross`.

A Debian build root (debootstrap amd64 + multiarch armhf) holds Debian's arm-linux-gnueabihf
gcc, the target Python's headers and sysconfig data, and a crossenv whose `cross-pip` builds
armv7l wheels at native compiler speed. It is built once, cached as a tarball (like the emulated
Pi's root filesystem) and restored after. Each wheel then passes the gate (pi_setup.wheel_gate)
before it is moved into the wheels folder and recorded in manifest.json.

The build root does not depend on the emulated Pi; the gate does (NEEDED libraries and the
self-check run against the emulated root filesystem of the target's release).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

from deploy.hosts.scripts import environment
from deploy.paths import cache_dir
from pi_setup import build_wheels as bw
from pi_setup import wheel_gate
from pi_setup.errors import EmulatorError, WheelError
from pi_setup.rootfs import (
    CHROOT_ENV,
    checked_tree,
    compressor,
    extract_tarball,
    in_namespace,
    mirror_url,
    private_subdir,
    rmtree,
    run_logged,
    save_tarball,
    secure_dir,
    write_file,
)
from pi_setup.rootfs import check_disk as check_free_disk
from pi_setup.rootfs import locked as lock_file
from retinaface.files import sha256_file

Progress = Callable[[str], None]

# Bump when the way a build root is made changes, so old caches are not reused.
FORMAT_VERSION = 1
CROSSENV_VERSION = "1.6.2"
# numpy 1.24.4's own build pins (its pyproject.toml), on both sides of the crossenv:
# --no-build-isolation builds with what is installed here.
BUILD_TOOLS = ("Cython==0.29.37", "setuptools==59.2.0", "wheel==0.37.0")
# crossenv and its one dependency (wheel, unpinned in its metadata), for the tool's own venv.
CROSSENV_TOOL = (f"crossenv=={CROSSENV_VERSION}", "wheel==0.37.0")
# sha256 of every file PyPI serves for these pins that pip may pick here (`pip download` for
# cp39 x86_64 and for linux_armv7l, then `pip hash`): the root's pip installs --require-hashes.
TOOL_SHA256 = {
    "crossenv==1.6.2": ("cf233e4e8ac9b34603f46903d4f8d41dfd9455a43bc813af4db7cd181c80de1d",),
    "wheel==0.37.0": ("21014b2bd93c6d0034b6ba5d35e4eb284340e09d63c59aef6fc14b0f346146fd",),
    "setuptools==59.2.0": ("4adde3d1e1c89bde1c643c64d89cdd94cbfd8c75252ee459d4500bccb9c7d05d",),
    "Cython==0.29.37": (
        "e841a8b4f9ceefb2916e32dac4f28a895cd519e8ece71505144da1ee355c548a",  # cp39 x86_64
        "95f1d6a83ef2729e67b3fa7318c829ce5b07ac64c084cd6af11c228e0364662c",  # py2.py3-none-any
    ),
}


def hashed(requirements: Sequence[str]) -> Tuple[str, ...]:
    """Requirement lines with their --hash options (a requirements file for --require-hashes)."""
    return tuple(
        " ".join([pin, *(f"--hash=sha256:{digest}" for digest in TOOL_SHA256[pin])])
        for pin in requirements
    )
CROSSENV_DIR = "/opt/cross"
TARGET_PREFIX = "/opt/target"
WORK_IN_ROOT = "/work"
ROOT_STAMP = ".retinaface-pi-cross"
HOST_CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")
HOST_CA_IN_ROOT = "/etc/retinaface-pi-host-ca.crt"

DEBOOTSTRAP_TIMEOUT = 30 * 60
SETUP_TIMEOUT = 45 * 60
BUILD_TIMEOUT = 3 * 3600
BUILD_BYTES = 3 * 1024**3


@dataclass(frozen=True)
class CrossTarget:
    """A Pi userland wheels are built for: Debian release, Python, GNU triplet."""

    name: str
    release: str
    python: str
    triplet: str

    @property
    def python_tag(self) -> str:
        return "cp" + self.python.replace(".", "")

    @property
    def wheel_suffix(self) -> str:
        return f"-{self.python_tag}-{self.python_tag}-linux_armv7l.whl"


TARGETS = {"bullseye-cp39": CrossTarget("bullseye-cp39", "bullseye", "3.9", "arm-linux-gnueabihf")}
DEFAULT_TARGET = "bullseye-cp39"

# Packages of the build root (amd64, plus the armhf headers of the target's Python).
ROOT_APT = (
    "ca-certificates",
    "crossbuild-essential-armhf",
    "python3-dev",
    "python3-venv",
    "python3-pip",
    "libpython3.9-dev:armhf",
)
# Unpacked (not installed) into TARGET_PREFIX: a Python prefix crossenv reads, never runs.
TARGET_DEBS = (
    "python3.9-minimal:armhf",
    "libpython3.9-minimal:armhf",
    "libpython3.9-stdlib:armhf",
    "libpython3.9-dev:armhf",
)


@dataclass(frozen=True)
class CrossPackage:
    """One package the cross builder knows: where its source comes from and how to build it."""

    name: str
    version: str
    env: Tuple[Tuple[str, str], ...] = ()
    # PyPI sdist digests by version: the build refuses any other file (pip --require-hashes).
    sdist_sha256: Tuple[Tuple[str, str], ...] = ()
    local: bool = False  # built from a local git repository (--source), not from PyPI
    spec: str = ""  # what cross-pip builds (set when planned)
    requirements: str = ""  # path of a hash-pinned requirements file in the root (PyPI)
    source: Dict[str, Optional[str]] = field(default_factory=dict, hash=False, compare=False)

    def sdist_digest(self) -> Optional[str]:
        return dict(self.sdist_sha256).get(self.version)


# Why 1.24.4: onnxruntime's armv7l builds need numpy >= 1.20, < 2 (C-API 0xe); 1.24.x is the
# last numpy series that supports Python 3.9 (1.25 needs 3.9 too but 1.24.4 is the newest whose
# own build still uses numpy.distutils + setup.py, which crossenv drives; see README).
NUMPY = CrossPackage(
    name="numpy",
    version="1.24.4",
    # No BLAS/LAPACK: none in the build root; numpy falls back to its bundled lapack-lite.
    env=(("NPY_BLAS_ORDER", ""), ("NPY_LAPACK_ORDER", "")),
    sdist_sha256=(("1.24.4", "80f5e3a4e498641401868df4208b74581206afbee7cf7b8329daae82676d9463"),),
)
PI_PROBE = CrossPackage(name="pi-probe", version="0.1.0", local=True)
CROSS_PACKAGES = {p.name: p for p in (NUMPY, PI_PROBE)}
NATIVE_ONLY = {
    "torch": "its build runs host tools (protoc, code generators) that need a two-stage cross "
    "setup; build it on a Pi or pi4-emu",
    "torchvision": "it builds against torch, which is built natively; use a Pi or pi4-emu",
}
_VERSION = re.compile(r"^[0-9][0-9A-Za-z.+-]*$")


def target_of(name: str) -> CrossTarget:
    try:
        return TARGETS[name]
    except KeyError:
        raise WheelError(f"--target {name!r}: unknown (known: {', '.join(TARGETS)})") from None


def parse_packages(text: str) -> List[Tuple[str, Optional[str]]]:
    """`numpy==1.24.4,pi-probe` → [("numpy", "1.24.4"), ("pi-probe", None)]."""
    wanted = []
    for item in (part.strip() for part in (text or "").split(",")):
        if not item:
            continue
        name, sep, version = item.partition("==")
        name = name.strip()
        if name in NATIVE_ONLY:
            raise WheelError(f"--packages {name}: not cross-built: {NATIVE_ONLY[name]}")
        if name not in CROSS_PACKAGES:
            raise WheelError(
                f"--packages {name!r}: the cross builder knows {', '.join(CROSS_PACKAGES)}"
            )
        if sep and not _VERSION.match(version.strip()):
            raise WheelError(f"--packages {item!r}: bad version {version!r}")
        wanted.append((name, version.strip() if sep else None))
    if not wanted:
        raise WheelError("--packages: name at least one package (e.g. numpy)")
    return wanted


@dataclass(frozen=True)
class CrossPlan:
    target: CrossTarget
    packages: Tuple[CrossPackage, ...]
    jobs: int = 2


def make_plan(
    packages: str, target: str = DEFAULT_TARGET, source: Optional[str] = None, jobs: int = 2
) -> CrossPlan:
    """Resolve `--packages` (with optional ==V) and `--source` into a plan."""
    chosen = target_of(target)
    if not 1 <= int(jobs) <= 64:
        raise WheelError(f"--jobs {jobs}: expected 1..64")
    planned = []
    for name, version in parse_packages(packages):
        base = CROSS_PACKAGES[name]
        version = version or base.version
        if base.local:
            if not source:
                raise WheelError(f"{name}: built from a local git repository: give --source DIR")
            repo = Path(source).expanduser().resolve()
            if not (repo / ".git").exists():
                raise WheelError(f"--source {source}: not a git repository")
            spec = f"{WORK_IN_ROOT}/src/{name}"
            origin = {"repo": f"workstation:{repo}", "ref": f"v{version}", "commit": None}
            planned.append(_with(base, version, spec, "", origin))
        else:
            digest = base.sdist_digest() if version == base.version else None
            requirements = f"{WORK_IN_ROOT}/req-{name}.txt" if digest else ""
            origin = {"index": "https://pypi.org/simple", "sdist_sha256": digest}
            planned.append(_with(base, version, f"{name}=={version}", requirements, origin))
    return CrossPlan(chosen, tuple(planned), int(jobs))


def _with(base: CrossPackage, version, spec, requirements, origin) -> CrossPackage:
    from dataclasses import replace

    return replace(base, version=version, spec=spec, requirements=requirements, source=origin)


def render_build_script(plan: CrossPlan) -> str:
    """The script run in the build root (templates/cross_build.sh.j2)."""
    return (
        environment()
        .get_template("cross_build.sh.j2")
        .render(
            packages=plan.packages,
            target=plan.target.name,
            triplet=plan.target.triplet,
            crossenv_version=CROSSENV_VERSION,
            crossenv_dir=CROSSENV_DIR,
            out_dir=f"{WORK_IN_ROOT}/out",
            jobs=plan.jobs,
        )
    )


def render_root_script(target: CrossTarget) -> str:
    """The script that turns a fresh debootstrap into the build root (templates/cross_root.sh.j2)."""
    return (
        environment()
        .get_template("cross_root.sh.j2")
        .render(
            release=target.release,
            target=target.name,
            triplet=target.triplet,
            python=target.python,
            apt_packages=ROOT_APT,
            target_debs=TARGET_DEBS,
            target_prefix=TARGET_PREFIX,
            crossenv_dir=CROSSENV_DIR,
            crossenv_version=CROSSENV_VERSION,
            tool_side=hashed(CROSSENV_TOOL),
            build_side=hashed(BUILD_TOOLS),
            cross_side=hashed(BUILD_TOOLS),
        )
    )


# ---------------------------------------------------------------- the build root


def cross_root() -> Path:
    """Where build roots live: $RETINAFACE_PI_CROSS_ROOT or /var/tmp/retinaface-pi/cross."""
    override = os.environ.get("RETINAFACE_PI_CROSS_ROOT")
    return Path(override) if override else Path("/var/tmp/retinaface-pi/cross")


STATE_WHAT = "the cross-build state, RETINAFACE_PI_CROSS_ROOT"


def _state(target: CrossTarget) -> Dict[str, Path]:
    """The target's folders, after the emulator's checks (pi_setup.rootfs): the state root and
    every folder on the way real directories of root or us, not writable by other users; the
    target's folder ours and 0700. Another local user cannot plant a lock or a build root."""
    try:
        private_subdir(secure_dir(cross_root(), STATE_WHAT), target.name, STATE_WHAT)
    except EmulatorError as error:
        raise WheelError(str(error)) from None
    return _dirs(target)


def _dirs(target: CrossTarget) -> Dict[str, Path]:
    base = cross_root() / target.name
    return {
        "base": base,
        "root": base / "root",
        "build": base / "build",
        "log": base / "build.log",
        "lock": base / ".lock",
    }


def cache_key(target: CrossTarget) -> str:
    """Short digest of what goes into a build root."""
    blob = json.dumps(
        {
            "format": FORMAT_VERSION,
            "target": target.name,
            "release": target.release,
            "apt": sorted(ROOT_APT),
            "debs": sorted(TARGET_DEBS),
            "crossenv": CROSSENV_VERSION,
            "tools": sorted(hashed(BUILD_TOOLS) + hashed(CROSSENV_TOOL)),
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def tarball_path(target: CrossTarget) -> Path:
    """The cached build root: cache_dir()/cross/<target>-<key>.tar.zst (or .tar.gz)."""
    suffix = compressor()[0]
    return cache_dir() / "cross" / f"{target.name}-{cache_key(target)}{suffix}"


def root_ready(target: CrossTarget) -> bool:
    """True when the target's build root is one we made for today's cache key. The stamp alone
    proves nothing (its content is public): the root must also pass rootfs.checked_tree, a real
    directory of ours in the checked state folder."""
    dirs = _state(target)
    try:
        if checked_tree(dirs["root"], dirs["base"], "the cross build root") is None:
            return False
    except EmulatorError as error:
        raise WheelError(str(error)) from None
    try:
        stamp = (dirs["root"] / ROOT_STAMP).read_text().strip()
    except OSError:
        return False
    return stamp == cache_key(target)


@contextlib.contextmanager
def locked(target: CrossTarget) -> Iterator[None]:
    """One build (or build-root creation) per target at a time: rootfs.locked (never through a
    symlink, never truncating, ours) in the checked state folder."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(lock_file(_state(target)["lock"]))
        except EmulatorError as error:
            raise WheelError(str(error)) from None
        yield


def _check_root_user() -> None:
    if os.geteuid() != 0:
        raise WheelError(
            "the cross builder needs root (debootstrap, chroot, mount namespaces): "
            "run the task as root, e.g. `sudo invoke build-wheels --builder cross`"
        )


def _refresh_network_files(root: Path) -> None:
    """Today's resolver and this machine's CA bundle (pip inside uses it: PIP_CERT), so pip
    reaches PyPI also behind a TLS proxy. A file of its own: apt's ca-certificates rewrites
    the root's ca-certificates.crt."""
    for source, inside in (
        (Path("/etc/resolv.conf"), root / "etc/resolv.conf"),
        (HOST_CA_BUNDLE, root / HOST_CA_IN_ROOT.lstrip("/")),
    ):
        if source.exists():
            inside.unlink(missing_ok=True)
            inside.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, inside)


def _chroot(root: Path, argv: List[str]) -> List[str]:
    return in_namespace(root, "cross-build", argv)


def chroot_env() -> Dict[str, str]:
    """A clean environment for the build root: nothing of the caller's (PIP_*, CC, …) leaks in."""
    return {**CHROOT_ENV, "PIP_CERT": HOST_CA_IN_ROOT}


def ensure_build_root(target: CrossTarget, progress: Progress = lambda _m: None) -> str:
    """Make the target's build root ready: 'present', 'restored' from the cache, or 'built'."""
    _check_root_user()
    dirs = _dirs(target)
    if root_ready(target):
        return "present"
    tarball = tarball_path(target)
    try:
        if tarball.exists():
            _check_disk(BUILD_BYTES // 2)
            progress(f"restoring the {target.name} build root from {tarball}")
            _restore(target, tarball)
            return "restored"
        _check_disk(BUILD_BYTES)
        if not shutil.which("debootstrap"):
            raise WheelError(
                f"no cached build root ({tarball}) and no debootstrap to make one: "
                "run `apt-get install debootstrap` as root"
            )
        progress(f"making the {target.name} build root (a few minutes; log {dirs['log']})")
        _build_root(target, progress)
        return "built"
    except EmulatorError as error:  # the shared helpers speak the emulator's error
        raise WheelError(str(error)) from None


def _check_disk(need: int) -> None:
    check_free_disk(
        cross_root(), need, "the cross build root",
        "free some space or point RETINAFACE_PI_CROSS_ROOT / RETINAFACE_PI_CACHE at a larger disk",
    )  # fmt: skip


def prepare(name: str = DEFAULT_TARGET, progress: Progress = lambda _m: None) -> str:
    """Make the target's build root ready (see ensure_build_root) under its lock."""
    target = target_of(name)
    with locked(target):
        return ensure_build_root(target, progress)


def _restore(target: CrossTarget, tarball: Path) -> None:
    dirs = _dirs(target)
    tmp = dirs["base"] / "root.restoring"
    extract_tarball(tarball, tmp, dirs["log"], "restore")
    rmtree(dirs["root"])
    os.replace(tmp, dirs["root"])


def _build_root(target: CrossTarget, progress: Progress) -> None:
    dirs = _dirs(target)
    log, work = dirs["log"], dirs["build"]
    dirs["base"].mkdir(parents=True, exist_ok=True)
    log.write_text("")
    mirror = mirror_url()
    started = time.monotonic()

    def stage(message: str) -> None:
        progress(f"[{time.monotonic() - started:5.0f} s] {message}")

    # A finished debootstrap is kept: a failed setup step (network, proxy) resumes after it.
    bootstrapped = work / ".debootstrap-done"
    if bootstrapped.is_file() and bootstrapped.read_text().strip() == target.release:
        stage(f"keeping the debootstrapped {target.release} tree in {work}")
    else:
        rmtree(work)
        stage(f"debootstrap {target.release} amd64 (minbase) from {mirror}")
        run_logged(
            ["debootstrap", "--arch=amd64", "--variant=minbase", target.release, str(work), mirror],
            log, DEBOOTSTRAP_TIMEOUT, f"debootstrap of the {target.name} build root",
        )  # fmt: skip
        bootstrapped.write_text(target.release + "\n")
    # No services start in the root; apt installs no recommends.
    write_file(work / "usr/sbin/policy-rc.d", "#!/bin/sh\nexit 101\n", 0o755)
    write_file(
        work / "etc/apt/apt.conf.d/90retinaface-pi",
        'APT::Install-Recommends "false";\nAcquire::Languages "none";\n',
    )
    _refresh_network_files(work)
    write_file(work / "tmp/cross-root.sh", render_root_script(target), 0o755)
    stage("apt: crossbuild-essential-armhf, python3.9 headers; crossenv " + CROSSENV_VERSION)
    run_logged(
        _chroot(work, ["/bin/bash", "/tmp/cross-root.sh"]),
        log, SETUP_TIMEOUT, f"setting up the {target.name} build root", env=chroot_env(),
    )  # fmt: skip
    for leftover in ("tmp/cross-root.sh", "usr/sbin/policy-rc.d", HOST_CA_IN_ROOT.lstrip("/"),
                     bootstrapped.name):  # fmt: skip
        (work / leftover).unlink(missing_ok=True)
    (work / ROOT_STAMP).write_text(cache_key(target) + "\n")

    tarball = tarball_path(target)
    stage(f"caching the build root as {tarball}")
    save_tarball(work, tarball, log)
    for old in tarball.parent.glob(f"{target.name}-*.tar.*"):
        if old != tarball and not old.name.endswith(".part"):
            old.unlink()
    rmtree(dirs["root"])
    os.replace(work, dirs["root"])
    stage(f"{target.name} build root ready")


def toolchain(target: CrossTarget) -> str:
    """`arm-linux-gnueabihf-gcc (Debian 10.2.1-6) 10.2.1 20210110`, read from the build root."""
    root = _dirs(target)["root"]
    done = subprocess.run(
        _chroot(root, [f"/usr/bin/{target.triplet}-gcc", "--version"]),
        env=chroot_env(), capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    first = (done.stdout.splitlines() or ["unknown"])[0]
    return "".join(ch for ch in first if ch.isprintable())[:120]


# ---------------------------------------------------------------- building


@dataclass(frozen=True)
class CrossWheel:
    """A cross-built wheel that passed the gate and is in the wheels folder."""

    path: Path
    sha256: str
    size: int
    package: str
    version: str
    seconds: Optional[int]


def _stage_sources(plan: CrossPlan, root: Path, source: Optional[str]) -> CrossPlan:
    """Put what each package builds from into the root: a hash-pinned requirements file for
    PyPI sources, `git archive` of the tag for local ones (its commit recorded)."""
    from dataclasses import replace

    work = root / WORK_IN_ROOT.lstrip("/")
    rmtree(work)
    (work / "src").mkdir(parents=True)
    staged = []
    for package in plan.packages:
        if package.requirements:
            line = f"{package.spec} --hash=sha256:{package.sdist_digest()}\n"
            (root / package.requirements.lstrip("/")).write_text(line)
        if package.local:
            repo = Path(source or "").expanduser().resolve()
            ref = f"v{package.version}"
            commit = _git(repo, "rev-parse", "--verify", f"{ref}^{{commit}}").strip()
            dest = root / package.spec.lstrip("/")
            dest.mkdir(parents=True)
            archive = subprocess.run(
                ["git", "-C", str(repo), "archive", "--format=tar", commit],
                capture_output=True, timeout=120,
            )  # fmt: skip
            if archive.returncode != 0:
                raise WheelError(f"--source {repo}: git archive {ref} failed")
            subprocess.run(
                ["tar", "-x", "-C", str(dest)], input=archive.stdout, check=True, timeout=120
            )
            package = replace(package, source={**package.source, "commit": commit})
        staged.append(package)
    return replace(plan, packages=tuple(staged))


def _git(repo: Path, *args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, timeout=60
    )
    if done.returncode != 0:
        raise WheelError(f"--source {repo}: git {' '.join(args)}: {done.stderr.strip()[:200]}")
    return done.stdout


def _run_build(plan: CrossPlan, root: Path, log: Path, progress: Progress) -> Dict[str, int]:
    """Run the build script chrooted; stream 'stage'/'built' lines to PROGRESS, all to LOG.
    Returns compile seconds per package."""
    script = root / "work/build.sh"
    script.write_text(render_build_script(plan))
    seconds: Dict[str, int] = {}
    with open(log, "a") as out:
        out.write(f"\n===== cross build {time.strftime('%F %T')} =====\n")
        out.flush()
        proc = subprocess.Popen(
            _chroot(root, ["/bin/bash", f"{WORK_IN_ROOT}/build.sh"]),
            env=chroot_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, text=True, errors="replace",
        )  # fmt: skip
        deadline = time.monotonic() + BUILD_TIMEOUT
        assert proc.stdout is not None
        for line in proc.stdout:
            out.write(line)
            words = line.split()
            if words[:1] == ["stage"] and len(words) == 2:
                progress(f"{words[1]}")
            elif words[:1] == ["built"] and len(words) == 3 and words[2].startswith("seconds="):
                seconds[words[1]] = int(words[2].split("=", 1)[1])
                progress(f"{words[1]}: compiled in {seconds[words[1]]} s")
            if time.monotonic() > deadline:
                proc.kill()
        proc.wait()
    if proc.returncode != 0:
        raise WheelError(
            f"cross build failed (exit {proc.returncode}); log: {log}: {_last_error(log)}"
        )
    return seconds


def _last_error(log: Path) -> str:
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    text = (errors or lines or ["no output"])[-1]
    return "".join(ch for ch in text if ch.isprintable())[:200]


@dataclass(frozen=True)
class Compiled:
    """Wheels compiled in the build root, moved out to `holding`, not yet through the gate."""

    plan: CrossPlan
    wheels: Tuple[Tuple[CrossPackage, Path], ...]
    seconds: Dict[str, int]
    toolchain: str
    log: Path
    holding: Path


def compile_wheels(
    packages: str,
    *,
    target: str = DEFAULT_TARGET,
    source: Optional[str] = None,
    jobs: int = 2,
    progress: Progress = lambda _m: None,
) -> Compiled:
    """Compile the packages for TARGET in the cached build root (made or restored first) and
    move the wheels to a holding folder beside it. Nothing is gated yet."""
    plan = make_plan(packages, target, source, jobs)
    _check_root_user()
    chosen = plan.target
    dirs = _dirs(chosen)
    started = time.monotonic()
    with locked(chosen):
        how = ensure_build_root(chosen, progress)
        progress(f"build root {dirs['root']}: {how} ({time.monotonic() - started:.0f} s)")
        root = dirs["root"]
        _refresh_network_files(root)
        plan = _stage_sources(plan, root, source)
        gcc = toolchain(chosen)
        seconds = _run_build(plan, root, dirs["log"], progress)
        built = _collect(plan, root)
        # Out of the root: the next build may start as soon as the lock goes.
        holding = Path(tempfile.mkdtemp(prefix=".cross-", dir=str(dirs["base"])))
        moved = []
        for package, wheel in built:
            moved.append((package, Path(shutil.move(str(wheel), holding / wheel.name))))
    return Compiled(plan, tuple(moved), seconds, gcc, dirs["log"], holding)


def admit_compiled(
    compiled: Compiled, dest: Path, progress: Progress = lambda _m: None
) -> List[CrossWheel]:
    """Gate each compiled wheel; move those that pass into DEST and record them in
    DEST/manifest.json. The first failure stops (its wheel and the rest stay out)."""
    target = compiled.plan.target
    results = []
    try:
        for package, wheel in compiled.wheels:
            admitted, gate = wheel_gate.admit(
                wheel, Path(dest), package.name, package.version, target.release, progress
            )
            digest = sha256_file(admitted)
            size = admitted.stat().st_size
            entry = _manifest_entry(package, target, admitted.name, digest, size, compiled, gate)
            bw.update_manifest(Path(dest) / bw.MANIFEST_NAME, {admitted.name: entry})
            results.append(
                CrossWheel(admitted, digest, size, package.name, package.version,
                           compiled.seconds.get(package.name))
            )  # fmt: skip
    finally:
        shutil.rmtree(compiled.holding, ignore_errors=True)
    return results


def build(
    packages: str,
    *,
    target: str = DEFAULT_TARGET,
    source: Optional[str] = None,
    dest: Path = bw.WHEELS_DIR,
    jobs: int = 2,
    progress: Progress = lambda _m: None,
) -> List[CrossWheel]:
    """Build the packages for TARGET in the cached build root, gate each wheel, move it into
    DEST and record it in DEST/manifest.json."""
    compiled = compile_wheels(packages, target=target, source=source, jobs=jobs, progress=progress)
    return admit_compiled(compiled, dest, progress)


def _collect(plan: CrossPlan, root: Path) -> List[Tuple[CrossPackage, Path]]:
    """The one wheel each package produced, with the target's tags."""
    found = []
    for package in plan.packages:
        folder = root / WORK_IN_ROOT.lstrip("/") / "out" / package.name
        prefix = f"{package.name.replace('-', '_')}-{package.version}-"
        wheels = [w for w in folder.glob("*.whl") if w.name.startswith(prefix)]
        good = [w for w in wheels if w.name.endswith(plan.target.wheel_suffix)]
        if len(good) != 1:
            names = ", ".join(w.name for w in wheels) or "none"
            raise WheelError(
                f"{package.name}: expected one {prefix}*{plan.target.wheel_suffix}, got {names}"
            )
        found.append((package, good[0]))
    return found


def _manifest_entry(
    package: CrossPackage,
    target: CrossTarget,
    name: str,
    digest: str,
    size: int,
    compiled: Compiled,
    gate: wheel_gate.GateResult,
) -> Dict[str, object]:
    return {
        "file": name,
        "sha256": digest,
        "size": size,
        "package": package.name,
        "version": package.version,
        "source": dict(package.source),
        "build_env": dict(package.env),
        "builder": {"host": "cross", "kind": "cross"},
        "toolchain": f"{compiled.toolchain}; crossenv {CROSSENV_VERSION}; "
        + ", ".join(BUILD_TOOLS),
        "sysroot": f"Debian {target.release} amd64 build root with armhf multiarch "
        f"(key {cache_key(target)})",
        "target": target.name,
        "emulated": False,
        "jobs": compiled.plan.jobs,
        "duration_s": compiled.seconds.get(package.name),
        "gate": gate.record(),
        "log": str(compiled.log),
        "pulled_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def script_text(packages: str, target: str = DEFAULT_TARGET, source: Optional[str] = None,
                jobs: int = 2) -> str:  # fmt: skip
    """What --print-script shows: the build-root recipe (run once) and the build script."""
    plan = make_plan(packages, target, source, jobs)
    return (
        f"# --- build root (made once, cached as {tarball_path(plan.target)}) ---\n"
        + render_root_script(plan.target)
        + "\n# --- build (chrooted in the build root) ---\n"
        + render_build_script(plan)
    )


def describe(wheels: Sequence[CrossWheel]) -> List[str]:
    return [f"{w.path} ({w.size:,} bytes, sha256 {w.sha256})" for w in wheels]
