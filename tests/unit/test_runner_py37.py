"""The runner core that goes to the Pi parses as Python 3.7 and imports no torch at module level."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from retinaface.config import RUNTIME_MODULES

PACKAGE = Path(__file__).resolve().parents[2] / "retinaface"
# Allowed at module level besides the standard library and the package itself.
THIRD_PARTY_OK = {"numpy"}
# Modules that may import torch at module level because the core imports them only lazily.
TORCH_MODULES = {"model"}


def _source(name):
    path = PACKAGE / f"{name}.py"
    assert path.exists(), f"RUNTIME_MODULES names {name!r} but {path} does not exist"
    return path, path.read_text()


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


@pytest.mark.parametrize("name", [m for m in RUNTIME_MODULES if m not in TORCH_MODULES])
def test_module_level_imports_are_torch_free(name):
    path, src = _source(name)
    stdlib = set(sys.stdlib_module_names)
    for node in _module_level_imports(ast.parse(src)):
        for target in _targets(node):
            where = f"{path}:{node.lineno}"
            if target.startswith("."):
                sibling = target[1:]
                assert sibling in RUNTIME_MODULES, (
                    f"{where} imports .{sibling}, which is not in RUNTIME_MODULES (not deployed)"
                )
                assert sibling not in TORCH_MODULES, (
                    f"{where} imports .{sibling} (torch) at module level; import it inside a function"
                )
            else:
                assert target in stdlib or target in THIRD_PARTY_OK, (
                    f"{where} imports {target} at module level; the Pi core may only use the "
                    f"standard library and {sorted(THIRD_PARTY_OK)} there (import it lazily)"
                )


def test_lazy_imports_stay_inside_the_runtime():
    """Every sibling a runtime module imports, even lazily, is deployed with it."""
    for name in RUNTIME_MODULES:
        path, src = _source(name)
        for node in ast.walk(ast.parse(src)):
            if isinstance(node, ast.ImportFrom) and node.level:
                for target in _targets(node):
                    assert target[1:] in RUNTIME_MODULES, (
                        f"{path}:{node.lineno} imports {target}, not in RUNTIME_MODULES"
                    )


def test_importing_the_runner_loads_no_torch_cv2_or_onnxruntime():
    """A real import with torch, cv2 and onnxruntime made unimportable: the core must not care."""
    core = [
        f"retinaface.{m}" for m in RUNTIME_MODULES if m not in TORCH_MODULES and m != "__init__"
    ]
    code = (
        "import sys\n"
        "for blocked in ('torch', 'cv2', 'onnxruntime'):\n"
        "    sys.modules[blocked] = None\n"
        f"import importlib\nfor name in {core!r}:\n"
        "    importlib.import_module(name)\n"
        "from retinaface.runner import build_parser\n"
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
