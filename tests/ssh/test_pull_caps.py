"""Pulling a file from a host that lies about it (a real sshd on 127.0.0.1): bench.json as a
symlink to /dev/zero, a FIFO, a huge or endless file, a host that stops answering. Each is one
clear DeployError within the time limit, and no file — not even a partial one — is left."""

from __future__ import annotations

import os
import signal
import threading

import pytest

from deploy.errors import DeployError
from deploy.hosts.connection import open_host
from deploy.hosts.inventory import LOCAL_HOST, load_inventory
from tests.ssh.sshd import _descendants

pytestmark = pytest.mark.ssh


def _host(lab):
    lab.add("pi-liar")
    lab.trust("pi-liar")
    return load_inventory(lab.inventory).hosts["pi-liar"]


def _get_within(conn, remote, local, seconds=60, **caps):
    """conn.get in a thread: returns its exception (or None); fails if it hangs."""
    outcome = {}

    def pull():
        try:
            conn.get(remote, local, **caps)
        except BaseException as error:  # noqa: BLE001 - handed to the test
            outcome["error"] = error

    thread = threading.Thread(target=pull, daemon=True)
    thread.start()
    thread.join(seconds)
    assert not thread.is_alive(), f"get({remote}) still running after {seconds} s"
    return outcome.get("error")


def _no_leftovers(folder):
    assert sorted(os.listdir(folder)) == []


@pytest.mark.parametrize("connection", ["ssh", "local"])
def test_symlink_to_dev_zero_and_fifo_are_refused(lab, tmp_path, connection):
    host = _host(lab) if connection == "ssh" else LOCAL_HOST
    remote = tmp_path / "run"
    remote.mkdir()
    (remote / "bench.json").symlink_to("/dev/zero")
    os.mkfifo(remote / "fifo.json")
    local = tmp_path / "results"
    local.mkdir()
    with open_host(host) as conn:
        error = _get_within(conn, str(remote / "bench.json"), local / "bench.json")
        assert isinstance(error, DeployError) and "is a symlink; refusing" in str(error)
        error = _get_within(conn, str(remote / "fifo.json"), local / "bench.json")
        assert isinstance(error, DeployError) and "not a regular file" in str(error)
        _no_leftovers(local)


def test_size_cap_and_byte_cap(lab, tmp_path):
    remote = tmp_path / "big.json"
    with open(remote, "wb") as handle:
        handle.truncate(200 * 1024**2)  # sparse: 200 MB on paper
    local = tmp_path / "results"
    local.mkdir()
    with open_host(_host(lab)) as conn:
        error = _get_within(conn, str(remote), local / "bench.json")
        assert isinstance(error, DeployError) and "more than the 67108864 allowed" in str(error)
        # /proc/cpuinfo: a regular file of size 0 that reads as kilobytes — the byte cap holds.
        error = _get_within(conn, "/proc/cpuinfo", local / "bench.json", max_bytes=100)
        assert isinstance(error, DeployError) and "grew past the 100 bytes" in str(error)
        _no_leftovers(local)
        # the connection is still usable afterwards
        (tmp_path / "small.json").write_text("{}")
        conn.get(str(tmp_path / "small.json"), local / "ok.json")
        assert (local / "ok.json").read_text() == "{}"


def test_host_that_stops_answering_times_out(lab, tmp_path):
    host = _host(lab)
    remote = tmp_path / "bench.json"
    remote.write_text("{}")
    local = tmp_path / "results"
    local.mkdir()
    server = lab.servers["pi-liar"]
    with open_host(host) as conn:
        conn.sftp()  # the SFTP session exists; now freeze every process serving it
        frozen = _descendants(server.proc.pid)
        assert frozen
        for pid in frozen:
            os.kill(pid, signal.SIGSTOP)
        try:
            error = _get_within(conn, str(remote), local / "bench.json", timeout=2)
            assert isinstance(error, DeployError) and "timed out after 2 s" in str(error), error
        finally:
            for pid in frozen:
                os.kill(pid, signal.SIGCONT)
        _no_leftovers(local)
