"""The shape of the house, kept by a test: who may import whom (DESIGN.md "Dependency rule").

Every import of retinaface/, deploy/, pi_setup/ and tasks.py is read with `ast` (function-level
imports too) and resolved to a module of the tree or a third-party top-level name. Rules:

1. shipped code (retinaface/ minus tools/) imports nothing of retinaface.tools, deploy,
   pi_setup, fabric, invoke, jinja2, yaml, onnx or onnxslim, at any level, and the engines
   (torch, cv2, onnxruntime, tflite_runtime, ncnn, MNN) only inside functions (model.py: torch);
2. the rooms of deploy/: deploy.results never imports deploy.hosts or deploy.workflow;
   pi_setup takes from deploy only deploy.hosts, deploy.paths, deploy.console and deploy.errors;
   deploy.workflow takes from pi_setup only pi_setup.wheelhouse;
3. no module imports a private name (`_x`) of another module of the tree;
4. no import circle between modules of the tree, direct or longer.

A second set of tests plants each bad case in a small synthetic tree and shows its rule firing.
"""

import ast
import functools
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.paths import REPO

PACKAGES = ("retinaface", "deploy", "pi_setup")
SCRIPTS = ("tasks.py",)
NEVER_SHIPPED = ("retinaface.tools", "deploy", "pi_setup")
WORKSTATION_PACKAGES = ("fabric", "invoke", "jinja2", "yaml", "onnx", "onnxslim")
ENGINES = ("torch", "cv2", "onnxruntime", "tflite_runtime", "ncnn", "MNN")
ENGINE_AT_MODULE_LEVEL_OK = {"retinaface.model": {"torch"}}

@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # the module it loads: a module of the tree, or a top-level third-party name
    name: str  # the name taken (`from x import name`), or "" for `import x`
    lineno: int
    module_level: bool


def modules_of(root):
    """{dotted name: path} of every .py file of the packages and scripts under `root`."""
    found = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            rel = path.relative_to(root).with_suffix("")
            if "__pycache__" in rel.parts:
                continue
            parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
            found[".".join(parts)] = path
    for script in SCRIPTS:
        if (root / script).is_file():
            found[Path(script).stem] = root / script
    return found


@functools.lru_cache(maxsize=None)
def _parse(path, mtime_ns, size):
    return ast.parse(Path(path).read_text(), filename=path)


def parse(path):
    """The module's syntax tree (cached while the file is unchanged)."""
    stat = Path(path).stat()
    return _parse(str(path), stat.st_mtime_ns, stat.st_size)


def _import_nodes(tree):
    """(node, module_level) for every import; module level = not inside a def or lambda."""
    found = []
    todo = [(node, True) for node in tree.body]
    while todo:
        node, top = todo.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append((node, top))
        inner = top and not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        todo.extend((child, inner) for child in ast.iter_child_nodes(node))
    return found


