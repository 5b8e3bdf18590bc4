"""A hostile sshd on loopback that never answers one step: every step Paramiko waits on has a
deadline (exec's reply, stdin, the SFTP subsystem, an SFTP request); when it passes the
connection is closed and the error names the host and the step. The server holds for 30 s at
most; before the fix `run(timeout=3)` waited out the whole hold (for ever on a host that never
answers) and then failed as "connection lost"."""

from __future__ import annotations

import sys

import pytest

from deploy.hosts import connection
from deploy.hosts.connection import open_host
from deploy.hosts.errors import UnreachableError
from deploy.hosts.inventory import load_inventory
from tests.ssh.hostile_sshd import HostileSshd

pytestmark = pytest.mark.ssh


@pytest.fixture
def hostile(tmp_path, client_key, client_env):
    """hostile(hold) -> (server, inventory host) for a server that holds back `hold`."""
    servers = []

    def make(hold: str):
        server = HostileSshd(tmp_path / hold, client_key.with_suffix(".pub"), hold).__enter__()
        servers.append(server)
        client_env.parent.mkdir(parents=True, exist_ok=True)
        client_env.write_text(server.known_hosts_line)
        inventory = tmp_path / f"{hold}.yaml"
        inventory.write_text(
            "all:\n  hosts:\n"
            f"    pi-mute: {{address: 127.0.0.1, port: {server.port}, user: root, "
            f"key_file: {client_key}, python: {sys.executable}}}\n"
        )
        return server, load_inventory(inventory).hosts["pi-mute"]

    yield make
    for server in servers:
        server.__exit__(None, None, None)


def test_an_unanswered_exec_times_out_at_the_commands_deadline(hostile):
    server, host = hostile("exec")
    conn = open_host(host)
    with pytest.raises(UnreachableError, match=r"pi-mute .*no answer to exec of `true` within 3 s"):
        conn.run("true", timeout=3)
    assert not conn.fabric.transport.is_active()  # closed, not left waiting
    conn.close()
    assert server.left.wait(10) and server.holds == 1 and server.client_left_first == 1


def test_stdin_the_host_never_reads_times_out(hostile):
    server, host = hostile("stdin")
    conn = open_host(host)
    with pytest.raises(UnreachableError, match=r"pi-mute .*no answer to stdin of `cat` within 3 s"):
        conn.run("cat", timeout=3, stdin="x" * (1024 * 1024))
    conn.close()


def test_an_unanswered_sftp_subsystem_times_out(hostile, monkeypatch, tmp_path):
    monkeypatch.setattr(connection, "CHANNEL_TIMEOUT", 2.0)
    server, host = hostile("subsystem")
    conn = open_host(host)
    with pytest.raises(UnreachableError, match=r"pi-mute .*no answer to opening SFTP within 2 s"):
        conn.get("/etc/hostname", tmp_path / "hostname")
    assert not (tmp_path / "hostname").exists()
    conn.close()
    assert server.left.wait(10) and server.client_left_first == 1


def test_an_unanswered_sftp_open_stops_the_upload(hostile, monkeypatch, tmp_path):
    monkeypatch.setattr(connection, "UPLOAD_BASE_TIMEOUT", 2.0)
    server, host = hostile("sftp-request")
    local = tmp_path / "model.onnx"
    local.write_bytes(b"m" * 1000)
    conn = open_host(host)
    with pytest.raises(UnreachableError, match=r"pi-mute .*no answer to upload of model.onnx"):
        conn.put(local, "/tmp/retinaface-pi-never/model.onnx")
    conn.close()
    assert server.left.wait(10) and server.client_left_first == 1
