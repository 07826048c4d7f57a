"""Scenario ``burst``: 500 cancels at once over TLS from a pool that is hot, cold, warmed
(``warm_up``) or idle past the server's keep-alive (with ``keep_warm`` and without); one process
per run (``_burst.py``)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from _harness import child_command, fake_server, run_child

from scenarios._base import Context, Measured, fmt, median, section, stamp, valid

BURST_N = 500
BURST_MODES = ("hot", "cold", "warm_up", "idle-keep-warm", "idle")
TARGET_WARM = 1.2  # (ii) and (iii)-with-keep-warm within this of a hot pool's wall time


def measure(ctx: Context) -> Measured:
    data = run_burst(ctx.rounds(3), ctx.quick, ctx.log)
    bad = invalid_runs(data)
    return Measured(section("burst", render_burst(data) + bad), invalid=bool(bad), raw=data)


def invalid_runs(data: dict[str, Any]) -> list[str]:
    """The invalid runs of ``data["runs"]`` (excluded from the figures), as lines of the section."""
    bad = [
        f"- {name} rep {i + 1}: {r['_why']}"
        for name, runs in data["runs"].items()
        for i, r in enumerate(runs)
        if r.get("_why")
    ]
    return ["", "**Invalid runs (excluded):**", "", *bad] if bad else []


def run_burst(repeats: int, quick: bool, log: Callable[[str], None]) -> dict[str, Any]:
    keep_alive = 3.0 if quick else 5.0
    idle = keep_alive + 1.0
    runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in BURST_MODES}
    with fake_server(0.0, tls=True, keep_alive=keep_alive) as server:
        log(f"scenario burst: server {server.url} keep-alive {keep_alive:g} s, idle {idle:g} s")
        for rep in range(repeats):
            for mode in BURST_MODES:
                cmd = child_command("_burst", "--mode", mode, "--url", server.url)
                cmd += ["-n", str(BURST_N), "--idle", str(idle), *server.client_args()]
                res = run_child(cmd, timeout=120 + idle)
                res["_why"] = valid(res, BURST_N)
                runs[mode].append(res)
                if res["_why"]:
                    log(f"  burst {mode} rep {rep + 1}: INVALID {res['_why']}")
                else:
                    log(
                        f"  burst {mode} rep {rep + 1}: wall {res['wall_s'] * 1e3:.0f} ms, "
                        f"{res['extra'].get('connections_opened')} connections opened"
                    )
    return {"keep_alive": keep_alive, "idle": idle, "n": BURST_N, "runs": runs}


def render_burst(data: dict[str, Any]) -> list[str]:
    runs = data["runs"]
    hot = runs["hot"]
    lines = [
        "## The panic burst from a cold, warmed or idle pool (TLS)",
        "",
        f"{stamp()}. {data['n']} cancels at concurrency 64 over loopback TLS (latency 0), one process per run. The "
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
        wall = median([r["wall_s"] * 1e3 for r in good])
        cpu = median([r["cpu_s"] * 1e3 for r in good])
        opened = median([float(r["extra"].get("connections_opened", 0)) for r in good])
        ratios = [
            r["wall_s"] / h["wall_s"]
            for r, h in zip(runs[mode], hot, strict=False)
            if not r.get("_why") and not h.get("_why")
        ]
        lines.append(
            f"| {titles[mode]} | {fmt(wall, '.0f')} | {fmt(cpu, '.0f')} | {fmt(opened, '.0f')} | "
            f"{fmt(median(ratios), '.2f')}x | {len(good)}/{len(runs[mode])} |"
        )
    return lines
