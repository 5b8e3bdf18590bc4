"""The onnxruntime wheel matrix (wheels/lock.yaml) and a verified, resumable fetch into wheels/.

There is no armv7l onnxruntime on PyPI or piwheels; nknytk's repository serves plain git files
without checksums, so each wheel is pinned by its git blob SHA-1 (`git hash-object`).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Protocol, Tuple

import yaml

from deploy.paths import WHEEL_LOCK, WHEELS_DIR
from pi_setup import engine_wheels
from pi_setup.errors import WheelError
from pi_setup.wheelhouse import parse_wheel_name, python_tag, wheel_arch
from retinaface.files import write_atomic

LOCK_PATH = WHEEL_LOCK
DEFAULT_VERSION = "1.9.1"
CHUNK = 64 * 1024
# A mirror is not trusted: when the lock does not know a wheel's size, this caps the download
# (the real armv7l wheels are 4-10 MB), and no download may take longer than FETCH_DEADLINE.
MAX_WHEEL_BYTES = 256 * 1024**2
FETCH_DEADLINE = 1800.0


_HEX40 = re.compile(r"^[0-9a-f]{40}$")
_HEX64 = re.compile(r"^[0-9a-f]{64}$")


class Progress(Protocol):
    """What a progress display must offer (a tqdm bar does)."""

    def update(self, n: int) -> Any: ...

    def close(self) -> Any: ...


# progress(description, total_bytes_or_None, bytes_already_there) -> Progress
ProgressFactory = Callable[[str, Optional[int], int], Progress]


@dataclass(frozen=True)
class OrtWheel:
    """One pinned onnxruntime wheel: where it comes from and the digests it must match."""

    file: str
    os: str
    commit: str
    blob_sha1: Optional[str]
    sha256: Optional[str]
    size: Optional[int]
    version: str
    python_tag: str
    arch: str

    def url(self, template: str, mirror: Optional[str] = None) -> str:
        """The download URL: the pinned source, or `<mirror>/<os>/<file>` when a mirror is given."""
        if mirror:
            return f"{mirror.rstrip('/')}/{self.os}/{self.file}"
        return template.format(commit=self.commit, os=self.os, file=self.file)


@dataclass(frozen=True)
class OrtLock:
    """The parsed lock file: URL template and wheels."""

    path: Path
    url: str
    wheels: Tuple[OrtWheel, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class FetchResult:
    """A verified wheel in the wheels directory."""

    path: Path
    cached: bool
    sha256: str
    size: int
    url: Optional[str]



def load_lock(path: Path = LOCK_PATH) -> OrtLock:
    """Read and validate the onnxruntime section of a lock file; errors name the file and entry."""
    try:
        data = yaml.safe_load(Path(path).read_text())
    except FileNotFoundError:
        raise WheelError(f"{path}: lock file not found") from None
    except yaml.YAMLError as error:
        raise WheelError(f"{path}: not valid YAML ({error})") from None
    section = (data or {}).get("onnxruntime") if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise WheelError(f"{path}: missing the 'onnxruntime' section")
    url = section.get("url")
    if not isinstance(url, str) or "{file}" not in url:
        raise WheelError(f"{path}: onnxruntime.url must be a template containing {{file}}")
    entries = section.get("wheels")
    if not isinstance(entries, list) or not entries:
        raise WheelError(f"{path}: onnxruntime.wheels must be a non-empty list")
    wheels = []
    seen = set()
    for index, entry in enumerate(entries):
        where = f"{path}: onnxruntime.wheels[{index}]"
        if not isinstance(entry, dict):
            raise WheelError(f"{where}: must be a mapping")
        unknown = set(entry) - {"file", "os", "commit", "blob_sha1", "sha256", "size"}
        if unknown:
            raise WheelError(f"{where}: unknown field(s) {', '.join(sorted(unknown))}")
        for key in ("file", "os", "commit"):
            if not isinstance(entry.get(key), str) or not entry[key]:
                raise WheelError(f"{where}: field '{key}' is required")
        name = entry["file"]
        where = f"{path}: wheel {name}"
        parts = parse_wheel_name(name)
        blob_sha1 = entry.get("blob_sha1")
        sha256 = entry.get("sha256")
        size = entry.get("size")
        if blob_sha1 is not None and not _HEX40.match(str(blob_sha1)):
            raise WheelError(f"{where}: blob_sha1 must be 40 hex digits in quotes")
        if sha256 is not None and not _HEX64.match(str(sha256)):
            raise WheelError(f"{where}: sha256 must be 64 hex digits in quotes, or null")
        if not isinstance(blob_sha1, (str, type(None))) or not isinstance(
            sha256, (str, type(None))
        ):
            raise WheelError(f"{where}: quote the digests (YAML reads bare digits as numbers)")
        if size is not None and (not isinstance(size, int) or size <= 0):
            raise WheelError(f"{where}: size must be a positive integer or null")
        if blob_sha1 is None and sha256 is None:
            raise WheelError(f"{where}: needs blob_sha1 or sha256 (nothing to verify against)")
        key = (entry["os"], name)
        if key in seen:
            raise WheelError(f"{where}: listed twice for {entry['os']}")
        seen.add(key)
        wheels.append(
            OrtWheel(
                file=name,
                os=entry["os"],
                commit=entry["commit"],
                blob_sha1=blob_sha1,
                sha256=sha256,
                size=size,
                version=parts["version"],
                python_tag=parts["py"],
                arch=parts["plat"].replace("linux_", ""),
            )
        )
    return OrtLock(path=Path(path), url=url, wheels=tuple(wheels))


def select_wheel(
    lock: OrtLock,
    os_codename: str,
    python: str,
    version: str = DEFAULT_VERSION,
    arch: str = "armv7l",
) -> OrtWheel:
    """The wheel for this OS codename, Python and arch; WheelError listing what exists otherwise."""
    tag = python_tag(python)
    plat = wheel_arch(arch)
    for wheel in lock.wheels:
        if (wheel.os, wheel.version, wheel.python_tag, wheel.arch) == (
            os_codename,
            version,
            tag,
            plat,
        ):
            return wheel
    same_version = sorted(
        {f"{w.os}/{w.python_tag}/{w.arch}" for w in lock.wheels if w.version == version},
        key=_natural,
    )
    same_target = sorted(
        {
            w.version
            for w in lock.wheels
            if (w.os, w.python_tag, w.arch) == (os_codename, tag, plat)
        },
        key=_natural,
    )
    message = f"no onnxruntime {version} wheel for {os_codename}/{tag}/{plat} in {lock.path}"
    message += "; " + (
        f"{version} exists for: {', '.join(same_version)}"
        if same_version
        else f"no {version} at all"
    )
    if same_target:
        message += f"; versions for {os_codename}/{tag}/{plat}: {', '.join(same_target)}"
    return _raise(message)


def _natural(text: str) -> List[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def _raise(message: str) -> Any:
    raise WheelError(message)


def git_blob_sha1(path: Path) -> str:
    """The git blob SHA-1 of a file, as `git hash-object` computes it."""
    digest = hashlib.sha1(b"blob %d\0" % path.stat().st_size)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_sha256(path: Path) -> str:
    """The sha256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1024 * 1024), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_digests(path: Path, wheel: OrtWheel) -> Optional[str]:
    """None when the file matches every digest pinned in the lock, else what differs."""
    size = path.stat().st_size
    if wheel.size is not None and size != wheel.size:
        return f"size is {size} bytes, the lock says {wheel.size}"
    if wheel.blob_sha1 is not None:
        got = git_blob_sha1(path)
        if got != wheel.blob_sha1:
            return f"git blob SHA-1 is {got}, the lock says {wheel.blob_sha1}"
    if wheel.sha256 is not None:
        got = file_sha256(path)
        if got != wheel.sha256:
            return f"sha256 is {got}, the lock says {wheel.sha256}"
    return None


