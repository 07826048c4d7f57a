"""The second round's scenarios, run and rendered for ``run.py``: the floor/trio ratios, the panic
burst from a cold, warmed or idle pool, and the event-loop lag beside a burst.

Every ratio here is paired: the two runs divided are adjacent runs of the same repeat against the
same server process (repeats interleave the clients), and the median of those per-repeat ratios
is reported, never a ratio of medians taken from different runs.
"""

from __future__ import annotations

import statistics
import sys
from collections.abc import Callable
from typing import Any

from _harness import BENCH, fake_server, run_child

BURST_N = 500
BURST_MODES = ("hot", "cold", "warm_up", "idle-keep-warm", "idle")
#: Row label -> the driver's client and extra flags.
LAG_CLIENTS: dict[str, tuple[str, list[str]]] = {
    "aiohttp": ("aiohttp", []),
    "tanx-async": ("tanx-async", []),
    "tanx-async, gc.freeze() after start-up": ("tanx-async", ["--gc-freeze"]),
    "tanx-async-uvloop": ("tanx-async-uvloop", []),
    "floor": ("floor", []),
}
LAG_LATENCY = 0.005
TARGET_WARM = 1.2  # (ii) and (iii)-with-keep-warm within this of a hot pool's wall time
TARGET_FLOOR = 2.0  # tanx-async's CPU per cancel at most this many times the floor's
TARGET_TRIO = 3.0
TARGET_LAG_P99, TARGET_LAG_MAX = 2.0, 5.0

Log = Callable[[str], None]


def _valid(run: dict[str, Any], n: int) -> str | None:
    if "error" in run:
        return str(run["error"])
    if run.get("ok") != n or run.get("failed"):
        return f"ok={run.get('ok')} failed={run.get('failed')} of {n}: {run.get('errors')}"
    return None


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def _fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)


# --------------------------------------------------------------------------- run


def run_burst(repeats: int, quick: bool, log: Log) -> dict[str, Any]:
    keep_alive = 3.0 if quick else 5.0
    idle = keep_alive + 1.0
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in BURST_MODES}
    with fake_server(0.0, tls=True, keep_alive=keep_alive) as server:
        log(f"scenario burst: server {server.url} keep-alive {keep_alive:g} s, idle {idle:g} s")
        for rep in range(repeats):
            for mode in BURST_MODES:
                cmd = [sys.executable, str(BENCH / "burst.py"), "--mode", mode, "--url", server.url]
                cmd += ["-n", str(BURST_N), "--idle", str(idle), *server.client_args()]
                res = run_child(cmd, timeout=120 + idle)
                res["_why"] = _valid(res, BURST_N)
                runs[mode].append(res)
                if res["_why"]:
                    log(f"  burst {mode} rep {rep + 1}: INVALID {res['_why']}")
                else:
                    log(
                        f"  burst {mode} rep {rep + 1}: wall {res['wall_s'] * 1e3:.0f} ms, "
                        f"{res['extra'].get('connections_opened')} connections opened"
                    )
    return {"keep_alive": keep_alive, "idle": idle, "n": BURST_N, "runs": runs}


def run_lag(repeats: int, quick: bool, log: Log) -> dict[str, Any]:
    n = 1000 if quick else 5000
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in LAG_CLIENTS}
    baseline = run_child([sys.executable, str(BENCH / "lag.py")], timeout=60)
    with fake_server(LAG_LATENCY) as server:
        log(f"scenario lag: server {server.url} latency {LAG_LATENCY * 1e3:g} ms, N={n}, ticker 1 ms")
        for rep in range(repeats):
            for client, (name, flags) in LAG_CLIENTS.items():
                cmd = [sys.executable, str(BENCH / "driver.py"), "--client", name, "--url", server.url]
                cmd += ["-n", str(n), "-c", "64", "--ticker", *flags]
                res = run_child(cmd, timeout=120 + n * 0.003)
                res["_why"] = _valid(res, n)
                runs[client].append(res)
                extra = res.get("extra", {})
                log(
                    f"  lag {client} rep {rep + 1}: "
                    + (
                        res["_why"]
                        or f"p50 {extra.get('lag_p50_ms')} p99 {extra.get('lag_p99_ms')} max {extra.get('lag_max_ms')} ms"
                    )
                )
    return {"n": n, "latency": LAG_LATENCY, "runs": runs, "baseline": baseline}


