"""The local side of a release: models, our runner wheel, matching wheels, the probe image.

A release is content-addressed: its id is a digest of every file's path and sha256, so an
unchanged checkout maps to the release already on the host and a redeploy is a no-op.
"""

from __future__ import annotations

import base64
import hashlib
import io
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Optional

from deploy.errors import DeployError
from deploy.paths import MODELS_DIR, PROBE_IMAGE, REPO_ROOT, RUNNER_BUILD_DIR, WHEELS_DIR
from pi_setup.wheelhouse import matching_wheels, wheel_problem
from retinaface.files import sha256_file, write_atomic

RUNNER_DIST = "retinaface_pi_runner"
RUNNER_VERSION = "0.1.0"
LAYOUT = 1  # bump when the release layout changes; part of the release id
_ZIP_DATE = (1980, 1, 1, 0, 0, 0)
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")


@dataclass(frozen=True)
class ReleaseFile:
    """One file of a release: its path inside the release and its local source."""

    rel: str  # e.g. models/fp32.onnx
    local: Path
    sha256: str
    size: int


def release_file(rel: str, local: Path) -> ReleaseFile:
    local = Path(local)
    return ReleaseFile(rel, local, sha256_file(local), local.stat().st_size)


def release_id(files: Iterable[ReleaseFile]) -> str:
    """16 hex digits naming the release by content (paths and digests)."""
    digest = hashlib.sha256(f"layout {LAYOUT}\n".encode())
    for item in sorted(files, key=lambda f: f.rel):
        digest.update(f"{item.sha256}  {item.rel}\n".encode())
    return digest.hexdigest()[:16]


def ensure_models(models_dir: Path = MODELS_DIR, progress: Callable[[str], None] = None) -> dict:
    """The models manifest; exports the models first when manifest.json is missing."""
    import json

    models_dir = Path(models_dir)
    manifest_path = models_dir / "manifest.json"
    if not manifest_path.is_file():
        from retinaface.tools.export import export_models

        export_models(models_dir, progress=progress or (lambda message: None))
    try:
        manifest = json.loads(manifest_path.read_text())
        models = manifest["models"]
        if not isinstance(models, dict) or not models:
            raise KeyError("models")
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DeployError(f"{manifest_path}: not a models manifest ({error})") from None
    return manifest


def model_files(models_dir: Path, manifest: dict) -> list[ReleaseFile]:
    """Every file listed in the manifest, plus the manifest, as `models/…` release files."""
    models_dir = Path(models_dir)
    files = []
    for name, entry in sorted(manifest["models"].items()):
        file_name = entry.get("file") if isinstance(entry, dict) else None
        if not file_name or not _SAFE_NAME.match(file_name):
            raise DeployError(
                f"{models_dir / 'manifest.json'}: model {name!r}: bad file {file_name!r}"
            )
        path = models_dir / file_name
        if not path.is_file():
            raise DeployError(f"{path}: listed in manifest.json (model {name!r}) but missing")
        item = release_file(f"models/{file_name}", path)
        if entry.get("sha256") and entry["sha256"] != item.sha256:
            raise DeployError(
                f"{path}: sha256 {item.sha256} differs from manifest.json ({entry['sha256']}); "
                "re-run `invoke models`"
            )
        if item.rel not in {f.rel for f in files}:
            files.append(item)
        for companion in entry.get("companions") or []:  # e.g. ncnn's .bin beside its .param
            files += _companion(models_dir, name, companion, {f.rel for f in files})
    files.append(release_file("models/manifest.json", models_dir / "manifest.json"))
    return files


def _companion(models_dir: Path, name: str, companion, taken) -> list[ReleaseFile]:
    """A second file of a model (ncnn's weights), checked like the model's own file."""
    file_name = companion.get("file") if isinstance(companion, dict) else None
    if not file_name or not _SAFE_NAME.match(file_name):
        raise DeployError(f"{models_dir / 'manifest.json'}: model {name!r}: bad file {file_name!r}")
    path = models_dir / file_name
    if not path.is_file():
        raise DeployError(f"{path}: listed in manifest.json (model {name!r}) but missing")
    item = release_file(f"models/{file_name}", path)
    if companion.get("sha256") != item.sha256:
        raise DeployError(
            f"{path}: sha256 {item.sha256} differs from manifest.json ({companion.get('sha256')}); "
            "re-run `invoke models`"
        )
    return [] if item.rel in taken else [item]


# --- our runner wheel ------------------------------------------------------------------


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


# Inside retinaface/, what never ships: the workstation-only tools and byte-code caches.
RUNNER_EXCLUDED = ("tools", "__pycache__")


