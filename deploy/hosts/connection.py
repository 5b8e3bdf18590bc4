"""One host abstraction for every workflow: `open_host(host)` → `run` / `put` / `get` / `close`.

SSH hosts get a Fabric `Connection` made safe: known hosts loaded (~/.ssh/known_hosts and the
project file) with RejectPolicy, connect/banner/auth/channel timeouts, keepalive and a timeout
on every command. `connection: local` hosts get the same interface on this machine.

    with open_host(host) as conn:
        out = conn.run("uname -m").stdout
        conn.put(Path("fp32.onnx"), conn.expand("~/x/fp32.onnx"), sha256=digest)
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shlex
import socket
import stat
import subprocess
import threading
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

from deploy.errors import DeployError
from deploy.hosts.errors import (
    AuthenticationError,
    ChangedHostKeyError,
    UnknownHostKeyError,
    UnreachableError,
)
from deploy.hosts.inventory import Host
from deploy.paths import known_hosts_files

CONNECT_TIMEOUT = 10.0  # TCP connect and SSH banner/auth, seconds
CHANNEL_TIMEOUT = 20.0  # opening a session/SFTP channel
KEEPALIVE = 10  # seconds between keepalive packets on an idle transport
COMMAND_TIMEOUT = 600.0  # default limit for one command
CHUNK = 256 * 1024
GET_MAX_BYTES = 64 * 1024**2  # default cap of one pulled file (bench.json is ~100 kB)
GET_TIMEOUT = 600.0  # default limit for one pulled file, seconds
# An upload may take 60 s plus 1 s per 64 KiB (a slow Wi-Fi Pi); a host that stops acking
# is cut off then, not waited on for ever.
UPLOAD_BASE_TIMEOUT = 60.0
UPLOAD_MIN_RATE = 64 * 1024  # bytes per second
# Captured output of one command, per stream: our largest (a build-log page, a sha256 list of
# a release) is ~1 MB; a host that prints more is cut off with an error, not buffered.
OUTPUT_MAX_BYTES = 8 * 1024**2

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


def _too_much(host: str, command: str) -> DeployError:
    return DeployError(
        f"{host}: command printed more than {OUTPUT_MAX_BYTES} bytes; stopped: {_short(command)}"
    )


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

    def get(
        self,
        remote: str,
        local: Path,
        max_bytes: int = GET_MAX_BYTES,
        timeout: float = GET_TIMEOUT,
    ) -> Path:
        """Download `remote` to `local` (temp name, then rename).

        The host is not trusted: `remote` must be a regular file (not a symlink, FIFO or device)
        of at most `max_bytes`, read with a byte cap and within `timeout` seconds; otherwise a
        DeployError and no file (not even a partial one) is left behind.
        """
        remote = self.expand(remote)
        local = Path(local)
        local.parent.mkdir(parents=True, exist_ok=True)
        tmp = local.with_name(local.name + f".part-{uuid.uuid4().hex[:8]}")
        try:
            self._download(remote, tmp, max_bytes, timeout)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        os.replace(tmp, local)
        return local

    def _download(self, remote: str, tmp: Path, max_bytes: int, timeout: float) -> None:
        raise NotImplementedError

    def _refuse(self, remote: str, mode: int, size: int, max_bytes: int) -> None:
        """DeployError unless (mode, size) of `remote` is a regular file within the cap."""
        if not stat.S_ISREG(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else "not a regular file"
            raise DeployError(f"{self.host.name}: {remote} is {kind}; refusing to pull it")
        if size > max_bytes:
            raise DeployError(
                f"{self.host.name}: {remote} is {size} bytes, more than the {max_bytes} allowed"
            )

    def _copy_capped(self, src, dst, remote: str, max_bytes: int, deadline: float) -> None:
        """Copy at most `max_bytes` from src to dst; DeployError past the cap or the deadline."""
        done = 0
        while True:
            block = src.read(min(CHUNK, max_bytes + 1 - done))
            if not block:
                return
            done += len(block)
            if done > max_bytes:
                raise DeployError(
                    f"{self.host.name}: {remote} grew past the {max_bytes} bytes allowed; "
                    "download stopped and removed"
                )
            dst.write(block)
            if time.monotonic() > deadline:
                raise DeployError(f"{self.host.name}: download of {remote} timed out")

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
    """The `connection: local` host: bash via subprocess, files via os."""

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        import tempfile

        # Output goes to unnamed temp files, not into memory; only a capped amount is read back.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.run(
                    ["bash", "-c", command],
                    input=(stdin or "").encode(),
                    stdout=out,
                    stderr=err,
                    timeout=timeout,
                    cwd=self.home(),  # like an SSH login: commands start in the home directory
                )
            except subprocess.TimeoutExpired:
                raise DeployError(
                    f"{self.host.name}: command timed out after {timeout:.0f} s: {_short(command)}"
                ) from None
            texts = []
            for handle in (out, err):
                handle.seek(0)
                data = handle.read(OUTPUT_MAX_BYTES + 1)
                if len(data) > OUTPUT_MAX_BYTES:
                    raise _too_much(self.host.name, command)
                texts.append(data.decode(errors="replace"))
        return CommandResult(command, proc.returncode, *texts)

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

    def _download(self, remote: str, tmp: Path, max_bytes: int, timeout: float) -> None:
        try:  # O_NONBLOCK: a FIFO must not block the open
            fd = os.open(remote, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise DeployError(f"{self.host.name}: {remote}: no such file on the host") from None
        except OSError as error:
            if error.errno == errno.ELOOP:
                self._refuse(remote, stat.S_IFLNK, 0, max_bytes)
            raise DeployError(
                f"{self.host.name}: {remote}: cannot read ({error.strerror})"
            ) from None
        with open(fd, "rb") as src:
            st = os.fstat(fd)
            self._refuse(remote, st.st_mode, st.st_size, max_bytes)
            with open(tmp, "wb") as dst:
                self._copy_capped(src, dst, remote, max_bytes, time.monotonic() + timeout)


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

    @contextmanager
    def _deadline(self, step: str, seconds: float):
        """Bound one blocking Paramiko step (an exec reply, a send, an SFTP request).

        Paramiko waits on some replies with no timeout (exec_command's event, invoke_subsystem,
        an SFTP reply); a hostile or hung host could hold us there for ever. When `seconds`
        pass, a timer closes the transport, which wakes every waiter, and the step raises
        UnreachableError naming the host and the step (the connection is unusable after that).
        """
        import paramiko

        fired = threading.Event()

        def fire():
            fired.set()
            self.fabric.transport.close()

        timer = threading.Timer(max(seconds, 0.0), fire)
        timer.daemon = True
        timer.start()
        try:
            yield
        except (paramiko.SSHException, *_LOST):
            if not fired.is_set():
                raise
        finally:
            timer.cancel()
        if fired.is_set():
            raise UnreachableError(
                f"{self.host.name} ({self.host.target}): no answer to {step} within "
                f"{seconds:.0f} s; connection closed"
            )

    def _run(self, command: str, timeout: float, stdin: str | None) -> CommandResult:
        """exec on a fresh session channel, reading stdout and stderr with a byte cap each
        (OUTPUT_MAX_BYTES) and a deadline; stdin gets `stdin` (or nothing) and then EOF."""
        import paramiko

        what = f"`{_short(command)}`"
        deadline = time.monotonic() + timeout
        try:
            with self._deadline(f"opening a session for {what}", CHANNEL_TIMEOUT):
                channel = self.fabric.transport.open_session(timeout=CHANNEL_TIMEOUT)
        except (paramiko.SSHException, *_LOST) as error:
            raise self._lost(what, error) from None
        # Wake on new output through a threading.Event, never channel.fileno(): Paramiko's
        # fd pipe races with channel.close() (the read end is closed before the write end), so
        # a transport thread still feeding a flooded channel got EPIPE and died — the
        # "connection dropped after a capped command" of issue 20.
        ready = threading.Event()
        channel.in_buffer.set_event(ready)
        channel.in_stderr_buffer.set_event(ready)
        out, err = bytearray(), bytearray()
        try:
            with self._deadline(f"exec of {what}", deadline - time.monotonic()):
                channel.exec_command(command)
            with self._deadline(f"stdin of {what}", deadline - time.monotonic()):
                if stdin:
                    channel.sendall(stdin.encode())
                channel.shutdown_write()
            while True:
                while channel.recv_ready() and len(out) <= OUTPUT_MAX_BYTES:
                    out += channel.recv(CHUNK)
                while channel.recv_stderr_ready() and len(err) <= OUTPUT_MAX_BYTES:
                    err += channel.recv_stderr(CHUNK)
                if len(out) > OUTPUT_MAX_BYTES or len(err) > OUTPUT_MAX_BYTES:
                    raise _too_much(self.host.name, command)
                if channel.exit_status_ready() and not (
                    channel.recv_ready() or channel.recv_stderr_ready()
                ):
                    if channel.closed or channel.eof_received:
                        break
                left = deadline - time.monotonic()
                if left <= 0:
                    raise DeployError(
                        f"{self.host.name}: command timed out after {timeout:.0f} s: "
                        f"{_short(command)}"
                    )
                if channel.eof_received:  # output closed, process still running: wait calmly
                    time.sleep(min(left, 0.05))
                else:  # short waits: a wake-up lost between two buffers costs 0.1 s at most
                    ready.wait(min(left, 0.1))
        except (paramiko.SSHException, *_LOST) as error:
            raise self._lost(what, error) from None
        finally:
            channel.close()  # on a timeout or overflow: the remote side sees the session go
        exited = channel.exit_status
        if exited is None or exited < 0:
            raise UnreachableError(
                f"{self.host.name} ({self.host.target}): connection lost during {what}"
            )
        return CommandResult(
            command, exited, out.decode(errors="replace"), err.decode(errors="replace")
        )

    def sftp(self):
        """The (cached) Paramiko SFTP client of this connection."""
        import paramiko

        if self._sftp is None:
            try:
                with self._deadline("opening SFTP", CHANNEL_TIMEOUT):
                    self._sftp = self.fabric.client.open_sftp()
            except (paramiko.SSHException, *_LOST) as error:
                raise self._lost("opening SFTP", error) from None
        return self._sftp

    def _upload(self, local: Path, tmp: str, progress: Progress | None) -> None:
        import paramiko

        total = local.stat().st_size
        callback = (lambda done, _total: progress(local.name, done, total)) if progress else None
        limit = UPLOAD_BASE_TIMEOUT + total / UPLOAD_MIN_RATE
        try:
            sftp = self.sftp()
            with open(local, "rb") as handle, self._deadline(f"upload of {local.name}", limit):
                sftp.putfo(handle, tmp, file_size=total, callback=callback, confirm=True)
        except (paramiko.SSHException, *_LOST) as error:
            raise self._lost(f"upload of {local.name}", error) from None
        if progress and total == 0:
            progress(local.name, 0, 0)

    def _rename(self, tmp: str, remote: str) -> None:
        import paramiko

        try:
            sftp = self.sftp()
            with self._deadline(f"rename to {remote}", CHANNEL_TIMEOUT):
                sftp.posix_rename(tmp, remote)
        except IOError as error:
            if isinstance(error, (EOFError, socket.error)) or error.errno is None:
                raise self._lost(f"rename to {remote}", error) from None
            raise DeployError(
                f"{self.host.name}: cannot rename {tmp} to {remote}: {error}"
            ) from None
        except paramiko.SSHException as error:
            raise self._lost(f"rename to {remote}", error) from None

    def _download(self, remote: str, tmp: Path, max_bytes: int, timeout: float) -> None:
        import paramiko

        sftp = self.sftp()
        channel = sftp.get_channel()
        channel.settimeout(timeout)  # every reply (lstat, open, read) waits at most this long
        deadline = time.monotonic() + timeout
        try:
            st = sftp.lstat(remote)
            self._refuse(remote, st.st_mode or 0, st.st_size or 0, max_bytes)
            with sftp.open(remote, "rb") as src, open(tmp, "wb") as dst:
                src.prefetch(st.st_size)
                self._copy_capped(src, dst, remote, max_bytes, deadline)
            channel.settimeout(None)
        except FileNotFoundError:
            channel.settimeout(None)
            raise DeployError(f"{self.host.name}: {remote}: no such file on the host") from None
        except socket.timeout:
            self._drop_sftp()  # its request/reply stream is out of step now
            raise DeployError(
                f"{self.host.name}: download of {remote} timed out after {timeout:.0f} s"
            ) from None
        except DeployError:
            self._drop_sftp()  # a prefetch may still be running
            raise
        except (paramiko.SSHException, *_LOST) as error:
            self._drop_sftp()
            if (
                isinstance(error, OSError)
                and not isinstance(error, ConnectionError)
                and error.errno
            ):
                raise DeployError(f"{self.host.name}: {remote}: cannot read ({error})") from None
            raise self._lost(f"download of {remote}", error) from None

    def _drop_sftp(self) -> None:
        try:
            if self._sftp is not None:
                self._sftp.close()
        except Exception:  # noqa: BLE001 - closing a broken session must not raise
            pass
        self._sftp = None

    def close(self) -> None:
        self._drop_sftp()
        try:
            self.fabric.close()
        except (EOFError, OSError):  # a transport the host already dropped: nothing to release
            pass


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
        forward_agent=False,  # never lend the user's agent to a host (ForwardAgent in ~/.ssh/config)
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


def key_is_encrypted(path: Path) -> bool:
    """True when the private key file at `path` needs a passphrase (OpenSSH or PEM format)."""
    import base64
    import struct

    try:
        text = Path(path).expanduser().read_text(errors="replace")[:100_000]
    except OSError:
        return False
    if "BEGIN ENCRYPTED PRIVATE KEY" in text or "Proc-Type: 4,ENCRYPTED" in text:
        return True
    begin, end = "-----BEGIN OPENSSH PRIVATE KEY-----", "-----END OPENSSH PRIVATE KEY-----"
    if begin not in text or end not in text:
        return False
    body = text.split(begin, 1)[1].split(end, 1)[0]
    try:
        blob = base64.b64decode("".join(body.split()))
    except ValueError:
        return False
    magic = b"openssh-key-v1\0"
    if not blob.startswith(magic) or len(blob) < len(magic) + 4:
        return False
    (size,) = struct.unpack(">I", blob[len(magic) : len(magic) + 4])
    cipher = blob[len(magic) + 4 : len(magic) + 4 + size]
    return cipher != b"none"


def connect_error(host: Host, conn, error: BaseException) -> DeployError:
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
    if isinstance(error, paramiko.AuthenticationException) and (
        isinstance(error, paramiko.PasswordRequiredException)
        or (host.key_file and key_is_encrypted(Path(host.key_file)))
    ):
        key = f"key_file {host.key_file}" if host.key_file else "a key in ~/.ssh"
        return AuthenticationError(
            f"{where}: {key} is encrypted (it has a passphrase) and no ssh-agent offered it; "
            "passphrases are never asked for or stored: load the key with "
            f"`ssh-add {host.key_file or 'KEY'}` into a running ssh-agent (SSH_AUTH_SOCK), "
            "then retry"
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
        raise connect_error(host, conn, error) from None
    conn.transport.set_keepalive(KEEPALIVE)
    return SSHConnection(host, conn, command_timeout, log)


def fingerprint(key) -> str:
    """OpenSSH-style `SHA256:…` fingerprint of a Paramiko public key."""
    import base64

    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")
