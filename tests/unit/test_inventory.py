"""Inventory validation: every mistake names the file, the host or group, and the field."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from deploy.errors import InventoryError
from deploy.hosts.inventory import DEFAULT_INVENTORY, load_inventory


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "inventory.yaml"
    path.write_text(textwrap.dedent(text))
    return path


GOOD = """
all:
  vars: {deploy_dir: /srv/rf, keep_releases: 2}
  hosts:
    local: {connection: local}
    bench: {ansible_host: 10.0.0.9, ansible_user: bob, ansible_port: "2200",
            ansible_ssh_private_key_file: ~/.ssh/k}
  children:
    lab:
      vars: {user: pi}
      hosts:
        pi4: {address: pi4.local}
        pi5: {address: pi5.local, deploy_dir: /opt/rf}
      children:
        shelf:
          vars: {port: 2022}
          hosts:
            pi6: {address: 10.0.0.6}
    fast:
      hosts:
        pi5:
"""


def test_repo_inventory_loads_with_required_hosts():
    inv = load_inventory(DEFAULT_INVENTORY)
    assert inv.select("local")[0].is_local
    assert inv.groups["emu"] == [
        "pi4-emu", "pi4-emu-trixie", "pi4-64-emu", "pi5-emu", "pi4-64-emu-bookworm"
    ]  # fmt: skip
    emu = inv.hosts["pi4-emu"]
    assert (emu.address, emu.port, emu.user) == ("127.0.0.1", 2222, "pi")
    assert emu.key_file == "~/.cache/retinaface-pi/emu/id_ed25519"
    assert inv.hosts["pi4-emu-trixie"].port == 2223
    # every emulated Pi of the inventory is one `invoke emu-up` starts, on the port it listens on
    from pi_setup.emulator import RELEASES

    assert {r.host: r.port for r in RELEASES.values()} == {
        name: inv.hosts[name].port for name in inv.groups["emu"]
    }
    assert "pi4" in inv.groups["lab"]
    assert [h.name for h in inv.select(None)] == ["local"]


def test_aliases_precedence_and_groups(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    bench = inv.hosts["bench"]
    assert (bench.address, bench.user, bench.port, bench.key_file) == (
        "10.0.0.9",
        "bob",
        2200,
        "~/.ssh/k",
    )
    assert bench.deploy_dir == "/srv/rf" and bench.keep_releases == 2
    assert inv.hosts["pi5"].deploy_dir == "/opt/rf"  # host beats group and all
    assert inv.hosts["pi6"].port == 2022 and inv.hosts["pi6"].user == "pi"  # nested group vars
    assert inv.hosts["pi4"].port is None
    assert set(inv.hosts["pi5"].groups) == {"lab", "fast"}
    assert inv.groups["lab"] == ["pi4", "pi5", "pi6"]


def test_select_names_groups_and_lists(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    assert [h.name for h in inv.select("lab")] == ["pi4", "pi5", "pi6"]
    assert [h.name for h in inv.select("pi5, lab,bench")] == ["pi5", "pi4", "pi6", "bench"]
    assert len(inv.select("all")) == 5  # local is named in this inventory, so it is in all


def test_unknown_name_lists_known_ones(tmp_path):
    inv = load_inventory(write(tmp_path, GOOD))
    with pytest.raises(InventoryError) as info:
        inv.select("pi4,pi9")
    message = str(info.value)
    assert "pi9" in message and "pi4, pi5, pi6" in message and "lab" in message
    assert str(tmp_path) in message


def test_local_host_is_implicit(tmp_path):
    inv = load_inventory(write(tmp_path, "all:\n  hosts:\n    pi: {address: a}\n"))
    assert inv.select("local")[0].is_local


@pytest.mark.parametrize(
    "text, words",
    [
        (
            "all:\n  hosts:\n    pi: {address: a, deploy_dri: /x}\n",
            ["'pi'", "deploy_dri", "unknown field", "did you mean 'deploy_dir'"],
        ),
        (
            "all:\n  vars: {ansible_hots: a}\n  hosts:\n    pi:\n",
            ["group 'all'", "ansible_hots", "'ansible_host'"],
        ),
        ("all:\n  hosts:\n    pi: {address: a, port: 70000}\n", ["'pi'", "port", "70000"]),
        ("all:\n  hosts:\n    pi: {address: a, port: ssh}\n", ["'pi'", "port", "integer"]),
        ("all:\n  hosts:\n    pi: {address: a, port: true}\n", ["'pi'", "port"]),
        ("all:\n  hosts:\n    pi: {address: a, password: x}\n", ["'pi'", "password", "secret"]),
        (
            "all:\n  vars: {ansible_ssh_pass: x}\n  hosts: {pi: {address: a}}\n",
            ["group 'all'", "ansible_ssh_pass"],
        ),
        (
            "all:\n  hosts:\n    pi: {address: a, ansible_become_password: x}\n",
            ["ansible_become_password"],
        ),
        ("all:\n  hosts:\n    pi: {address: a}\n    pi: {address: b}\n", ["duplicate", "'pi'"]),
        (
            "all:\n  hosts: {pi: {address: a}}\n  children:\n    g:\n      hosts: {pi: {address: b}}\n",
            ["'pi'", "defined twice"],
        ),
        (
            "all:\n  hosts: {lab: {address: a}}\n  children:\n    lab: {hosts: {x: {address: b}}}\n",
            ["'lab'", "both a host and a group"],
        ),
        ("all:\n  hosts:\n    pi: {address: a, connection: telnet}\n", ["connection", "telnet"]),
        ("all:\n  hosts:\n    pi: {address: a, user: pi, ansible_user: pi}\n", ["given twice"]),
        ("hosts:\n  pi: {address: a}\n", ["top level", "all"]),
        ("all:\n  host:\n    pi: {address: a}\n", ["group 'all'", "host"]),
        ("all:\n  hosts: [pi]\n", ["hosts", "mapping"]),
        ("all:\n  hosts:\n    pi: {address: ''}\n", ["address"]),
        ("all: [\n", ["not valid YAML"]),
    ],
)
def test_bad_inventories_name_file_host_field(tmp_path, text, words):
    path = write(tmp_path, text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert str(path) in message
    for word in words:
        assert word in message


def test_missing_file(tmp_path):
    with pytest.raises(InventoryError, match="cannot read inventory"):
        load_inventory(tmp_path / "nope.yaml")
