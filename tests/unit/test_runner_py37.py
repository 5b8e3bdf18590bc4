"""The runner core that goes to the Pi (retinaface/ minus tools/, what the runner wheel holds)
parses as Python 3.7 and imports no torch at module level."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "retinaface"
# Allowed at module level besides the standard library and the package itself.
THIRD_PARTY_OK = {"numpy"}
# Modules that may import torch at module level because the core imports them only lazily.
TORCH_MODULES = {"retinaface.model"}


def _shipped():
    """Dotted names of the shipped modules: every .py under retinaface/ except tools/."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        if rel.parts[1:2] == ("tools",) or "__pycache__" in rel.parts:
            continue
        names.append(".".join(rel.parts[:-1] if rel.name == "__init__" else rel.parts))
    return names


RUNTIME_MODULES = _shipped()


def _source(name):
    base = PACKAGE.parent.joinpath(*name.split("."))
    path = base / "__init__.py" if base.is_dir() else base.with_suffix(".py")
    return path, path.read_text()


def _package_of(name, path):
    return name if path.name == "__init__.py" else name.rpartition(".")[0]


def _resolve(name, path, node):
    """The absolute module names a relative ImportFrom in module `name` loads (each candidate:
    `from . import x` may name a module or an attribute)."""
    package = _package_of(name, path).split(".")
    base = ".".join(package[: len(package) - node.level + 1])
    if node.module:
        return [f"{base}.{node.module}"]
    return [f"{base}.{alias.name}" for alias in node.names]


def test_the_shipped_folder_is_walked():
    assert {"retinaface.runner", "retinaface.cli", "retinaface.backends.onnxruntime",
            "retinaface.bench.run", "retinaface.live.streamer"} <= set(RUNTIME_MODULES)  # fmt: skip
    assert not [m for m in RUNTIME_MODULES if m.startswith("retinaface.tools")]


def _module_level_imports(tree):
    """Import nodes executed when the module is imported (not inside a function or lambda)."""
    found = []
    todo = list(tree.body)
    while todo:
        node = todo.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            found.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return found


def _targets(node):
    """(top-level package or '.' + sibling module, line) for each name an import node loads."""
    if isinstance(node, ast.Import):
        return [alias.name.split(".")[0] for alias in node.names]
    if node.level:  # relative: `from .x import y` or `from . import x`
        if node.module:
            return ["." + node.module.split(".")[0]]
        return ["." + alias.name for alias in node.names]
    return [node.module.split(".")[0]]


@pytest.mark.parametrize("name", RUNTIME_MODULES)
def test_parses_as_python37(name):
    path, src = _source(name)
    try:
        ast.parse(src, filename=str(path), feature_version=(3, 7))
    except SyntaxError as error:
        pytest.fail(f"{path}:{error.lineno}: not Python 3.7 syntax: {error.msg}")


def _known(target):
    """True when `target` is a shipped module, or an attribute of one (`from . import x`)."""
    return target in RUNTIME_MODULES or target.rpartition(".")[0] in RUNTIME_MODULES


@pytest.mark.parametrize("name", [m for m in RUNTIME_MODULES if m not in TORCH_MODULES])
def test_module_level_imports_are_torch_free(name):
    path, src = _source(name)
    stdlib = set(sys.stdlib_module_names)
    for node in _module_level_imports(ast.parse(src)):
        where = f"{path}:{node.lineno}"
        if isinstance(node, ast.ImportFrom) and node.level:
            for target in _resolve(name, path, node):
                assert _known(target), f"{where} imports {target}, which is not shipped"
                assert target not in TORCH_MODULES, (
                    f"{where} imports {target} (torch) at module level; import it inside a function"
                )
            continue
        for target in _targets(node):
            assert target in stdlib or target in THIRD_PARTY_OK or target == "retinaface", (
                f"{where} imports {target} at module level; the Pi core may only use the "
                f"standard library and {sorted(THIRD_PARTY_OK)} there (import it lazily)"
            )


def test_lazy_imports_stay_inside_the_runtime():
    """Every sibling a runtime module imports, even lazily, is deployed with it."""
    for name in RUNTIME_MODULES:
        path, src = _source(name)
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.level:
                for target in _resolve(name, path, node):
                    assert _known(target), f"{path}:{node.lineno} imports {target}, not shipped"


def test_importing_the_runner_loads_no_torch_cv2_or_onnxruntime():
    """A real import with torch, cv2 and onnxruntime made unimportable: the core must not care."""
    core = [m for m in RUNTIME_MODULES if m not in TORCH_MODULES and m != "retinaface"]
    code = (
        "import sys\n"
        "for blocked in ('torch', 'cv2', 'onnxruntime'):\n"
        "    sys.modules[blocked] = None\n"
        f"import importlib\nfor name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        "from retinaface.cli import build_parser\n"
        "build_parser().parse_args(['detect', '--model', 'm.onnx', '--image', 'i.jpg'])\n"
        "print('ok')\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        cwd=str(PACKAGE.parent),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr


def test_the_checker_catches_a_module_level_torch_import():
    """The AST walk sees imports nested in try/if at module level, not those in functions."""
    tree = ast.parse(
        "try:\n    import torch\nexcept ImportError:\n    pass\n"
        "def f():\n    import cv2\n"
        "class C:\n    import onnxruntime\n"
    )
    names = sorted(t for n in _module_level_imports(tree) for t in _targets(n))
    assert names == ["onnxruntime", "torch"]
    with pytest.raises(SyntaxError):
        ast.parse("if (n := 3):\n    pass\n", feature_version=(3, 7))
