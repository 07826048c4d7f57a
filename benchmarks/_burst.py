"""One panic burst of tanx-async: N cancels at once, from a pool in a given state; one JSON line.

``--mode``:
- ``hot``: a burst of N warm-up cancels first, then the measured burst (every connection open);
- ``cold``: a fresh session, the measured burst straight away (it pays for every handshake);
- ``warm_up``: a fresh session, ``await session.warm_up()``, then the burst;
- ``idle-keep-warm`` / ``idle``: a warm-up burst, then ``--idle`` seconds of quiet (longer than
  the server's keep-alive timeout, so the server closes what it keeps idle), then the burst; with
  ``keep_warm=True`` and without.

Wall time and CPU are measured around the measured burst only; the server's connection counter
is read before and after it (``connections_opened``: handshakes the burst itself paid for).
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import urllib.request
from typing import Any

from _common import (
    WARMUP_ID_BASE,
    Meter,
    Tally,
    base_parser,
    client_ssl,
    die,
    loopback_only,
    make_access_token,
)

MODES = ("hot", "cold", "warm_up", "idle-keep-warm", "idle")


class GcWatch:
    """The garbage collector's passes during a block: count per generation and total pause (a
    full collection walks every object the process holds: here tens of milliseconds, which
    lands in whichever burst the allocation history makes it fall in)."""

    def __init__(self) -> None:
        self.passes = [0, 0, 0]
        self.pause = 0.0
        self._start = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._start = time.perf_counter()
        else:
            self.passes[info["generation"]] += 1
            self.pause += time.perf_counter() - self._start

    def __enter__(self) -> None:
        gc.callbacks.append(self._on_gc)

    def __exit__(self, *exc: object) -> None:
        gc.callbacks.remove(self._on_gc)

    def result(self) -> dict[str, Any]:
        return {"gc_passes": list(self.passes), "gc_pause_ms": round(self.pause * 1e3, 2)}


def server_connections(url: str, cafile: str | None) -> int:
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    context = client_ssl(cafile)
    if context is not None:
        handlers.append(urllib.request.HTTPSHandler(context=context))
    with urllib.request.build_opener(*handlers).open(url.rstrip("/") + "/__stats", timeout=5) as resp:
        return int(json.loads(resp.read())["connections"])


async def burst(mode: str, url: str, n: int, c: int, token: str, cafile: str | None, idle: float) -> None:
    from tanx_async import AsyncTanxSession

    verify: Any = client_ssl(cafile) or True
    keep_warm = mode == "idle-keep-warm"
    async with AsyncTanxSession(
        base_url=url, access_token=token, verify=verify, keep_warm=keep_warm
    ) as session:
        orders = session.orders
        extra: dict[str, Any] = {"mode": mode}
        if mode in ("hot", "idle", "idle-keep-warm"):
            warm = await orders.cancel_many(list(range(WARMUP_ID_BASE, WARMUP_ID_BASE + n)), concurrency=c)
            if not all(o.ok for o in warm):
                die("warm-up burst failed")
        if mode == "warm_up":
            t0 = time.perf_counter()
            extra["warmed"] = await session.warm_up(connections=c)
            extra["warm_up_s"] = time.perf_counter() - t0
        if mode.startswith("idle"):
            await asyncio.sleep(idle)
        before = await asyncio.to_thread(server_connections, url, cafile)
        ids = list(range(1, n + 1))
        tally = Tally()
        meter = Meter()
        gc_watch = GcWatch()
        meter.start()
        with gc_watch:
            outcomes = await orders.cancel_many(ids, concurrency=c)
        meter.stop()
        extra.update(gc_watch.result())
        # (less the one the second look at /__stats opens itself)
        extra["connections_opened"] = await asyncio.to_thread(server_connections, url, cafile) - before - 1
        for want, o in zip(ids, outcomes, strict=True):
            if o.ok and o.order_id == want:
                tally.ok += 1
            else:
                tally.fail(f"{o.order_id}: {o.status} {o.error}")
    meter.result(f"tanx-async/{mode}", n, c, 0, tally, **extra).emit()


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0] if __doc__ else "burst")
    p.add_argument("--mode", required=True, choices=MODES)
    p.add_argument("--idle", type=float, default=6.0, help="seconds of quiet before an idle burst")
    args = p.parse_args(argv)
    loopback_only(args.url)
    asyncio.run(
        burst(
            args.mode,
            args.url,
            args.n,
            args.concurrency,
            args.token or make_access_token(),
            args.cafile,
            args.idle,
        )
    )
    return 0
