"""No runtime import cycle between the modules of ``tanx_async``.

Every module is read with ``ast`` (nothing is imported), and each import statement becomes edges
of a graph between ``tanx_async`` modules:

- imports anywhere count, inside functions and ``try`` blocks included; only the body of an
  ``if TYPE_CHECKING:`` (or ``typing.TYPE_CHECKING``) block is left out (its ``else`` counts);
- relative imports are resolved against the importing module's package;
- ``from P import x`` is an edge to ``P.x`` when that is a module, otherwise to ``P`` (the name
  is read from ``P``'s body);
- ``import a.b`` / ``from a.b import x`` also run the ``__init__`` of ``a`` and ``a.b`` first, so
  they are edges to those packages too, except for packages that contain the importing module.

The ``__init__`` rule: Python starts a package's ``__init__`` before any module inside it, so for
a module inside package ``P`` an import that merely passes through ``P`` (``from . import
sibling``, ``from .sibling import y``, ``import P.sibling``) runs nothing of ``P`` and is no edge
to ``P``. Only reading a name defined in ``P``'s own body (``from . import VERSION``) depends on
that body, and is an edge to ``P``. So ``P/__init__`` importing its submodules while they import
each other is no cycle, and one is reported through ``P`` only when a submodule needs a name from
``P``'s body while ``P``'s body (directly or not) imports that submodule: a real cycle, where the
name may not exist yet.

A cycle is reported as ``a -> b (line 12) -> a (line 30)``: each module, and the line of the
import that leads to the next one.
"""

from __future__ import annotations

import ast
import itertools
from collections.abc import Iterator
from pathlib import Path

import pytest

import tanx_async

#: Graph: module -> {imported module: line of the first such import}.
Graph = dict[str, dict[str, int]]

#: Enough for any real package; the enumeration stops (and says so) beyond it.
MAX_CYCLES = 500
MAX_STEPS = 200_000


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module of the package in directory ``root``: dotted name -> file."""
    names: dict[str, Path] = {}
    for path in sorted(root.rglob("*.py")):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join([package, *parts])] = path
    return names


def _is_type_checking(test: ast.expr) -> bool:
    if isinstance(test, ast.Name):
        return test.id == "TYPE_CHECKING"
    return isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"


def _runtime_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Every import statement that can run, at any depth, outside ``if TYPE_CHECKING:`` bodies."""
    stack: list[ast.AST] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.Import | ast.ImportFrom):
            yield node
            continue
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            stack.extend(node.orelse)
            continue
        stack.extend(ast.iter_child_nodes(node))


