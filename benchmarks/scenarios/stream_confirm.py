"""Scenario ``stream-confirm``: confirmed cancels, push against poll: wall time and requests of
``cancel_many(confirm=True)``.

Against the sandbox exchange (``tanx_async.testing``) on a loopback socket, which is the only
server here that speaks the private WebSocket stream. The sandbox runs in a thread of ``run.py``'s
process (its HTTP/1.1 server is pure Python), so it shares the GIL and the core with the client:
wall times are for comparing the two modes within one run, not absolute speeds. Each repeat uses
a fresh exchange seeded with N resting orders; a queued cancel takes effect 50 ms after it was
accepted (tanX queues cancellations).
"""

from __future__ import annotations

import statistics
import time
from collections import Counter
from typing import Any

import anyio

from scenarios._base import Context, Measured, section, stamp
from tanx_async import AsyncTanxSession, CancelStatus
from tanx_async.testing import SandboxExchange, SandboxServer

CANCEL_DELAY = 0.05


async def one_run(n: int, mode: str, cancel_delay: float, seed: int) -> dict[str, Any]:
    exchange = SandboxExchange(seed=seed, cancel_delay=cancel_delay)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, n)
    async with (
        SandboxServer(exchange) as server,
        AsyncTanxSession(base_url=server.url, access_token=access, refresh_token=refresh) as session,
    ):
        started = time.perf_counter()
        outcomes = await session.orders.cancel_many(ids, confirm=True, confirm_with=mode)  # type: ignore[arg-type]
        wall = time.perf_counter() - started
    requests = list(exchange.requests)
    return {
        "wall": wall,
        "cancelled": sum(o.status is CancelStatus.CANCELLED for o in outcomes),
        "requests": len(requests),
        "cancels": sum(r.path == "/sapi/v1/orders/cancel/" for r in requests),
        "lookups": sum(r.method == "GET" and r.path.startswith("/sapi/v1/orders/") for r in requests),
        "stream": sum(r.path == "/private" for r in requests),
        "statuses": Counter(o.status.value for o in outcomes),
    }


def measure(ctx: Context) -> Measured:
    n, repeats, delay = (200 if ctx.quick else 1000), ctx.rounds(3), CANCEL_DELAY
    rows = []
    runs: dict[str, list[dict[str, Any]]] = {"poll": [], "stream": []}
    for repeat in range(repeats):
        for mode in runs:  # interleaved, so both modes see the same background load
            result = anyio.run(one_run, n, mode, delay, repeat + 1)
            runs[mode].append(result)
            ctx.log(
                f"  stream-confirm {mode} run {repeat + 1}: {result['wall']:.2f} s, {result['requests']} requests, "
                f"{result['lookups']} look-ups, {dict(result['statuses'])}"
            )
    for mode, results in runs.items():
        ok = sum(r["cancelled"] == n for r in results)
        rows.append(
            f"| {mode} | {n} | {statistics.median(r['wall'] for r in results):.2f} "
            f"| {statistics.median(r['requests'] for r in results):,.0f} "
            f"| {statistics.median(r['cancels'] for r in results):,.0f} "
            f"| {statistics.median(r['lookups'] for r in results):,.0f} "
            f"| {statistics.median(r['stream'] for r in results):,.0f} "
            f"| {ok}/{len(results)} |"
        )
    poll = statistics.median(r["wall"] for r in runs["poll"])
    push = statistics.median(r["wall"] for r in runs["stream"])
    lines = [
        "## Confirmed cancels: push against poll (`run.py --scenarios stream-confirm`)",
        "",
        f"{stamp()}; N={n}, {repeats} repeats, medians. `cancel_many(ids, confirm=True)` against the sandbox exchange on loopback "
        "(served from a thread of the same process: it shares the GIL and the core with the "
        "client, so compare the rows, not absolute speeds); a queued cancel takes effect "
        f"{delay * 1000:.0f} ms after it was accepted. `poll`: "
        '`confirm_with="poll"`, one look-up per order (or more) with backoff; `stream`: '
        '`confirm_with="stream"`, confirmed by the private WebSocket stream. Requests counted '
        "from the sandbox's request log (the stream's handshake counts as one).",
        "",
        "| confirm_with | N | median wall (s) | requests | cancels | GET look-ups | stream handshakes | runs all cancelled |",
        "|---|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"Push needs {push / poll:.2f}x the wall time of polling here and no look-ups.",
    ]
    invalid = any(r["cancelled"] != n for results in runs.values() for r in results)
    return Measured(section("stream-confirm", lines), invalid=invalid)
