"""Rule 1 of the core, enforced: ``epollshim.core`` imports nothing that can do IO.

The whole policy is the two constants below. To allow something, add it here,
in review, with a reason.
"""

import ast
from pathlib import Path

import pytest

import epollshim.core

CORE = "epollshim.core"

# Stdlib modules with no IO and no clock. Exact names: a submodule must be listed itself.
ALLOWED_MODULES = frozenset(
    {
        "collections",
        "collections.abc",
        "dataclasses",
        "enum",
        "functools",
        "heapq",
        "itertools",
        "json",  # dumps/loads only; there is no file to dump to without `open`
        "typing",
    }
)

# Builtins that do IO or import/run code behind the import statement's back.
IO_BUILTINS = frozenset(
    {"open", "print", "input", "breakpoint", "exec", "eval", "compile", "__import__"}
)
# The one exception: ``make diagram`` prints, from diagram.main only.
ALLOWED_BUILTINS: dict[tuple[str, str], frozenset[str]] = {
    (f"{CORE}.diagram", "main"): frozenset({"print"}),
}


def _resolve(module: str, node: ast.ImportFrom) -> list[str]:
    """The absolute modules a ``from ... import ...`` statement may load."""
    if node.level:
        package = module.rsplit(".", node.level)[0]
        base = f"{package}.{node.module}" if node.module else package
    else:
        base = node.module or ""
    if base == "epollshim" or base.startswith(f"{CORE}.") or base == CORE:
        # `from epollshim import x` / `from epollshim.core import x`: x may be a module.
        return [f"{base}.{alias.name}" for alias in node.names]
    return [base]


def _allowed(name: str) -> bool:
    return name in ALLOWED_MODULES or name == CORE or name.startswith(f"{CORE}.")


class _Checker(ast.NodeVisitor):
    def __init__(self, module: str) -> None:
        self.module = module
        self.functions: list[str] = []
        self.problems: list[str] = []

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            if not _allowed(alias.name):
                self.problems.append(f"line {node.lineno}: imports {alias.name}")

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        for name in _resolve(self.module, node):
            if not _allowed(name):
                self.problems.append(f"line {node.lineno}: imports {name}")

    def _visit_function(self, node: ast.FunctionDef | ast.AsyncFunctionDef) -> None:
        self.functions.append(node.name)
        self.generic_visit(node)
        self.functions.pop()

    visit_FunctionDef = _visit_function
    visit_AsyncFunctionDef = _visit_function

    def visit_Name(self, node: ast.Name) -> None:
        if node.id in IO_BUILTINS:
            where = (self.module, self.functions[-1] if self.functions else "")
            if node.id not in ALLOWED_BUILTINS.get(where, frozenset()):
                self.problems.append(f"line {node.lineno}: uses {node.id}")


def violations(source: str, module: str) -> list[str]:
    """What in ``source`` (the text of ``module``) breaks Rule 1; empty if nothing."""
    checker = _Checker(module)
    checker.visit(ast.parse(source))
    return checker.problems


def _core_modules() -> list[tuple[str, Path]]:
    root = Path(epollshim.core.__file__).parent
    found = []
    for path in sorted(root.rglob("*.py")):
        parts = path.relative_to(root).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found.append((".".join((CORE, *parts)), path))
    return found


def test_core_modules_are_found() -> None:
    names = {name for name, _ in _core_modules()}
    assert {CORE, f"{CORE}.machine", f"{CORE}.exits", f"{CORE}.diagram"} <= names


@pytest.mark.parametrize(("module", "path"), [pytest.param(*m, id=m[0]) for m in _core_modules()])
def test_core_module_is_pure(module: str, path: Path) -> None:
    assert violations(path.read_text(encoding="utf-8"), module) == []


@pytest.mark.parametrize(
    ("source", "problem"),
    [
        ("import os", "imports os"),
        ("import os.path", "imports os.path"),
        ("from os import path", "imports os"),
        ("import collections, time", "imports time"),
        ("from collections import abc\nimport selectors as s", "imports selectors"),
        ("from epollshim.shell import loop", "imports epollshim.shell"),
        ("from epollshim import log", "imports epollshim.log"),
        ("from .. import cli", "imports epollshim.cli"),
        ("def f():\n    import signal", "imports signal"),
        ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import socket", "socket"),
        ("print('hi')", "uses print"),
        ("def f():\n    return open('x')", "uses open"),
        ("m = __import__('os')", "uses __import__"),
    ],
)
def test_checker_catches_impure_source(source: str, problem: str) -> None:
    found = violations(source, f"{CORE}.machine")
    assert len(found) == 1 and problem in found[0], found


def test_print_is_allowed_only_in_diagram_main() -> None:
    source = "def main() -> None:\n    print('graph')\n"
    assert violations(source, f"{CORE}.diagram") == []
    assert violations(source, f"{CORE}.machine") == ["line 2: uses print"]
    assert violations("def other():\n    print(1)\n", f"{CORE}.diagram") == ["line 2: uses print"]
    assert violations("print(1)\n", f"{CORE}.diagram") == ["line 1: uses print"]


def test_checker_accepts_the_allowed_forms() -> None:
    source = (
        "import collections\n"
        "from collections.abc import Callable\n"
        "from dataclasses import dataclass\n"
        "from epollshim.core import events as ev\n"
        "from epollshim.core.states import State\n"
        "from . import effects\n"
        "from .exitcode import from_wait_status\n"
    )
    assert violations(source, f"{CORE}.machine") == []
