"""`invoke trust-host`: fetch a host's key, show its fingerprint, record it on confirmation."""

from __future__ import annotations

import os
import socket
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from deploy.errors import DeployError
from deploy.hosts.connection import CONNECT_TIMEOUT, connect_error, fabric_connection, fingerprint
from deploy.hosts.errors import ChangedHostKeyError
from deploy.hosts.inventory import Host
from deploy.paths import known_hosts_files, project_known_hosts
from retinaface.files import write_atomic


@dataclass(frozen=True)
class TrustResult:
    """What trust-host did for one host."""

    host: str
    key_name: str  # `addr` or `[addr]:port`, as written in known_hosts
    key_type: str
    fingerprint: str
    status: str  # "recorded", "already-trusted", "declined", "local"
    file: Path | None = None


def _known_entries(key_name: str):
    """(file, HostKeys) pairs that mention `key_name`."""
    import paramiko

    found = []
    for path in known_hosts_files():
        if path.is_file():
            keys = paramiko.HostKeys(str(path))
            entry = keys.lookup(key_name)
            if entry:
                found.append((path, entry))
    return found


def fetch_host_key(host: Host, timeout: float = CONNECT_TIMEOUT):
    """(key_name, key) the host presents, without authenticating or trusting anything."""
    import paramiko

    conn = fabric_connection(host, timeout)
    key_name = conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"
    try:
        # The same way in as a deploy: ProxyCommand, or ProxyJump through checked jump hosts.
        if conn.gateway:
            sock = conn.open_gateway()
        else:
            sock = socket.create_connection((conn.host, conn.port), timeout=timeout)
    except (paramiko.SSHException, OSError, EOFError) as error:
        _close_gateway(conn)
        raise connect_error(host, conn, error) from None
    transport = paramiko.Transport(sock)
    try:
        transport.banner_timeout = timeout
        # Prefer the key type already recorded, so a comparison is like for like.
        for _path, entry in _known_entries(key_name):
            options = transport.get_security_options()
            known = [kind for kind in entry.keys() if kind in options.key_types]
            if known:
                options.key_types = known + [k for k in options.key_types if k not in known]
                break
        transport.start_client(timeout=timeout)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, OSError, EOFError) as error:
        raise connect_error(host, conn, error) from None
    finally:
        transport.close()
        _close_gateway(conn)
    return key_name, key


def _close_gateway(conn) -> None:
    """Close the ProxyJump hops `open_gateway` opened (a ProxyCommand ends with its socket)."""
    hop = conn.gateway
    while hop and not isinstance(hop, str):
        hop.close()
        hop = hop.gateway


def trust_host(host: Host, confirm: Callable[[TrustResult], bool]) -> TrustResult:
    """Show `host`'s key fingerprint and, if `confirm(result)` says yes, add it to the project file.

    A key that differs from a recorded one is never replaced: ChangedHostKeyError says how to fix.
    """
    if host.is_local:
        return TrustResult(host.name, "local", "-", "-", "local")
    key_name, key = fetch_host_key(host)
    result = TrustResult(host.name, key_name, key.get_name(), fingerprint(key), "recorded")
    entries = _known_entries(key_name)
    for path, entry in entries:
        if entry.get(key.get_name()) == key:
            return TrustResult(**{**result.__dict__, "status": "already-trusted", "file": path})
    # Any key on record and a different one offered is a changed key, whatever its type: an
    # impostor that offers only another algorithm must not get its key recorded.
    for path, entry in entries:
        for kind, recorded in entry.items():
            raise ChangedHostKeyError(
                f"{host.name} ({key_name}): HOST KEY CHANGED — it presents {key.get_name()} "
                f"{fingerprint(key)} but {path} records {kind} {fingerprint(recorded)}. "
                f"Not replacing it. If the host was reinstalled: "
                f"`ssh-keygen -R '{key_name}' -f {path}`, then run trust-host again"
            )
    if not confirm(result):
        return TrustResult(**{**result.__dict__, "status": "declined"})
    target = project_known_hosts()
    append_known_host(target, f"{key_name} {key.get_name()} {key.get_base64()}\n")
    return TrustResult(**{**result.__dict__, "file": target})


def append_known_host(path: Path, line: str) -> None:
    """Append one known_hosts line to `path`; never replaces what is recorded."""
    old = _read_known_hosts(path)
    _write_known_hosts(path, old + [line.rstrip("\n")])


def record_own_host_key(key_name: str, kind: str, blob: str) -> Path:
    """Record the key of a host this workstation made itself (an emulated Pi, whose key is
    generated per root filesystem here): its earlier lines for exactly `key_name` go, the new
    line is appended to the project file. Never for a host's word about its own key: a host
    that changed its key is refused by `trust_host`."""
    path = project_known_hosts()
    kept = [line for line in _read_known_hosts(path) if line.split(" ", 1)[0] != key_name]
    _write_known_hosts(path, kept + [f"{key_name} {kind} {blob}"])
    return path


def _read_known_hosts(path: Path) -> list:
    try:
        return path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return []


def _write_known_hosts(path: Path, lines: list) -> None:
    """The one writer of known_hosts: whole or not at all (temp name, rename), 0600, its .ssh
    folder 0700; a planted temp name is never followed (mkstemp)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.parent.name == ".ssh":
            os.chmod(path.parent, 0o700)
        write_atomic(path, "".join(line + "\n" for line in lines), 0o600)
    except OSError as error:
        raise DeployError(f"{path}: cannot write known hosts: {error.strerror}") from None
