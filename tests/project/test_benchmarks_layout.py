"""benchmarks/ holds three scripts (run.py, the profiler, the A/B script); every other file is a
module they import or start, every measurement is a scenario of run.py, and the README names them."""

from __future__ import annotations

import ast
import os
import re
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
SCRIPTS = {"run.py", "profile_tanx.py", "ab.py"}


def modules() -> list[Path]:
    """The benchmark's own Python files (not the official connector's venv)."""
    return sorted(p for p in BENCH.rglob("*.py") if not any(part.startswith(".venv") for part in p.parts))


def has_main_guard(path: Path) -> bool:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in tree.body:
        if isinstance(node, ast.If) and isinstance(node.test, ast.Compare):
            names = [n.id for n in ast.walk(node.test) if isinstance(n, ast.Name)]
            consts = [n.value for n in ast.walk(node.test) if isinstance(n, ast.Constant)]
            if "__name__" in names and "__main__" in consts:
                return True
    return False


def test_the_only_scripts_are_run_the_profiler_and_the_ab_script() -> None:
    found = modules()
    assert {p.name for p in found} >= SCRIPTS
    scripts = {p.relative_to(BENCH).as_posix() for p in found if has_main_guard(p)}
    assert scripts == SCRIPTS
    for path in found:
        rel = path.relative_to(BENCH)
        if rel.as_posix() in SCRIPTS:
            continue
        text = path.read_text(encoding="utf-8")
        assert not text.startswith("#!"), f"{rel} looks like a script"
        assert not os.access(path, os.X_OK), f"{rel} is executable"
        # A module of its own: underscore-prefixed beside the scripts, or a scenario in scenarios/.
        assert rel.name.startswith("_") or rel.parts[0] == "scenarios", f"{rel}: not a script, so _name it"


def run_py_help() -> str:
    done = subprocess.run(
        [sys.executable, str(BENCH / "run.py"), "--help"],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "COLUMNS": "10000"},
        check=True,
    )
    return done.stdout


def test_every_scenario_in_run_py_help_is_in_the_readme() -> None:
    found = re.search(r"--scenarios SCENARIOS\s+comma-separated, of ([\w,-]+), or all", run_py_help())
    assert found is not None
    names = found.group(1).split(",")
    assert {"a", "d", "burst", "lag", "repeated", "panic", "stream-confirm", "deadman", "fleet"} <= set(names)
    assert {"floor-pairs", "instructions", "telemetry"} <= set(names)
    readme = (BENCH / "README.md").read_text(encoding="utf-8")
    table = readme[readme.index("## The scenarios") : readme.index("## Running")]
    missing = [name for name in names if f"`{name}`" not in table]
    assert missing == []


def test_every_scenario_module_has_its_section_in_the_results() -> None:
    """Each scenario of scenarios/ writes between its own markers, which RESULTS.md already has (so
    a run replaces the section in place), and measures through ``measure(ctx)``."""
    init = (BENCH / "scenarios" / "__init__.py").read_text(encoding="utf-8")
    entries = re.findall(r'Entry\("([\w-]+)", "(\w+)"', init)
    assert len(entries) >= 10
    results = (BENCH / "RESULTS.md").read_text(encoding="utf-8")
    for name, module in entries:
        source = (BENCH / "scenarios" / f"{module}.py").read_text(encoding="utf-8")
        assert "def measure(ctx: Context) -> Measured:" in source, module
        assert f'"{name}"' in source, f"{module} writes another scenario's section"
        assert f"<!-- {name}:begin -->" in results and f"<!-- {name}:end -->" in results, name
    assert "<!-- suite:begin -->" in results and "<!-- suite:end -->" in results
