"""Scenario ``floor-pairs``: tanx-async against the Python floor, in many paired rounds: the
target's own figure.

The suite (scenarios a-tls, a, b-tls, b) pairs every client with the floor over its 3 repeats; on a 2-core machine whose
speed drifts 20-30 % between runs, a median of 3 per-repeat ratios can land on either side of
the 2x target. This scenario runs only the two clients that target compares, in many rounds (10, or ``-r``;
2 with ``--quick``, at N=1,000), for
scenarios a-tls, a, b-tls and b (latency 0 and 5 ms, TLS and plain HTTP, 5,000 cancels at
concurrency 64). Each round runs both clients back to back against the same server, alternating
which goes first (ABBA), and gives one ratio: tanx-async's client CPU per cancel divided by the
floor's (``_paired.py``). The figure is the median of those ratios, with their quartiles and
range, so the spread is visible next to the verdict. Opt-in: about 5 minutes.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

from _harness import child_command, fake_server, run_child
from _paired import in_turn, quartiles

from scenarios._base import Context, Measured, section, stamp

#: name -> (server latency in seconds, TLS)
SCENARIOS = {"a-tls": (0.0, True), "a": (0.0, False), "b-tls": (0.005, True), "b": (0.005, False)}
CLIENTS = ("tanx-async", "floor")
TARGET = 2.0


def cpu_per_cancel(result: dict[str, Any], n: int) -> float | None:
    """Client CPU per cancel (µs) of a run that cancelled all ``n`` orders, else None."""
    if "error" in result or result.get("ok") != n:
        return None
    return float(result["user_s"] + result["sys_s"]) / n * 1e6


def run_scenario(name: str, rounds: int, n: int, log: Callable[[str], None] = print) -> dict[str, Any]:
    latency, tls = SCENARIOS[name]
    cpu: dict[str, list[float]] = {c: [] for c in CLIENTS}
    ratios: list[float] = []
    failed = 0
    with fake_server(latency, tls=tls) as server:
        for rnd in range(rounds):
            got: dict[str, float | None] = {}
            for client in in_turn(rnd, *CLIENTS):
                cmd = child_command("_driver", "--client", client, "--url", server.url)
                cmd += ["-n", str(n), "-c", "64", *server.client_args()]
                got[client] = cpu_per_cancel(run_child(cmd, timeout=120 + n * 0.01), n)
            tanx, floor = got["tanx-async"], got["floor"]
            if tanx is None or floor is None:
                failed += 1
                log(f"  floor-pairs {name} round {rnd + 1}: a run failed or did not cancel all {n}")
                continue
            cpu["tanx-async"].append(tanx)
            cpu["floor"].append(floor)
            ratios.append(tanx / floor)
            log(
                f"  floor-pairs {name} round {rnd + 1}: tanx-async {tanx:.0f} µs, floor {floor:.0f} µs, {tanx / floor:.2f}x"
            )
    return {"cpu": cpu, "ratios": ratios, "failed": failed}


def render(results: dict[str, dict[str, Any]], rounds: int, n: int) -> str:
    rows = []
    for name, res in results.items():
        ratios = res["ratios"]
        if not ratios:
            rows.append(f"| {name} | — | — | — | — | — | — | 0/{rounds} |")
            continue
        q1, med, q3 = quartiles(ratios)
        below = sum(r <= TARGET for r in ratios)
        rows.append(
            f"| {name} | {statistics.median(res['cpu']['tanx-async']):.0f} | {statistics.median(res['cpu']['floor']):.0f} "
            f"| **{med:.2f}x** | {q1:.2f}-{q3:.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x "
            f"| {below}/{len(ratios)} | {len(ratios)}/{rounds} |"
        )
    return section(
        "floor-pairs",
        [
            "## tanx-async against the floor, many paired rounds (`run.py --scenarios floor-pairs`)",
            "",
            f"{stamp()}. {rounds} rounds per scenario, {n:,} cancels at concurrency 64; each round runs tanx-async "
            "(`cancel_many`) and the floor back to back against one server, alternating which goes first, "
            "and gives one ratio of client CPU per cancel. *ratio* = the median of those ratios; the "
            f"quartiles and range show how far one round's ratio can move on this machine. Target: ≤ {TARGET:g}x.",
            "",
            "| scenario | tanx-async CPU / cancel (µs, median) | floor (µs, median) | ratio | quartiles | range | rounds ≤ 2x | rounds ok |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
        ],
    )


def measure(ctx: Context) -> Measured:
    rounds, n = ctx.rounds(10, 2), (1000 if ctx.quick else 5000)
    results = {name: run_scenario(name, rounds, n, ctx.log) for name in SCENARIOS}
    return Measured(
        render(results, rounds, n), invalid=any(r["failed"] for r in results.values()), raw=results
    )
