"""Scenario ``repeated``: a trader's loop, many bursts on one session, and what each leaves behind.

A market maker does not cancel once: it pulls its quotes again and again on one long-lived
session. Each burst here is ``cancel_many`` of N orders at concurrency 64 against the fake
server (5 ms latency, plain HTTP), whose outcomes the caller checks and drops at once, with a
1 ms ticker on the same loop (as in scenario ``lag``). After every burst the child
(``_repeated.py``) counts the objects the garbage collector tracks and the resident memory: with
nothing kept by the caller they must stay flat from the first burst to the last. Also reported:
the collector's passes per generation with the longest of each (a pass of the oldest generation
walks every object of the process: the lag maximum), and the ticker's lag. Rows: tanx-async as
it is, and the same after ``gc.freeze()`` at start-up (what the docs suggest to a strategy that
minds pauses).
"""

from __future__ import annotations

import statistics
import subprocess
from typing import Any

from _harness import CLIENT_CORE, REPO, child_command, child_env, fake_server, last_json_line, pinned

from scenarios._base import Context, Measured, section, stamp

LATENCY = 0.005


def measure(ctx: Context) -> Measured:
    bursts, n = (10, 1000) if ctx.quick else (40, 2000)
    rows: dict[str, list[dict[str, Any]]] = {}
    with fake_server(LATENCY) as server:
        for rep in range(ctx.rounds(2)):
            for freeze in (False, True):
                label = "tanx-async" + (", gc.freeze() after start-up" if freeze else "")
                result = run_one(server.url, bursts, n, freeze)
                rows.setdefault(label, []).append(result)
                ctx.log(f"  repeated, {label} rep {rep + 1}: " + str(result)[:200])
    invalid = any("error" in r for runs in rows.values() for r in runs)
    return Measured(render(rows, bursts, n), invalid=invalid, raw=rows)


def run_one(url: str, bursts: int, n: int, freeze: bool) -> dict[str, Any]:
    cmd = child_command("_repeated", "--url", url, "--bursts", str(bursts), "--n", str(n))
    if freeze:
        cmd.append("--gc-freeze")
    try:
        proc = subprocess.run(
            pinned(CLIENT_CORE, cmd),
            capture_output=True,
            text=True,
            timeout=60 + bursts * n * 0.002,
            env=child_env(),
            cwd=REPO,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return {"error": "timeout"}
    data = last_json_line(proc.stdout)
    if proc.returncode != 0 or data is None:
        return {"error": f"exit {proc.returncode}: {(proc.stderr or proc.stdout).strip()[-300:]}"}
    return data


def _med(runs: list[dict[str, Any]], key: str, i: int) -> float:
    return float(statistics.median(r[key][i] for r in runs))


def render(rows: dict[str, list[dict[str, Any]]], bursts: int, n: int) -> str:
    lines = []
    for label, runs in rows.items():
        good = [r for r in runs if "error" not in r]
        if not good:
            lines.append(f"| {label} | — | — | — | — | — | 0/{len(runs)} |")
            continue

        passes = "/".join(f"{statistics.median(r['passes'][g] for r in good):.0f}" for g in range(3))
        lines.append(
            f"| {label} | {_med(good, 'objects', 0):,.0f} → {_med(good, 'objects', -1):,.0f} (max {max(max(r['objects']) for r in good):,}) "
            f"| {_med(good, 'rss_mb', 0):.0f} → {_med(good, 'rss_mb', -1):.0f} "
            f"| {passes} "
            f"| {max(r['longest_ms'][2] for r in good):.1f} / {max(r['longest_ms'][1] for r in good):.1f} "
            f"| {_med(good, 'lag_ms', 1):.2f} / {max(r['lag_ms'][2] for r in good):.2f} | {len(good)}/{len(runs)} |"
        )
    return section(
        "repeated",
        [
            "## Many bursts on one session (`run.py --scenarios repeated`)",
            "",
            f"{stamp()}. {bursts} bursts of `cancel_many` of {n:,} orders each (concurrency 64, {LATENCY * 1e3:g} ms "
            "server latency, plain HTTP) on one session, a 1 ms ticker on the same loop; after each burst the "
            "caller drops its outcomes. *tracked objects* and *RSS*: after the first burst → after the last "
            "(medians of the repeats; flat means a burst leaves nothing behind). *GC passes*: per generation "
            "0/1/2; *longest pass*: of the oldest / the middle generation (worst run). *lag*: the ticker's "
            "p99 (median) / max (worst run), ms.",
            "",
            "| run | tracked objects | RSS (MB) | GC passes | longest pass gen 2 / gen 1 (ms) | lag p99 / max (ms) | runs ok |",
            "|---|---|---|---|---|---|---|",
            *lines,
        ],
    )
