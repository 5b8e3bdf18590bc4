"""Engine wheels from the package registry (tflite-runtime, ncnn, MNN …), pinned in wheels/lock.yaml.

Unlike onnxruntime's armv7l builds (plain git files, pi_setup.ort), these wheels are on the
registry: the ordinary client fetches them (`pip download --no-deps --only-binary=:all:
--platform P --python-version V`), and each file must match the sha256 and size pinned in the
lock before it enters wheels/. Deploy then ships every wheel of wheels/ whose tags fit a host.

The lock section (one list per engine; version, Python tag and platform come from the file name):

    engines:
      tflite:
        package: tflite-runtime        # the registry's project name
        requires: ["numpy>=1.21.2"]    # optional: pip requirements deploy meets offline
        apt: []                        # optional: Debian packages the wheel's .so needs
        wheels:
        - file: tflite_runtime-2.13.0-cp39-cp39-manylinux2014_armv7l.whl
          sha256: "…"
          size: 1794563

To pin a new wheel: `pip download` it as above, then add its file name, `sha256sum` and size.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Optional, Sequence, Tuple

import yaml

from pi_setup.errors import WheelError
from pi_setup.wheelhouse import python_tag, wheel_arch
from retinaface.files import sha256_file

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCK_PATH = REPO_ROOT / "wheels" / "lock.yaml"
WHEELS_DIR = REPO_ROOT / "wheels"
PIP_TIMEOUT = 900.0  # seconds for one `pip download` (a slow index, a large wheel)

_FILE = re.compile(
    r"^(?P<dist>[A-Za-z0-9_.]+)-(?P<version>[0-9][A-Za-z0-9_.+!]*)"
    r"-(?P<py>[a-z0-9_.]+)-(?P<abi>[a-z0-9_.]+)-(?P<plat>[a-z0-9_.]+)\.whl$"
)
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,40}$")
_PACKAGE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,80}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class EngineWheel:
    """One pinned wheel of an engine: its file name, digests and the tags it claims."""

    engine: str
    package: str
    file: str
    sha256: str
    size: int
    version: str
    python_tag: str
    abi: str
    platform: str

    def tags(self) -> set:
        """Every `py-abi-plat` tag of the file name (compressed tag sets expanded)."""
        return {
            f"{p}-{a}-{t}"
            for p in self.python_tag.split(".")
            for a in self.abi.split(".")
            for t in self.platform.split(".")
        }

    def pip_download_argv(self, dest: Path, find_links: Optional[str] = None) -> List[str]:
        """The ordinary client's command that fetches exactly this file into `dest`."""
        py = self.python_tag.split(".")[0]
        argv = [
            sys.executable, "-m", "pip", "download", "--disable-pip-version-check", "--no-deps",
            "--only-binary=:all:", "--platform", self.platform.split(".")[0],
            "--python-version", py[2:], "--implementation", py[:2],
            "--abi", self.abi.split(".")[0], "-d", str(dest),
        ]  # fmt: skip
        if find_links:
            argv += ["--no-index", "--find-links", find_links]
        return argv + [f"{self.package}=={self.version}"]


@dataclass(frozen=True)
class EngineLock:
    """The engines section of a lock file."""

    path: Path
    wheels: Tuple[EngineWheel, ...]
    requires: Dict[str, Tuple[List[str], List[str]]]  # dist name -> (pip requirements, apt)


def _dist_key(name: str) -> str:
    return name.lower().replace("-", "_").replace(".", "_")


