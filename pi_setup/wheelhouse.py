"""Wheels: names and tags, which fit a host, and what a wheel needs on the host besides itself.

Used by the wheel tools here (fetch-ort, build-wheels) and by deploy's workflow (which wheels a
release ships, what the host must have): the one place deploy.workflow takes from pi_setup.
"""

from __future__ import annotations

import re
import zipfile
from pathlib import Path
from typing import Dict, Iterable, List, Optional, Set, Tuple

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
            project = re.sub(r"[-_.]+", "-", path.name.split("-")[0]).lower()
            if project not in chosen or _version(path) > _version(chosen[project]):
                chosen[project] = path  # the newest by number (1.10 after 1.9), not by name
    return [chosen[key] for key in sorted(chosen)]


def _version(path: Path) -> list:
    """The wheel's version as numbers where it has them (1.10 sorts after 1.9)."""
    version = path.name.split("-")[1] if path.name.count("-") >= 4 else ""
    return [(0, int(p)) if p.isdigit() else (1, p) for p in re.split(r"[.+-]", version)]


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


def wheel_problem(path: Path, default_lock: Path) -> Optional[str]:
    """Why the wheel at `path` (in a wheels folder) may not ship, or None: onnxruntime, and every
    wheel lock.yaml lists (the registry's engine wheels and aarch64 onnxruntime), must match the
    lock's digests (the folder's lock.yaml, else `default_lock`); every other wheel must be in the
    folder's manifest.json with its sha256 (build-wheels records what passed the gate)."""
    import json

    from retinaface.files import sha256_file

    folder = path.parent
    project = re.sub(r"[-_.]+", "-", path.name.split("-")[0]).lower()
    lock_path = folder / "lock.yaml" if (folder / "lock.yaml").is_file() else default_lock
    problem = _lock_problem(path, lock_path)
    if project == "onnxruntime" or problem != NOT_IN_LOCK:
        # onnxruntime must be a wheel the lock pins; so must every wheel the lock lists (the
        # registry engine wheels): by its digests, not by manifest.json
        return f"not the {project} wheel lock.yaml pins ({problem})" if problem else None
    try:
        recorded = json.loads((folder / "manifest.json").read_text())["wheels"][path.name]
    except (OSError, ValueError, KeyError, TypeError):
        return (
            f"not in {folder / 'manifest.json'} (wheels there come from build-wheels, which "
            "records them, or fetch-ort); refusing to ship it"
        )
    digest = sha256_file(path)
    if not isinstance(recorded, dict) or recorded.get("sha256") != digest:
        return f"sha256 {digest} is not the one manifest.json recorded; refusing to ship it"
    return None


NOT_IN_LOCK = "the lock does not list it"


def _lock_problem(path: Path, lock_path: Path) -> Optional[str]:
    """What differs between the file and its lock.yaml entry (size, git blob SHA-1, sha256), or
    None. The same digests pi_setup.ort pins and checks on fetch; read here without it (ort
    imports this module)."""
    import hashlib

    import yaml

    try:
        data = yaml.safe_load(lock_path.read_text()) or {}
    except (OSError, yaml.YAMLError) as error:
        return f"cannot read {lock_path}: {error}"
    sections = [data.get("onnxruntime") or {}]  # community builds
    engines = data.get("engines") or {}  # registry wheels (engine_wheels, aarch64 onnxruntime)
    sections += [s for s in engines.values() if isinstance(s, dict)] if isinstance(engines, dict) else []
    entries = [
        w for section in sections for w in section.get("wheels") or [] if isinstance(w, dict)
    ]
    pinned = [w for w in entries if w.get("file") == path.name]
    if not pinned:
        return NOT_IN_LOCK
    entry, size = pinned[0], path.stat().st_size
    if entry.get("size") is not None and size != entry["size"]:
        return f"size is {size} bytes, the lock says {entry['size']}"
    blob, sha = hashlib.sha1(b"blob %d\0" % size), hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            blob.update(chunk)
            sha.update(chunk)
    if entry.get("blob_sha1") and blob.hexdigest() != entry["blob_sha1"]:
        return f"git blob SHA-1 is {blob.hexdigest()}, the lock says {entry['blob_sha1']}"
    if entry.get("sha256") and sha.hexdigest() != entry["sha256"]:
        return f"sha256 is {sha.hexdigest()}, the lock says {entry['sha256']}"
    return None
