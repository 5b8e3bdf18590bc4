"""File sync of one release to a host: sha256 manifest on the host, unchanged files skipped.

Layout under `deploy_dir`: `releases/<id>/…` (one per content), `current` → `releases/<id>`
switched atomically at the very end, the newest `keep_releases` kept. A file already on the
host (in the target release or any complete older one, per their SHA256SUMS) is hard-linked
instead of sent; a new file goes to a temp name, is verified by sha256, then renamed in place.
"""

from __future__ import annotations

import hashlib
import os
import platform
import posixpath
import re
import shlex
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from deploy.errors import DeployError
from deploy.hosts.connection import HostConnection
from deploy.hosts.scripts import render
from deploy.workflow.release import ReleaseFile

METADATA = ("SHA256SUMS", "deploy.json")
RELEASE_ID = re.compile(r"[0-9a-f]{16}")  # deploy.workflow.release.release_id: 16 hex digits
LAYOUT_REFUSED = 5  # exit status of templates/deploy_layout.inc.j2


@dataclass
class RemoteState:
    """What the deploy directory holds now (from templates/deploy_state.sh.j2)."""

    current: Optional[str] = None
    releases: dict = field(default_factory=dict)  # id -> (mtime, complete)
    sums: dict = field(default_factory=dict)  # sha256 -> absolute path of a verified copy
    have: dict = field(default_factory=dict)  # rel -> sha256 present in the target release
    parts: list = field(default_factory=list)  # leftovers of interrupted uploads
    venv: bool = False
    installed: dict = field(default_factory=dict)  # wheel file name -> sha256


def _parse_state_line(state: RemoteState, sums: list, line: str, target: str) -> None:
    """Fold one probe line into `state` (ValueError on a malformed line)."""
    kind, _, rest = line.partition(" ")
    if kind == "current":
        state.current = rest.strip()
    elif kind == "release":
        rid, mtime, complete = rest.split()
        if not RELEASE_ID.fullmatch(rid):
            raise ValueError(rid)
        state.releases[rid] = (int(mtime), complete == "1")
    elif kind == "sum":
        rid, sha, rel = rest.split(" ", 2)
        if rid != target:
            sums.append((rid, sha, rel))
    elif kind == "have":
        sha, rel = rest.split(" ", 1)
        state.have[rel] = sha
    elif kind == "part":
        state.parts.append(rest)
    elif kind == "venv":
        state.venv = rest.strip() == "yes"
    elif kind == "installed":
        sha, _, name = rest.partition(" ")
        state.installed[name.strip()] = sha


def parse_state(text: str, deploy_dir: str, target: str = "") -> RemoteState:
    """RemoteState from the probe's lines; sums of the current release are preferred.

    The target release's own SHA256SUMS are ignored: its files are hashed as they are (`have`).
    """
    state = RemoteState()
    sums: list[tuple[str, str, str]] = []
    for line in text.splitlines():
        try:
            _parse_state_line(state, sums, line, target)
        except ValueError:
            continue  # an odd name in the deploy directory is not ours: ignore it
    # Newest release first, the current one before all: its files are the likeliest intact.
    order = sorted(state.releases, key=lambda rid: -state.releases[rid][0])
    if state.current in order:
        order.remove(state.current)
        order.insert(0, state.current)
    rank = {rid: index for index, rid in enumerate(order)}
    for rid, sha, rel in sorted(sums, key=lambda item: rank.get(item[0], 1 << 30)):
        state.sums.setdefault(sha, f"{deploy_dir}/releases/{rid}/{rel}")
    return state


def read_state(conn: HostConnection, deploy_dir: str, release_id: str) -> RemoteState:
    """Probe `deploy_dir` on the host (read-only)."""
    script = render("deploy_state.sh.j2", deploy_dir=deploy_dir, release_id=release_id)
    result = run_script(conn, script, timeout=300)
    return parse_state(result.stdout, deploy_dir, release_id)


