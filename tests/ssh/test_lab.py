"""The ssh tier's own lab leaves nothing running: adding a host name again stops the earlier
sshd, close() stops every server and its sessions (the lab fixture asserts this after each
test)."""

from __future__ import annotations

import time

import pytest

from deploy.hosts.connection import open_host
from deploy.hosts.inventory import load_inventory
from tests.ssh.conftest import Lab
from tests.ssh.sshd import alive

pytestmark = pytest.mark.ssh


def test_re_adding_a_host_stops_the_earlier_server(tmp_path, client_key, client_env):
    lab = Lab(tmp_path, client_key, client_env)
    first = lab.add("pi-twice")
    first_pid = first.proc.pid
    second = lab.add("pi-twice")
    assert not alive(first_pid)
    assert second.proc is not None and alive(second.proc.pid)
    lab.close()
    assert lab.leftovers() == []


def test_close_stops_servers_and_open_sessions(tmp_path, client_key, client_env):
    lab = Lab(tmp_path, client_key, client_env)
    lab.add("pi-a")
    lab.add("pi-b")
    lab.trust("pi-a")
    conn = open_host(load_inventory(lab.inventory).hosts["pi-a"])
    marker = tmp_path / "sleeper"
    session = conn.fabric.transport.open_session(timeout=10)  # a session still running
    session.exec_command(f"exec -a {marker} sleep 600")
    for _ in range(100):
        if any(str(marker) in line for line in lab.leftovers()):
            break
        time.sleep(0.05)
    assert any(str(marker) in line for line in lab.leftovers())
    assert lab.close() == []  # every session went on SIGTERM
    conn.close()
    assert lab.leftovers() == []
