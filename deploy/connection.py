"""One host abstraction for every workflow: `open_host(host)` → `run` / `put` / `get` / `close`.

SSH hosts get a Fabric `Connection` made safe: known hosts loaded (~/.ssh/known_hosts and the
project file) with RejectPolicy, connect/banner/auth/channel timeouts, keepalive and a timeout
on every command. `connection: local` hosts get the same interface on this machine.

    with open_host(host) as conn:
        out = conn.run("uname -m").stdout
        conn.put(Path("fp32.onnx"), conn.expand("~/x/fp32.onnx"), sha256=digest)
"""

from __future__ import annotations

import hashlib
import logging
import os
import shlex
import shutil
import socket
import subprocess
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from deploy.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    DeployError,
    UnknownHostKeyError,
    UnreachableError,
)
from deploy.hostkeys import known_hosts_files
from deploy.inventory import Host

CONNECT_TIMEOUT = 10.0  # TCP connect and SSH banner/auth, seconds
CHANNEL_TIMEOUT = 20.0  # opening a session/SFTP channel
KEEPALIVE = 10  # seconds between keepalive packets on an idle transport
COMMAND_TIMEOUT = 600.0  # default limit for one command
CHUNK = 256 * 1024

# progress(name, bytes_done, bytes_total) — injected by the caller (tqdm in tasks.py).
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class CommandResult:
    """What one command did: its exit status and captured output."""

    command: str
    exited: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.exited == 0


def _short(command: str) -> str:
    first = command.strip().splitlines()[0] if command.strip() else command
    return first if len(first) <= 80 else first[:77] + "..."


class HostConnection:
    """Interface shared by SSH and local hosts; use as a context manager.

    `run(cmd, timeout=…, check=True)` runs a bash command and returns a CommandResult (raises
    DeployError on a non-zero exit when `check`); `put(local, remote, sha256=…, progress=…)`
    uploads to a temp name, verifies the digest if given, then renames atomically and returns the
    bytes sent; `get(remote, local)` downloads atomically. Remote paths must be absolute or start
    with `~` (see `expand`). `bytes_sent` counts payload bytes uploaded over this connection.
    """

    def __init__(self, host: Host, command_timeout: float, log: logging.Logger | None):
        self.host = host
        self.command_timeout = command_timeout
        self.log = log or logging.getLogger(f"deploy.host.{host.name}")
        self.bytes_sent = 0
        self._home: str | None = None

    # -- to implement ---------------------------------------------------------------
    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        raise NotImplementedError

    def _upload(self, local: Path, tmp: str, progress: Progress | None) -> None:
        raise NotImplementedError

    def _rename(self, tmp: str, remote: str) -> None:
        raise NotImplementedError

    def get(self, remote: str, local: Path) -> Path:
        """Download `remote` to `local` (temp name, then rename)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release the connection (idempotent)."""

    # -- shared ---------------------------------------------------------------------
    def __enter__(self) -> HostConnection:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(
        self,
        command: str,
        timeout: Optional[float] = None,
        check: bool = True,
        stdin: Optional[str] = None,
    ) -> CommandResult:
        """Run `command` with bash on the host; every command has a timeout (seconds)."""
        limit = timeout if timeout is not None else self.command_timeout
        self.log.debug("$ %s", command)
        result = self._run(command, limit, stdin)
        self.log.debug("exit %d\n%s%s", result.exited, result.stdout, result.stderr)
        if check and not result.ok:
            detail = (result.stderr.strip() or result.stdout.strip())[-800:]
            raise DeployError(
                f"{self.host.name}: command failed (exit {result.exited}): {_short(command)}"
                + (f"\n{detail}" if detail else "")
            )
        return result

    def home(self) -> str:
        """The login user's home directory on the host."""
        if self._home is None:
            self._home = self.run('printf "%s" "$HOME"', timeout=30).stdout.strip()
            if not self._home.startswith("/"):
                raise DeployError(f"{self.host.name}: cannot tell the home directory ($HOME)")
        return self._home

    def remember_home(self, home: str) -> None:
        """Record $HOME when another probe already printed it (one round trip less)."""
        if self._home is None:
            self._home = home

    def expand(self, path: str) -> str:
        """Resolve a leading `~` against the host's home (SFTP does not expand it)."""
        if path == "~":
            return self.home()
        if path.startswith("~/"):
            return self.home().rstrip("/") + path[1:]
        return path

    def put(
        self,
        local: Path,
        remote: str,
        sha256: Optional[str] = None,
        progress: Optional[Progress] = None,
    ) -> int:
        """Upload `local` to `remote` atomically; verify `sha256` on the host if given."""
        remote = self.expand(remote)
        parent = os.path.dirname(remote)
        if parent:
            self.run(f"mkdir -p {shlex.quote(parent)}", timeout=30)
        tmp = self.upload_temp(local, remote, progress)
        if sha256 is not None:
            self.verify({tmp: sha256})
        self.rename(tmp, remote)
        return Path(local).stat().st_size

    def upload_temp(self, local: Path, remote: str, progress: Optional[Progress] = None) -> str:
        """Upload `local` next to `remote` under a temp name (parent must exist); returns it.

        With `verify` and `rename` this is `put` in steps, so many files need one round trip
        for their digests instead of one each.
        """
        remote = self.expand(remote)
        tmp = f"{remote}.part-{uuid.uuid4().hex[:8]}"
        size = Path(local).stat().st_size
        self.log.info("upload %s -> %s (%d bytes)", local, remote, size)
        self._upload(Path(local), tmp, progress)
        self.bytes_sent += size
        return tmp

    def verify(self, expected: dict) -> None:
        """Check {remote path: sha256} on the host in one command; bad files are removed."""
        if not expected:
            return
        paths = " ".join(shlex.quote(path) for path in expected)
        out = self.run(f"sha256sum -- {paths}", timeout=300, check=False).stdout
        actual = {}
        for line in out.splitlines():
            digest, _, path = line.partition("  ")
            actual[path] = digest
        bad = [path for path, digest in expected.items() if actual.get(path) != digest]
        if bad:
            quoted = " ".join(shlex.quote(path) for path in bad)
            self.run(f"rm -f -- {quoted}", check=False, timeout=30)
            raise DeployError(
                f"{self.host.name}: {bad[0]}: sha256 after upload is "
                f"{actual.get(bad[0], '?')}, expected {expected[bad[0]]}"
            )

    def rename(self, tmp: str, remote: str) -> None:
        """Atomically replace `remote` by `tmp` (POSIX rename)."""
        self._rename(self.expand(tmp), self.expand(remote))


