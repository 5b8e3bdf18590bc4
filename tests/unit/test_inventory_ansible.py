"""Inventories as Ansible users write them: INI, YAML with their own vars, ranges, bare names,
group_vars/ and host_vars/, and the JSON of `ansible-inventory --list`.

Each inventory is also read by the real `ansible-inventory` (ansible-core, a dev dependency):
our hosts, groups and resolved fields must be what Ansible resolves.
"""

from __future__ import annotations

import json
import os
import subprocess
import textwrap
from pathlib import Path

import pytest

from deploy.errors import InventoryError
from deploy.hosts.inventory import ALIASES, load_inventory

INI = """
# a lab the way most Ansible users write it
pi-bench ansible_host=10.0.0.9 ansible_user=bob

[cams]
cam[01:03].lab.local
doorbell.lab.local:2222 camera=true

[cams:vars]
ansible_user=pi
deploy_dir=/opt/rf
ntp_server=ntp.lab.local

[outdoor]
doorbell.lab.local

[outdoor:vars]
deploy_dir=/srv/outdoor

[site:children]
cams
outdoor

[site:vars]
keep_releases=5
ansible_become=true
"""

YAML_CUSTOM = """
all:
  vars:
    ansible_user: pi
    ntp_server: pool.ntp.org
    ansible_become: true
  children:
    lab:
      vars: {deploy_dir: /srv/rf, camera: {model: v2, fps: 30}}
      hosts:
        pi4: {ansible_host: 192.168.1.40, camera: true}
      children:
        shelf:
          vars: {deploy_dir: /srv/shelf}
          hosts:
            pi5: {ansible_host: 192.168.1.50, ansible_port: 2222}
"""

RANGES = """
all:
  children:
    cluster:
      hosts:
        10.10.10.10[1:4]:
      vars:
        ansible_user: pi
    workers:
      hosts:
        node[01:03]:
          ansible_user: ubuntu
    letters:
      hosts:
        pi-[a:c].local:
"""

