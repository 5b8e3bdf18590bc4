"""Our SSH connections against a loopback sshd: ForwardAgent from ~/.ssh/config is not
honoured (a host never gets the user's agent), and build-wheels uploads are verified by
sha256 on the builder before they take their names."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from deploy.errors import DeployError
from deploy.hosts.connection import open_host
from deploy.hosts.inventory import load_inventory
from pi_setup import build_wheels as bw
from tests.ssh.sshd import Sshd

pytestmark = pytest.mark.ssh


def test_forward_agent_in_ssh_config_is_ignored(lab, tmp_path, monkeypatch):
    lab.add("pi-fwd")
    lab.trust("pi-fwd")
    ssh_dir = _home() / ".ssh"
    ssh_dir.mkdir(mode=0o700)
    (ssh_dir / "config").write_text("Host *\n  ForwardAgent yes\n")
    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        env = dict(os.environ, SSH_AUTH_SOCK=str(sock))
        subprocess.run(["ssh-add", "-q", str(lab.client_key)], env=env, check=True)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        host = load_inventory(lab.inventory).hosts["pi-fwd"]
        with open_host(host) as conn:
            assert conn.fabric.forward_agent is False
            seen = conn.run('printf %s "${SSH_AUTH_SOCK:-none}"').stdout
            assert seen == "none"
    finally:
        agent.terminate()
        agent.wait(timeout=10)


def _home():
    from pathlib import Path

    return Path(os.environ["HOME"])


class _LyingSshd(Sshd):
    """An sshd whose sessions find a `sha256sum` that reports other bytes than arrived."""

    def __init__(self, *args, fake_bin, **kwargs):
        super().__init__(*args, **kwargs)
        self.fake_bin = fake_bin

    def write_config(self) -> None:
        super().write_config()
        with open(self.config, "a") as handle:
            handle.write(f"SetEnv PATH={self.fake_bin}:/usr/sbin:/usr/bin:/sbin:/bin\n")


def test_build_uploads_are_verified_before_the_build_starts(lab, tmp_path):
    fake_bin = tmp_path / "fake-bin"
    fake_bin.mkdir()
    (fake_bin / "sha256sum").write_text(
        '#!/bin/sh\nshift\nfor f in "$@"; do echo "' + "0" * 64 + '  $f"; done\n'
    )
    (fake_bin / "sha256sum").chmod(0o755)
    server = _LyingSshd(
        lab.root / "servers" / "builder", lab.client_key.with_suffix(".pub"), fake_bin=fake_bin
    ).start()
    lab.servers["builder"] = server
    lab.write_inventory()
    lab.trust("builder")
    work = tmp_path / "work"
    plan = bw.make_plan(["pi-probe"], sources={"pi-probe": "/nowhere/pi_probe"}, apt=False)
    with open_host(load_inventory(lab.inventory).hosts["builder"]) as conn:
        with pytest.raises(DeployError, match=r"build\.sh\.part-\w+: sha256 after upload is 0{64}"):
            bw.start_build(conn, plan, str(work))
    assert not (work / "build.sh").exists() and not (work / "build.pid").exists()
    assert [p.name for p in work.iterdir() if p.name.startswith("build.sh")] == []
