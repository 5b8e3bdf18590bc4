"""Load an Ansible inventory (YAML, INI or `ansible-inventory --list` JSON) into `Host` records.

Ansible's structure and precedence (host > child group > parent group > all; group_vars/ and
host_vars/ beside the file). Variables we do not use are kept and ignored; ours are checked, and
errors name the file, the host or group and the field, so a typo is a one-line fix.
"""

from __future__ import annotations

import fnmatch
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from deploy.errors import InventoryError
from deploy.hosts.inventory_sources import (
    RawInventory,
    load_json,
    load_yaml,
    looks_like_inventory_list,
    read_ini,
    read_inventory_list,
    read_vars_dirs,
    read_yaml,
)
from deploy.paths import DEFAULT_INVENTORY

DEFAULT_HOST = "local"
DEFAULT_DEPLOY_DIR = "~/retinaface-pi"
DEFAULT_KEEP_RELEASES = 3

# Canonical variable name -> accepted spellings (Ansible's connection variables included).
ALIASES = {
    "address": ("address", "ansible_host", "ansible_ssh_host"),
    "user": ("user", "ansible_user", "ansible_ssh_user"),
    "port": ("port", "ansible_port", "ansible_ssh_port"),
    "key_file": ("key_file", "ansible_ssh_private_key_file", "ansible_private_key_file"),
    "connection": ("connection", "ansible_connection"),
    "python": ("python", "ansible_python_interpreter"),
    "deploy_dir": ("deploy_dir",),
    "keep_releases": ("keep_releases",),
    "description": ("description",),
}
_CANONICAL = {spelling: name for name, spellings in ALIASES.items() for spelling in spellings}
# ansible_connection value -> ours; Ansible's `smart` and `paramiko` are SSH too.
CONNECTIONS = {"ssh": "ssh", "smart": "ssh", "paramiko": "ssh", "local": "local"}
_SECRET_WORDS = ("pass", "secret", "token")
_TYPO_MIN_LENGTH = 7  # `users` next to `user` is someone's list, `deploy_dri` is a typo
NAME_PATTERN = re.compile(r"^[A-Za-z0-9._-]+$")
_HOSTNAME = re.compile(r"^[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?$")
_IPV6 = re.compile(r"^[0-9A-Fa-f:.]*:[0-9A-Fa-f:.]*(%[A-Za-z0-9_.-]+)?$")
_DEPLOY_DIR_BAD = re.compile(r"[\\;\x00-\x1f\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Host:
    """One machine to work on: where it is, how to log in, where releases live."""

    name: str
    connection: str = "ssh"  # "ssh" or "local"
    address: str | None = None
    user: str | None = None
    port: int | None = None  # None: ~/.ssh/config's Port, else 22
    key_file: str | None = None
    python: str = "python3"
    deploy_dir: str = DEFAULT_DEPLOY_DIR
    keep_releases: int = DEFAULT_KEEP_RELEASES
    description: str = ""
    groups: tuple[str, ...] = ()
    # Every other variable the inventory gives the host (kept for Ansible; we ignore them).
    vars: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def is_local(self) -> bool:
        return self.connection == "local"

    @property
    def target(self) -> str:
        """`user@address:port` for messages (or `local`)."""
        if self.is_local:
            return "local"
        user = f"{self.user}@" if self.user else ""
        return f"{user}{self.address}:{self.port or 22}"


# A local host's runner uses the Python that runs invoke (deploy builds its venv on it and lets
# it see that Python's packages), unless the inventory names another `python`.
LOCAL_HOST = Host(
    name=DEFAULT_HOST,
    connection="local",
    python=sys.executable,
    description="this machine (no SSH)",
)


@dataclass
class Inventory:
    """Validated inventory: hosts by name and group members by group name.

    `local` (this machine) is never in `all`, as Ansible's implicit localhost; it is there when
    named (and it is the default when nothing is named) unless the inventory defines it.
    """

    path: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def host(self, name: str) -> Host:
        if name in self.hosts:
            return self.hosts[name]
        if name == DEFAULT_HOST:
            return LOCAL_HOST
        raise KeyError(name)

    def select(self, spec: str | None) -> list[Host]:
        """Hosts matched by an Ansible-style pattern, in inventory order.

        `spec` is comma separated: host or group names, `all`/`*`, globs (`web*`), `!name`
        to exclude and `&name` to intersect (Ansible's order: union, then &, then !).
        """
        parts = [part.strip() for part in (spec or DEFAULT_HOST).split(",") if part.strip()]
        if not parts:
            raise InventoryError(f"{self.path}: --host is empty")
        union: list[str] = []
        intersect, exclude = [], []
        for part in parts:
            if part[0] in "!&":
                (exclude if part[0] == "!" else intersect).append(set(self._match(part[1:])))
            else:
                union.extend(name for name in self._match(part) if name not in union)
        if not union and (intersect or exclude):
            union = list(self.groups.get("all", []))  # `!pi4` alone means all but pi4
        chosen = [
            name
            for name in union
            if all(name in group for group in intersect) and not any(name in g for g in exclude)
        ]
        if not chosen:
            raise InventoryError(f"{self.path}: --host {spec!r} selects no host")
        return [self.host(name) for name in chosen]

    def _match(self, pattern: str) -> list[str]:
        if not pattern:
            raise InventoryError(f"{self.path}: --host has an empty part after ! or &")
        if pattern in ("all", "*"):
            return list(self.groups.get("all", []))
        if pattern in self.hosts or pattern == DEFAULT_HOST:
            return [pattern]
        if pattern in self.groups:
            return list(self.groups[pattern])
        if any(char in pattern for char in "*?["):
            found: list[str] = []
            for group in fnmatch.filter(self.groups, pattern):
                found += [name for name in self.groups[group] if name not in found]
            found += [n for n in fnmatch.filter(self.hosts, pattern) if n not in found]
            if found:
                return [name for name in self.hosts if name in found]
        raise InventoryError(
            f"{self.path}: unknown host or group {pattern!r}; "
            f"hosts: {', '.join(sorted(self.hosts)) or '(none)'}; "
            f"groups: {', '.join(sorted(self.groups)) or '(none)'}"
        )


def _near(name: str, known: str) -> bool:
    """One edit apart (insert, delete, substitute, or swap two neighbours)."""
    if name == known or abs(len(name) - len(known)) > 1:
        return False
    if len(name) == len(known):
        diff = [i for i, (a, b) in enumerate(zip(name, known)) if a != b]
        if len(diff) == 1:
            return True
        return (
            len(diff) == 2
            and diff[1] == diff[0] + 1
            and (name[diff[0]] == known[diff[1]] and name[diff[1]] == known[diff[0]])
        )
    short, long = sorted((name, known), key=len)
    return any(long[:i] + long[i + 1 :] == short for i in range(len(long)))


def _split_vars(raw: dict, where: str, path: Path) -> tuple[dict, dict]:
    """(our fields by canonical name, checked; every other variable, kept as is)."""
    ours: dict[str, Any] = {}
    other: dict[str, Any] = {}
    for key, value in raw.items():
        key = str(key)
        if any(word in key.lower() for word in _SECRET_WORDS):
            raise InventoryError(
                f"{path}: {where}: field {key!r} looks like a secret; the inventory holds no "
                "passwords — use an SSH key (key_file) or ssh-agent"
            )
        name = _CANONICAL.get(key)
        if name is None:
            typo = [
                known
                for known in _CANONICAL
                if len(known) >= _TYPO_MIN_LENGTH and _near(key, known)
            ]
            if typo:
                raise InventoryError(
                    f"{path}: {where}: unknown field {key!r}; did you mean {typo[0]!r}?"
                )
            other[key] = value
            continue
        if name in ours:
            raise InventoryError(f"{path}: {where}: field {name!r} given twice (alias {key!r})")
        ours[name] = _check_field(name, value, f"{where}: field {key!r}", path)
    return ours, other


def _check_field(name: str, value: Any, where: str, path: Path) -> Any:
    if name in ("port", "keep_releases"):
        low, high = (1, 65535) if name == "port" else (1, 1000)
        if isinstance(value, bool) or not isinstance(value, (int, str)):
            raise InventoryError(f"{path}: {where}: expected an integer, got {value!r}")
        try:
            number = int(value)
        except ValueError:
            raise InventoryError(f"{path}: {where}: expected an integer, got {value!r}") from None
        if not low <= number <= high:
            raise InventoryError(f"{path}: {where}: {number} is outside {low}..{high}")
        return number
    if name == "connection":
        if value not in CONNECTIONS:
            raise InventoryError(
                f"{path}: {where}: expected one of {', '.join(CONNECTIONS)}, got {value!r}"
            )
        return CONNECTIONS[value]
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise InventoryError(f"{path}: {where}: expected a non-empty string, got {value!r}")
    value = str(value)
    if name == "deploy_dir" and _DEPLOY_DIR_BAD.search(value):
        raise InventoryError(
            f"{path}: {where}: {value!r} holds a newline, control character, backslash or ';'"
        )
    if _CONTROL.search(value):
        raise InventoryError(f"{path}: {where}: {value!r} holds a control character")
    if name == "address":
        check_address(value, f"{path}: {where}")
    return value


def check_address(value: str, where: str) -> None:
    """A bare host name or IP address: no user@, no :port, no path (those have fields)."""
    if (_HOSTNAME.match(value) and ".." not in value) or _IPV6.match(value):
        return
    raise InventoryError(
        f"{where}: {value!r} is not a bare host name or IP address "
        "(give the login name in `user` and the port in `port`)"
    )


def check_name(name: str, kind: str, path: Path) -> None:
    if not NAME_PATTERN.match(name) or ".." in name:
        raise InventoryError(
            f"{path}: {kind} name {name!r}: use letters, digits, '.', '_' and '-' "
            "(no '..'; ranges are written [1:4])"
        )


def load_inventory(path: Path | str | None = None) -> Inventory:
    """Read an inventory in any of Ansible's forms (YAML, INI, `ansible-inventory --list`
    JSON) plus group_vars/ and host_vars/ beside it; raise InventoryError naming file and field.
    """
    path = Path(path) if path else DEFAULT_INVENTORY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InventoryError(f"{path}: cannot read inventory: {error.strerror}") from None
    except UnicodeDecodeError:
        raise InventoryError(f"{path}: not a text file (UTF-8)") from None
    raw = read_raw(text, path)
    read_vars_dirs(raw)
    return resolve(raw)


def read_raw(text: str, path: Path) -> RawInventory:
    """Detect the format like Ansible's plugins do (YAML or JSON mapping, else INI) and read it."""
    suffix = path.suffix.lower()
    if suffix == ".json" or text.lstrip().startswith("{"):
        data = load_json(text, path)
        if looks_like_inventory_list(data):
            return read_inventory_list(data, path)
    elif suffix in (".yml", ".yaml"):
        data = load_yaml(text, path)
    else:
        try:
            data = load_yaml(text, path)
        except InventoryError:
            data = None  # not YAML: INI
        if not isinstance(data, dict):
            return read_ini(text, path)
    if isinstance(data, dict) and "_meta" in data:
        return read_inventory_list(data, path)
    return read_yaml(data, path)


def parse_inventory(data: Any, path: Path) -> Inventory:
    """Validate parsed YAML data (see `load_inventory`)."""
    return resolve(read_yaml(data, path))


def _depths(raw: RawInventory) -> dict[str, int]:
    """Each group's depth below `all` (longest path), as Ansible sorts groups for precedence."""
    depth = {"all": 0}
    order = ["all"]
    while order:
        parent = order.pop(0)
        for child in raw.groups[parent].children:
            if depth.get(child, -1) < depth[parent] + 1:
                if depth[parent] + 1 > len(raw.groups):
                    raise InventoryError(f"{raw.path}: group {child!r} contains itself")
                depth[child] = depth[parent] + 1
                order.append(child)
    return depth


def resolve(raw: RawInventory) -> Inventory:
    """Apply Ansible's structure and precedence to raw groups and hosts, then validate."""
    path = raw.path
    raw.group("all")
    for name in raw.groups:
        check_name(name, "group", path)
    for name in raw.hosts:
        check_name(name, "host", path)
    clash = sorted(set(raw.hosts) & set(raw.groups))
    if clash:
        raise InventoryError(f"{path}: {clash[0]!r} is both a host and a group; rename one")
    # Groups nobody contains hang under `all`; hosts in no group but `all` are `ungrouped`.
    parented = {child for group in raw.groups.values() for child in group.children}
    for name in list(raw.groups):
        if name != "all" and name not in parented:
            raw.add_child("all", name)
    grouped = {
        h for name, g in raw.groups.items() if name not in ("all", "ungrouped") for h in g.hosts
    }
    for name in raw.hosts:
        if name not in grouped:
            raw.add_host(name, {}, raw.host_where[name], group="ungrouped")
            raw.add_child("all", "ungrouped")
    depth = _depths(raw)
    lost = sorted(set(raw.groups) - set(depth))
    if lost:  # only a cycle keeps a group out of `all`
        raise InventoryError(f"{path}: group {lost[0]!r} contains itself (through its children)")
    parents: dict[str, set] = {name: set() for name in raw.groups}
    for name, group in raw.groups.items():
        for child in group.children:
            parents[child].add(name)

    def ancestors(group: str) -> set:
        seen, todo = set(), [group]
        while todo:
            item = todo.pop()
            if item not in seen:
                seen.add(item)
                todo += parents[item]
        return seen

    host_groups: dict[str, set] = {name: set() for name in raw.hosts}
    for name, group in raw.groups.items():
        for host in group.hosts:
            host_groups[host] |= ancestors(name)
    ranked = sorted(raw.groups, key=lambda name: (depth.get(name, 0), name))
    group_fields = {
        name: _split_vars(
            raw.groups[name].vars, raw.groups[name].vars_where or f"group {name!r}", path
        )
        for name in raw.groups
    }
    dir_fields = {
        key: [_split_vars(values, "vars", Path(where)) for values, where in items]
        for key, items in raw.dir_vars.items()
    }

    hosts: dict[str, Host] = {}
    for name in raw.hosts:
        layers = [group_fields[g] for g in ranked if g in host_groups[name]]
        layers += [
            item
            for g in ranked
            if g in host_groups[name]
            for item in dir_fields.get(("group", g), [])
        ]
        layers.append(_split_vars(raw.hosts[name], f"host {name!r}", path))
        layers += dir_fields.get(("host", name), [])
        merged: dict[str, Any] = {}
        other: dict[str, Any] = {}
        for ours, rest in layers:
            merged.update(ours)
            other.update(rest)
        if merged.get("connection", "ssh") == "local":
            merged.setdefault("python", sys.executable)
        if merged.get("connection", "ssh") == "ssh" and "address" not in merged:
            check_address(name, f"{path}: host {name!r} (its name is its address)")
            merged["address"] = name
        hosts[name] = Host(
            name=name,
            groups=tuple(
                g for g in ranked if g in host_groups[name] and g not in ("all", "ungrouped")
            ),
            vars=other,
            **merged,
        )
    groups = {
        name: [host for host in raw.hosts if name in host_groups[host]] for name in raw.groups
    }
    return Inventory(path=path, hosts=hosts, groups=groups)
