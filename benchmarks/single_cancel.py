"""Latency of one ``session.orders.cancel`` against the in-process sandbox and over loopback.

    python benchmarks/single_cancel.py [--n 500]

In-process: ``httpx.ASGITransport`` straight into the sandbox app (no socket). Loopback: the
sandbox's own HTTP server on 127.0.0.1 with the default transport. Prints median and p99 in
microseconds. Sequential cancels, so this is per-request latency, not throughput.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx

from tanx_async import AsyncTanxSession
from tanx_async.testing import SandboxExchange, SandboxServer


async def _timed(session: AsyncTanxSession, ids: list[int]) -> list[float]:
    samples = []
    for oid in ids:
        started = time.perf_counter()
        await session.orders.cancel(oid)
        samples.append(time.perf_counter() - started)
    return samples


def _report(name: str, samples: list[float]) -> None:
    samples.sort()
    p99 = samples[min(len(samples) - 1, int(len(samples) * 0.99))]
    print(
        f"{name:>10}: n={len(samples)} median {statistics.median(samples) * 1e6:.0f} us, p99 {p99 * 1e6:.0f} us"
    )


async def main(n: int) -> None:
    exchange = SandboxExchange(seed=1, cancel_delay=0)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    warm, ids = exchange.seed_orders(uid, 50), exchange.seed_orders(uid, n)
    transport = httpx.ASGITransport(app=exchange.app)
    async with (
        httpx.AsyncClient(transport=transport) as client,
        AsyncTanxSession(
            base_url="http://localhost", access_token=access, refresh_token=refresh, http_client=client
        ) as s,
    ):
        await _timed(s, warm)
        _report("in-process", await _timed(s, ids))
    warm, ids = exchange.seed_orders(uid, 50), exchange.seed_orders(uid, n)
    with SandboxServer(exchange) as server:
        async with AsyncTanxSession(base_url=server.url, access_token=access, refresh_token=refresh) as s:
            await _timed(s, warm)
            _report("loopback", await _timed(s, ids))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    asyncio.run(main(parser.parse_args().n))
