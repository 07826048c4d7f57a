"""benchmarks/_charts.py on synthetic runs (no benchmark is run): both PNGs are written, the
figures chosen are the right ones, and RESULTS.md's table parses."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
PNG = b"\x89PNG\r\n\x1a\n"

pytest.importorskip("matplotlib")


def load(name: str) -> ModuleType:
    sys.path.insert(0, str(BENCH))  # run.py imports its siblings by name
    try:
        module_name = "benchmarks_" + name.replace("/", "_")
        spec = importlib.util.spec_from_file_location(module_name, BENCH / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[module_name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
        return module
    finally:
        sys.path.remove(str(BENCH))


charts = load("_charts")


def run(cpu_us: float, wall: float, p50: float, valid: bool = True, n: int = 5000) -> dict[str, Any]:
    quantiles = [p50 * (0.5 + i / 100) for i in range(101)]
    return {
        "_valid": valid,
        "cpu_s": cpu_us * n / 1e6,
        "wall_s": wall,
        "extra": {"latency_ms_quantiles": quantiles},
    }


CELLS = [
    {
        "scenario": "a",
        "client": "aiohttp",
        "n": 5000,
        "runs": [run(110, 1, 9), run(120, 2, 9), run(999, 3, 9, False)],
    },
    {
        "scenario": "a",
        "client": "tanx-async",
        "n": 5000,
        "runs": [run(50, 1, 9), run(60, 2, 9), run(55, 3, 9)],
    },
    {
        "scenario": "b",
        "client": "aiohttp",
        "n": 5000,
        "runs": [run(1, 0.9, 30), run(1, 0.5, 20), run(1, 0.7, 25)],
    },
    {"scenario": "b", "client": "tanx-async", "n": 5000, "runs": [run(1, 0.4, 10)]},
    {"scenario": "b", "client": "httpx", "n": 5000, "runs": [run(1, 9, 300, False)]},  # invalid only
]


def test_figures_come_from_valid_runs_only() -> None:
    assert charts.cpu_from_runs(CELLS) == {"aiohttp": pytest.approx(115), "tanx-async": pytest.approx(55)}
    latency = charts.latency_from_runs(CELLS)
    assert sorted(latency) == ["aiohttp", "tanx-async"]  # httpx had no valid run
    assert latency["aiohttp"][50] == pytest.approx(25)  # the run with the median wall time (0.7 s)
    assert latency["tanx-async"][50] == pytest.approx(10)


def test_write_charts_makes_both_pngs(tmp_path: Path) -> None:
    written = charts.write_charts(CELLS, tmp_path / "charts", "synthetic")
    assert [p.name for p in written] == [charts.CPU_CHART, charts.LATENCY_CHART]
    for path in written:
        data = path.read_bytes()
        assert data.startswith(PNG) and len(data) > 10_000  # a real picture, not an empty canvas


def test_a_scenario_that_did_not_run_draws_no_chart(tmp_path: Path) -> None:
    only_b = [c for c in CELLS if c["scenario"] == "b"]
    assert [p.name for p in charts.write_charts(only_b, tmp_path, "b only")] == [charts.LATENCY_CHART]
    with pytest.raises(ValueError, match="no CPU figures"):
        charts.cpu_chart({}, tmp_path / "x.png", "")
    with pytest.raises(ValueError, match="no latency percentiles"):
        charts.latency_chart({"x": [1.0, 2.0]}, tmp_path / "x.png", "")


def test_cpu_column_of_the_committed_results_parses() -> None:
    cpu = charts.cpu_from_results_md((BENCH / "RESULTS.md").read_text())
    assert {"aiohttp", "tanx-async", "httpx"} <= set(cpu)
    assert all(value > 0 for value in cpu.values())
    with pytest.raises(ValueError, match="no throughput table"):
        charts.cpu_from_results_md("# nothing here")


def test_run_embeds_the_charts_before_the_table(tmp_path: Path) -> None:
    run_py = load("run")
    text = "# results\n\n## Cancel throughput and CPU (scenarios a, b)\n\n| table |\n"
    (tmp_path / "charts").mkdir()
    paths = [tmp_path / "charts" / charts.CPU_CHART, tmp_path / "charts" / charts.LATENCY_CHART]
    out = run_py.with_charts(text, paths, tmp_path)
    assert out.index("![cpu_per_cancel](charts/cpu_per_cancel.png)") < out.index("## Cancel throughput")
    assert "![latency_distribution](charts/latency_distribution.png)" in out
    assert run_py.with_charts(text, [], tmp_path) == text


def test_latency_percentiles_are_nearest_rank() -> None:
    common = load("_common")
    q = common.latency_quantiles_ms([i / 1000 for i in range(1, 201)])  # 1..200 ms
    assert (q[0], q[1], q[50], q[99], q[100]) == (1.0, 2.0, 100.0, 198.0, 200.0)


def test_floor_pairs_reports_the_median_of_per_round_ratios_and_their_spread() -> None:
    """Scenario floor-pairs: one ratio per round (never a ratio of medians), the median of
    them is the figure, and a failed run is counted, not hidden."""
    pairs = load("scenarios/floor_pairs")
    assert pairs.cpu_per_cancel({"user_s": 0.3, "sys_s": 0.2, "ok": 5000}, 5000) == pytest.approx(100.0)
    assert pairs.cpu_per_cancel({"user_s": 0.3, "sys_s": 0.2, "ok": 4999}, 5000) is None
    assert pairs.cpu_per_cancel({"error": "timeout"}, 5000) is None
    results = {
        "a": {
            "cpu": {"tanx-async": [150.0, 90.0, 120.0], "floor": [50.0, 45.0, 40.0]},
            "ratios": [3.0, 2.0, 3.0],  # 150/50, 90/45, 120/40
            "failed": 1,
        },
        "b": {"cpu": {"tanx-async": [], "floor": []}, "ratios": [], "failed": 4},
    }
    section = pairs.render(results, rounds=4, n=5000)
    assert section.startswith("<!-- floor-pairs:begin -->") and section.endswith("<!-- floor-pairs:end -->")
    assert "| a | 120 | 45 | **3.00x** | 2.50-3.00x | 2.00-3.00x | 1/3 | 3/4 |" in section
    assert "| b | — | — | — | — | — | — | 0/4 |" in section


def test_run_py_functions_are_under_100_lines() -> None:
    """benchmarks/run.py's report is written by one function per section (render was 312 lines)."""
    import ast

    tree = ast.parse((BENCH / "run.py").read_text(encoding="utf-8"))
    long = {
        node.name: (node.end_lineno or node.lineno) - node.lineno + 1
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and (node.end_lineno or node.lineno) - node.lineno + 1 > 100
    }
    assert long == {}