BARE = """
all:
  hosts:
    raspberrypi.local:
    octopi.local:
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def ansible_inventory(path: Path, tmp_path: Path) -> dict:
    """`ansible-inventory -i PATH --list`, run by the real Ansible."""
    env = dict(os.environ, HOME=str(tmp_path), ANSIBLE_LOCAL_TEMP=str(tmp_path / "ansible-tmp"))
    out = subprocess.run(
        ["ansible-inventory", "-i", str(path), "--list"],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    ).stdout
    return json.loads(out)


def ansible_fields(hostvars: dict) -> dict:
    """Our fields as Ansible resolved them (first spelling present)."""
    out = {}
    for name, spellings in ALIASES.items():
        for spelling in spellings:
            if spelling in hostvars:
                out[name] = hostvars[spelling]
                break
    return out


def ansible_groups(listing: dict, host: str) -> set:
    """Every group containing `host` (directly or through children), all/ungrouped left out."""
    direct = {g for g, node in listing.items() if host in node.get("hosts", [])}
    parents = {c: {g for g, n in listing.items() if c in n.get("children", [])} for c in listing}
    found, todo = set(), list(direct)
    while todo:
        group = todo.pop()
        if group not in found:
            found.add(group)
            todo += parents.get(group, ())
    return found - {"all", "ungrouped", "_meta"}


def assert_same_as_ansible(path: Path, tmp_path: Path) -> None:
    listing = ansible_inventory(path, tmp_path)
    ours = load_inventory(path)
    hostvars = listing["_meta"]["hostvars"]
    all_hosts = {h for g, node in listing.items() for h in node.get("hosts", [])} | set(hostvars)
    assert set(ours.hosts) == all_hosts
    for name, host in ours.hosts.items():
        theirs = ansible_fields(hostvars.get(name, {}))
        for field, value in theirs.items():
            mine = getattr(host, field)
            assert str(mine) == str(value), (name, field, mine, value)
        assert set(host.groups) == ansible_groups(listing, name), name


def test_ini_inventory_loads_like_ansible(tmp_path):
    path = write(tmp_path, "hosts", INI)
    inv = load_inventory(path)
    assert list(inv.hosts) == [
        "pi-bench",
        "cam01.lab.local",
        "cam02.lab.local",
        "cam03.lab.local",
        "doorbell.lab.local",
    ]
    bench = inv.hosts["pi-bench"]
    assert (bench.address, bench.user, bench.port, bench.groups) == ("10.0.0.9", "bob", None, ())
    cam = inv.hosts["cam02.lab.local"]
    assert (cam.address, cam.user, cam.deploy_dir, cam.keep_releases) == (
        "cam02.lab.local",  # no ansible_host: the name is the address
        "pi",
        "/opt/rf",
        5,
    )
    door = inv.hosts["doorbell.lab.local"]
    assert door.port == 2222 and door.vars["camera"] == "true"  # INI: not a Python literal
    # Same depth: groups apply by name, so outdoor (after cams) wins, as in Ansible.
    assert door.deploy_dir == "/srv/outdoor"
    assert door.vars["ansible_become"] == "true" and door.vars["ntp_server"] == "ntp.lab.local"
    assert inv.groups["site"] == [
        "cam01.lab.local",
        "cam02.lab.local",
        "cam03.lab.local",
        "doorbell.lab.local",
    ]
    assert inv.groups["ungrouped"] == ["pi-bench"]
    assert_same_as_ansible(path, tmp_path)


def test_yaml_with_custom_vars_keeps_and_ignores_them(tmp_path):
    path = write(tmp_path, "inventory.yml", YAML_CUSTOM)
    inv = load_inventory(path)
    pi4, pi5 = inv.hosts["pi4"], inv.hosts["pi5"]
    assert (pi4.address, pi4.user, pi4.deploy_dir) == ("192.168.1.40", "pi", "/srv/rf")
    assert (pi5.address, pi5.port, pi5.deploy_dir) == ("192.168.1.50", 2222, "/srv/shelf")
    assert pi4.vars["camera"] is True  # host beats the group's mapping
    assert pi5.vars["camera"] == {"model": "v2", "fps": 30}
    assert pi5.groups == ("lab", "shelf")
    assert_same_as_ansible(path, tmp_path)


def test_host_ranges_expand(tmp_path):
    path = write(tmp_path, "cluster.yaml", RANGES)
    inv = load_inventory(path)
    assert inv.groups["cluster"] == [f"10.10.10.10{i}" for i in range(1, 5)]
    assert inv.groups["workers"] == ["node01", "node02", "node03"]
    assert inv.groups["letters"] == ["pi-a.local", "pi-b.local", "pi-c.local"]
    assert inv.hosts["10.10.10.103"].address == "10.10.10.103"
    assert inv.hosts["node02"].user == "ubuntu"
    assert_same_as_ansible(path, tmp_path)


def test_bare_host_names_are_addresses(tmp_path):
    path = write(tmp_path, "pis.yaml", BARE)
    inv = load_inventory(path)
    assert [(h.name, h.address, h.groups) for h in inv.select("all")] == [
        ("raspberrypi.local", "raspberrypi.local", ()),
        ("octopi.local", "octopi.local", ()),
    ]
    assert_same_as_ansible(path, tmp_path)


def test_group_vars_and_host_vars_folders(tmp_path):
    path = write(tmp_path, "hosts.ini", INI)
    write(tmp_path, "group_vars/cams.yml", "deploy_dir: /from/group_vars\nlens: wide\n")
    write(tmp_path, "group_vars/all/10-users.yaml", "ansible_user: admin\n")
    write(tmp_path, "group_vars/all/20-more.yml", "keep_releases: 2\n")
    write(tmp_path, "host_vars/cam01.lab.local.yaml", "ansible_port: 2201\n")
    write(tmp_path, "host_vars/doorbell.lab.local", "deploy_dir: /from/host_vars\n")
    inv = load_inventory(path)
    cam1, cam2 = inv.hosts["cam01.lab.local"], inv.hosts["cam02.lab.local"]
    assert (cam1.port, cam2.port) == (2201, None)
    assert cam2.deploy_dir == "/from/group_vars" and cam2.vars["lens"] == "wide"
    assert inv.hosts["doorbell.lab.local"].deploy_dir == "/from/host_vars"
    # group_vars/all beats the inventory file's vars of every group (Ansible's precedence)...
    assert cam2.user == "admin" and cam2.keep_releases == 2
    # ...but never a host's own vars.
    assert inv.hosts["pi-bench"].user == "bob"
    assert_same_as_ansible(path, tmp_path)


def test_a_typo_in_group_vars_names_the_file(tmp_path):
    path = write(tmp_path, "hosts.ini", INI)
    bad = write(tmp_path, "group_vars/cams.yml", "keep_relases: 2\n")
    with pytest.raises(InventoryError, match="did you mean 'keep_releases'") as info:
        load_inventory(path)
    assert str(bad) in str(info.value)


def test_ansible_inventory_list_json(tmp_path):
    source = write(tmp_path / "src", "hosts", INI)
    write(tmp_path / "src", "host_vars/cam01.lab.local.yaml", "ansible_port: 2201\n")
    listing = ansible_inventory(source, tmp_path)
    path = tmp_path / "inventory.json"
    path.write_text(json.dumps(listing))
    from_json, from_ini = load_inventory(path), load_inventory(source)
    assert list(from_json.hosts) and set(from_json.hosts) == set(from_ini.hosts)
    for name, host in from_ini.hosts.items():
        other = from_json.hosts[name]
        assert (other.address, other.user, other.port, other.deploy_dir, other.keep_releases) == (
            host.address,
            host.user,
            host.port,
            host.deploy_dir,
            host.keep_releases,
        )
        assert set(other.groups) == set(host.groups)


def test_host_patterns(tmp_path):
    inv = load_inventory(write(tmp_path, "hosts", INI))

    def names(spec):
        return [h.name for h in inv.select(spec)]

    assert names("cam0*") == ["cam01.lab.local", "cam02.lab.local", "cam03.lab.local"]
    assert names("cam*")[-1] == "doorbell.lab.local"  # a glob matches groups too (cams)
    assert names("site,!outdoor") == ["cam01.lab.local", "cam02.lab.local", "cam03.lab.local"]
    assert names("cams,&outdoor") == ["doorbell.lab.local"]
    assert names("all,!cams") == ["pi-bench"]
    assert names("pi-bench,cam03.lab.local") == ["pi-bench", "cam03.lab.local"]
    assert names("*.lab.local,!cam0[12]*") == ["cam03.lab.local", "doorbell.lab.local"]
    with pytest.raises(InventoryError, match="selects no host"):
        inv.select("cams,!site")
    with pytest.raises(InventoryError, match="unknown host or group 'web\\*'"):
        inv.select("web*")


# --- hardening (issue 12, items 11 and 15) -------------------------------------------------


@pytest.mark.parametrize(
    "text, words",
    [
        ("all:\n  hosts:\n    ../../../../X: {address: a}\n", ["host name", "../../../../X"]),
        ("all:\n  hosts:\n    a/b: {address: a}\n", ["host name", "'a/b'"]),
        ("all:\n  hosts:\n    a..b:\n", ["host name", "'a..b'"]),
        ("all:\n  children:\n    'x/y': {hosts: {pi: }}\n", ["group name", "'x/y'"]),
        (
            "all:\n  hosts:\n    pi: {address: 'root@127.0.0.1:2222'}\n",
            ["'pi'", "address", "root@127.0.0.1:2222", "bare host name or IP"],
        ),
        ("all:\n  hosts:\n    pi: {ansible_host: 'pi.local/x'}\n", ["ansible_host", "bare"]),
        ("all:\n  hosts:\n    pi: {address: '-oProxyCommand=x'}\n", ["address", "bare"]),
        ('all:\n  hosts:\n    pi: {deploy_dir: "/srv/a\\nb"}\n', ["deploy_dir", "newline"]),
        ("all:\n  hosts:\n    pi: {deploy_dir: '/srv/a\\b'}\n", ["deploy_dir", "backslash"]),
        ("all:\n  hosts:\n    pi: {deploy_dir: '/srv/a;b'}\n", ["deploy_dir", "';'"]),
        ('all:\n  hosts:\n    pi: {user: "pi\\e[2J"}\n', ["user", "control character"]),
    ],
)
def test_names_addresses_and_deploy_dirs_are_checked(tmp_path, text, words):
    path = write(tmp_path, "inventory.yaml", text)
    with pytest.raises(InventoryError) as info:
        load_inventory(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    for word in words:
        assert word in message


def test_bare_addresses_and_ipv6_are_fine(tmp_path):
    text = "all:\n  hosts:\n    a: {address: '::1'}\n    b: {address: 10.0.0.1}\n    c:\n"
    inv = load_inventory(write(tmp_path, "inventory.yaml", text))
    assert [h.address for h in inv.select("all")] == ["::1", "10.0.0.1", "c"]


def test_local_is_not_in_all(tmp_path):
    inv = load_inventory(write(tmp_path, "inventory.yaml", BARE))
    assert "local" not in [h.name for h in inv.select("all")]
    assert [h.name for h in inv.select("*")] == ["raspberrypi.local", "octopi.local"]
    assert [h.name for h in inv.select(None)] == ["local"]  # still the default host
    assert inv.select(None)[0].is_local
    assert [h.name for h in inv.select("all,local")][-1] == "local"


def test_repo_inventory_all_leaves_the_workstation_out():
    inv = load_inventory(None)
    assert all(not host.is_local for host in inv.select("all"))
    assert inv.select("local")[0].is_local


def test_a_group_cycle_is_refused(tmp_path):
    path = write(tmp_path, "hosts", "[a]\npi\n[a:children]\nb\n[b:children]\na\n")
    with pytest.raises(InventoryError, match="contains itself"):
        load_inventory(path)
