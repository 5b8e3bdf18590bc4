"""An encrypted key_file (a real passphrase-protected ed25519 key against a loopback sshd) is
named as encrypted, with ssh-agent as the way; once the agent holds it, the same inventory
connects."""

from __future__ import annotations

import os
import subprocess
import time

import pytest

from deploy.hosts.connection import key_is_encrypted, open_host
from deploy.hosts.errors import AuthenticationError
from deploy.hosts.inventory import load_inventory
from tests.ssh.sshd import Sshd

pytestmark = pytest.mark.ssh


def _encrypted_key(path):
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "s3cret", "-C", "enc", "-f", str(path)],
        check=True,
    )
    return path


def test_encrypted_key_file_is_named_and_agent_is_the_way(lab, tmp_path, monkeypatch):
    key = _encrypted_key(tmp_path / "enc_ed25519")
    assert key_is_encrypted(key) and not key_is_encrypted(lab.client_key)
    server = Sshd(lab.root / "servers" / "pi-enc", key.with_suffix(".pub")).start()
    lab.servers["pi-enc"] = server
    lab.write_inventory()
    lab.trust("pi-enc")
    host = load_inventory(lab.inventory).hosts["pi-enc"]
    host = type(host)(**{**host.__dict__, "key_file": str(key)})
    with pytest.raises(AuthenticationError) as caught:
        open_host(host)
    message = str(caught.value)
    assert f"key_file {key} is encrypted" in message and f"ssh-add {key}" in message
    assert "install your public key" not in message and "\n" not in message

    sock = tmp_path / "agent.sock"
    agent = subprocess.Popen(["ssh-agent", "-D", "-a", str(sock)], stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            if sock.exists():
                break
            time.sleep(0.05)
        askpass = tmp_path / "askpass"
        askpass.write_text("#!/bin/sh\necho s3cret\n")
        askpass.chmod(0o700)
        env = dict(
            os.environ, SSH_AUTH_SOCK=str(sock), SSH_ASKPASS=str(askpass),
            SSH_ASKPASS_REQUIRE="force", DISPLAY=":0",
        )  # fmt: skip
        subprocess.run(["ssh-add", "-q", str(key)], env=env, check=True, stdin=subprocess.DEVNULL)
        monkeypatch.setenv("SSH_AUTH_SOCK", str(sock))
        with open_host(host) as conn:
            assert conn.run("echo via agent").stdout.strip() == "via agent"
    finally:
        agent.terminate()
        agent.wait(timeout=10)