class LocalConnection(HostConnection):
    """The `connection: local` host: bash via subprocess, files via shutil."""

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        try:
            proc = subprocess.run(
                ["bash", "-c", command],
                input=stdin if stdin is not None else "",
                capture_output=True,
                text=True,
                timeout=timeout,
                cwd=self.home(),  # like an SSH login: commands start in the home directory
            )
        except subprocess.TimeoutExpired:
            raise DeployError(
                f"{self.host.name}: command timed out after {timeout:.0f} s: {_short(command)}"
            ) from None
        return CommandResult(command, proc.returncode, proc.stdout, proc.stderr)

    def home(self) -> str:
        return str(Path.home())

    def _upload(self, local: Path, tmp: str, progress: Progress | None) -> None:
        total = local.stat().st_size
        done = 0
        with open(local, "rb") as src, open(tmp, "wb") as dst:
            for block in iter(lambda: src.read(CHUNK), b""):
                dst.write(block)
                done += len(block)
                if progress:
                    progress(local.name, done, total)
        if progress and total == 0:
            progress(local.name, 0, 0)

    def _rename(self, tmp: str, remote: str) -> None:
        os.replace(tmp, remote)

    def get(self, remote: str, local: Path) -> Path:
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + f".part-{uuid.uuid4().hex[:8]}")
        shutil.copyfile(self.expand(remote), tmp)
        os.replace(tmp, local)
        return local


_LOST = (EOFError, OSError, socket.error)


