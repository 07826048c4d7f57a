"""Benchmark driver: cancel orders 1..N at concurrency C with one async client; print one JSON line.

Clients (``--client``):
- ``aiohttp``: raw ``aiohttp.ClientSession`` + ``json.loads``; the reference every ratio uses.
- ``httpx``: ``httpx.AsyncClient`` with its own (httpcore) transport.
- ``httpx-aiohttp``: ``httpx.AsyncClient(transport=httpx_aiohttp.AiohttpTransport())``.
- ``tanx-async``: ``AsyncTanxSession.orders.cancel_many(ids, concurrency=C)`` (default transport:
  the built-in HTTP/1.1 client).
- ``tanx-async-uvloop``: ``tanx-async`` on a uvloop event loop instead of asyncio's own.
- ``tanx-async-iter``: ``AsyncTanxSession.orders.cancel_iter(<generator of ids>, concurrency=C)``;
  the memory scenario (outcomes are counted and dropped, never kept).
- ``tanx-async-trio``: ``cancel_many`` under ``trio.run`` (the default transport there).
- ``floor``: the Python floor (``_floor.py``): a minimal ``asyncio.Protocol`` client, pre-built
  request bytes, Content-Length framing only, orjson; what no general library can beat.

``--cafile`` (https URLs) makes every client trust that CA, verification on. ``--ticker`` runs a
1 ms ticker task beside the measured burst and reports its lag (``_lag.py``; asyncio clients).

The three raw clients share one shape: a fixed pool of C worker tasks pulling ids from one
shared iterator, identical request bytes and identical decoding/validation (``json.loads`` +
envelope check), so the differences are the HTTP stacks. Every response is checked: status 200,
``"status": "success"`` and the echoed id; failures are counted, never ignored.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
import tracemalloc
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator
from typing import Any

from _common import (
    CANCEL_PATH,
    WARMUP_ID_BASE,
    Meter,
    Tally,
    base_parser,
    check_envelope,
    client_ssl,
    die,
    loopback_only,
    make_access_token,
)

CLIENTS = (
    "aiohttp",
    "httpx",
    "httpx-aiohttp",
    "tanx-async",
    "tanx-async-uvloop",
    "tanx-async-iter",
    "tanx-async-trio",
    "floor",
)

OneCancel = Callable[[int, Tally], Awaitable[None]]


async def run_pool(ids: Iterable[int], concurrency: int, one: OneCancel, tally: Tally) -> None:
    """C workers draining one shared iterator (no semaphore, no per-id task)."""
    it = iter(ids)

    async def worker() -> None:
        clock = time.perf_counter
        for order_id in it:  # bounded by the iterator
            started = clock()
            try:
                await one(order_id, tally)
            except Exception as exc:  # counted, never hidden
                tally.fail(f"{type(exc).__name__}: {exc}")
            tally.latencies.append(clock() - started)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


def _body(order_id: int) -> bytes:
    return json.dumps({"order_id": order_id}).encode()


def _validate(status: int, raw: bytes, order_id: int, tally: Tally) -> None:
    if status != 200:
        tally.fail(f"HTTP {status}: {raw[:120]!r}")
        return
    why = check_envelope(raw, order_id, json.loads(raw))
    if why is None:
        tally.ok += 1
    else:
        tally.fail(why)


async def bench_raw(
    client: str, url: str, n: int, c: int, warmup: int, token: str, cafile: str | None
) -> None:
    context = client_ssl(cafile)
    headers = {"Authorization": f"JWT {token}", "Content-Type": "application/json"}
    endpoint = url.rstrip("/") + CANCEL_PATH
    closer: Callable[[], Awaitable[None]]
    one: OneCancel
    if client == "aiohttp":
        import aiohttp

        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=c, ssl=context if context else True), headers=headers
        )

        async def one_aiohttp(order_id: int, tally: Tally) -> None:
            async with session.post(endpoint, data=_body(order_id)) as resp:
                raw = await resp.read()
                _validate(resp.status, raw, order_id, tally)

        one, closer = one_aiohttp, session.close
    elif client in ("httpx", "httpx-aiohttp"):
        import httpx

        limits = httpx.Limits(max_connections=c, max_keepalive_connections=c)
        transport: httpx.AsyncBaseTransport | None = None
        if client == "httpx-aiohttp":
            import httpx_aiohttp

            transport = httpx_aiohttp.AiohttpTransport(limits=limits, verify=context or True)
        hclient = httpx.AsyncClient(
            headers=headers, limits=limits, transport=transport, trust_env=False, verify=context or True
        )

        async def one_httpx(order_id: int, tally: Tally) -> None:
            resp = await hclient.post(endpoint, content=_body(order_id))
            _validate(resp.status_code, resp.content, order_id, tally)

        one, closer = one_httpx, hclient.aclose
    else:
        die(f"unknown raw client {client!r}")
        return
    try:
        warm = Tally()
        await run_pool(range(WARMUP_ID_BASE, WARMUP_ID_BASE + warmup), c, one, warm)
        if warm.failed:
            die(f"warm-up failed: {warm.samples}")
        tally = Tally()
        meter = Meter()
        meter.start()
        await run_pool(range(1, n + 1), c, one, tally)
        meter.stop()
    finally:
        await closer()
    meter.result(client, n, c, warmup, tally).emit()


def _outcome_ok(outcome: Any) -> bool:
    return bool(getattr(outcome, "ok", False))


def _outcome_error(outcome: Any) -> str:
    for attr in ("error", "exception", "message"):
        value = getattr(outcome, attr, None)
        if value is not None:
            return f"{type(value).__name__}: {value}"
    return repr(outcome)[:200]


async def bench_tanx(
    client: str, url: str, n: int, c: int, warmup: int, token: str, trace: bool, cafile: str | None = None
) -> None:
    try:
        from tanx_async import AsyncTanxSession
    except ImportError as exc:
        print(json.dumps({"client": client, "skipped": f"tanx_async not importable: {exc}"}))
        return
    verify = client_ssl(cafile) or True
    async with AsyncTanxSession(base_url=url, access_token=token, verify=verify) as session:
        orders = session.orders
        warm = await orders.cancel_many(list(range(WARMUP_ID_BASE, WARMUP_ID_BASE + warmup)), concurrency=c)
        bad = [o for o in warm if not _outcome_ok(o)]
        if bad:
            die(f"warm-up failed: {[_outcome_error(o) for o in bad[:5]]}")
        tally = Tally()
        meter = Meter()
        extra: dict[str, Any] = {}
        if client != "tanx-async-iter":
            ids = list(range(1, n + 1))
            meter.start()
            outcomes = await orders.cancel_many(ids, concurrency=c)
            meter.stop()
            tally.latencies = [float(getattr(o, "elapsed", 0.0)) for o in outcomes]
            for want, o in zip(ids, outcomes, strict=False):
                if not _outcome_ok(o):
                    tally.fail(_outcome_error(o))
                elif getattr(o, "order_id", want) != want:
                    tally.fail(f"outcome for {getattr(o, 'order_id', None)} where {want} expected")
                else:
                    tally.ok += 1
            if len(outcomes) != n:
                tally.fail(f"{len(outcomes)} outcomes for {n} ids")
        else:

            def gen() -> Iterator[int]:
                yield from range(1, n + 1)

            if trace:
                tracemalloc.start()
            meter.start()
            stream: AsyncIterator[Any] = orders.cancel_iter(gen(), concurrency=c)
            id_sum = 0
            async for o in stream:
                id_sum += int(getattr(o, "order_id", 0))
                if _outcome_ok(o):
                    tally.ok += 1
                else:
                    tally.fail(_outcome_error(o))
            meter.stop()
            # outcomes arrive in completion order: check the ids as a sum, in O(1) memory
            if id_sum != n * (n + 1) // 2:
                tally.fail(f"outcome ids sum to {id_sum}, expected {n * (n + 1) // 2}")
            if trace:
                _, peak = tracemalloc.get_traced_memory()
                tracemalloc.stop()
                extra["tracemalloc_peak_kb"] = peak // 1024
    meter.result(client, n, c, warmup, tally, **extra).emit()


def main(argv: list[str] | None = None) -> int:
    p = base_parser(__doc__.splitlines()[0] if __doc__ else "driver")
    p.add_argument("--client", required=True, choices=CLIENTS)
    p.add_argument("--tracemalloc", action="store_true", help="tanx-async-iter: Python heap peak")
    p.add_argument("--ticker", action="store_true", help="measure a 1 ms ticker's lag beside the burst")
    p.add_argument("--gc-freeze", action="store_true", help="gc.freeze() before the measured burst")
    args = p.parse_args(argv)
    loopback_only(args.url)
    token = args.token or make_access_token()
    t0 = time.perf_counter()
    if args.ticker:
        from _lag import Ticker

        Meter.companion = Ticker()
    Meter.freeze_gc = args.gc_freeze
    if args.client.startswith("tanx-async"):
        coro = bench_tanx(
            args.client,
            args.url,
            args.n,
            args.concurrency,
            args.warmup,
            token,
            args.tracemalloc,
            args.cafile,
        )
    elif args.client == "floor":
        from _floor import bench_floor

        coro = bench_floor(args.url, args.n, args.concurrency, args.warmup, token, args.cafile)
    else:
        coro = bench_raw(args.client, args.url, args.n, args.concurrency, args.warmup, token, args.cafile)
    if args.client == "tanx-async-trio":
        import trio

        async def under_trio() -> None:
            await coro

        trio.run(under_trio)
    elif args.client == "tanx-async-uvloop":
        import uvloop

        uvloop.run(coro)
    else:
        asyncio.run(coro)
    print(f"driver {args.client}: total {time.perf_counter() - t0:.2f}s", file=sys.stderr)
    return 0