def run(scenarios: set[str], repeats: int, quick: bool, tanx_wanted: bool, log: Log) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if "burst" in scenarios and tanx_wanted:
        out["burst"] = run_burst(repeats, quick, log)
    if "lag" in scenarios:
        out["lag"] = run_lag(repeats, quick, log)
    return out


def invalid(extra: dict[str, Any]) -> bool:
    return any(r.get("_why") for section in extra.values() for runs in section["runs"].values() for r in runs)


# --------------------------------------------------------------------------- render


def _paired(cells: list[Any], key: str, top: str, bottom: str) -> tuple[float | None, int]:
    """Median over repeats of (``top``'s CPU per cancel / ``bottom``'s), valid pairs only."""
    by_name = {c.spec.name: c for c in cells if c.scenario.key == key}
    a, b = by_name.get(top), by_name.get(bottom)
    if a is None or b is None:
        return None, 0
    ratios = [
        (x["cpu_s"] / a.n) / (y["cpu_s"] / b.n)
        for x, y in zip(a.runs, b.runs, strict=False)
        if x.get("_valid") and y.get("_valid") and y["cpu_s"] > 0
    ]
    return _median(ratios), len(ratios)


def render_ratios(cells: list[Any]) -> list[str]:
    rows = [
        ("tanx-async", "floor", TARGET_FLOOR, "tanx-async vs the Python floor"),
        ("tanx-async-uvloop", "floor", TARGET_FLOOR, "tanx-async on uvloop vs the floor"),
        ("aiohttp", "floor", None, "raw aiohttp vs the floor"),
        ("tanx-async-trio", "tanx-async", TARGET_TRIO, "tanx-async under trio vs on asyncio"),
    ]
    keys = [k for k in ("a-tls", "a", "b-tls", "b") if any(c.scenario.key == k for c in cells)]
    if not keys:
        return []
    lines = [
        "",
        "## Paired CPU ratios: the floor and trio",
        "",
        "Client CPU per cancel of one client divided by another's, per repeat (adjacent runs against "
        "the same server), median over repeats. Target: tanx-async ≤ "
        f"{TARGET_FLOOR:g}x the floor; trio ≤ {TARGET_TRIO:g}x the asyncio path.",
        "",
        "| ratio | " + " | ".join(keys) + " | target |",
        "|---|" + "---|" * len(keys) + "---|",
    ]
    for top, bottom, target, title in rows:
        cols = []
        for key in keys:
            ratio, pairs = _paired(cells, key, top, bottom)
            cols.append(f"{ratio:.2f}x ({pairs})" if ratio is not None else "—")
        lines.append(f"| {title} | " + " | ".join(cols) + f" | {f'≤ {target:g}x' if target else ''} |")
    return lines