def fetch(
    lock: OrtLock,
    wheel: OrtWheel,
    dest_dir: Path = WHEELS_DIR,
    *,
    mirror: Optional[str] = None,
    progress: Optional[ProgressFactory] = None,
    timeout: float = 30.0,
    max_bytes: Optional[int] = None,
) -> FetchResult:
    """Download (or reuse) one wheel into dest_dir, verified against the lock.

    A verified file already there is a cache hit (no request). A partial `<file>.part` from an
    interrupted run is resumed with an HTTP Range request. A file that fails verification is
    removed. The final name appears only after verification (atomic rename).
    """
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    dest = dest_dir / wheel.file
    if dest.exists():
        if check_digests(dest, wheel) is None:
            return FetchResult(dest, True, file_sha256(dest), dest.stat().st_size, None)
        dest.unlink()  # a stale or damaged copy: fetch it again
    part = dest_dir / (wheel.file + ".part")
    if mirror and not re.match(r"^[a-z][a-z0-9+.-]*://", mirror):
        url = _copy_from_directory(Path(mirror), wheel, part, max_bytes)
    else:
        url = wheel.url(lock.url, mirror)
        _download(url, part, wheel, progress, timeout, max_bytes)
    problem = check_digests(part, wheel)
    if problem:
        part.unlink()
        raise WheelError(
            f"{wheel.file} from {url}: digest mismatch ({problem}); the download was removed"
        )
    os.replace(part, dest)
    return FetchResult(dest, False, file_sha256(dest), dest.stat().st_size, url)