def _absolute(module, path, node):
    """The absolute module an ImportFrom names (relative imports resolved)."""
    if not node.level:
        return node.module
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    base = package[: len(package) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def _owner(target, modules):
    """The longest prefix of `target` that is a module of the tree (`from x.y import Name`
    loads x.y), a module of our packages that does not exist (named whole), else the top-level
    name of a third-party package."""
    parts = target.split(".")
    for end in range(len(parts), 1, -1):
        if ".".join(parts[:end]) in modules:
            return ".".join(parts[:end])
    return target if parts[0] in PACKAGES else parts[0]


def imports_of(root):
    """Every import of the tree as Import records."""
    modules = modules_of(root)
    found = []
    for module, path in modules.items():
        tree = parse(path)
        for node, top in _import_nodes(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    found.append(Import(module, _owner(alias.name, modules), "", node.lineno, top))
                continue
            base = _absolute(module, path, node)
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                target = sub if sub in modules else _owner(base, modules)
                name = "" if sub in modules else alias.name
                found.append(Import(module, target, name, node.lineno, top))
    return modules, found


def _within(name, prefixes):
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _where(item, modules, root):
    return f"{modules[item.module].relative_to(root)}:{item.lineno}"


def shipped_violations(root):
    modules, found = imports_of(root)
    bad = []
    for item in found:
        if not _within(item.module, ("retinaface",)) or _within(item.module, ("retinaface.tools",)):
            continue
        where = _where(item, modules, root)
        if _within(item.target, NEVER_SHIPPED) or item.target in WORKSTATION_PACKAGES:
            bad.append(f"{where}: shipped {item.module} imports {item.target}")
        elif item.target in ENGINES and item.module_level:
            if item.target not in ENGINE_AT_MODULE_LEVEL_OK.get(item.module, ()):
                bad.append(f"{where}: shipped {item.module} imports {item.target} at module level")
    return bad


# (importing room, imported room, what it may take from there; None: nothing at all)
ROOMS = (
    ("deploy.results", "deploy.hosts", None),
    ("deploy.results", "deploy.workflow", None),
    ("pi_setup", "deploy", ("deploy.hosts", "deploy.paths", "deploy.console", "deploy.errors")),
    ("deploy.workflow", "pi_setup", ("pi_setup.wheelhouse",)),
)


def results_violations(root):
    """The rooms of deploy/ and pi_setup/ import each other only through their doors (ROOMS)."""
    modules, found = imports_of(root)
    bad = []
    for item in found:
        for room, other, doors in ROOMS:
            if not (_within(item.module, (room,)) and _within(item.target, (other,))):
                continue
            if doors is None or not _within(item.target, doors):
                bad.append(f"{_where(item, modules, root)}: {item.module} imports {item.target}")
    return bad


def _private(name):
    return name.startswith("_") and not name.startswith("__")


def _module_aliases(module, path, modules):
    """{local name: module of the tree} bound by `import x.y as z` / `from x import module`."""
    aliases = {}
    for node, _ in _import_nodes(parse(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname and alias.name in modules:
                    aliases[alias.asname] = alias.name
        else:
            base = _absolute(module, path, node)
            for alias in node.names:
                if f"{base}.{alias.name}" in modules:
                    aliases[alias.asname or alias.name] = f"{base}.{alias.name}"
    return aliases


def private_uses(root):
    """`mod._x` where `mod` names another module of the tree: a private name used across."""
    modules = modules_of(root)
    bad = []
    for module, path in modules.items():
        aliases = _module_aliases(module, path, modules)
        for node in ast.walk(parse(path)):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in aliases
                and aliases[node.value.id] != module
                and _private(node.attr)
            ):
                where = f"{path.relative_to(root)}:{node.lineno}"
                bad.append(f"{where}: {module} uses private {aliases[node.value.id]}.{node.attr}")
    return bad


def private_violations(root):
    modules, found = imports_of(root)
    bad = private_uses(root)
    for item in found:
        if item.target not in modules or item.target == item.module:
            continue
        private = _private(item.name)
        private_module = any(_private(part) for part in item.target.split("."))
        if private or private_module:
            shown = f"{item.target}.{item.name}" if item.name else item.target
            bad.append(f"{_where(item, modules, root)}: {item.module} imports private {shown}")
    return bad


def import_graph(root):
    """{module: set of modules of the tree it imports}, at any level."""
    modules, found = imports_of(root)
    graph = {module: set() for module in modules}
    for item in found:
        if item.target in modules and item.target != item.module:
            graph[item.module].add(item.target)
    return graph


def cycles(graph):
    """Each circle of imports once, as a list of modules starting at its smallest name."""
    found, state, stack = set(), {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == "open":
                loop = stack[stack.index(nxt) :]
                start = loop.index(min(loop))
                found.add(tuple(loop[start:] + loop[:start]))
            elif nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return sorted(list(loop) for loop in found)


def cycle_violations(root):
    return [" -> ".join(loop + [loop[0]]) for loop in cycles(import_graph(root))]


RULES = {
    "shipped": shipped_violations,
    "results": results_violations,
    "private": private_violations,
    "cycle": cycle_violations,
}


def _unexpected(rule):
    return RULES[rule](REPO)


# --- the real tree -----------------------------------------------------------------------


def test_the_tree_is_read():
    modules, found = imports_of(REPO)
    for expected in ("retinaface.runner", "retinaface.cli", "retinaface.tools.export", "tasks"):
        assert expected in modules
    assert len(found) > 300  # every import of the tree, not a sample


@pytest.mark.parametrize("rule", sorted(RULES))
def test_the_tree_keeps_the_rule(rule):
    assert _unexpected(rule) == []


def test_the_rooms_exist():
    """The rooms rule is about these packages: it must not pass because they are gone."""
    modules = modules_of(REPO)
    for room in ("deploy.results", "deploy.hosts", "deploy.workflow", "pi_setup.wheelhouse"):
        assert any(_within(m, (room,)) for m in modules), room


# --- each rule catches a planted case ----------------------------------------------------


def _tree(tmp_path, files):
    """A synthetic tree: {relative path: source}; packages get an __init__.py."""
    for rel, source in files.items():
        path = tmp_path / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source)
    for package in PACKAGES:
        for folder in [tmp_path / package, *(tmp_path / package).rglob("*")]:
            if folder.is_dir() and not (folder / "__init__.py").exists():
                (folder / "__init__.py").write_text("")
    return tmp_path


def test_a_clean_synthetic_tree_passes(tmp_path):
    root = _tree(
        tmp_path,
        {
            "retinaface/runner.py": "from .cli import main\n",
            "retinaface/cli.py": "import argparse\n\ndef main():\n    import cv2\n",
            "retinaface/model.py": "import torch\n",
            "retinaface/tools/export.py": "import onnx\nfrom ..model import load\n",
            "deploy/results/render.py": "import jinja2\nfrom retinaface.files import sha256\n",
            "deploy/hosts/fleet.py": "from deploy.results import render\n",
            "tasks.py": "from deploy.hosts.fleet import run_on\n",
        },
    )
    assert {rule: check(root) for rule, check in RULES.items()} == {rule: [] for rule in RULES}


@pytest.mark.parametrize(
    "files, rule, words",
    [
        ({"retinaface/runner.py": "from .tools.export import x\n"}, "shipped", "retinaface.tools"),
        ({"retinaface/bench/run.py": "def f():\n    from ...deploy import x\n"}, "shipped", ""),
        ({"retinaface/cli.py": "def f():\n    import deploy.paths\n"}, "shipped", "deploy"),
        ({"retinaface/cli.py": "from pi_setup.rootfs import x\n"}, "shipped", "pi_setup"),
        ({"retinaface/live/http.py": "def f():\n    import jinja2\n"}, "shipped", "jinja2"),
        ({"retinaface/cli.py": "def f():\n    import fabric\n"}, "shipped", "fabric"),
        ({"retinaface/cli.py": "import invoke\n"}, "shipped", "invoke"),
        ({"retinaface/cli.py": "def f():\n    import yaml\n"}, "shipped", "yaml"),
        ({"retinaface/names.py": "def f():\n    import onnx.helper\n"}, "shipped", "onnx"),
        ({"retinaface/names.py": "def f():\n    import onnxslim\n"}, "shipped", "onnxslim"),
        ({"retinaface/detector.py": "import cv2\n"}, "shipped", "cv2 at module level"),
        ({"retinaface/backends/onnxruntime.py": "import onnxruntime as ort\n"}, "shipped",
         "onnxruntime at module level"),
        ({"retinaface/backends/torch.py": "try:\n    import torch\nexcept ImportError:\n"
          "    pass\n"}, "shipped", "torch at module level"),
        ({"retinaface/backends/tflite.py": "from tflite_runtime.interpreter import I\n"},
         "shipped", "tflite_runtime"),
        ({"retinaface/backends/ncnn.py": "import ncnn\n"}, "shipped", "ncnn"),
        ({"retinaface/backends/mnn.py": "import MNN\n"}, "shipped", "MNN"),
        ({"deploy/results/render.py": "def f():\n    from deploy.hosts import connection\n",
          "deploy/hosts/connection.py": ""}, "results", "deploy.hosts.connection"),
        ({"deploy/results/svg.py": "from ..hosts.facts import Facts\n",
          "deploy/hosts/facts.py": ""}, "results", "deploy.hosts.facts"),
        ({"deploy/results/render.py": "from deploy.workflow import release\n",
          "deploy/workflow/release.py": ""}, "results", "deploy.workflow.release"),
        ({"pi_setup/emulator.py": "from deploy.workflow.push import push\n",
          "deploy/workflow/push.py": ""}, "results", "pi_setup.emulator imports deploy.workflow"),
        ({"deploy/workflow/push.py": "def f():\n    from pi_setup import ort\n",
          "pi_setup/ort.py": ""}, "results", "deploy.workflow.push imports pi_setup.ort"),
        ({"deploy/trust.py": "from .connection import _connect_error\n",
          "deploy/connection.py": "def _connect_error():\n    pass\n"}, "private",
         "private deploy.connection._connect_error"),
        ({"pi_setup/cross.py": "def f():\n    from pi_setup.emulator import _rmtree\n",
          "pi_setup/emulator.py": ""}, "private", "_rmtree"),
        ({"tasks.py": "from retinaface._secret import x\n", "retinaface/_secret.py": ""},
         "private", "retinaface._secret"),
        ({"pi_setup/cross.py": "from pi_setup import emulator\n\ndef f():\n"
          "    emulator._run_logged()\n", "pi_setup/emulator.py": ""}, "private",
         "uses private pi_setup.emulator._run_logged"),
        ({"pi_setup/cross.py": "import pi_setup.build_wheels as bw\nbw._environment()\n",
          "pi_setup/build_wheels.py": ""}, "private", "pi_setup.build_wheels._environment"),
        ({"deploy/a.py": "from deploy import b\n", "deploy/b.py": "from deploy.a import x\n"},
         "cycle", "deploy.a -> deploy.b -> deploy.a"),
        ({"retinaface/runner.py": "from .bench import run\n",
          "retinaface/bench/run.py": "def f():\n    from . import stream_bench\n",
          "retinaface/bench/stream_bench.py": "def g():\n    from ..runner import build\n"},
         "cycle", "retinaface.bench.run -> retinaface.bench.stream_bench -> retinaface.runner"),
    ],
)  # fmt: skip
def test_each_rule_catches_a_planted_case(tmp_path, files, rule, words):
    root = _tree(tmp_path, dict(files))
    found = RULES[rule](root)
    assert found and all(words in line for line in found), found
    others = {name: check(root) for name, check in RULES.items() if name != rule}
    assert others == {name: [] for name in others}  # one rule per planted case


def test_a_planted_violation_in_a_copy_of_the_real_tree_is_caught(tmp_path):
    """The real tree copied, one shipped module given a workstation import: only that fires."""
    for package in PACKAGES:
        shutil.copytree(REPO / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(REPO / "tasks.py", tmp_path / "tasks.py")
    before = {rule: check(tmp_path) for rule, check in RULES.items()}
    names = tmp_path / "retinaface" / "names.py"
    names.write_text(names.read_text() + "\n\ndef _planted():\n    from .tools import export\n")
    after = {rule: check(tmp_path) for rule, check in RULES.items()}
    added = {rule: [x for x in after[rule] if x not in before[rule]] for rule in RULES}
    assert (
        added["shipped"]
        and "shipped retinaface.names imports retinaface.tools" in added["shipped"][0]
    )
    # names -> tools.export -> ... -> names: the planted import also closes a circle
    assert added["cycle"] and all("retinaface.names" in loop for loop in added["cycle"])
    assert added["private"] == added["results"] == []
