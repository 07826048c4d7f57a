"""The child process of scenario ``repeated``: many bursts on one session, counting after each
what it left behind; prints one JSON line."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import os
import time
from pathlib import Path
from typing import Any

from _common import loopback_only, make_access_token

PERIOD = 0.001
MAX_TICKS = 600_000  # 10 minutes of ticks: far more than a run takes


def _rss_mb() -> float:
    """Resident memory now (MB), from /proc (0.0 where there is none)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return 0.0
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


async def bursts_on_one_session(url: str, bursts: int, n: int, freeze: bool) -> dict[str, Any]:
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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True)
    p.add_argument("--bursts", type=int, required=True)
    p.add_argument("-n", "--n", type=int, required=True)
    p.add_argument("--gc-freeze", action="store_true")
    args = p.parse_args(argv)
    loopback_only(args.url)
    print(json.dumps(asyncio.run(bursts_on_one_session(args.url, args.bursts, args.n, args.gc_freeze))))
    return 0