class SSHConnection(HostConnection):
    """An SSH host through a Fabric Connection with verified host keys and timeouts."""

    def __init__(self, host: Host, fabric_connection, command_timeout: float, log):
        super().__init__(host, command_timeout, log)
        self.fabric = fabric_connection
        self._sftp = None

    def _lost(self, what: str, error: BaseException) -> UnreachableError:
        return UnreachableError(
            f"{self.host.name} ({self.host.target}): connection lost during {what}: "
            f"{type(error).__name__}: {error}"
        )

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        import io

        import paramiko
        from invoke.exceptions import CommandTimedOut

        try:
            result = self.fabric.run(
                command,
                hide=True,
                warn=True,
                pty=False,
                timeout=timeout,
                in_stream=io.StringIO(stdin) if stdin is not None else False,
            )
        except CommandTimedOut:
            raise DeployError(
                f"{self.host.name}: command timed out after {timeout:.0f} s: {_short(command)}"
            ) from None
        except (paramiko.SSHException, *_LOST) as error:
            raise self._lost(f"`{_short(command)}`", error) from None
        if result.exited is None or result.exited < 0:
            raise UnreachableError(
                f"{self.host.name} ({self.host.target}): connection lost during `{_short(command)}`"
            )
        return CommandResult(command, result.exited, result.stdout, result.stderr)

    def sftp(self):
        """The (cached) Paramiko SFTP client of this connection."""
        import paramiko

        if self._sftp is None:
            try:
                self._sftp = self.fabric.client.open_sftp()
            except (paramiko.SSHException, *_LOST) as error:
                raise self._lost("opening SFTP", error) from None
        return self._sftp

    def _upload(self, local: Path, tmp: str, progress: Progress | None) -> None:
        import paramiko

        total = local.stat().st_size
        callback = (lambda done, _total: progress(local.name, done, total)) if progress else None
        try:
            with open(local, "rb") as handle:
                self.sftp().putfo(handle, tmp, file_size=total, callback=callback, confirm=True)
        except (paramiko.SSHException, *_LOST) as error:
            raise self._lost(f"upload of {local.name}", error) from None
        if progress and total == 0:
            progress(local.name, 0, 0)

    def _rename(self, tmp: str, remote: str) -> None:
        import paramiko

        try:
            self.sftp().posix_rename(tmp, remote)
        except IOError as error:
            if isinstance(error, (EOFError, socket.error)) or error.errno is None:
                raise self._lost(f"rename to {remote}", error) from None
            raise DeployError(
                f"{self.host.name}: cannot rename {tmp} to {remote}: {error}"
            ) from None
        except paramiko.SSHException as error:
            raise self._lost(f"rename to {remote}", error) from None

    def get(self, remote: str, local: Path) -> Path:
        import paramiko

        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + f".part-{uuid.uuid4().hex[:8]}")
        try:
            self.sftp().get(self.expand(remote), str(tmp))
        except FileNotFoundError:
            raise DeployError(f"{self.host.name}: {remote}: no such file on the host") from None
        except (paramiko.SSHException, *_LOST) as error:
            tmp.unlink(missing_ok=True)
            raise self._lost(f"download of {remote}", error) from None
        os.replace(tmp, local)
        return local

    def close(self) -> None:
        try:
            if self._sftp is not None:
                self._sftp.close()
        except Exception:  # noqa: BLE001 - closing a dead connection must not raise
            pass
        self._sftp = None
        self.fabric.close()


def fabric_connection(host: Host, connect_timeout: float = CONNECT_TIMEOUT):
    """A not-yet-opened Fabric Connection for `host` with RejectPolicy and our known hosts."""
    from fabric import Config, Connection

    if host.is_local:
        raise DeployError(f"{host.name}: is a local host; it has no SSH connection")
    connect_kwargs: dict = {
        "banner_timeout": connect_timeout,
        "auth_timeout": connect_timeout,
        "channel_timeout": CHANNEL_TIMEOUT,
    }
    if host.key_file:
        key = Path(host.key_file).expanduser()
        if not key.is_file():
            raise AuthenticationError(
                f"{host.name}: key_file {host.key_file} does not exist (inventory field key_file)"
            )
        connect_kwargs["key_filename"] = [str(key)]
    conn = Connection(
        host.address,
        user=host.user,
        port=host.port,
        config=Config(),
        connect_timeout=connect_timeout,
        connect_kwargs=connect_kwargs,
    )
    _verify_host_keys(conn.client)
    _harden_jump_hosts(conn, connect_kwargs, connect_timeout)
    return conn


def _verify_host_keys(client) -> None:
    """Our known hosts (the user's and the project's) and RejectPolicy on a Paramiko client."""
    import paramiko

    for path in known_hosts_files():
        if path.is_file():
            try:
                client.load_system_host_keys(str(path))
            except (OSError, paramiko.SSHException) as error:
                raise DeployError(f"{path}: cannot read known hosts: {error}") from None
    client.set_missing_host_key_policy(paramiko.RejectPolicy())


def _harden_jump_hosts(conn, connect_kwargs: dict, connect_timeout: float) -> None:
    """ProxyJump hops from ~/.ssh/config get the same checks as the host itself.

    Fabric builds each hop as a plain Connection with AutoAddPolicy and no known hosts, so a
    jump host's key would never be checked; ProxyCommand is the user's own command and stays.
    """
    from fabric import Connection

    hop = conn.gateway
    while isinstance(hop, Connection):
        _verify_host_keys(hop.client)
        hop.connect_timeout = connect_timeout
        for key in ("banner_timeout", "auth_timeout", "channel_timeout"):
            hop.connect_kwargs[key] = connect_kwargs[key]
        hop = hop.gateway


def _failed_jump_host(conn):
    """The ProxyJump hop that could not be opened, if the failure was on the way there."""
    from fabric import Connection

    hop = conn.gateway
    while isinstance(hop, Connection):
        if not hop.is_connected:
            inner = hop.gateway
            while isinstance(inner, Connection) and not inner.is_connected:
                hop, inner = inner, inner.gateway
            return hop
        hop = hop.gateway
    return None


