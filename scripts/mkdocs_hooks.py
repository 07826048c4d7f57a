"""mkdocs hooks (mkdocs.yml ``hooks:``) for the documentation site.

- Every public name (``tanx_async.__all__``, ``tanx_async.testing.__all__``) and every public
  method and property of a public class must have a docstring: a missing one is a warning, and
  ``mkdocs build --strict`` (run by ``scripts/test.py``) fails on warnings. ``KNOWN_GAPS`` lists
  the ones still missing in modules this check cannot fix itself; an entry that gains a
  docstring is a warning too, so the list only shrinks.
- The benchmark charts (``benchmarks/charts/*.png``, written by ``benchmarks/run.py``) are
  served at ``benchmarks/charts/`` so docs/benchmarks.md can show them.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from pathlib import Path
from typing import Any

from mkdocs.config.defaults import MkDocsConfig
from mkdocs.structure.files import File, Files

log = logging.getLogger("mkdocs.hooks.tanx_async")
ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("tanx_async", "tanx_async.testing")
#: Public names still without a docstring, to be written where they are defined.
KNOWN_GAPS: frozenset[str] = frozenset()


def undocumented() -> list[str]:
    """Dotted public paths (as users import them) of the names that have no docstring."""
    missing: list[str] = []
    for package in PACKAGES:
        module = importlib.import_module(package)
        for name in module.__all__:
            obj = getattr(module, name)
            path = f"{package}.{name}"
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue  # constants and ``__version__`` are described by their module
            own_doc = vars(obj).get("__doc__") if inspect.isclass(obj) else obj.__doc__
            if not (own_doc or "").strip():  # a class's own docstring, not one it inherits
                missing.append(path)
            if inspect.isclass(obj):
                missing += [f"{path}.{m}" for m in _undocumented_members(obj)]
    return missing


def _undocumented_members(cls: type) -> list[str]:
    """Public methods and properties defined on ``cls`` itself (not inherited) without a docstring."""
    names = []
    for name, member in vars(cls).items():
        if name.startswith("_"):
            continue
        if isinstance(member, property | staticmethod | classmethod) or inspect.isfunction(member):
            func = member.fget if isinstance(member, property) else member
            if not (getattr(func, "__doc__", None) or "").strip():
                names.append(name)
    return names


def on_pre_build(config: MkDocsConfig, **kwargs: Any) -> None:
    missing = set(undocumented())
    for path in sorted(missing - KNOWN_GAPS):
        log.warning("public name without a docstring: %s", path)
    for path in sorted(KNOWN_GAPS - missing):
        log.warning("%s has a docstring now: remove it from KNOWN_GAPS in %s", path, Path(__file__).name)
    for path in sorted(missing & KNOWN_GAPS):
        log.info("known gap, no docstring yet: %s", path)


def on_files(files: Files, config: MkDocsConfig, **kwargs: Any) -> Files:
    charts = ROOT / "benchmarks" / "charts"
    for png in sorted(charts.glob("*.png")):
        files.append(File.generated(config, f"benchmarks/charts/{png.name}", abs_src_path=str(png)))
    return files
