"""A host that prints without end (a real sshd on 127.0.0.1): captured output is capped per
stream, the command is stopped, and the host still answers. The deploy's own state probe
meets a planted 64 MB SHA256SUMS the same way."""

from __future__ import annotations

import time

import pytest

from deploy.errors import DeployError
from deploy.hosts import connection
from deploy.hosts.connection import open_host
from deploy.hosts.inventory import load_inventory
from deploy.workflow.sync import read_state

pytestmark = pytest.mark.ssh


def _host(lab):
    lab.add("pi-loud")
    lab.trust("pi-loud")
    return load_inventory(lab.inventory).hosts["pi-loud"]


def test_endless_stdout_and_stderr_are_cut_off(lab, tmp_path):
    cap = connection.OUTPUT_MAX_BYTES
    zero = tmp_path / "endless"  # a name of our own, to look for leftover processes
    zero.symlink_to("/dev/zero")
    # Each flood on its own connection: after a capped command sshd sometimes drops the whole
    # connection (paramiko: "Broken pipe"; seen in about 1 of 5 runs here), so the next command
    # on it fails as "connection lost". The cap and the stop hold either way.
    with open_host(_host(lab)) as conn:
        with pytest.raises(DeployError, match=f"printed more than {cap} bytes; stopped: cat"):
            conn.run(f"cat {zero}", timeout=600)
    with open_host(_host(lab)) as conn:
        with pytest.raises(DeployError, match="printed more than"):
            conn.run(f"yes {zero} >&2", timeout=600)
    with open_host(_host(lab)) as conn:
        # exactly the cap is fine, and the host still answers
        assert len(conn.run(f"head -c {cap} /dev/zero").stdout) == cap
        assert conn.run("echo still here").stdout == "still here\n"
        time.sleep(0.5)  # the stopped commands got SIGPIPE and are gone
        left = conn.run(f"pgrep -f '^(cat|yes) {zero}'", check=False).stdout
        assert left == ""


def test_deploy_state_probe_with_a_planted_huge_file(lab, tmp_path):
    deploy_dir = tmp_path / "deploy"
    release = deploy_dir / "releases" / "0123456789abcdef"  # a release id deploy owns
    release.mkdir(parents=True)
    line = b"0" * 64 + b"  models/fp32.onnx\n"
    with open(release / "SHA256SUMS", "wb") as handle:
        handle.write(line * (64 * 1024**2 // len(line)))
    with open_host(_host(lab)) as conn:
        with pytest.raises(DeployError, match="printed more than"):
            read_state(conn, str(deploy_dir), "r1")
    # The host still answers. On a new connection: while the probe still streams the planted
    # file, sshd dropped the old one once in CI (paramiko: "Broken pipe" after the capped
    # channel was closed), in 1 of 5 runs here; the endless-output test above keeps its own.
    with open_host(_host(lab)) as conn:
        assert conn.run("echo ok").stdout == "ok\n"


def test_local_host_output_is_capped_too(tmp_path):
    from deploy.hosts.inventory import LOCAL_HOST

    with open_host(LOCAL_HOST) as conn:
        with pytest.raises(DeployError, match="printed more than"):
            conn.run(f"head -c {connection.OUTPUT_MAX_BYTES + 1} /dev/zero")
        assert conn.run("echo ok").stdout == "ok\n"
