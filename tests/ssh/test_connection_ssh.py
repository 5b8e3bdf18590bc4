"""The SSH host connection against a real sshd: ~/.ssh/config, auth failure, timeouts, put/get."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest

from deploy.errors import DeployError
from deploy.hosts.connection import open_host
from deploy.hosts.errors import AuthenticationError, UnreachableError
from deploy.hosts.inventory import Host, load_inventory
from retinaface.files import sha256_file
from tests.ssh.sshd import keygen

pytestmark = pytest.mark.ssh


def test_ssh_config_alias_is_honoured(lab, client_env):
    server = lab.add("pi-cfg")
    lab.trust("pi-cfg")
    ssh_dir = os.path.join(os.environ["HOME"], ".ssh")
    os.makedirs(ssh_dir, exist_ok=True)
    with open(os.path.join(ssh_dir, "config"), "w") as handle:
        handle.write(
            "Host pi-alias\n"
            "    HostName 127.0.0.1\n"
            f"    Port {server.port}\n"
            "    User root\n"
            f"    IdentityFile {lab.client_key}\n"
        )
    host = Host(name="alias", address="pi-alias")  # no user, port or key in the inventory
    with open_host(host) as conn:
        assert conn.run("whoami").stdout.strip() == "root"


def test_wrong_key_is_an_authentication_error(lab, tmp_path):
    lab.add("pi-auth")
    lab.trust("pi-auth")
    other = keygen(tmp_path / "other_key")
    host = load_inventory(lab.inventory).hosts["pi-auth"]
    bad = Host(**{**host.__dict__, "key_file": str(other)})
    with pytest.raises(AuthenticationError, match="authentication failed"):
        open_host(bad)


def test_silent_port_times_out_instead_of_hanging():
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(5)
    accepted = []
    thread = threading.Thread(target=lambda: accepted.append(listener.accept()), daemon=True)
    thread.start()
    host = Host(name="mute", address="127.0.0.1", port=listener.getsockname()[1], user="root")
    outcome = {}

    def connect():
        try:
            open_host(host, connect_timeout=2)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    attempt = threading.Thread(target=connect, daemon=True)
    attempt.start()
    attempt.join(120)  # bounds a hang (the feature missing), asserts no speed
    assert not attempt.is_alive(), "open_host still waiting on a silent port after 120 s"
    error = outcome.get("error")
    assert isinstance(error, UnreachableError), error
    # paramiko words it "No existing session" (the banner never came), not "timed out".
    assert str(error).startswith("mute (root@127.0.0.1:") and "unreachable" in str(error), error
    listener.close()


def test_commands_time_out_and_files_move_atomically(lab, tmp_path):
    lab.add("pi-io")
    lab.trust("pi-io")
    host = load_inventory(lab.inventory).hosts["pi-io"]
    payload = tmp_path / "payload.bin"
    payload.write_bytes(os.urandom(300_000))
    remote = str(tmp_path / "remote" / "dir" / "payload.bin")
    with open_host(host) as conn:
        with pytest.raises(DeployError, match="timed out after 1 s"):
            conn.run("sleep 10", timeout=1)
        assert conn.run("echo still here").stdout.strip() == "still here"
        assert conn.run("exit 7", check=False).exited == 7
        sent = conn.put(payload, remote, sha256=sha256_file(payload))
        assert sent == 300_000 and conn.bytes_sent == 300_000
        with pytest.raises(DeployError, match="sha256 after upload"):
            conn.put(payload, remote, sha256="0" * 64)
        assert sorted(os.listdir(os.path.dirname(remote))) == ["payload.bin"]  # no temp left
        back = conn.get(remote, tmp_path / "back" / "payload.bin")
        assert back.read_bytes() == payload.read_bytes()
        assert conn.expand("~/x") == conn.home() + "/x"
        with pytest.raises(DeployError, match="no such file"):
            conn.get(str(tmp_path / "nope"), tmp_path / "nope")


def test_ssh_agent_key_is_used(lab, tmp_path, monkeypatch):
    import subprocess

    lab.add("pi-agent")
    lab.trust("pi-agent")
    host = load_inventory(lab.inventory).hosts["pi-agent"]
    keyless = Host(**{**host.__dict__, "key_file": None})  # only the agent will have the key
    with pytest.raises(AuthenticationError):
        open_host(keyless)  # no agent yet, no ~/.ssh keys: refused
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
        with open_host(keyless) as conn:
            assert conn.run("echo via agent").stdout.strip() == "via agent"
    finally:
        agent.terminate()
        agent.wait(timeout=10)
