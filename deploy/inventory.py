"""Load and validate the Ansible-shaped inventory (`all: {vars, hosts, children}`) into `Host` records.

Errors name the file, the host or group and the field, so a typo is a one-line fix.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import InventoryError
from deploy.hostkeys import REPO_ROOT

DEFAULT_INVENTORY = REPO_ROOT / "inventory.yaml"
DEFAULT_HOST = "local"
DEFAULT_DEPLOY_DIR = "~/retinaface-pi"
DEFAULT_KEEP_RELEASES = 3

# Canonical variable name -> accepted spellings (Ansible aliases included).
ALIASES = {
    "address": ("address", "ansible_host"),
    "user": ("user", "ansible_user"),
    "port": ("port", "ansible_port"),
    "key_file": ("key_file", "ansible_ssh_private_key_file"),
    "connection": ("connection", "ansible_connection"),
    "python": ("python", "ansible_python_interpreter"),
    "deploy_dir": ("deploy_dir",),
    "keep_releases": ("keep_releases",),
    "description": ("description",),
}
_CANONICAL = {spelling: name for name, spellings in ALIASES.items() for spelling in spellings}
CONNECTIONS = ("ssh", "local")
_SECRET_WORDS = ("pass", "secret", "token")


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
    """Validated inventory: hosts by name and group members by group name."""

    path: Path
    hosts: dict[str, Host] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)

    def select(self, spec: str | None) -> list[Host]:
        """Hosts named by `spec`: host names, group names or `all`, comma separated; order kept."""
        names = [part.strip() for part in (spec or DEFAULT_HOST).split(",") if part.strip()]
        if not names:
            raise InventoryError(f"{self.path}: --host is empty")
        chosen: list[str] = []
        for name in names:
            if name in self.hosts:
                members = [name]
            elif name in self.groups:
                members = self.groups[name]
            else:
                raise InventoryError(
                    f"{self.path}: unknown host or group {name!r}; "
                    f"hosts: {', '.join(sorted(self.hosts)) or '(none)'}; "
                    f"groups: {', '.join(sorted(self.groups)) or '(none)'}"
                )
            chosen.extend(member for member in members if member not in chosen)
        return [self.hosts[name] for name in chosen]


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys (PyYAML silently keeps the last one)."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False):
    seen: dict[Any, int] = {}
    for key_node, _value in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise InventoryError(
                f"duplicate key {key!r} at line {key_node.start_mark.line + 1} "
                f"(first at line {seen[key]})"
            )
        seen[key] = key_node.start_mark.line + 1
    return loader.construct_mapping(node, deep=deep)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def _mapping(value: Any, where: str, path: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryError(f"{path}: {where} must be a mapping, got {type(value).__name__}")
    return value


def _normalize_vars(raw: Any, where: str, path: Path) -> dict[str, Any]:
    """Map aliases to canonical names and check every field; `where` names the host or group."""
    out: dict[str, Any] = {}
    for key, value in _mapping(raw, where, path).items():
        key_str = str(key)
        if any(word in key_str.lower() for word in _SECRET_WORDS):
            raise InventoryError(
                f"{path}: {where}: field {key_str!r} looks like a secret; the inventory holds no "
                "passwords — use an SSH key (key_file) or ssh-agent"
            )
        name = _CANONICAL.get(key_str)
        if name is None:
            raise InventoryError(
                f"{path}: {where}: unknown field {key_str!r}; known fields: "
                f"{', '.join(sorted(_CANONICAL))}"
            )
        if name in out:
            raise InventoryError(f"{path}: {where}: field {name!r} given twice (alias {key_str!r})")
        out[name] = _check_field(name, value, f"{where}: field {key_str!r}", path)
    return out


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
        return value
    if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value).strip() == "":
        raise InventoryError(f"{path}: {where}: expected a non-empty string, got {value!r}")
    return str(value)


def load_inventory(path: Path | str | None = None) -> Inventory:
    """Read and validate an inventory file; raise InventoryError naming file, host and field."""
    path = Path(path) if path else DEFAULT_INVENTORY
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise InventoryError(f"{path}: cannot read inventory: {error.strerror}") from None
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except InventoryError as error:
        raise InventoryError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise InventoryError(f"{path}: not valid YAML: {yaml_problem(error)}") from None
    return parse_inventory(data, path)


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: where (line, column) and what."""
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(error, "context", None)
    return f"{where}{what}" + (f" ({context})" if context else "")