def runner_sources(src_dir: Path) -> list[tuple[str, Path]]:
    """(path inside the wheel, local file) of every .py file of the `retinaface` package tree
    at `src_dir`, minus tools/ and __pycache__, sorted by wheel path."""
    src_dir = Path(src_dir)
    if not (src_dir / "__init__.py").is_file() or not (src_dir / "runner.py").is_file():
        raise DeployError(f"{src_dir}: not the retinaface package (no __init__.py / runner.py)")
    found = []
    for path in src_dir.rglob("*.py"):
        rel = path.relative_to(src_dir)
        if rel.parts[0] in RUNNER_EXCLUDED or "__pycache__" in rel.parts:
            continue
        found.append((f"retinaface/{rel.as_posix()}", path))
    return sorted(found)


def runner_wheel_bytes(src_dir: Path, version: str = RUNNER_VERSION) -> tuple[str, bytes]:
    """(file name, bytes) of the pure-Python wheel holding the `retinaface` package tree at
    `src_dir` minus tools/ (the workstation-only code).

    Reproducible: sorted entries, fixed timestamps and modes, so unchanged sources give the same
    bytes (and the same digest on the host).
    """
    dist_info = f"{RUNNER_DIST}-{version}.dist-info"
    entries = [(name, path.read_bytes()) for name, path in runner_sources(src_dir)]
    metadata = (
        "Metadata-Version: 2.1\n"
        f"Name: {RUNNER_DIST.replace('_', '-')}\n"
        f"Version: {version}\n"
        "Summary: RetinaFace MobileNet-0.25 runner core for the Raspberry Pi (torch-free)\n"
        "License: MIT\n"
        "Requires-Python: >=3.7\n"
    )
    wheel = (
        "Wheel-Version: 1.0\n"
        "Generator: retinaface-pi deploy.release\n"
        "Root-Is-Purelib: true\n"
        "Tag: py3-none-any\n"
    )
    entries += [
        (f"{dist_info}/METADATA", metadata.encode()),
        (f"{dist_info}/WHEEL", wheel.encode()),
        (f"{dist_info}/top_level.txt", b"retinaface\n"),
    ]
    record = "".join(f"{name},{_record_hash(data)},{len(data)}\n" for name, data in entries)
    record += f"{dist_info}/RECORD,,\n"
    entries.append((f"{dist_info}/RECORD", record.encode()))
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries:
            info = zipfile.ZipInfo(name, date_time=_ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            info.create_system = 3
            archive.writestr(info, data, compress_type=zipfile.ZIP_DEFLATED, compresslevel=9)
    return f"{RUNNER_DIST}-{version}-py3-none-any.whl", buffer.getvalue()


def build_runner_wheel(out_dir: Path = RUNNER_BUILD_DIR, src_dir: Optional[Path] = None) -> Path:
    """Write the runner wheel as `out_dir/<sha256[:12]>/<name>.whl` and return its path.

    The folder is named by content, so a file once returned never changes underneath its
    caller, even when another process builds a different runner at the same time.
    """
    name, data = runner_wheel_bytes(src_dir or REPO_ROOT / "retinaface")
    folder = Path(out_dir) / hashlib.sha256(data).hexdigest()[:12]
    path = folder / name
    if path.is_file() and path.read_bytes() == data:
        return path
    write_atomic(path, data)
    return path


# --- wheels from wheels/ that fit the host ---------------------------------------------


def check_wheel(path: Path) -> None:
    """A wheel from wheels/ ships only when it is what lock.yaml pins or what manifest.json
    recorded (pi_setup.wheelhouse.wheel_problem); DeployError otherwise, naming the file."""
    problem = wheel_problem(path, WHEELS_DIR / "lock.yaml")
    if problem:
        raise DeployError(f"{path}: {problem}")


@dataclass(frozen=True)
class ReleasePlan:
    """Everything one host's release contains, before any contact with the host."""

    id: str
    files: tuple  # ReleaseFile, sorted by rel
    runner_wheel: str  # file name
    wheels: tuple  # file names of matched wheels from wheels/
    manifest: dict


def plan_release(
    host_tags: Iterable[str],
    models_dir: Path = MODELS_DIR,
    wheels_dir: Path = WHEELS_DIR,
    runner_wheel: Optional[Path] = None,
    probe: Path = PROBE_IMAGE,
    manifest: Optional[dict] = None,
) -> ReleasePlan:
    """The release for a host with `host_tags` (from its facts)."""
    manifest = manifest if manifest is not None else ensure_models(models_dir)
    files = model_files(models_dir, manifest)
    runner = Path(runner_wheel) if runner_wheel else build_runner_wheel()
    extra = matching_wheels(wheels_dir, host_tags, skip=(RUNNER_DIST,)) if Path(wheels_dir).is_dir() else []
    for path in extra:  # none ships unchecked
        check_wheel(path)
    files.append(release_file(f"wheelhouse/{runner.name}", runner))
    files += [release_file(f"wheelhouse/{path.name}", path) for path in extra]
    files.append(release_file("probe.jpg", probe))
    files.sort(key=lambda f: f.rel)
    return ReleasePlan(
        id=release_id(files),
        files=tuple(files),
        runner_wheel=runner.name,
        wheels=tuple(path.name for path in extra),
        manifest=manifest,
    )
