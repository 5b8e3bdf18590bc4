"""Wheels: names and tags, which fit a host, and what a wheel needs on the host besides itself.

Used by the wheel tools here (fetch-ort, build-wheels) and by deploy's workflow (which wheels a
release ships, what the host must have): the one place deploy.workflow takes from pi_setup.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Set, Tuple

from pi_setup.errors import WheelError

# dpkg architecture (what `deploy.hosts.facts` reports) -> wheel platform suffix.
DPKG_TO_WHEEL_ARCH = {"armhf": "armv7l", "arm64": "aarch64", "amd64": "x86_64", "i386": "i686"}

_WHEEL_NAME = re.compile(
    r"^(?P<dist>[A-Za-z0-9_.]+)-(?P<version>[^-]+)(-(?P<build>\d[^-]*))?"
    r"-(?P<py>[^-]+)-(?P<abi>[^-]+)-(?P<plat>[^-]+)\.whl$"
)


def parse_wheel_name(name: str) -> Dict[str, str]:
    """Split a wheel file name into dist, version, py, abi, plat (PEP 427); raise WheelError if it is not one."""
    match = _WHEEL_NAME.match(name)
    if not match:
        raise WheelError(f"{name}: not a wheel file name (dist-version-python-abi-platform.whl)")
    return {k: v for k, v in match.groupdict().items() if v is not None}


def python_tag(python: str) -> str:
    """'3.9' -> 'cp39' (also accepts 'cp39', '39')."""
    text = str(python).strip()
    if re.fullmatch(r"cp\d{2,3}", text):
        return text
    match = re.fullmatch(r"(\d)\.?(\d{1,2})(\.\d+)?", text)
    if not match:
        raise WheelError(f"--python {python!r}: expected a version like 3.9")
    return f"cp{match.group(1)}{match.group(2)}"


def wheel_arch(arch: str) -> str:
    """A dpkg architecture (armhf) or a wheel platform (armv7l, linux_armv7l) -> 'armv7l'."""
    text = arch.strip().lower().replace("linux_", "")
    return DPKG_TO_WHEEL_ARCH.get(text, text)


def wheel_tags(file_name: str) -> Set[str]:
    """Every `py-abi-plat` tag a wheel file name claims (compressed tag sets expanded)."""
    parts = file_name[: -len(".whl")].split("-")
    if not file_name.endswith(".whl") or len(parts) not in (5, 6):
        return set()
    py, abi, plat = parts[-3:]
    return {f"{p}-{a}-{t}" for p in py.split(".") for a in abi.split(".") for t in plat.split(".")}


def matching_wheels(
    wheels_dir: Path, host_tags: Iterable[str], skip: Iterable[str] = ()
) -> List[Path]:
    """Wheels in `wheels_dir` installable on a host with `host_tags`, best version per project;
    distributions named in `skip` (the runner, which a release adds itself) are left out."""
    supported = set(host_tags)
    chosen: Dict[str, Path] = {}
    for path in sorted(Path(wheels_dir).glob("*.whl")):
        if any(path.name.startswith(dist + "-") for dist in skip):
            continue
        if wheel_tags(path.name) & supported:
            project = path.name.split("-")[0].lower().replace("_", "-")
            chosen[project] = path  # sorted by name: the last one is the newest by string order
    return [chosen[key] for key in sorted(chosen)]


# What a fetched or built wheel needs on the host besides itself, by distribution name.
# onnxruntime (nknytk armv7l builds): numpy C-API 0xe -> numpy>=1.20 (Debian bullseye ships 1.19.5),
# numpy 2 breaks numpy-1 builds; the .so links libgomp and libatomic. Deploy meets pip requirements
# offline: the host's own numpy or a wheel in wheels/ (deploy.workflow.push.missing_requirements).
_HOST_REQUIREMENTS: Dict[str, Tuple[List[str], List[str]]] = {
    "onnxruntime": (["numpy>=1.20,<2"], ["libgomp1", "libatomic1"]),
    "torch": ([], ["libopenblas-dev", "libgomp1", "libatomic1"]),
    "torchvision": ([], ["libjpeg-dev", "libpng-dev"]),
}


def host_requirements(wheel_path: Path) -> Tuple[List[str], List[str]]:
    """(pip requirements, apt packages) a host needs to use this wheel; ([], []) for others.

    Deploy calls this for each wheel it installs and fails before switching the release when
    the apt packages are missing and cannot be installed.
    """
    parts = parse_wheel_name(Path(wheel_path).name)
    name = parts["dist"].lower().replace("-", "_")
    if name not in _HOST_REQUIREMENTS or parts["plat"].startswith("manylinux"):
        # a registry wheel (engines, onnxruntime's official aarch64 builds): its lock entry says
        return registry_requirements(name)
    pip, apt = _HOST_REQUIREMENTS[name]
    return list(pip), list(apt)


LOCK_PATH = Path(__file__).resolve().parent.parent / "wheels" / "lock.yaml"


def registry_requirements(dist: str, lock_path: Path = LOCK_PATH) -> Tuple[List[str], List[str]]:
    """(pip requirements, apt packages) that the lock's `engines` section names for a registry
    distribution (pi_setup.engine_wheels checks that section; an unreadable lock names none)."""
    import yaml

    key = dist.lower().replace("-", "_").replace(".", "_")
    try:
        engines = (yaml.safe_load(Path(lock_path).read_text()) or {}).get("engines") or {}
    except (OSError, yaml.YAMLError, AttributeError):
        return [], []
    for spec in engines.values() if isinstance(engines, dict) else ():
        package = spec.get("package", "") if isinstance(spec, dict) else ""
        if isinstance(package, str) and package.lower().replace("-", "_").replace(".", "_") == key:
            pip, apt = spec.get("requires") or [], spec.get("apt") or []
            return [str(r) for r in pip], [str(a) for a in apt]
    return [], []


def wheel_requirements(wheel_names) -> Tuple[List[str], List[str]]:
    """(pip requirements, apt packages) the wheels about to be installed need on the host.

    onnxruntime's armv7l wheels need numpy>=1.20,<2 and libgomp1/libatomic1 .
    """
    pip: List[str] = []
    apt: List[str] = []
    for name in wheel_names:
        wheel_pip, wheel_apt = host_requirements(Path(name))
        pip += [r for r in wheel_pip if r not in pip]
        apt += [a for a in wheel_apt if a not in apt]
    return pip, apt


def wheel_metadata(wheel_path: Path) -> Dict[str, List[str]]:
    """The METADATA headers of a wheel (e.g. Requires-Dist), as lists of values."""
    result: Dict[str, List[str]] = {}
    try:
        with zipfile.ZipFile(wheel_path) as archive:
            names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
            if not names:
                raise WheelError(f"{wheel_path}: no .dist-info/METADATA inside")
            text = archive.read(names[0]).decode("utf-8", "replace")
    except zipfile.BadZipFile:
        raise WheelError(f"{wheel_path}: not a zip file (an HTML page saved as .whl?)") from None
    for line in text.split("\n\n", 1)[0].splitlines():
        if ": " in line and not line.startswith(" "):
            key, value = line.split(": ", 1)
            result.setdefault(key, []).append(value)
    return result
