"""Scenario ``instructions``: what one cancel costs, counted (``_counting.py``): user-space
instructions under callgrind and Python bytecodes by function, for ``tanx-async`` (the fast
path), ``tanx-async-tasks`` (a task per cancel) and ``floor``. Opt-in: it needs valgrind
(``apt-get install valgrind``; without it only bytecodes are counted) and takes minutes. The same
count for two revisions of tanx-async, paired, is ``ab.py --instructions``.
"""

from __future__ import annotations

from typing import Any

from _counting import LARGE, SMALL, bytecodes_per_cancel, have_valgrind, instructions_per_cancel
from _harness import fake_server

from scenarios._base import Context, Measured, section, stamp

CLIENTS = ("tanx-async", "tanx-async-tasks", "floor")
TOP = 25  # functions listed per client


def measure(ctx: Context) -> Measured:
    instructions = have_valgrind()
    if not instructions:
        ctx.log("instructions: valgrind not found (apt-get install valgrind): counting bytecodes only")
    results: dict[str, dict[str, Any]] = {}
    with fake_server(0.0) as server:
        for client in CLIENTS[::2] if ctx.quick else CLIENTS:  # --quick: tanx-async and the floor
            res: dict[str, Any] = {}
            if instructions:
                res["instructions"] = instructions_per_cancel(server.url, client)
            per = bytecodes_per_cancel(server.url, client)
            res["bytecodes"] = sum(per.values())
            res["by_function"] = sorted(
                ((v, f"{fn} ({f})") for (f, fn), v in per.items() if v >= 0.5), reverse=True
            )
            results[client] = res
            ctx.log(
                f"  instructions {client}: "
                + ", ".join(f"{k} {v:,.0f}" for k, v in res.items() if k != "by_function")
            )
    return Measured(render(results, TOP), raw=results)


def render(results: dict[str, dict[str, Any]], top: int) -> str:
    floor = results.get("floor", {})
    rows = []
    for client, res in results.items():
        ins = res.get("instructions")
        ratio = f"{ins / floor['instructions']:.2f}x" if ins and floor.get("instructions") else "—"
        bc_ratio = f"{res['bytecodes'] / floor['bytecodes']:.2f}x" if floor.get("bytecodes") else "—"
        rows.append(
            f"| {client} | {f'{ins:,.0f}' if ins else '—'} | {ratio} | {res['bytecodes']:,.0f} | {bc_ratio} |"
        )
    detail = []
    for client, res in results.items():
        detail += ["", f"Bytecodes per cancel by function, `{client}` (the top {top}):", ""]
        detail += ["| bytecodes | function (file) |", "|---|---|"]
        detail += [f"| {v:,.1f} | `{name}` |" for v, name in res["by_function"][:top]]
    return section(
        "instructions",
        [
            "## What one cancel costs, counted (`run.py --scenarios instructions`)",
            "",
            f"{stamp()}. Counts per cancel: the difference between {LARGE:,} and {SMALL:,} cancels on warm connections "
            "(latency 0, plain HTTP, concurrency 64), divided by the difference. *instructions*: user-space, "
            "under callgrind (system calls not counted); *bytecodes*: Python bytecodes executed. Unlike "
            "timings, these do not move between runs.",
            "",
            "| client | instructions / cancel | vs floor | bytecodes / cancel | vs floor |",
            "|---|---|---|---|---|",
            *rows,
            *detail,
        ],
    )