def _connect_error(host: Host, conn, error: BaseException) -> DeployError:
    """Translate what Paramiko raised while connecting into one clear error."""
    import paramiko

    where = f"{host.name} ({conn.user}@{conn.host}:{conn.port})"
    key_name = conn.host if conn.port == 22 else f"[{conn.host}]:{conn.port}"
    jump = _failed_jump_host(conn)
    if jump is not None:
        return _jump_error(host, jump, error)
    if isinstance(error, paramiko.BadHostKeyException):
        return ChangedHostKeyError(
            f"{where}: HOST KEY CHANGED — the host presented {error.key.get_name()} "
            f"{fingerprint(error.key)} but {fingerprint(error.expected_key)} is recorded. "
            "Refusing to connect (this can be an interception). If the host was reinstalled, "
            f"remove the old key with `ssh-keygen -R '{key_name}' -f FILE` for each of "
            f"{', '.join(map(str, known_hosts_files()))}, then run "
            f"`invoke trust-host --host {host.name}`"
        )
    if isinstance(error, paramiko.AuthenticationException):
        return AuthenticationError(
            f"{where}: authentication failed (tried key_file, ssh-agent and ~/.ssh keys; "
            "no passwords): install your public key in the host's ~/.ssh/authorized_keys"
        )
    if isinstance(error, paramiko.SSHException) and "No authentication methods" in str(error):
        return AuthenticationError(
            f"{where}: no key to offer: set key_file in the inventory, load the key into "
            "ssh-agent, or name it as IdentityFile in ~/.ssh/config"
        )
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        return UnknownHostKeyError(
            f"{where}: unknown host key (not in {' or '.join(map(str, known_hosts_files()))}); "
            f"check it and record it with `invoke trust-host --host {host.name}`"
        )
    if isinstance(error, (socket.timeout, TimeoutError)):
        return UnreachableError(f"{where}: unreachable: timed out")
    if isinstance(error, socket.gaierror):
        return UnreachableError(f"{where}: unreachable: cannot resolve {conn.host}")
    if isinstance(error, paramiko.ssh_exception.NoValidConnectionsError):
        return UnreachableError(f"{where}: unreachable: connection refused")
    return UnreachableError(f"{where}: unreachable: {type(error).__name__}: {error}")


def _jump_error(host: Host, jump, error: BaseException) -> DeployError:
    """A failure at a ProxyJump hop (from ~/.ssh/config), named as the hop's."""
    import paramiko

    where = (
        f"{host.name}: jump host {jump.user}@{jump.host}:{jump.port} (ProxyJump in ~/.ssh/config)"
    )
    key_name = jump.host if jump.port == 22 else f"[{jump.host}]:{jump.port}"
    if isinstance(error, paramiko.BadHostKeyException):
        return ChangedHostKeyError(
            f"{where}: HOST KEY CHANGED — it presented {error.key.get_name()} "
            f"{fingerprint(error.key)} but {fingerprint(error.expected_key)} is recorded. "
            "Refusing to connect (this can be an interception)"
        )
    if isinstance(error, paramiko.SSHException) and "not found in known_hosts" in str(error):
        return UnknownHostKeyError(
            f"{where}: unknown host key for {key_name} (not in "
            f"{' or '.join(map(str, known_hosts_files()))}); check it and record it, e.g. add "
            "the jump host to the inventory and run `invoke trust-host` for it"
        )
    if isinstance(error, paramiko.AuthenticationException):
        return AuthenticationError(f"{where}: authentication failed")
    return UnreachableError(f"{where}: unreachable: {type(error).__name__}: {error}")


def open_host(
    host: Host,
    connect_timeout: float = CONNECT_TIMEOUT,
    command_timeout: float = COMMAND_TIMEOUT,
    log: logging.Logger | None = None,
) -> HostConnection:
    """Connect to `host` (verified host key, key auth, timeouts, keepalive) or wrap the local one.

    Raises UnreachableError (or its subclasses AuthenticationError, UnknownHostKeyError,
    ChangedHostKeyError) when the connection cannot be made.
    """
    if host.is_local:
        return LocalConnection(host, command_timeout, log)
    import paramiko

    conn = fabric_connection(host, connect_timeout)
    try:
        conn.open()
    except (paramiko.SSHException, OSError, EOFError) as error:
        conn.close()
        raise _connect_error(host, conn, error) from None
    conn.transport.set_keepalive(KEEPALIVE)
    return SSHConnection(host, conn, command_timeout, log)


def fingerprint(key) -> str:
    """OpenSSH-style `SHA256:…` fingerprint of a Paramiko public key."""
    import base64

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