def _copy_from_directory(
    directory: Path, wheel: OrtWheel, part: Path, max_bytes: Optional[int] = None
) -> str:
    """A mirror given as a local directory: <dir>/<os>/<file> or <dir>/<file>, copied with the
    same size cap as a download (the lock's size, else `max_bytes` or MAX_WHEEL_BYTES)."""
    cap = wheel.size if wheel.size is not None else (max_bytes or MAX_WHEEL_BYTES)
    for candidate in (directory / wheel.os / wheel.file, directory / wheel.file):
        if candidate.is_file():
            tmp = part.with_name(part.name + ".copy")
            try:
                _copy_capped(candidate, tmp, cap)
            except BaseException:
                tmp.unlink(missing_ok=True)
                raise
            os.replace(tmp, part)
            return str(candidate)
    raise WheelError(
        f"mirror directory {directory}: neither {wheel.os}/{wheel.file} nor {wheel.file} exists"
    )


def _copy_capped(src: Path, dst: Path, cap: int) -> None:
    """Copy at most `cap` bytes of src (a file that may still grow); WheelError past it."""
    done = 0
    with open(src, "rb") as source, open(dst, "wb") as target:
        while True:
            block = source.read(min(CHUNK, cap + 1 - done))
            if not block:
                return
            done += len(block)
            if done > cap:
                raise WheelError(
                    f"mirror file {src}: more than the {cap} bytes allowed; nothing kept"
                )
            target.write(block)


