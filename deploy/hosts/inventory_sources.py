"""Read an Ansible inventory as Ansible writes them: YAML, INI or `ansible-inventory --list` JSON.

Each reader fills one `RawInventory` (groups with their own vars, hosts and children; hosts with
their own vars), host ranges expanded; `deploy.hosts.inventory` resolves and validates it. The
`group_vars/` and `host_vars/` folders next to the inventory file are read here too.
"""

from __future__ import annotations

import ast
import json
import re
import shlex
import string
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from deploy.errors import InventoryError

_RANGE = re.compile(r"^(.*?)\[([^\]:]*):([^\]:]*)(?::([^\]:]*))?\](.*)$")
_INI_SECTION = re.compile(r"^\[([^\]]+)\]\s*$")
_HOST_PORT = re.compile(r"^([^:\[\]]+):(\d+)$")  # `name:2222` on an INI host line


@dataclass
class RawGroup:
    """One group as written: its own vars, direct hosts and child groups."""

    vars: dict = field(default_factory=dict)
    vars_where: str = ""
    hosts: list = field(default_factory=list)
    children: list = field(default_factory=list)


@dataclass
class RawInventory:
    """Groups and hosts as written (before precedence and validation)."""

    path: Path
    groups: dict = field(default_factory=dict)  # name -> RawGroup
    hosts: dict = field(default_factory=dict)  # name -> own vars (first-seen order)
    host_where: dict = field(default_factory=dict)  # name -> where its vars were written
    dir_vars: dict = field(default_factory=dict)  # ("group"|"host", name) -> [(vars, where)]

    def group(self, name: str) -> RawGroup:
        return self.groups.setdefault(name, RawGroup())

    def add_host(self, name: str, own: dict, where: str, group: str | None = None) -> None:
        """Record a host (again); its vars merge, but one var given two values is an error."""
        known = self.hosts.setdefault(name, {})
        for key, value in own.items():
            if key in known and known[key] != value:
                raise InventoryError(
                    f"{self.path}: host {name!r} is defined twice with different fields "
                    f"({key}: {known[key]!r} in {self.host_where[name]}, {value!r} in {where}); "
                    "define its fields once"
                )
            known[key] = value
        if own or name not in self.host_where:
            self.host_where[name] = where
        if group is not None and name not in self.group(group).hosts:
            self.group(group).hosts.append(name)

    def add_child(self, parent: str, child: str) -> None:
        self.group(child)
        if child not in self.group(parent).children:
            self.group(parent).children.append(child)

    def set_group_vars(self, name: str, values: dict, where: str) -> None:
        group = self.group(name)
        group.vars.update(values)
        group.vars_where = where


def expand_hosts(pattern: str) -> list[str]:
    """Ansible host ranges: `node[01:20]`, `10.0.0.[1:4]`, `pi-[a:c]`, `[0:10:2]` step, nested."""
    match = _RANGE.match(pattern)
    if not match:
        return [pattern]
    head, begin, end, step, tail = match.groups()
    begin = begin or "0"
    if not end:
        raise InventoryError(f"host range {pattern!r} has no end")
    try:
        step_n = int(step) if step else 1
    except ValueError:
        raise InventoryError(f"host range {pattern!r}: step {step!r} is not a number") from None
    if step_n < 1:
        raise InventoryError(f"host range {pattern!r}: step must be 1 or more")
    if begin.isdigit() and end.isdigit():
        width = len(begin) if begin.startswith("0") and len(begin) > 1 else 0
        if width and len(end) != width:
            raise InventoryError(
                f"host range {pattern!r}: zero-padded begin and end must be equally long"
            )
        items = [str(n).zfill(width) for n in range(int(begin), int(end) + 1, step_n)]
    elif len(begin) == 1 and len(end) == 1 and begin in string.ascii_letters:
        letters = string.ascii_letters
        if end not in letters or letters.index(end) < letters.index(begin):
            raise InventoryError(f"host range {pattern!r}: {begin!r} does not run up to {end!r}")
        items = list(letters[letters.index(begin) : letters.index(end) + 1 : step_n])
    else:
        raise InventoryError(
            f"host range {pattern!r}: use numbers [1:4], zero-padded [01:20] or letters [a:c]"
        )
    if not items:
        raise InventoryError(f"host range {pattern!r} is empty")
    out: list[str] = []
    for item in items:
        out += expand_hosts(f"{head}{item}{tail}")
    return out


# --- YAML ---------------------------------------------------------------------------------


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


