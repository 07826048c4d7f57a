"""Docstrings are written for mkdocstrings (Markdown): no Sphinx roles, which it would show raw.
Descriptions are where griffe (what mkdocstrings reads) sees them: every enum member and model
field in the API reference has one, and no name the reference shows has a ``#:`` comment instead."""

from __future__ import annotations

import ast
import enum
import functools
import importlib
import re
from pathlib import Path

import attrs
import griffe
import pytest

ROOT = Path(__file__).resolve().parents[2]
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


# -- descriptions griffe sees ---------------------------------------------------------------------
# griffe reads a string literal right after an assignment (an "attribute docstring"); it does not
# read Sphinx's ``#:`` comments above one, so a name described that way shows no description.


def _reference() -> list[tuple[str, object]]:
    """Every ``::: path`` entry of the API reference pages, with the object it names."""
    paths = {
        line[4:].strip()
        for page in (ROOT / "docs" / "reference").glob("*.md")
        for line in page.read_text(encoding="utf-8").splitlines()
        if line.startswith("::: ")
    }
    found = []
    for path in sorted(paths):
        module, _, name = path.rpartition(".")
        found.append((path, getattr(importlib.import_module(module), name)))
    return found


REFERENCE = _reference()
ENUMS = [(path, obj) for path, obj in REFERENCE if isinstance(obj, type) and issubclass(obj, enum.Enum)]
# The models: the attrs classes of ``tanx_async`` (the sandbox's, in ``tanx_async.testing``,
# describe their fields in their class docstrings).
MODELS = [
    (path, obj)
    for path, obj in REFERENCE
    if not path.startswith("tanx_async.testing.") and isinstance(obj, type) and attrs.has(obj)
]


@functools.cache
def package() -> griffe.Object | griffe.Alias:
    """``tanx_async`` as griffe reads it for the API reference: this checkout's source."""
    return griffe.load("tanx_async", search_paths=[str(ROOT)], resolve_aliases=True)


def shown(path: str) -> griffe.Object:
    """What the reference entry ``::: path`` renders (an exported name resolved to its definition)."""
    obj = package()[path.removeprefix("tanx_async.")]
    return obj.final_target if isinstance(obj, griffe.Alias) else obj


def undescribed(cls: griffe.Object | griffe.Alias, names: list[str]) -> list[str]:
    """The ``names`` of members of ``cls`` without a description griffe sees."""
    missing = []
    for name in names:
        member = cls.members.get(name)
        docstring = member.docstring if member is not None else None
        if docstring is None or not docstring.value.strip():
            missing.append(name)
    return missing


def sphinx_described(obj: griffe.Object | griffe.Alias) -> bool:
    """Whether a ``#:`` comment sits right above ``obj``'s definition."""
    if obj.lineno is None or obj.lineno < 2 or isinstance(obj.filepath, list):
        return False
    return obj.lines_collection[obj.filepath][obj.lineno - 2].lstrip().startswith("#:")


def test_griffe_reads_attribute_docstrings_not_sphinx_comments() -> None:
    code = 'class E:\n    #: described in a comment\n    A = 1\n    B = 2\n    """described after it"""\n'
    lines = griffe.LinesCollection()
    lines[Path("example.py")] = code.splitlines()
    module = griffe.visit("example", Path("example.py"), code, lines_collection=lines)
    cls = module["E"]
    assert undescribed(cls, ["A", "B", "C"]) == ["A", "C"]
    assert [sphinx_described(cls.members[name]) for name in ("A", "B")] == [True, False]


def test_the_lists_cover_the_reference() -> None:
    assert {"tanx_async.CancelStatus", "tanx_async.OrderState", "tanx_async.Side"} <= {p for p, _ in ENUMS}
    assert {"tanx_async.CancelOutcome", "tanx_async.Order", "tanx_async.RequestEvent"} <= {
        p for p, _ in MODELS
    }


@pytest.mark.parametrize(("path", "cls"), ENUMS, ids=[path for path, _ in ENUMS])
def test_enum_members_are_described(path: str, cls: type[enum.Enum]) -> None:
    assert undescribed(shown(path), list(cls.__members__)) == []


@pytest.mark.parametrize(("path", "cls"), MODELS, ids=[path for path, _ in MODELS])
def test_model_fields_are_described(path: str, cls: type) -> None:
    public = [field.name for field in attrs.fields(cls) if not field.name.startswith("_")]
    assert undescribed(shown(path), public) == []


@pytest.mark.parametrize("path", [path for path, _ in REFERENCE], ids=[path for path, _ in REFERENCE])
def test_no_shown_name_is_described_by_a_sphinx_comment(path: str) -> None:
    obj = shown(path)
    members = [m for n, m in obj.members.items() if not n.startswith("_")] if obj.is_class else [obj]
    assert [member.name for member in members if sphinx_described(member)] == []
