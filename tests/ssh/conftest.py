"""Fixtures of the SSH tier: real OpenSSH servers on 127.0.0.1, a client with its own HOME.

sshd runs as root (the tests run as root here and in CI) and lets the per-run client key log in
as root; each server stands for one host and gets its own deploy_dir under the test's tmp dir.
The client's HOME and RETINAFACE_PI_KNOWN_HOSTS point into tmp, so ~/.ssh is never touched.
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path

import pytest

from tests.ssh.sshd import Sshd, alive, keygen

pytestmark = pytest.mark.ssh


@pytest.fixture(scope="session")
def client_key(tmp_path_factory) -> Path:
    return keygen(tmp_path_factory.mktemp("client") / "id_ed25519")


@pytest.fixture(autouse=True)
def client_env(tmp_path, monkeypatch) -> Path:
    """A fresh client HOME (no ~/.ssh, no agent) and a tmp project known_hosts file."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    known = tmp_path / "project" / ".ssh" / "known_hosts"
    monkeypatch.setenv("RETINAFACE_PI_KNOWN_HOSTS", str(known))
    return known


class Lab:
    """Servers, the inventory that names them, and helpers to trust and inspect them."""

    def __init__(self, root: Path, client_key: Path, known_hosts: Path):
        self.root = root
        self.client_key = client_key
        self.known_hosts = known_hosts
        self.servers: dict[str, Sshd] = {}
        self.started: list[Sshd] = []  # every server ever added, so close() stops them all
        self.inventory = root / "inventory.yaml"

    def add(self, name: str, start: bool = True) -> Sshd:
        """A server for host `name`; adding a name again stops the earlier server first."""
        if name in self.servers:
            self.servers[name].stop()
        server = Sshd(self.root / "servers" / name, self.client_key.with_suffix(".pub"))
        self.servers[name] = server
        self.started.append(server)
        if start:
            server.start()
        self.write_inventory()
        return server

    def deploy_dir(self, name: str) -> Path:
        return self.root / "hosts" / name / "retinaface-pi"

    def write_inventory(self, extra: str = "") -> Path:
        lines = [
            "all:",
            "  vars:",
            "    address: 127.0.0.1",
            "    user: root",
            f"    key_file: {self.client_key}",
            f"    python: {sys.executable}",
            "  children:",
            "    fleet:",
            "      hosts:",
        ]
        for name, server in self.servers.items():
            lines.append(
                f"        {name}: {{port: {server.port}, deploy_dir: {self.deploy_dir(name)}}}"
            )
        self.inventory.write_text("\n".join(lines) + "\n" + extra)
        return self.inventory

    def trust(self, name: str) -> None:
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        with open(self.known_hosts, "a") as handle:
            handle.write(self.servers[name].known_hosts_line)

    def close(self) -> list[int]:
        """Stop every server (also ones a test put into `servers` itself); returns the pids of
        sessions that were still running and had to be killed."""
        left = []
        for server in {id(s): s for s in [*self.started, *self.servers.values()]}.values():
            left += server.stop()
        return left

    def leftovers(self) -> list[str]:
        """Processes whose command line names this lab's folder (its sshd servers among them)."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit() and alive(int(entry.name)):
                try:
                    argv = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
                except OSError:
                    continue
                if str(self.root) in argv:
                    found.append(f"{entry.name}: {argv.strip()}")
        return found


@pytest.fixture
def lab(tmp_path, client_key, client_env):
    lab = Lab(tmp_path, client_key, client_env)
    yield lab
    left = lab.close()
    # The ssh tier leaves no process behind: every sshd and every session it forked is gone.
    assert not left, f"sshd sessions outlived their server: {left}"
    assert not lab.leftovers(), f"left running: {lab.leftovers()}"


def tree_snapshot(root: Path) -> dict:
    """Every entry under `root`: type, mode, size, mtime (ns), sha256 or link target."""
    out = {}
    if not root.exists():
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            path = Path(dirpath) / name
            st = path.lstat()
            key = str(path.relative_to(root))
            if path.is_symlink():
                out[key] = ("link", os.readlink(path), st.st_mtime_ns)
            elif path.is_dir():
                out[key] = ("dir", st.st_mode, st.st_mtime_ns)
            else:
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                out[key] = ("file", st.st_mode, st.st_size, st.st_mtime_ns, digest)
    return out