def _construct_vault(loader: _UniqueKeyLoader, node: yaml.Node) -> str:
    """An Ansible-vault string: we never decrypt; its key is refused later if it is ours."""
    return "<vault>"


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_UniqueKeyLoader.add_constructor("!vault", _construct_vault)
_UniqueKeyLoader.add_constructor("!unsafe", lambda loader, node: loader.construct_scalar(node))


def load_yaml(text: str, path: Path) -> Any:
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except InventoryError as error:
        raise InventoryError(f"{path}: {error}") from None
    except yaml.YAMLError as error:
        raise InventoryError(f"{path}: not valid YAML: {yaml_problem(error)}") from None


def yaml_problem(error: yaml.YAMLError) -> str:
    """PyYAML's multi-line report as one line: where (line, column) and what."""
    mark = getattr(error, "problem_mark", None)
    what = getattr(error, "problem", None) or str(error).splitlines()[0]
    where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark is not None else ""
    context = getattr(error, "context", None)
    return f"{where}{what}" + (f" ({context})" if context else "")


def load_json(text: str, path: Path) -> Any:
    try:
        return json.loads(text)
    except ValueError as error:
        raise InventoryError(f"{path}: not valid JSON: {error}") from None


def _mapping(value: Any, where: str, path: Path) -> dict:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InventoryError(f"{path}: {where} must be a mapping, got {type(value).__name__}")
    return {str(key): item for key, item in value.items()}


def read_yaml(data: Any, path: Path) -> RawInventory:
    """Ansible's YAML form: top-level keys are groups (usually `all`), each {vars, hosts, children}."""
    raw = RawInventory(path)
    top = _mapping(data, "the top level", path)
    for key in ("hosts", "vars", "children"):
        if key in top:
            raise InventoryError(
                f"{path}: the top level holds groups, not {key!r}; start with `all:`"
            )
    if not top:
        raise InventoryError(f"{path}: no groups; start with `all:`")

    def walk(name: str, node: Any, lineage: tuple[str, ...]) -> None:
        where = f"group {name!r}"
        node = _mapping(node, where, path)
        unknown = set(node) - {"vars", "hosts", "children"}
        if unknown:
            raise InventoryError(
                f"{path}: {where}: unknown key(s) {sorted(unknown)}; a group has vars, hosts, children"
            )
        raw.group(name)
        if node.get("vars") is not None:
            raw.set_group_vars(name, _mapping(node["vars"], f"{where} vars", path), f"{where} vars")
        for pattern, own in _mapping(node.get("hosts"), f"{where} hosts", path).items():
            own = _mapping(own, f"host {pattern!r}", path)
            for host in _expand(pattern, path):
                raw.add_host(host, dict(own), f"{where} hosts", group=name)
        for child, child_node in _mapping(node.get("children"), f"{where} children", path).items():
            if child in lineage + (name,):
                raise InventoryError(f"{path}: group {child!r} contains itself")
            raw.add_child(name, child)
            walk(child, child_node, lineage + (name,))

    for name, node in top.items():
        walk(name, node, ())
    return raw


def _expand(pattern: str, path: Path) -> list[str]:
    try:
        return expand_hosts(pattern)
    except InventoryError as error:
        raise InventoryError(f"{path}: {error}") from None


# --- INI ----------------------------------------------------------------------------------


def _ini_value(text: str) -> Any:
    """Ansible's INI value rule: a Python literal if it parses as one, else the string."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError, TypeError):
        return text
    return value if isinstance(value, (str, int, float, bool, list, dict, tuple)) else text


def _ini_pairs(tokens: list[str], where: str, path: Path) -> dict:
    out = {}
    for token in tokens:
        key, sep, value = token.partition("=")
        if not sep or not key:
            raise InventoryError(f"{path}: {where}: expected key=value, got {token!r}")
        out[key] = _ini_value(value)
    return out


def read_ini(text: str, path: Path) -> RawInventory:
    """Ansible's INI form: `[group]` host lines, `[group:vars]`, `[group:children]`."""
    raw = RawInventory(path)
    raw.group("all")
    group, kind = "ungrouped", "hosts"
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        where = f"line {number}"
        if not stripped or stripped[0] in "#;":
            continue
        section = _INI_SECTION.match(stripped)
        if section:
            group, _, kind = section.group(1).partition(":")
            kind = kind or "hosts"
            if kind not in ("hosts", "vars", "children"):
                raise InventoryError(
                    f"{path}: {where}: section [{section.group(1)}]: expected [group], "
                    "[group:vars] or [group:children]"
                )
            raw.group(group)
            continue
        try:
            tokens = shlex.split(stripped, comments=True)
        except ValueError as error:
            raise InventoryError(f"{path}: {where}: {error}") from None
        if not tokens:
            continue
        if kind == "vars":
            key, sep, value = stripped.partition("=")
            if not sep or not key.strip():
                raise InventoryError(f"{path}: {where}: expected key=value in [{group}:vars]")
            values = {key.strip(): _ini_value(value.strip())}
            raw.set_group_vars(group, {**raw.group(group).vars, **values}, f"[{group}:vars]")
        elif kind == "children":
            if len(tokens) != 1:
                raise InventoryError(
                    f"{path}: {where}: one group name per line in [{group}:children]"
                )
            raw.add_child(group, tokens[0])
        else:
            own = _ini_pairs(tokens[1:], f"{where} (host {tokens[0]!r})", path)
            pattern = tokens[0]
            port = _HOST_PORT.match(pattern)
            if port:
                pattern = port.group(1)
                own.setdefault("ansible_port", int(port.group(2)))
            for host in _expand(pattern, path):
                raw.add_host(host, dict(own), where, group=group)
    return raw