def _ancestors(name: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b"]``."""
    parts = name.split(".")
    return [".".join(parts[:i]) for i in range(1, len(parts))]


def _module_edges(name: str, path: Path, modules: dict[str, Path], package: str) -> dict[str, int]:
    """The runtime imports of one module: imported module -> line of the first such import."""
    is_package = path.name == "__init__.py"
    # A module's own package and the packages above it are already running when it runs.
    running = {*_ancestors(name), name}
    edges: dict[str, int] = {}

    def add(target: str, line: int, *, explicit: bool) -> None:
        if target != package and not target.startswith(package + "."):
            return  # not ours: the standard library or a dependency
        if target not in modules:
            raise AssertionError(f"{name} line {line}: imports {target}, which is no module here")
        if (explicit or target not in running) and target != name:
            edges[target] = min(line, edges.get(target, line))

    def enter(target: str, line: int) -> None:
        """Importing ``target`` runs it and every package above it not already running."""
        for parent in _ancestors(target):
            add(parent, line, explicit=False)
        add(target, line, explicit=False)

    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    for node in _runtime_imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                enter(alias.name, node.lineno)
                if alias.name in running:
                    add(alias.name, node.lineno, explicit=True)  # ``import P``: uses P's body
            continue
        if node.level:
            base = name if is_package else name.rpartition(".")[0]
            for _ in range(node.level - 1):
                base = base.rpartition(".")[0]
            source = f"{base}.{node.module}" if node.module else base
        else:
            source = node.module or ""
        enter(source, node.lineno)
        for alias in node.names:
            submodule = f"{source}.{alias.name}"
            if submodule in modules:
                add(submodule, node.lineno, explicit=True)
            else:
                add(source, node.lineno, explicit=True)  # a name from ``source``'s body
    return edges


def import_graph(root: Path, package: str) -> Graph:
    """The runtime import graph between the modules of ``package`` (see the module docstring)."""
    modules = module_names(root, package)
    return {name: _module_edges(name, path, modules, package) for name, path in modules.items()}


def _strongly_connected(graph: Graph) -> list[list[str]]:
    """Tarjan's components with more than one module (self-edges are never recorded)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    components: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, {})):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component: list[str] = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                components.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return sorted(components)


def find_cycles(graph: Graph) -> list[list[str]]:
    """Every elementary cycle, each starting at its smallest module, as ``[a, b, ..., a]``."""
    cycles: list[list[str]] = []
    steps = 0
    for component in _strongly_connected(graph):
        members = set(component)
        for start in component:
            allowed = {m for m in members if m >= start}
            path = [start]
            todo = [iter(sorted(n for n in graph[start] if n in allowed))]
            while todo:
                steps += 1
                if steps > MAX_STEPS or len(cycles) >= MAX_CYCLES:
                    raise AssertionError(f"too many import cycles to list; the first: {cycles[:5]}")
                nxt = next(todo[-1], None)
                if nxt is None:
                    todo.pop()
                    path.pop()
                elif nxt == start:
                    cycles.append([*path, start])
                elif nxt not in path:
                    path.append(nxt)
                    todo.append(iter(sorted(n for n in graph[nxt] if n in allowed)))
    return cycles


def describe(graph: Graph, cycle: list[str]) -> str:
    hops = [f"{b} (line {graph[a][b]})" for a, b in itertools.pairwise(cycle)]
    return " -> ".join([cycle[0], *hops])


# -- tanx_async itself ------------------------------------------------------------------------------


def test_tanx_async_has_no_runtime_import_cycle() -> None:
    root = Path(tanx_async.__file__).parent
    graph = import_graph(root, "tanx_async")
    assert "tanx_async.cli._demo" in graph and "tanx_async.testing._state" in graph
    cycles = find_cycles(graph)
    report = "\n".join(f"  {describe(graph, c)}" for c in cycles)
    assert not cycles, f"{len(cycles)} runtime import cycle(s) in tanx_async:\n{report}"


def test_the_cli_package_imports_nothing_that_imports_it_back() -> None:
    graph = import_graph(Path(tanx_async.__file__).parent, "tanx_async")
    cli = {name for name in graph if name == "tanx_async.cli" or name.startswith("tanx_async.cli.")}
    assert len(cli) >= 5
    for cycle in find_cycles(graph):
        assert not cli & set(cycle), describe(graph, cycle)
    # Nothing outside the command line depends on it (but the other command lines: the
    # conformance check reads the same credentials and token cache).
    for name, edges in graph.items():
        if name not in cli and name not in ("tanx_async.__main__", "tanx_async.conformance.__main__"):
            assert not cli & set(edges), f"{name} imports the command line"


# -- the walker, on synthetic packages --------------------------------------------------------------


def graph_of(tmp_path: Path, files: dict[str, str]) -> Graph:
    """The graph of a package ``pkg`` made of ``files`` (an empty ``__init__.py`` unless given)."""
    root = tmp_path / "pkg"
    for relative, source in {"__init__.py": "", **files}.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(source, encoding="utf-8")
    return import_graph(root, "pkg")


FUNCTION_LEVEL = {
    "a.py": "from . import b\n",
    "b.py": "import os\n\n\ndef f():\n    from .a import thing\n    return thing\n",
    "c.py": "from .b import f\n",
}

CYCLIC: dict[str, tuple[dict[str, str], list[list[str]]]] = {
    "function-level import": (FUNCTION_LEVEL, [["pkg.a", "pkg.b", "pkg.a"]]),
    "every cycle listed": (
        {
            "a.py": "from . import b, c\n",
            "b.py": "from . import a\n",
            "c.py": "try:\n    import pkg.a\nexcept ImportError:\n    pass\n",
            "d.py": "import pkg.a\n",
        },
        [["pkg.a", "pkg.b", "pkg.a"], ["pkg.a", "pkg.c", "pkg.a"]],
    ),
    "a name read from the package whose __init__ imports the reader": (
        {
            "__init__.py": "from .a import A\n\nVERSION = 1\n",
            "a.py": "from . import VERSION\n\nA = VERSION\n",
        },
        [["pkg", "pkg.a", "pkg"]],
    ),
    "the else branch of if TYPE_CHECKING": (
        {
            "a.py": "from . import b\n",
            "b.py": "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    pass\nelse:\n    from .a import A\n",
        },
        [["pkg.a", "pkg.b", "pkg.a"]],
    ),
}


@pytest.mark.parametrize(("files", "expected"), list(CYCLIC.values()), ids=list(CYCLIC))
def test_walker_finds_every_cycle(tmp_path: Path, files: dict[str, str], expected: list[list[str]]) -> None:
    assert find_cycles(graph_of(tmp_path, files)) == expected


def test_walker_names_the_import_lines(tmp_path: Path) -> None:
    graph = graph_of(tmp_path, FUNCTION_LEVEL)
    assert (
        graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {"pkg.a": 5} and graph["pkg.c"] == {"pkg.b": 1}
    )
    (cycle,) = find_cycles(graph)
    assert describe(graph, cycle) == "pkg.a -> pkg.b (line 1) -> pkg.a (line 5)"


def test_walker_passes_a_package_whose_modules_import_each_other_without_a_cycle(tmp_path: Path) -> None:
    graph = graph_of(
        tmp_path,
        {
            "__init__.py": "from .a import A\nfrom .sub import c\n\n__all__ = ['A', 'c']\n",
            "a.py": "from .b import B\nfrom . import b\nimport pkg.sub.c\n\nA = B\n",
            "b.py": "import json\n\nB = 1\n",
            "sub/__init__.py": "from . import c\n",
            "sub/c.py": "from .. import b\nfrom ..b import B\n",
            "outside.py": "VALUE = 2\n",
            "user.py": "from pkg.sub.c import B\nfrom pkg import outside\n",
        },
    )
    # The package's own __init__ is no edge from inside it; a sibling package's is.
    assert graph["pkg.a"] == {"pkg.b": 1, "pkg.sub": 3, "pkg.sub.c": 3}
    assert graph["pkg.sub.c"] == {"pkg.b": 1}
    assert graph["pkg"] == {"pkg.a": 1, "pkg.sub": 2, "pkg.sub.c": 2}
    assert graph["pkg.user"] == {"pkg.sub": 1, "pkg.sub.c": 1, "pkg.outside": 2}
    assert find_cycles(graph) == []


def test_walker_ignores_a_cycle_that_exists_only_under_type_checking(tmp_path: Path) -> None:
    b = (
        "import typing\nfrom typing import TYPE_CHECKING\n\n"
        "if TYPE_CHECKING:\n    from .a import A\nelse:\n    import json\n\n"
        "if typing.TYPE_CHECKING:\n    from . import a\n"
    )
    graph = graph_of(tmp_path, {"a.py": "from . import b\n", "b.py": b})
    assert graph["pkg.a"] == {"pkg.b": 1} and graph["pkg.b"] == {}
    assert find_cycles(graph) == []


def test_walker_rejects_an_import_of_a_module_that_does_not_exist(tmp_path: Path) -> None:
    with pytest.raises(AssertionError, match=r"pkg\.a line 1: imports pkg\.missing"):
        graph_of(tmp_path, {"a.py": "from .missing import x\n"})
