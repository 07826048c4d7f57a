"""A trader's loop: many bursts on one session, and what each leaves behind.

    .venv/bin/python benchmarks/repeated.py [--bursts 40] [--n 2000] [--repeats 2] [--compare REF] [--write]

A market maker does not cancel once: it pulls its quotes again and again on one long-lived
session. Each burst here is ``cancel_many`` of ``--n`` orders at concurrency 64 against
``fakeserver.py`` (5 ms latency, plain HTTP), whose outcomes the caller checks and drops at once,
with a 1 ms ticker on the same loop (as in scenario ``lag``). After every burst the child counts
the objects the garbage collector tracks and the resident memory: with nothing kept by the
caller they must stay flat from the first burst to the last. Also reported: the collector's
passes per generation with the longest of each (a pass of the oldest generation walks every
object of the process: the lag maximum), and the ticker's lag.

Rows: tanx-async as it is, the same after ``gc.freeze()`` at start-up (what the README suggests
to a strategy that minds pauses), and with ``--compare REF`` the same two for an earlier commit
(checked out with ``git worktree`` into a temporary directory, run by the same interpreter).
``--write`` replaces this script's section of ``RESULTS.md`` (``run.py`` keeps it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import make_access_token, write_section  # noqa: E402
from _harness import CLIENT_CORE, REPO, child_env, fake_server, last_json_line, pinned  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
BEGIN, END = "<!-- repeated:begin -->", "<!-- repeated:end -->"
LATENCY = 0.005
PERIOD = 0.001
MAX_TICKS = 600_000  # 10 minutes of ticks: far more than a run takes


def _rss_mb() -> float:
    """Resident memory now (MB), from /proc (0.0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def _child(url: str, bursts: int, n: int, freeze: bool) -> dict[str, Any]:
    from tanx_async import AsyncTanxSession

    passes = [0, 0, 0]
    longest = [0.0, 0.0, 0.0]
    began = [0.0]

    def on_gc(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            began[0] = time.perf_counter()
            return
        gen = info["generation"]
        passes[gen] += 1
        longest[gen] = max(longest[gen], time.perf_counter() - began[0])

    lags: list[float] = []
    counting = [0]  # bumped around the counting between bursts: a tick across it is not kept

    async def ticker() -> None:
        while len(lags) < MAX_TICKS:
            due, epoch = time.perf_counter() + PERIOD, counting[0]
            await asyncio.sleep(PERIOD)
            if counting[0] == epoch:
                lags.append(max(0.0, time.perf_counter() - due))

    objects: list[int] = []
    rss: list[float] = []
    async with AsyncTanxSession(base_url=url, access_token=make_access_token()) as session:
        await session.warm_up(64)
        await session.orders.cancel_many(range(10**8, 10**8 + 300), concurrency=64)
        gc.collect()
        if freeze:
            gc.freeze()
        tick = asyncio.create_task(ticker())
        gc.callbacks.append(on_gc)
        try:
            base = 1
            for _ in range(bursts):
                outcomes = await session.orders.cancel_many(range(base, base + n), concurrency=64)
                base += n
                if not all(o.ok for o in outcomes):
                    raise SystemExit(f"a cancel failed: {next(o for o in outcomes if not o.ok)}")
                del outcomes
                # Counting is not the burst's work: neither its collections nor its lag count.
                counting[0] += 1
                gc.callbacks.remove(on_gc)
                objects.append(len(gc.get_objects()))
                rss.append(_rss_mb())
                gc.callbacks.append(on_gc)
                counting[0] += 1
        finally:
            with contextlib.suppress(ValueError):
                gc.callbacks.remove(on_gc)
            tick.cancel()
    lags.sort()
    return {
        "objects": objects,
        "rss_mb": rss,
        "passes": passes,
        "longest_ms": [round(s * 1e3, 2) for s in longest],
        "lag_ms": [round(lags[int(q * (len(lags) - 1))] * 1e3, 2) for q in (0.5, 0.99, 1.0)] if lags else [],
        "ticks": len(lags),
    }


@contextlib.contextmanager
def checkout(ref: str) -> Iterator[Path]:
    """``ref`` checked out into a temporary directory (a detached ``git worktree``)."""
    where = Path(tempfile.mkdtemp(prefix="tanx-repeated-")) / "tree"
    subprocess.run(["git", "worktree", "add", "--detach", "-q", str(where), ref], cwd=REPO, check=True)
    try:
        yield where
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(where)], cwd=REPO, check=False)


def run_one(url: str, tree: Path, bursts: int, n: int, freeze: bool) -> dict[str, Any]:
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env["PYTHONPATH"]])
    cmd = [sys.executable, __file__, "--child", url, "--bursts", str(bursts), "--n", str(n)]
    if freeze:
        cmd.append("--gc-freeze")
    try:
        proc = subprocess.run(
            pinned(CLIENT_CORE, cmd),
            capture_output=True,
            text=True,
            timeout=60 + bursts * n * 0.002,
            env=env,
            cwd=tree,
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
    return "\n".join(
        [
            BEGIN,
            "## Many bursts on one session (`benchmarks/repeated.py`)",
            "",
            f"{bursts} bursts of `cancel_many` of {n:,} orders each (concurrency 64, {LATENCY * 1e3:g} ms "
            "server latency, plain HTTP) on one session, a 1 ms ticker on the same loop; after each burst the "
            "caller drops its outcomes. *tracked objects* and *RSS*: after the first burst → after the last "
            "(medians of the repeats; flat means a burst leaves nothing behind). *GC passes*: per generation "
            "0/1/2; *longest pass*: of the oldest / the middle generation (worst run). *lag*: the ticker's "
            "p99 (median) / max (worst run), ms.",
            "",
            "| run | tracked objects | RSS (MB) | GC passes | longest pass gen 2 / gen 1 (ms) | lag p99 / max (ms) | runs ok |",
            "|---|---|---|---|---|---|---|",
            *lines,
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--bursts", type=int, default=40)
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--compare", metavar="REF", help="also run an earlier commit (git ref)")
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--gc-freeze", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bursts < 1 or args.n < 1 or args.repeats < 1:
        parser.error("--bursts, --n and --repeats must be positive")
    if args.child:
        print(json.dumps(asyncio.run(_child(args.child, args.bursts, args.n, args.gc_freeze))))
        return
    trees: dict[str, Path] = {"tanx-async": REPO}
    with contextlib.ExitStack() as stack:
        if args.compare:
            trees[f"tanx-async at {args.compare}"] = stack.enter_context(checkout(args.compare))
        rows: dict[str, list[dict[str, Any]]] = {}
        with fake_server(LATENCY) as server:
            for rep in range(args.repeats):
                for name, tree in trees.items():
                    for freeze in (False, True):
                        label = name + (", gc.freeze() after start-up" if freeze else "")
                        result = run_one(server.url, tree, args.bursts, args.n, freeze)
                        rows.setdefault(label, []).append(result)
                        print(f"  {label} rep {rep + 1}: " + json.dumps(result)[:300], flush=True)
    section = render(rows, args.bursts, args.n)
    print(section)
    if args.write:
        write_section(RESULTS, section, BEGIN, END)


if __name__ == "__main__":
    main()
