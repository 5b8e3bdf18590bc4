"""`invoke hosts` lists an Ansible inventory without connecting; bad inventories and flags give
one clear line (no traceback) from every host task."""

from __future__ import annotations

import subprocess
import sys
import textwrap

from tests.paths import REPO
from tests.unit.test_inventory_ansible import INI


def run(*argv):
    return subprocess.run(
        [sys.executable, "-m", "invoke", *argv],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
    )


def one_error_line(result, *needles):
    assert result.returncode == 1, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    for needle in needles:
        assert needle in lines[0]


def test_hosts_lists_an_ini_inventory(tmp_path):
    path = tmp_path / "hosts"
    path.write_text(textwrap.dedent(INI))
    result = run("hosts", "--inventory", str(path), "--host", "site,!cam02.lab.local")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()]
    assert rows == [
        ["name", "address", "port", "user", "connection", "groups"],
        ["cam01.lab.local", "cam01.lab.local", "-", "pi", "ssh", "site,cams"],
        ["cam03.lab.local", "cam03.lab.local", "-", "pi", "ssh", "site,cams"],
        ["doorbell.lab.local", "doorbell.lab.local", "2222", "pi", "ssh", "site,cams,outdoor"],
    ]
    everything = run("hosts", "--inventory", str(path))
    assert [line.split()[0] for line in everything.stdout.splitlines()[1:]] == [
        "pi-bench",
        "cam01.lab.local",
        "cam02.lab.local",
        "cam03.lab.local",
        "doorbell.lab.local",
    ]  # all: the workstation (`local`) is not in it


def test_trust_host_refuses_an_address_with_user_and_port(tmp_path):
    # Used to crash trust-host with a traceback (issue 12, item 11).
    path = tmp_path / "inventory.yaml"
    path.write_text("all:\n  hosts:\n    pi: {address: 'root@127.0.0.1:2222'}\n")
    one_error_line(
        run("trust-host", "--inventory", str(path), "--host", "pi", "--yes"),
        str(path),
        "root@127.0.0.1:2222",
        "bare host name",
    )


def test_a_host_name_cannot_escape_the_log_folder(tmp_path):
    path = tmp_path / "inventory.yaml"
    path.write_text("all:\n  hosts:\n    ../../../../X: {connection: local}\n")
    one_error_line(run("facts", "--inventory", str(path), "--host", "all"), "host name")
    assert not (REPO.parent / "X.log").exists() and not list(REPO.parent.glob("*/X.log"))


def test_forks_must_be_a_positive_number(tmp_path):
    one_error_line(run("deploy", "--forks", "0", "--check"), "--forks", "1..500")
