"""A throwaway OpenSSH server on 127.0.0.1 for tests and the deploy benchmark.

Each `Sshd` gets its own directory with a generated ed25519 host key, a config (no PAM, key
auth only, root login by key — the tests run as root) and a PidFile; `start()` runs
`/usr/sbin/sshd -D -e` on a free high port, `kill()` kills the server *and* its per-connection
children (as if the machine vanished), `stop()` is the polite version.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
from pathlib import Path

SSHD = "/usr/sbin/sshd"


def keygen(path: Path, comment: str = "retinaface-pi-test") -> Path:
    """Generate an ed25519 key pair at `path` (+ `.pub`) with no passphrase."""
    path.parent.mkdir(parents=True, exist_ok=True)
    for old in (path, path.with_suffix(".pub")):
        old.unlink(missing_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
    )
    return path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _children(pid: int) -> list[int]:
    kids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid:
            kids.append(int(entry.name))
    return kids


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie, already dead, counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _descendants(pid: int) -> list[int]:
    found, todo = [], [pid]
    while todo:
        for kid in _children(todo.pop()):
            found.append(kid)
            todo.append(kid)
    return found


class Sshd:
    """One sshd on 127.0.0.1:`port` that lets `client_key` log in as root."""

    def __init__(self, root: Path, client_pub: Path, port: int | None = None):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.host_key = self.root / "ssh_host_ed25519_key"
        if not self.host_key.exists():
            keygen(self.host_key, "test-host")
        self.authorized = self.root / "authorized_keys"
        self.authorized.write_text(Path(client_pub).read_text())
        self.authorized.chmod(0o600)
        self.config = self.root / "sshd_config"
        self.log = self.root / "sshd.log"
        self.proc: subprocess.Popen | None = None
        self.extra_config: list[str] = []  # more sshd_config lines (e.g. a ForceCommand)

    @property
    def known_hosts_line(self) -> str:
        kind, b64 = self.host_key.with_suffix(".pub").read_text().split()[:2]
        return f"[127.0.0.1]:{self.port} {kind} {b64}\n"

    def regenerate_host_key(self) -> None:
        """A new host key, as after a reinstall (takes effect on the next start)."""
        keygen(self.host_key, "test-host-new")

    def write_config(self) -> None:
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"PidFile {self.root / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized}",
                    "PermitRootLogin prohibit-password",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "UsePAM no",
                    "StrictModes no",
                    "PrintMotd no",
                    "MaxStartups 50:30:100",
                    "MaxSessions 50",
                    "LogLevel VERBOSE",
                    "Subsystem sftp internal-sftp",
                    *self.extra_config,
                    "",
                ]
            )
        )

    def start(self, timeout: float = 10.0) -> Sshd:
        Path("/run/sshd").mkdir(mode=0o755, exist_ok=True)  # privilege separation dir
        self.write_config()
        subprocess.run([SSHD, "-t", "-f", str(self.config)], check=True)
        log = open(self.log, "ab")
        self.proc = subprocess.Popen(
            [SSHD, "-D", "-e", "-f", str(self.config)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited: {self.log.read_text()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.settimeout(2)
                    if sock.recv(64).startswith(b"SSH-2.0"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(
            f"sshd on port {self.port} did not start: {self.log.read_text()[-2000:]}"
        )

    def kill(self) -> None:
        """SIGKILL the server and every session it forked (the host vanished)."""
        if self.proc is None:
            return
        for pid in [self.proc.pid, *_descendants(self.proc.pid)]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)
        self.proc = None

    def stop(self) -> list[int]:
        """Terminate the server and its sessions; returns the pids that outlived a SIGKILL."""
        if self.proc is None:
            return []
        kids = _descendants(self.proc.pid)
        self.proc.terminate()
        for pid in kids:
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.kill()
        self.proc = None
        for _ in range(200):  # sessions exit on SIGTERM; give them up to 10 s, then SIGKILL
            kids = [pid for pid in kids if alive(pid)]
            if not kids:
                return []
            time.sleep(0.05)
        for pid in kids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return kids