def run_script(conn: HostConnection, script: str, timeout: float):
    """Run a deploy script; a layout the deploy did not make is one clear DeployError line."""
    result = conn.run("bash -c " + shlex.quote(script), timeout=timeout, check=False)
    if result.exited == LAYOUT_REFUSED and result.stderr.startswith("layout: "):
        raise DeployError(f"{conn.host.name}: {result.stderr.splitlines()[0][len('layout: ') :]}")
    if not result.ok:
        detail = (result.stderr.strip() or result.stdout.strip())[-800:]
        first = script.strip().splitlines()[0][:80]
        raise DeployError(
            f"{conn.host.name}: command failed (exit {result.exited}): {first}"
            + (f"\n{detail}" if detail else "")
        )
    return result


@dataclass
class SyncPlan:
    """What syncing a release will do: keep, link from an older release, or upload each file."""

    release_id: str
    keep: list = field(default_factory=list)  # ReleaseFile already in place
    link: list = field(default_factory=list)  # (ReleaseFile, source path on the host)
    upload: list = field(default_factory=list)  # ReleaseFile to send
    release_complete: bool = False  # target release exists with SHA256SUMS and every file

    @property
    def upload_bytes(self) -> int:
        return sum(item.size for item in self.upload)

    @property
    def changes_files(self) -> bool:
        return bool(self.link or self.upload) or not self.release_complete


def plan_sync(files, release_id: str, state: RemoteState) -> SyncPlan:
    """Decide per file: already there, hard link from an older release, or upload."""
    plan = SyncPlan(release_id)
    for item in files:
        if state.have.get(item.rel) == item.sha256:
            plan.keep.append(item)
        elif item.sha256 in state.sums:
            plan.link.append((item, state.sums[item.sha256]))
        else:
            plan.upload.append(item)
    complete = state.releases.get(release_id, (0, False))[1]
    plan.release_complete = complete and not plan.link and not plan.upload
    return plan


def apply_sync(
    conn: HostConnection,
    deploy_dir: str,
    plan: SyncPlan,
    progress: Optional[Callable[[str, int, int], None]] = None,
    metadata: Optional[dict] = None,
) -> list[ReleaseFile]:
    """Make `releases/<id>` hold every planned file; returns the files uploaded.

    Uploads go to temp names, are verified by sha256 in one round trip, then renamed into
    place; `metadata` ({name: text}, e.g. deploy.json then SHA256SUMS) is renamed in last,
    in the given order.
    """
    release_dir = f"{deploy_dir}/releases/{plan.release_id}"
    links = [
        {"rel": item.rel, "source": source, "sha256": item.sha256} for item, source in plan.link
    ]
    dirs = sorted({posixpath.dirname(f"{release_dir}/{item.rel}") for item in plan.upload})
    script = render(
        "deploy_link.sh.j2",
        deploy_dir=deploy_dir,
        release_id=plan.release_id,
        release_dir=release_dir,
        links=links,
        dirs=dirs,
    )
    out = run_script(conn, script, timeout=600).stdout
    bad = {line[4:].strip() for line in out.splitlines() if line.startswith("bad ")}
    uploads = list(plan.upload) + [item for item, _ in plan.link if item.rel in bad]
    if bad:
        extra = sorted({posixpath.dirname(f"{release_dir}/{item.rel}") for item in uploads})
        conn.run("mkdir -p -- " + " ".join(shlex.quote(d) for d in extra), timeout=30)
    staged: list = []
    expected: dict = {}
    for item in uploads:
        final = f"{release_dir}/{item.rel}"
        tmp = conn.upload_temp(item.local, final, progress)
        staged.append((tmp, final))
        expected[tmp] = item.sha256
    with tempfile.TemporaryDirectory() as local_tmp:
        for name, text in (metadata or {}).items():
            local = Path(local_tmp) / name
            local.write_text(text, encoding="utf-8")
            final = f"{release_dir}/{name}"
            tmp = conn.upload_temp(local, final)
            staged.append((tmp, final))
            expected[tmp] = hashlib.sha256(text.encode("utf-8")).hexdigest()
    conn.verify(expected)
    for tmp, final in staged:
        conn.rename(tmp, final)
    return uploads