def parse_inventory(data: Any, path: Path) -> Inventory:
    """Validate parsed YAML data (see `load_inventory`)."""
    top = _mapping(data, "the top level", path)
    if set(top) != {"all"}:
        extra = sorted(str(key) for key in set(top) - {"all"})
        if "all" not in top:
            raise InventoryError(
                f"{path}: the top level must be `all:` (got {sorted(map(str, top))})"
            )
        raise InventoryError(
            f"{path}: unknown top-level key(s) {extra}; put groups under all.children"
        )

    host_vars: dict[str, dict[str, Any]] = {}  # host -> its own vars (first definition)
    host_groups: dict[str, list[str]] = {}
    host_inherited: dict[str, list[dict[str, Any]]] = {}  # group vars, outer to inner
    groups: dict[str, list[str]] = {}

    def walk(name: str, node: Any, inherited: list[dict[str, Any]], lineage: tuple[str, ...]):
        where = f"group {name!r}"
        node = _mapping(node, where, path)
        unknown = set(map(str, node)) - {"vars", "hosts", "children"}
        if unknown:
            raise InventoryError(
                f"{path}: {where}: unknown key(s) {sorted(unknown)}; a group has vars, hosts, children"
            )
        scope = inherited + [_normalize_vars(node.get("vars"), f"{where} vars", path)]
        groups.setdefault(name, [])
        for host_name, raw in _mapping(node.get("hosts"), f"{where} hosts", path).items():
            host_name = str(host_name)
            own = _normalize_vars(raw, f"host {host_name!r}", path)
            if host_name in host_vars:
                if own and host_vars[host_name] and own != host_vars[host_name]:
                    raise InventoryError(
                        f"{path}: host {host_name!r} is defined twice with different fields "
                        f"(in {', '.join(host_groups[host_name])} and {name}); define its fields once"
                    )
                host_vars[host_name] = host_vars[host_name] or own
            else:
                host_vars[host_name] = own
                host_inherited[host_name] = scope
            host_groups.setdefault(host_name, [])
            for group in lineage + (name,):
                if group not in host_groups[host_name]:
                    host_groups[host_name].append(group)
                if host_name not in groups.setdefault(group, []):
                    groups[group].append(host_name)
        for child, child_node in _mapping(node.get("children"), f"{where} children", path).items():
            child = str(child)
            if child in lineage + (name,):
                raise InventoryError(f"{path}: group {child!r} contains itself")
            walk(child, child_node, scope, lineage + (name,))

    walk("all", top["all"], [], ())

    clash = sorted(set(host_vars) & set(groups))
    if clash:
        raise InventoryError(f"{path}: {clash[0]!r} is both a host and a group; rename one")

    hosts: dict[str, Host] = {}
    for name, own in host_vars.items():
        merged: dict[str, Any] = {}
        for scope in host_inherited[name]:
            merged.update(scope)
        merged.update(own)
        connection = merged.get("connection", "ssh")
        if connection == "local":
            merged.setdefault("python", sys.executable)
        if connection == "ssh" and not merged.get("address"):
            raise InventoryError(
                f"{path}: host {name!r}: missing field 'address' (or 'ansible_host')"
            )
        hosts[name] = Host(
            name=name,
            groups=tuple(group for group in host_groups[name] if group != "all"),
            **merged,
        )
    if DEFAULT_HOST not in hosts and DEFAULT_HOST not in groups:
        hosts[DEFAULT_HOST] = LOCAL_HOST
        groups["all"].append(DEFAULT_HOST)
    return Inventory(path=path, hosts=hosts, groups=groups)