def load_lock(path: Path = LOCK_PATH) -> EngineLock:
    """Read and check the `engines` section; an error names the file and the entry."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise WheelError(f"{path}: lock file not found") from None
    except yaml.YAMLError as error:
        raise WheelError(f"{path}: not valid YAML ({error})") from None
    section = data.get("engines") if isinstance(data, dict) else None
    if section is None:
        return EngineLock(Path(path), (), {})
    if not isinstance(section, dict):
        raise WheelError(f"{path}: 'engines' must map engine names to their wheels")
    wheels: List[EngineWheel] = []
    requires: Dict[str, Tuple[List[str], List[str]]] = {}
    for engine, spec in section.items():
        where = f"{path}: engines.{engine}"
        if not isinstance(engine, str) or not _NAME.match(engine):
            raise WheelError(f"{path}: engine name {engine!r} must be a plain lower-case name")
        if not isinstance(spec, dict):
            raise WheelError(f"{where}: must be a mapping with package and wheels")
        unknown = set(spec) - {"package", "requires", "apt", "wheels"}
        if unknown:
            raise WheelError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        package = spec.get("package")
        if not isinstance(package, str) or not _PACKAGE.match(package):
            raise WheelError(f"{where}: 'package' must be the registry's project name")
        pip_req, apt = spec.get("requires") or [], spec.get("apt") or []
        for key, values in (("requires", pip_req), ("apt", apt)):
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise WheelError(f"{where}: '{key}' must be a list of strings")
        requires[_dist_key(package)] = (list(pip_req), list(apt))
        entries = spec.get("wheels")
        if not isinstance(entries, list) or not entries:
            raise WheelError(f"{where}: 'wheels' must be a non-empty list")
        for index, entry in enumerate(entries):
            wheels.append(_wheel(engine, package, entry, f"{where}.wheels[{index}]"))
    return EngineLock(Path(path), tuple(wheels), requires)


def _wheel(engine: str, package: str, entry, where: str) -> EngineWheel:
    if not isinstance(entry, dict) or set(entry) != {"file", "sha256", "size"}:
        raise WheelError(f"{where}: needs exactly file, sha256 and size")
    name, digest, size = entry["file"], entry["sha256"], entry["size"]
    match = _FILE.match(name) if isinstance(name, str) else None
    if not match:
        raise WheelError(f"{where}: {name!r} is not a wheel file name")
    if _dist_key(match["dist"]) != _dist_key(package):
        raise WheelError(f"{where}: {name} is not a wheel of {package}")
    if not isinstance(digest, str) or not _HEX64.match(digest):
        raise WheelError(f"{where}: sha256 must be 64 hex digits in quotes")
    if not isinstance(size, int) or isinstance(size, bool) or size <= 0:
        raise WheelError(f"{where}: size must be a positive number of bytes")
    return EngineWheel(
        engine, package, name, digest, size,
        match["version"], match["py"], match["abi"], match["plat"],
    )  # fmt: skip


def engines_of(lock: EngineLock) -> List[str]:
    return sorted({w.engine for w in lock.wheels})


def parse_engines(text: Optional[str], lock: EngineLock) -> List[str]:
    """A comma list of engine names (None or empty: every engine of the lock), each checked."""
    known = engines_of(lock)
    names = [n.strip() for n in (text or "").split(",") if n.strip()] or known
    for name in names:
        if name not in known:
            raise WheelError(
                f"unknown engine {name!r}: {lock.path} pins {', '.join(known) or 'none'}"
            )
    return names


def select(lock: EngineLock, engines: Sequence[str], host_tags: Iterable[str]) -> List[EngineWheel]:
    """Per engine, the newest pinned wheel the host's tags accept (none: the engine is absent)."""
    order = {tag: index for index, tag in enumerate(host_tags)}  # most preferred first
    chosen = []
    for engine in engines:
        fits = [w for w in lock.wheels if w.engine == engine and w.tags() & set(order)]
        if fits:
            chosen.append(max(fits, key=lambda w: (_version_key(w.version), -_rank(w, order))))
    return chosen


def _rank(wheel: EngineWheel, order: Dict[str, int]) -> int:
    return min(order[t] for t in wheel.tags() if t in order)


def _version_key(version: str) -> List:
    return [int(p) if p.isdigit() else p for p in re.split(r"[.+]", version)]


def python_arch_tags(lock: EngineLock, python: str, arch: str) -> List[str]:
    """Tags a host of this Python (3.9) and arch (armhf/armv7l, arm64/aarch64) may accept, for
    choosing without a host: every platform tag the lock uses for that arch."""
    tag, plat = python_tag(python), wheel_arch(arch)
    return sorted(
        t
        for w in lock.wheels
        for t in w.tags()
        if t.startswith(f"{tag}-") and t.endswith(f"_{plat}")
    )


@dataclass(frozen=True)
class Fetched:
    wheel: EngineWheel
    path: Path
    cached: bool


def check_file(path: Path, wheel: EngineWheel) -> Optional[str]:
    """None when `path` has the pinned size and sha256, else what differs."""
    size = path.stat().st_size
    if size != wheel.size:
        return f"size is {size} bytes, the lock says {wheel.size}"
    digest = sha256_file(path)
    if digest != wheel.sha256:
        return f"sha256 is {digest}, the lock says {wheel.sha256}"
    return None


Runner = Callable[[List[str], float], Tuple[int, str]]


def _run_pip(argv: List[str], timeout: float) -> Tuple[int, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"pip download did not finish in {timeout:.0f} s"
    return proc.returncode, (proc.stderr or proc.stdout or "").strip()


def fetch(
    wheel: EngineWheel,
    dest_dir: Path = WHEELS_DIR,
    find_links: Optional[str] = None,
    run: Runner = _run_pip,
) -> Fetched:
    """The pinned wheel in dest_dir: a verified copy there is reused, else pip downloads it into
    a private temp folder; only a file matching the lock is renamed into place."""
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / wheel.file
    if target.is_file():
        if check_file(target, wheel) is None:
            return Fetched(wheel, target, True)
        target.unlink()  # stale or damaged: fetch again
    with tempfile.TemporaryDirectory(dir=dest_dir, prefix=".engine-") as tmp:
        code, text = run(wheel.pip_download_argv(Path(tmp), find_links), PIP_TIMEOUT)
        got = Path(tmp) / wheel.file
        if code != 0 or not got.is_file():
            last = (text.splitlines() or ["no output"])[-1][:200]
            raise WheelError(f"pip download of {wheel.file} failed: {last}")
        problem = check_file(got, wheel)
        if problem:
            raise WheelError(f"{wheel.file}: {problem}; nothing kept")
        os.replace(got, target)
    return Fetched(wheel, target, False)




def host_tags(host_spec: str, inventory: Optional[str] = None) -> List[Tuple[str, List[str]]]:
    """(host name, its wheel tags, most preferred first) of each selected inventory host."""
    from deploy.hosts.connection import open_host
    from deploy.hosts.facts import gather_facts
    from deploy.hosts.inventory import load_inventory

    out = []
    for host in load_inventory(inventory).select(host_spec):
        with open_host(host) as conn:
            facts = gather_facts(conn)
        if not facts.tags:
            raise WheelError(f"{host.name}: no wheel tags found ({host.python} has no packaging)")
        out.append((host.name, list(facts.tags)))
    return out
