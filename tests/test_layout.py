"""The layout's promises, checked so they cannot rot: no import cycle, few function-local imports
(each with its reason), short functions, no private name used from another module."""

from __future__ import annotations

import ast
import subprocess
import sys

from tests.conftest import REPO

PACKAGE = REPO / "caulk"
MAX_LOCAL_IMPORTS = 20
MAX_FUNCTION_LINES = 80
#: numeric kernels that read better whole (none today)
LONG_FUNCTIONS_ALLOWED: set[str] = set()


def _modules() -> list[str]:
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _trees():
    for path in sorted(PACKAGE.rglob("*.py")):
        yield path.relative_to(REPO), ast.parse(path.read_text())


def _functions(tree):
    return [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


def test_every_module_imports_alone_with_nothing_of_caulk_loaded_before():
    """An import cycle shows when its modules are imported in one order only: import each module
    first, in a fresh interpreter state for caulk (third-party packages stay loaded)."""
    script = (
        "import importlib, sys\n"
        "failed = []\n"
        f"for name in {_modules()!r}:\n"
        "    for m in [m for m in sys.modules if m == 'caulk' or m.startswith('caulk.')]:\n"
        "        del sys.modules[m]\n"
        "    try:\n"
        "        importlib.import_module(name)\n"
        "    except Exception as e:\n"
        "        failed.append(f'{name}: {type(e).__name__}: {e}')\n"
        "print('\\n'.join(failed))\n"
        "sys.exit(1 if failed else 0)\n"
    )
    res = subprocess.run(
        [sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=600
    )
    assert res.returncode == 0, res.stdout + res.stderr[-3000:]


def test_function_local_imports_are_few_and_each_says_why():
    local = []
    for path, tree in _trees():
        source = (REPO / path).read_text().splitlines()
        for fn in _functions(tree):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    said = source[node.lineno - 2 : node.lineno]  # the line above or the import's
                    local.append((f"{path}:{node.lineno}", " ".join(said)))
    assert len(local) <= MAX_LOCAL_IMPORTS, "\n".join(f"{where} {line}" for where, line in local)
    unexplained = [where for where, line in local if "#" not in line]
    assert not unexplained, f"function-local imports without a reason: {unexplained}"


def test_no_function_is_longer_than_a_screen():
    long = [
        f"{path}:{fn.name} ({fn.end_lineno - fn.lineno + 1} lines)"
        for path, tree in _trees()
        for fn in _functions(tree)
        if fn.end_lineno - fn.lineno + 1 > MAX_FUNCTION_LINES
        and f"{path}:{fn.name}" not in LONG_FUNCTIONS_ALLOWED
    ]
    assert not long, long


def test_no_private_name_is_imported_from_another_module():
    reached = [
        f"{path}:{node.lineno} {node.module}.{alias.name}"
        for path, tree in _trees()
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("caulk")
        for alias in node.names
        if alias.name.startswith("_") and not alias.name.startswith("__")
    ]
    assert not reached, reached