def sha256sums(files) -> str:
    """SHA256SUMS text (sha256sum format) of release files."""
    return "".join(f"{item.sha256}  {item.rel}\n" for item in sorted(files, key=lambda f: f.rel))


def activate(conn: HostConnection, deploy_dir: str, release_id: str, keep: int) -> list[str]:
    """Point `current` at the release (atomic rename) and prune; returns pruned release ids."""
    script = render(
        "deploy_activate.sh.j2", deploy_dir=deploy_dir, release_id=release_id, keep=keep
    )
    out = run_script(conn, script, timeout=300).stdout
    return [line.split()[1] for line in out.splitlines() if line.startswith("pruned ")]


def verify_release(conn: HostConnection, deploy_dir: str, release_id: str) -> None:
    """Check every file of a release against its SHA256SUMS on the host."""
    release = f"{deploy_dir}/releases/{release_id}"
    result = conn.run(
        f"cd {shlex.quote(release)} && sha256sum -c --quiet SHA256SUMS", check=False, timeout=300
    )
    if not result.ok:
        raise DeployError(
            f"{conn.host.name}: release {release_id} fails its SHA256SUMS: "
            f"{(result.stdout + result.stderr).strip()[-400:]}"
        )


# --- one deploy at a time per host ------------------------------------------------------

LOCK_WAIT = 600.0  # seconds to wait for another deploy to the same host
LOCK_STALE = 3600  # a lock older than this is taken over
_HELD: set = set()  # tokens of the locks this process holds now


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _lock_script(deploy_dir: str, owner: str, action: str) -> str:
    script = render("deploy_lock.sh.j2", deploy_dir=deploy_dir, owner=owner, action=action)
    return "bash -c " + shlex.quote(script)


def _stale(held: str) -> bool:
    """Is the lock described by `held <age> <node> <pid> <token>` left over by a dead deploy?"""
    parts = held.split()
    try:
        age, node, pid, token = int(parts[1]), parts[2], int(parts[3]), parts[4]
    except (IndexError, ValueError):
        return False
    if age > LOCK_STALE:
        return True
    if node != platform.node():
        return False
    if pid == os.getpid():
        return token not in _HELD  # an earlier run of this process lost its connection
    return not _pid_alive(pid)


def acquire_lock(conn: HostConnection, deploy_dir: str, wait: float = LOCK_WAIT) -> str:
    """Take the host's deploy lock, waiting for a running deploy; returns the owner string.

    A lock left by a dead deploy from this machine (or older than an hour) is taken over.
    """
    token = uuid.uuid4().hex[:12]
    owner = f"{platform.node()} {os.getpid()} {token}"
    deadline = time.monotonic() + wait
    while True:
        out = conn.run(_lock_script(deploy_dir, owner, "take"), timeout=60).stdout.strip()
        if out == "acquired":
            _HELD.add(token)
            return owner
        if _stale(out):
            conn.log.info("taking over a stale deploy lock: %s", out)
            conn.run(_lock_script(deploy_dir, owner, "break"), timeout=60)
            continue
        if time.monotonic() > deadline:
            raise DeployError(
                f"{conn.host.name}: another deploy holds {deploy_dir}/.deploy.lock "
                f"({out}); if none runs, remove that directory"
            )
        time.sleep(1.0)


def release_lock(conn: HostConnection, deploy_dir: str, owner: str) -> None:
    """Drop the lock if we still hold it (a lost connection leaves it; the next run takes over)."""
    _HELD.discard(owner.split()[-1])
    try:
        conn.run(_lock_script(deploy_dir, owner, "drop"), timeout=60, check=False)
    except DeployError:
        pass