# --- ansible-inventory --list JSON ----------------------------------------------------------


def looks_like_inventory_list(data: Any) -> bool:
    """The JSON of `ansible-inventory --list`: `_meta.hostvars`, groups with lists of names."""
    if not isinstance(data, dict):
        return False
    if "_meta" in data:
        return True
    return any(
        isinstance(node, dict)
        and any(isinstance(node.get(key), list) for key in ("hosts", "children"))
        for node in data.values()
    )


def read_inventory_list(data: dict, path: Path) -> RawInventory:
    """Groups from the top-level keys, host vars from `_meta.hostvars` (already merged by Ansible)."""
    raw = RawInventory(path)
    raw.group("all")
    meta = _mapping(data.get("_meta"), "_meta", path)
    hostvars = _mapping(meta.get("hostvars"), "_meta.hostvars", path)
    for name, node in data.items():
        if name == "_meta":
            continue
        node = _mapping(node, f"group {name!r}", path)
        for key in ("hosts", "children"):
            if not isinstance(node.get(key, []), list):
                raise InventoryError(f"{path}: group {name!r}: {key} must be a list of names")
        raw.group(name)
        if node.get("vars"):
            raw.set_group_vars(
                name, _mapping(node["vars"], f"group {name!r} vars", path), f"group {name!r} vars"
            )
        for host in node.get("hosts", []):
            raw.add_host(str(host), {}, f"group {name!r}", group=name)
        for child in node.get("children", []):
            raw.add_child(name, str(child))
    for host, own in hostvars.items():
        raw.add_host(host, dict(_mapping(own, f"_meta.hostvars {host!r}", path)), "_meta.hostvars")
    return raw


# --- group_vars/ and host_vars/ next to the inventory ---------------------------------------

_VARS_SUFFIXES = ("", ".yml", ".yaml", ".json")


def _vars_files(folder: Path, name: str) -> list[Path]:
    """Ansible's lookup: `<name>`, `<name>.yml|.yaml|.json`, or every such file in `<name>/`."""
    found: list[Path] = []
    for suffix in _VARS_SUFFIXES:
        candidate = folder / f"{name}{suffix}"
        if candidate.is_file():
            found.append(candidate)
        elif suffix == "" and candidate.is_dir():
            found += sorted(
                item
                for item in candidate.rglob("*")
                if item.is_file() and item.suffix in _VARS_SUFFIXES[1:]
            )
    return found


def read_vars_dirs(raw: RawInventory) -> None:
    """Fill `raw.dir_vars` from group_vars/ and host_vars/ beside the inventory file."""
    base = raw.path.parent
    for kind, names in (("group", list(raw.groups)), ("host", list(raw.hosts))):
        folder = base / f"{kind}_vars"
        if not folder.is_dir():
            continue
        for name in names:
            for file in _vars_files(folder, name):
                try:
                    text = file.read_text(encoding="utf-8")
                except (OSError, UnicodeDecodeError) as error:
                    raise InventoryError(f"{file}: cannot read: {error}") from None
                if text.lstrip().startswith("$ANSIBLE_VAULT"):
                    continue  # a vault file holds secrets; we never use them
                data = load_json(text, file) if file.suffix == ".json" else load_yaml(text, file)
                values = _mapping(data, "the file", file)
                raw.dir_vars.setdefault((kind, name), []).append((values, str(file)))
