"""The plan of the house, checked: the library imports no experiment or book code, modules stay small,
no module reaches into another's private names, and editing the book machinery stales no chapter
(tests/book/test_runner.py checks that last one)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("eraserlib", "eraserlab", "eraserbook")
#: What the library must not need: the experiments', the book's and plotting packages.
NOT_FOR_THE_LIBRARY = ("pandas", "seaborn", "matplotlib", "yaml", "papermill", "jupyter_book", "myst_nb",
                       "datasets", "pyarrow", "scipy", "psutil", "eraserlab", "eraserbook")
#: Modules over this many lines hold more than one idea (the hook warns at 450).
MAX_LINES = 450


def modules(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_the_library_imports_none_of_the_experiments_book_or_plotting_packages():
    """Import every eraserlib module in a fresh interpreter that refuses those packages."""
    names = [module_name(p) for p in modules("eraserlib")]
    script = (
        "import importlib, importlib.abc, sys\n"
        f"BLOCKED = {NOT_FOR_THE_LIBRARY!r}\n"
        "class Refuse(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] in BLOCKED:\n"
        "            raise ImportError(f'the library imported {name}')\n"
        "sys.meta_path.insert(0, Refuse())\n"
        f"for name in {names!r}:\n"
        "    importlib.import_module(name)\n"
        "print('ok', len(sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert result.returncode == 0 and result.stdout.startswith("ok"), result.stderr[-3000:]


def test_the_library_declares_only_its_own_dependencies():
    import tomllib

    core = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    names = {line.split("==")[0].lower() for line in core}
    assert not names & {"pandas", "seaborn", "matplotlib", "pyyaml", "papermill", "jupyter-book", "datasets"}


@pytest.mark.parametrize("package", PACKAGES)
def test_modules_stay_small(package):
    long = {str(p.relative_to(ROOT)): n for p in modules(package) if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert long == {}, "split these modules where a second idea lives"


def _private_imports(path: Path) -> list[str]:
    """``from x import _name`` / ``x._name`` uses of another module's private names in ``path``."""
    tree = ast.parse(path.read_text())
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] in PACKAGES:
            found += [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_") and
                      not a.name.startswith("__")]
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            base = node.value
            if isinstance(base, ast.Name) and base.id in {"eraserlib", "eraserlab", "eraserbook"}:
                found.append(f"{base.id}.{node.attr}")
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_no_module_uses_another_modules_private_names(package):
    used = {str(p.relative_to(ROOT)): names for p in modules(package) if (names := _private_imports(p))}
    assert used == {}


def test_the_public_functions_take_keyword_arguments_after_a_few_positional_ones():
    """No public function of the three packages has more than 8 parameters that may be passed by position."""
    wide = {}
    for path in [p for package in PACKAGES for p in modules(package)]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and not node.name.startswith("_"):
                positional = [a for a in node.args.posonlyargs + node.args.args if a.arg not in ("self", "cls")]
                if len(positional) > 8:
                    wide[f"{path.relative_to(ROOT)}:{node.name}"] = len(positional)
    assert wide == {}