def render_burst(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    hot = runs["hot"]
    lines = [
        "",
        "## The panic burst from a cold, warmed or idle pool (TLS)",
        "",
        f"{data['n']} cancels at concurrency 64 over loopback TLS (latency 0), one process per run. The "
        f"server closes connections idle for {data['keep_alive']:g} s and says so (`Keep-Alive: "
        f"timeout={data['keep_alive']:g}`); the idle runs wait {data['idle']:g} s before the burst. "
        "*connections opened* = handshakes during the measured burst (server counter). *vs hot* = "
        f"wall / the hot pool's wall in the same repeat, median. Target: `warm_up` and idle with keep-warm "
        f"≤ {TARGET_WARM:g}x.",
        "",
        "| pool before the burst | median wall (ms) | CPU (ms) | connections opened | vs hot | runs ok |",
        "|---|---|---|---|---|---|",
    ]
    titles = {
        "hot": "hot (after a burst)",
        "cold": "(i) cold: fresh session",
        "warm_up": "(ii) fresh session + `await session.warm_up()`",
        "idle-keep-warm": "(iii) idle > keep-alive, `keep_warm=True`",
        "idle": "(iii) idle > keep-alive, keep-warm off",
    }
    for mode in BURST_MODES:
        good = [r for r in runs[mode] if not r.get("_why")]
        wall = _median([r["wall_s"] * 1e3 for r in good])
        cpu = _median([r["cpu_s"] * 1e3 for r in good])
        opened = _median([float(r["extra"].get("connections_opened", 0)) for r in good])
        ratios = [
            r["wall_s"] / h["wall_s"]
            for r, h in zip(runs[mode], hot, strict=False)
            if not r.get("_why") and not h.get("_why")
        ]
        lines.append(
            f"| {titles[mode]} | {_fmt(wall, '.0f')} | {_fmt(cpu, '.0f')} | {_fmt(opened, '.0f')} | "
            f"{_fmt(_median(ratios), '.2f')}x | {len(good)}/{len(runs[mode])} |"
        )
    return lines


def render_lag(data: dict[str, Any]) -> list[str]:
    base = data.get("baseline", {})
    lines = [
        "",
        "## Event-loop lag beside a burst",
        "",
        f"A task asking to wake every 1 ms (`asyncio.sleep(0.001)`) runs on the same loop as a "
        f"{data['n']:,}-cancel burst at concurrency 64, {data['latency'] * 1e3:g} ms server latency, "
        "plain HTTP; *lag* = how late each wake-up came (wall clock, which on a shared machine includes "
        "time the OS kept the process off the CPU). *iteration CPU* = the CPU time of each event-loop "
        "iteration (between two selector calls; asyncio's loop only): what the client's own work holds "
        "the loop for, robust to a busy machine; on a quiet one the lag stays within about two "
        "iterations. Medians over repeats of each run's "
        f"p50/p99, and the worst max. Target for tanx-async: p99 ≤ {TARGET_LAG_P99:g} ms, max ≤ "
        f"{TARGET_LAG_MAX:g} ms. "
        + (
            f"The same ticker on an idle loop: p50 {base.get('lag_p50_ms')} ms, p99 {base.get('lag_p99_ms')} ms, "
            f"max {base.get('lag_max_ms')} ms."
            if "lag_p50_ms" in base
            else ""
        ),
        "",
        "| client | ticks | lag p50 / p99 / max (ms) | iteration CPU p50 / p99 / max (ms) | "
        "GC passes gen 0/1/2 (longest gen-2 pause, ms) | burst wall (s) | runs ok |",
        "|---|---|---|---|---|---|---|",
    ]
    for client, runs in data["runs"].items():
        good = [r for r in runs if not r.get("_why")]
        ex = [r.get("extra", {}) for r in good]

        def trio(prefix: str, ex: list[dict[str, Any]] = ex) -> str:
            p50 = _median([e[f"{prefix}_p50_ms"] for e in ex if e.get(f"{prefix}_p50_ms") is not None])
            p99 = _median([e[f"{prefix}_p99_ms"] for e in ex if e.get(f"{prefix}_p99_ms") is not None])
            worst = max(
                (e[f"{prefix}_max_ms"] for e in ex if e.get(f"{prefix}_max_ms") is not None), default=None
            )
            return f"{_fmt(p50, '.2f')} / {_fmt(p99, '.2f')} / {_fmt(worst, '.2f')}"

        passes = [e["gc_passes"] for e in ex if "gc_passes" in e]
        gen2 = max((e["gc_max_ms"][2] for e in ex if "gc_max_ms" in e), default=None)
        gc_cell = (
            "/".join(_fmt(_median([float(p[g]) for p in passes]), ".0f") for g in range(3))
            + f" ({_fmt(gen2, '.1f')})"
            if passes
            else "—"
        )
        lines.append(
            f"| {client} | {_fmt(_median([float(e.get('lag_ticks', 0)) for e in ex]), '.0f')} | "
            f"{trio('lag')} | {trio('turn_cpu')} | {gc_cell} | "
            f"{_fmt(_median([r['wall_s'] for r in good]), '.3f')} | {len(good)}/{len(runs)} |"
        )
    return lines


def render(cells: list[Any], extra: dict[str, Any]) -> str:
    lines = render_ratios(cells)
    if "burst" in extra:
        lines += render_burst(extra["burst"])
    if "lag" in extra:
        lines += render_lag(extra["lag"])
    for section in extra.values():
        bad = [
            f"{name} rep {i + 1}: {r['_why']}"
            for name, runs in section["runs"].items()
            for i, r in enumerate(runs)
            if r.get("_why")
        ]
        if bad:
            lines += ["", "**Invalid runs (excluded):**", "", *[f"- {b}" for b in bad]]
    return "\n".join(lines) + ("\n" if lines else "")
