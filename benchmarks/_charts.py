"""PNG charts of benchmark results (matplotlib, in the ``bench`` extra).

- ``cpu_per_cancel.png``: client CPU per cancel in scenario (a), one bar per client, the raw
  aiohttp reference marked, lower is better;
- ``latency_distribution.png``: the distribution of single-cancel latencies within one burst of
  scenario (b) (5 ms exchange latency), one row per client: box p25-p75, whiskers p1-p99, the
  median marked, p99.9 no (only percentiles 0..100 are kept), on a log axis with the 5 ms floor.

``benchmarks/run.py`` calls ``write_charts()`` after every run of the suite; ``run.py
--charts-only`` calls ``main([])``, which re-renders from ``benchmarks/out/results.json`` (the
last run's raw data). ``main(["--cpu-from-results", FILE])`` draws the CPU chart from a
RESULTS.md table instead.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
CPU_CHART = "cpu_per_cancel.png"
LATENCY_CHART = "latency_distribution.png"
REFERENCE = "aiohttp"
#: tanx-async's own rows are drawn in one colour, the others in another.
OURS, THEIRS, REF = "#3f51b5", "#9e9e9e", "#616161"


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")  # files only, never a window
    import matplotlib.pyplot as plt

    return plt


def _colour(client: str) -> str:
    return OURS if client.startswith("tanx-async") else REF if client == REFERENCE else THEIRS


def cpu_chart(cpu_us: Mapping[str, float], path: Path, subtitle: str) -> Path:
    """Horizontal bars of µs of client CPU per cancel, fastest on top, with the ratio to raw
    aiohttp written on each bar."""
    if not cpu_us:
        raise ValueError("no CPU figures to chart")
    plt = _pyplot()
    rows = sorted(cpu_us.items(), key=lambda kv: kv[1], reverse=True)
    ref = cpu_us.get(REFERENCE)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 2.0), dpi=110)
    bars = ax.barh([c for c, _ in rows], [v for _, v in rows], color=[_colour(c) for c, _ in rows])
    ax.set_xscale("log")
    ax.set_xlabel("client CPU per cancel (µs, log scale): lower is better")
    for bar, (_, value) in zip(bars, rows, strict=True):
        ratio = f"  {value:,.0f} µs" + (f"  ({value / ref:.2f}x aiohttp)" if ref else "")
        ax.text(bar.get_width(), bar.get_y() + bar.get_height() / 2, ratio, va="center", fontsize=8)
    if ref:
        ax.axvline(ref, color=REF, linestyle=":", linewidth=1)
    ax.set_xlim(right=max(v for _, v in rows) * 6)
    ax.set_title("Client CPU per cancel\n" + textwrap.fill(subtitle, 90), fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def latency_chart(
    quantiles_ms: Mapping[str, Sequence[float]], path: Path, subtitle: str, floor_ms: float | None = None
) -> Path:
    """One box per client from its percentiles 0..100 (box p25-p75, whiskers p1-p99)."""
    rows = [(c, q) for c, q in quantiles_ms.items() if len(q) == 101]
    if not rows:
        raise ValueError("no latency percentiles to chart")
    plt = _pyplot()
    rows.sort(key=lambda cq: cq[1][50], reverse=True)
    stats = [
        {"label": c, "whislo": q[1], "q1": q[25], "med": q[50], "q3": q[75], "whishi": q[99], "fliers": []}
        for c, q in rows
    ]
    fig, ax = plt.subplots(figsize=(8, 0.5 * len(rows) + 2.0), dpi=110)
    boxes = ax.bxp(stats, orientation="horizontal", showfliers=False, patch_artist=True, widths=0.6)
    for patch, (client, _) in zip(boxes["boxes"], rows, strict=True):
        patch.set_facecolor(_colour(client))
        patch.set_alpha(0.75)
    for median in boxes["medians"]:
        median.set_color("black")
    for i, (_, q) in enumerate(rows, start=1):
        ax.text(q[99], i, f"  p50 {q[50]:.1f} / p99 {q[99]:.1f} ms", va="center", fontsize=8)
    if floor_ms:
        ax.axvline(
            floor_ms, color="#c62828", linestyle="--", linewidth=1, label=f"exchange latency {floor_ms:g} ms"
        )
        ax.legend(loc="upper right", fontsize=8)
    ax.set_xscale("log")
    ax.set_xlim(right=max(q[99] for _, q in rows) * 8)
    ax.set_xlabel("latency of one cancel (ms, log scale): box p25-p75, whiskers p1-p99")
    ax.set_title("Latency of each cancel within one burst\n" + textwrap.fill(subtitle, 90), fontsize=10)
    ax.grid(axis="x", which="both", alpha=0.2)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def cpu_from_runs(cells: Iterable[Mapping[str, Any]], scenario: str = "a") -> dict[str, float]:
    """Median µs of CPU per cancel per client over the valid runs of ``scenario``."""
    out: dict[str, float] = {}
    for cell in cells:
        runs = [r for r in cell["runs"] if r.get("_valid")]
        if cell["scenario"] == scenario and runs:
            out[cell["client"]] = statistics.median(r["cpu_s"] / cell["n"] * 1e6 for r in runs)
    return out


def latency_from_runs(cells: Iterable[Mapping[str, Any]], scenario: str = "b") -> dict[str, list[float]]:
    """Per client, the percentiles of the valid run of ``scenario`` with the median wall time."""
    out: dict[str, list[float]] = {}
    for cell in cells:
        runs = [r for r in cell["runs"] if r.get("_valid") and "latency_ms_quantiles" in r.get("extra", {})]
        if cell["scenario"] == scenario and runs:
            runs.sort(key=lambda r: r["wall_s"])
            out[cell["client"]] = runs[len(runs) // 2]["extra"]["latency_ms_quantiles"]
    return out


def cpu_from_results_md(text: str, scenario: str = "a") -> dict[str, float]:
    """The "client CPU / cancel (µs)" column of a RESULTS.md throughput table."""
    lines = [line for line in text.splitlines() if line.startswith("| scenario | client |")]
    if not lines:
        raise ValueError("no throughput table in the results")
    header = [h.strip() for h in lines[0].strip("|").split("|")]
    col = header.index("client CPU / cancel (µs)")
    out: dict[str, float] = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if len(cells) == len(header) and cells[0] == scenario and re.fullmatch(r"[\d,.]+", cells[col]):
            out[cells[1]] = float(cells[col].replace(",", ""))
    if not out:
        raise ValueError(f"no rows for scenario {scenario!r}")
    return out


def write_charts(cells: Sequence[Mapping[str, Any]], out_dir: Path, subtitle: str) -> list[Path]:
    """Both charts from a run's raw cells (as in results.json); a chart whose scenario did not
    run is left out. Returns the files written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    cpu = cpu_from_runs(cells)
    if cpu:
        n = max(c["n"] for c in cells if c["scenario"] == "a")
        written.append(
            cpu_chart(cpu, out_dir / CPU_CHART, f"{n:,} cancels, concurrency 64, latency 0; {subtitle}")
        )
    latency = latency_from_runs(cells)
    if latency:
        n = max(c["n"] for c in cells if c["scenario"] == "b")
        written.append(
            latency_chart(
                latency,
                out_dir / LATENCY_CHART,
                f"a {n:,}-cancel burst, concurrency 64{' (official-seq: 1)' if 'official-seq' in latency else ''}, "
                f"exchange latency 5 ms; {subtitle}",
                floor_ms=5.0,
            )
        )
    return written


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Re-render the benchmark charts.")
    p.add_argument("--raw", type=Path, default=BENCH / "out" / "results.json", help="a run's results.json")
    p.add_argument("--cpu-from-results", type=Path, default=None, help="CPU chart from this RESULTS.md")
    p.add_argument("--out", type=Path, default=BENCH / "charts")
    p.add_argument("--note", default="", help="appended to the chart subtitles")
    args = p.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if args.raw.exists():
        cells = json.loads(args.raw.read_text())["cells"]
        if args.cpu_from_results:
            cells = [c for c in cells if c["scenario"] != "a"]
        written += write_charts(cells, args.out, args.note or f"from {args.raw.name}")
    if args.cpu_from_results:
        cpu = cpu_from_results_md(args.cpu_from_results.read_text())
        subtitle = f"5,000 cancels, concurrency 64, latency 0; {args.note or args.cpu_from_results.name}"
        written.append(cpu_chart(cpu, args.out / CPU_CHART, subtitle))
    for path in written:
        print(f"wrote {path}")
    return 0 if written else 1
