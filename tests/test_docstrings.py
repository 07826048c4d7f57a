"""Docstrings are written for mkdocstrings (Markdown): no Sphinx roles, which it would show raw."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SPHINX = re.compile(
    r":(?:py:)?(?:class|meth|func|attr|mod|exc|data|obj|ref|doc):`|^\s*:(?:param|type|returns?|rtype|raises?)\b",
    re.M,
)


def docstrings(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every docstring in ``path``: module, class and function ones."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            doc = ast.get_docstring(node, clean=False)
            if doc is not None:
                found.append((node.body[0].lineno, doc))
    return found


def test_the_pattern_catches_sphinx_roles() -> None:
    assert SPHINX.search("see :class:`Faults` and :meth:`~x.stop`")
    assert SPHINX.search("Args.\n    :param seed: the seed")
    assert not SPHINX.search("see ``Faults`` and [`stop`][tanx_async.testing.SandboxServer.stop]: a note")


@pytest.mark.parametrize(
    "path",
    [*sorted((ROOT / "tanx_async").rglob("*.py")), ROOT / "_tanx_async_pytest.py"],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_no_sphinx_roles_in_docstrings(path: Path) -> None:
    bad = [
        f"{path.name}:{line}: {m.group(0)}" for line, doc in docstrings(path) for m in SPHINX.finditer(doc)
    ]
    assert bad == []
