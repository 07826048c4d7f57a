"""Scenario ``lag``: a 1 ms ticker on the same loop as a 5,000-cancel burst at 5 ms latency, for
raw aiohttp, tanx-async (asyncio, with ``gc.freeze()``, uvloop) and the floor (``_driver.py
--ticker``), beside the ticker on an idle loop (``_lag.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _harness import child_command, fake_server, run_child

from scenarios._base import Context, Measured, fmt, median, section, stamp, valid
from scenarios.burst import invalid_runs

#: Row label -> the driver's client and extra flags.
LAG_CLIENTS: dict[str, tuple[str, list[str]]] = {
    "aiohttp": ("aiohttp", []),
    "tanx-async": ("tanx-async", []),
    "tanx-async, gc.freeze() after start-up": ("tanx-async", ["--gc-freeze"]),
    "tanx-async-uvloop": ("tanx-async-uvloop", []),
    "floor": ("floor", []),
}
LAG_LATENCY = 0.005
TARGET_LAG_P99, TARGET_LAG_MAX = 2.0, 5.0


def measure(ctx: Context) -> Measured:
    data = run_lag(ctx.rounds(3), ctx.quick, ctx.log)
    bad = invalid_runs(data)
    return Measured(section("lag", render_lag(data) + bad), invalid=bool(bad), raw=data)


def run_lag(repeats: int, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    n = 1000 if quick else 5000
    runs: dict[str, list[dict[str, Any]]] = {c: [] for c in LAG_CLIENTS}
    baseline = run_child(child_command("_lag"), timeout=60)
    with fake_server(LAG_LATENCY) as server:
        log(f"scenario lag: server {server.url} latency {LAG_LATENCY * 1e3:g} ms, N={n}, ticker 1 ms")
        for rep in range(repeats):
            for client, (name, flags) in LAG_CLIENTS.items():
                cmd = child_command("_driver", "--client", name, "--url", server.url)
                cmd += ["-n", str(n), "-c", "64", "--ticker", *flags]
                res = run_child(cmd, timeout=120 + n * 0.003)
                res["_why"] = valid(res, n)
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


def render_lag(data: dict[str, Any]) -> list[str]:
    base = data.get("baseline", {})
    lines = [
        "## Event-loop lag beside a burst",
        "",
        f"{stamp()}. A task asking to wake every 1 ms (`asyncio.sleep(0.001)`) runs on the same loop as a "
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
            p50 = median([e[f"{prefix}_p50_ms"] for e in ex if e.get(f"{prefix}_p50_ms") is not None])
            p99 = median([e[f"{prefix}_p99_ms"] for e in ex if e.get(f"{prefix}_p99_ms") is not None])
            worst = max(
                (e[f"{prefix}_max_ms"] for e in ex if e.get(f"{prefix}_max_ms") is not None), default=None
            )
            return f"{fmt(p50, '.2f')} / {fmt(p99, '.2f')} / {fmt(worst, '.2f')}"

        passes = [e["gc_passes"] for e in ex if "gc_passes" in e]
        gen2 = max((e["gc_max_ms"][2] for e in ex if "gc_max_ms" in e), default=None)
        gc_cell = (
            "/".join(fmt(median([float(p[g]) for p in passes]), ".0f") for g in range(3))
            + f" ({fmt(gen2, '.1f')})"
            if passes
            else "—"
        )
        lines.append(
            f"| {client} | {fmt(median([float(e.get('lag_ticks', 0)) for e in ex]), '.0f')} | "
            f"{trio('lag')} | {trio('turn_cpu')} | {gc_cell} | "
            f"{fmt(median([r['wall_s'] for r in good]), '.3f')} | {len(good)}/{len(runs)} |"
        )
    return lines
