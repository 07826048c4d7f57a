"""Rooms sized for one job (issue 29): no module of ``tanx_async/`` over 700 lines, no function over 100.

Every module is read with ``ast`` (nothing is imported). A module's size is its number of lines; a
function's runs from its ``def`` line to its last line (decorators left out), nested functions and
methods each counted on their own as well as inside the function that holds them.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import tanx_async

ROOT = Path(tanx_async.__file__).resolve().parent
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 100


def _functions(tree: ast.AST, prefix: str = "") -> Iterator[tuple[str, int]]:
    """(qualified name, lines) of every function and method in ``tree``."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            name = f"{prefix}{node.name}"
            assert node.end_lineno is not None
            yield name, node.end_lineno - node.lineno + 1
            yield from _functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from _functions(node, f"{prefix}{node.name}.")
        else:
            yield from _functions(node, prefix)


def sizes() -> tuple[dict[str, int], dict[str, int]]:
    """Lines per module (relative path) and per function (``path::qualified name``)."""
    modules: dict[str, int] = {}
    functions: dict[str, int] = {}
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        text = path.read_text(encoding="utf-8")
        modules[rel] = len(text.splitlines())
        for name, lines in _functions(ast.parse(text, filename=str(path))):
            functions[f"{rel}::{name}"] = max(lines, functions.get(f"{rel}::{name}", 0))
    return modules, functions


def test_the_sizes_are_read_from_the_real_tree() -> None:
    modules, functions = sizes()
    assert "_batch.py" in modules and "cli/_demo.py" in modules
    assert "_batch.py::Batch._worker" in functions and "cli/_demo.py::run_demo" in functions
    assert all(n > 0 for n in [*modules.values(), *functions.values()])


def test_no_module_is_over_700_lines() -> None:
    modules, _ = sizes()
    over = {name: n for name, n in modules.items() if n > MAX_MODULE_LINES}
    assert not over, f"modules over {MAX_MODULE_LINES} lines: {over}"


def test_no_function_is_over_100_lines() -> None:
    _, functions = sizes()
    over = {name: n for name, n in functions.items() if n > MAX_FUNCTION_LINES}
    assert not over, f"functions over {MAX_FUNCTION_LINES} lines: {over}"


def test_the_check_catches_a_long_method() -> None:
    body = "".join(f"        x{i} = {i}\n" for i in range(MAX_FUNCTION_LINES))
    tree = ast.parse(f"class A:\n    def f(self):\n{body}\n\ndef g():\n    pass\n")
    assert dict(_functions(tree)) == {"A.f": MAX_FUNCTION_LINES + 1, "g": 2}