def _download(
    url: str,
    part: Path,
    wheel: OrtWheel,
    progress: Optional[ProgressFactory],
    timeout: float,
    max_bytes: Optional[int] = None,
) -> None:
    """Fetch url into part, resuming from its current size; WheelError on any failure.

    `timeout` bounds each network wait, FETCH_DEADLINE the whole download; at most the lock's
    size (or `max_bytes` when it has none) is accepted, else the partial file is dropped.
    """
    cap = wheel.size if wheel.size is not None else (max_bytes or MAX_WHEEL_BYTES)
    offset = part.stat().st_size if part.exists() else 0
    if wheel.size is not None and offset >= wheel.size:
        if offset == wheel.size:
            return  # complete already: verification decides
        part.unlink()
        offset = 0
    elif offset > cap:  # left by an older, uncapped run
        part.unlink()
        offset = 0
    headers = {"User-Agent": "retinaface-pi fetch-ort"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    host = urllib.parse.urlsplit(url).netloc or url
    deadline = time.monotonic() + FETCH_DEADLINE  # the whole download, headers included
    try:
        response = urllib.request.urlopen(request, timeout=min(timeout, FETCH_DEADLINE))
    except urllib.error.HTTPError as error:
        if error.code == 416 and offset:
            return  # nothing left to send: the partial file is whole; verification decides
        raise WheelError(f"{url}: HTTP {error.code} {error.reason}") from None
    except urllib.error.URLError as error:
        reason = getattr(error.reason, "strerror", None) or error.reason
        raise WheelError(
            f"cannot reach {host} for {wheel.file}: {reason} "
            "(no network? use --mirror URL for a local copy or a proxy)"
        ) from None
    except (socket.timeout, OSError) as error:
        raise WheelError(f"cannot reach {host} for {wheel.file}: {error}") from None
    with response:
        if offset and response.status != 206:
            offset = 0  # the server ignored the Range header: start over
        length = response.headers.get("Content-Length")
        total = offset + int(length) if length and length.isdigit() else wheel.size
        if total is not None and total > cap:
            part.unlink(missing_ok=True)
            raise WheelError(
                f"{wheel.file} from {host}: the server announces {total} bytes, "
                f"more than the {cap} allowed; nothing kept"
            )
        received = offset
        late = False
        bar = progress(wheel.file, total, offset) if progress else None
        try:
            with open(part, "ab" if offset else "wb") as handle:
                while True:
                    # read1: what one recv brings, so a mirror trickling a byte at a time meets
                    # the deadline check below after each byte, not after 64 KiB
                    try:
                        chunk = response.read1(min(CHUNK, cap + 1 - received))
                    except (http.client.IncompleteRead, OSError, socket.timeout):
                        chunk = b""
                        break
                    if not chunk:
                        break
                    received += len(chunk)
                    if received > cap:
                        break
                    handle.write(chunk)
                    if bar is not None:
                        bar.update(len(chunk))
                    if time.monotonic() > deadline:
                        late = True
                        break
        finally:
            if bar is not None:
                bar.close()
    if late and (total is None or received < total):
        raise WheelError(
            f"download of {wheel.file} from {host} took longer than the {FETCH_DEADLINE:.0f} s "
            f"allowed ({received} bytes); run again to resume ({part} is kept)"
        )
    if received > cap:
        part.unlink(missing_ok=True)
        raise WheelError(
            f"{wheel.file} from {host}: more than the {cap} bytes allowed; "
            "download stopped and removed"
        )
    if total is not None and received < total:
        raise WheelError(
            f"download of {wheel.file} from {host} interrupted after {received} of {total} bytes; "
            f"run again to resume ({part} is kept)"
        )


def record_sha256(lock_path: Path, wheel: OrtWheel, sha256: str, size: int) -> bool:
    """Fill in sha256/size of a verified wheel in the lock file, keeping its comments; True if changed."""
    lines = Path(lock_path).read_text().splitlines(keepends=True)
    changed = False
    inside = False
    for index, line in enumerate(lines):
        stripped = line.strip()
        if stripped.startswith("- file:"):
            inside = stripped == f"- file: {wheel.file}"
            os_ok = False
            continue
        if not inside:
            continue
        indent = line[: len(line) - len(line.lstrip())]
        if stripped == f"os: {wheel.os}":
            os_ok = True
        elif os_ok and stripped == "sha256: null":
            lines[index] = f'{indent}sha256: "{sha256}"\n'
            changed = True
        elif os_ok and stripped == "size: null":
            lines[index] = f"{indent}size: {size}\n"
            changed = True
    if changed:
        write_atomic(lock_path, "".join(lines).encode())  # mkstemp name, not a fixed .tmp
    return changed


@dataclass(frozen=True)
class Target:
    """Where a wheel must run: OS codename, Python and arch (from facts or from flags)."""

    os: str
    python: str
    arch: str = "armv7l"
    host: Optional[str] = None
    tags: tuple = ()  # the host's wheel tags (facts), most preferred first; () without a host

    @property
    def from_registry(self) -> bool:
        """64-bit hosts get the official aarch64 wheels from the package registry (the lock's
        `engines.onnxruntime`); 32-bit ones nknytk's armv7l builds."""
        return wheel_arch(self.arch) == "aarch64"


def targets_for_hosts(host_spec: str, inventory: Optional[str] = None) -> List[Target]:
    """The OS codename / Python / arch of each selected inventory host, from its facts."""
    from deploy.hosts.connection import open_host
    from deploy.hosts.facts import gather_facts
    from deploy.hosts.inventory import load_inventory

    targets = []
    for host in load_inventory(inventory).select(host_spec):
        with open_host(host) as conn:
            facts = gather_facts(conn)
        if not facts.python_tag:
            raise WheelError(f"{host.name}: no Python interpreter found ({host.python})")
        if not facts.os_codename:
            raise WheelError(f"{host.name}: cannot tell the OS codename (/etc/os-release)")
        targets.append(
            Target(facts.os_codename, facts.python_tag, facts.arch, host.name, facts.tags)
        )
    return targets


@dataclass(frozen=True)
class Fetched:
    """One target's wheel and what fetching it did."""

    target: Target
    wheel: OrtWheel
    result: FetchResult
    lock_updated: bool


def fetch_for_targets(
    targets: List[Target],
    version: str = DEFAULT_VERSION,
    *,
    lock_path: Path = LOCK_PATH,
    dest: Path = WHEELS_DIR,
    mirror: Optional[str] = None,
    progress: Optional[ProgressFactory] = None,
    update_lock: bool = False,
) -> List[Fetched]:
    """Select (all first, so a missing one fails before any download) and fetch each target's wheel."""
    lock = load_lock(lock_path)
    chosen = [(t, select_wheel(lock, t.os, t.python, version, t.arch)) for t in targets]
    done: Dict[Tuple[str, str], FetchResult] = {}
    out = []
    for target, wheel in chosen:
        key = (wheel.os, wheel.file)
        if key not in done:
            done[key] = fetch(lock, wheel, dest, mirror=mirror, progress=progress)
        result = done[key]
        updated = False
        if update_lock and (wheel.sha256 is None or wheel.size is None):
            updated = record_sha256(lock_path, wheel, result.sha256, result.size)
        out.append(Fetched(target, wheel, result, updated))
    return out





def fetch_registry(
    targets: List[Target],
    version: Optional[str] = None,
    *,
    lock_path: Path = LOCK_PATH,
    dest: Path = WHEELS_DIR,
    find_links: Optional[str] = None,
) -> List[Tuple[Target, engine_wheels.Fetched]]:
    """The pinned registry onnxruntime wheel of each (aarch64) target, fetched with pip and
    checked against the lock's size and sha256 (pi_setup.engine_wheels). VERSION None: the newest
    pinned one the target's tags accept. All are chosen before any download."""
    from dataclasses import replace

    lock = engine_wheels.load_lock(lock_path)
    pinned = [w for w in lock.wheels if w.engine == "onnxruntime"]
    if version:
        lock = replace(lock, wheels=tuple(w for w in pinned if w.version == version))
    chosen = []
    for target in targets:
        tags = list(target.tags) or engine_wheels.python_arch_tags(lock, target.python, target.arch)
        found = engine_wheels.select(lock, ["onnxruntime"], tags)
        if not found:
            what = f"{python_tag(target.python)}/{wheel_arch(target.arch)}"
            have = ", ".join(sorted(w.file for w in pinned)) or "none"
            who = f"{target.host}: " if target.host else ""
            raise WheelError(
                f"{who}no pinned onnxruntime {version + ' ' if version else ''}registry wheel "
                f"fits {what} in {lock_path} (pinned: {have})"
            )
        chosen.append((target, found[0]))
    done: Dict[str, engine_wheels.Fetched] = {}
    for _target, wheel in chosen:
        if wheel.file not in done:
            done[wheel.file] = engine_wheels.fetch(wheel, dest, find_links=find_links)
    return [(target, done[wheel.file]) for target, wheel in chosen]