def test_render_of_a_run_with_nothing_measured_names_every_section() -> None:
    import argparse

    run_py = load("run")
    args = argparse.Namespace(quick=True, repeats=1, import_repeats=3)
    text = run_py.render(args, [], [], [], None, None, None, ["a note"], started=0.0)
    sections = [line for line in text.splitlines() if line.startswith("## ")]
    assert sections == [
        "## Machine",
        "## Server",
        "## Cancel throughput and CPU (scenarios a, b)",
        "## Memory (scenario c)",
        "## Import (scenario d)",
        "## Profile of tanx-async's hot path (scenario a, cProfile)",
        "## Notes",
    ]
    assert text.count("not run") == 3 and "- a note" in text
    assert " at commit " in text.splitlines()[0]  # the figures' provenance


def test_a_scenario_replaces_only_its_own_section() -> None:
    """run.py --scenarios panic rewrites the panic section in place and keeps every other one (the
    summary, the suite's, hand-written notes); a section seen for the first time is appended."""
    run_py = load("run")
    old = (
        "# results\n\n<!-- summary:begin -->\nS\n<!-- summary:end -->\n\n"
        "<!-- suite:begin -->\nsuite before\n<!-- suite:end -->\n\n"
        "<!-- panic:begin -->\npanic before\n<!-- panic:end -->\n\n"
        "<!-- note-x:begin -->\nN\n<!-- note-x:end -->\n"
    )
    text = run_py.put_section(old, "panic", "<!-- panic:begin -->\npanic now\n<!-- panic:end -->")
    assert text == old.replace("panic before", "panic now")
    text = run_py.put_section(text, "fleet", "<!-- fleet:begin -->\nF\n<!-- fleet:end -->")
    assert text.startswith(old.replace("panic before", "panic now").rstrip("\n"))
    assert text.endswith("\n\n<!-- fleet:begin -->\nF\n<!-- fleet:end -->\n")
