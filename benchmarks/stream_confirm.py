"""Confirmed cancels, push against poll: wall time and requests of ``cancel_many(confirm=True)``.

Against the sandbox exchange (``tanx_async.testing``) on a loopback socket, which is the only
server here that speaks the private WebSocket stream. The sandbox runs in a thread of this same
process (its HTTP/1.1 server is pure Python), so it shares the GIL and the core with the client:
wall times are for comparing the two modes within one run, not absolute speeds. Each repeat uses
a fresh exchange seeded with N resting orders; a queued cancel takes effect ``--cancel-delay``
seconds after it was accepted (tanX queues cancellations).

    .venv/bin/python benchmarks/stream_confirm.py            # N=1000, 3 repeats, ~1 minute
    .venv/bin/python benchmarks/stream_confirm.py --write    # ... and update RESULTS.md's section
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import anyio
from _common import write_section

from tanx_async import AsyncTanxSession, CancelStatus
from tanx_async.testing import SandboxExchange, SandboxServer

RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- stream-confirm:begin -->", "<!-- stream-confirm:end -->"


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("-r", "--repeats", type=int, default=3)
    parser.add_argument("--cancel-delay", type=float, default=0.05)
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    args = parser.parse_args()
    rows = []
    runs: dict[str, list[dict[str, Any]]] = {"poll": [], "stream": []}
    for repeat in range(args.repeats):
        for mode in runs:  # interleaved, so both modes see the same background load
            result = anyio.run(one_run, args.n, mode, args.cancel_delay, repeat + 1)
            runs[mode].append(result)
            print(
                f"{mode:6} run {repeat + 1}: {result['wall']:.2f} s, {result['requests']} requests, "
                f"{result['lookups']} look-ups, {dict(result['statuses'])}",
                file=sys.stderr,
            )
    for mode, results in runs.items():
        ok = sum(r["cancelled"] == args.n for r in results)
        rows.append(
            f"| {mode} | {args.n} | {statistics.median(r['wall'] for r in results):.2f} "
            f"| {statistics.median(r['requests'] for r in results):,.0f} "
            f"| {statistics.median(r['cancels'] for r in results):,.0f} "
            f"| {statistics.median(r['lookups'] for r in results):,.0f} "
            f"| {statistics.median(r['stream'] for r in results):,.0f} "
            f"| {ok}/{len(results)} |"
        )
    poll = statistics.median(r["wall"] for r in runs["poll"])
    push = statistics.median(r["wall"] for r in runs["stream"])
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    section = "\n".join(
        [
            BEGIN,
            "## Confirmed cancels: push against poll (`benchmarks/stream_confirm.py`)",
            "",
            f"Generated {datetime.now(timezone.utc).isoformat(timespec='seconds')} by "
            f"`python benchmarks/stream_confirm.py -n {args.n} -r {args.repeats} "
            f"--cancel-delay {args.cancel_delay}` ({args.repeats} repeats, medians; load average "
            f"{load}). `cancel_many(ids, confirm=True)` against the sandbox exchange on loopback "
            "(served from a thread of the same process: it shares the GIL and the core with the "
            "client, so compare the rows, not absolute speeds); a queued cancel takes effect "
            f"{args.cancel_delay * 1000:.0f} ms after it was accepted. `poll`: "
            '`confirm_with="poll"`, one look-up per order (or more) with backoff; `stream`: '
            '`confirm_with="stream"`, confirmed by the private WebSocket stream. Requests counted '
            "from the sandbox's request log (the stream's handshake counts as one).",
            "",
            "| confirm_with | N | median wall (s) | requests | cancels | GET look-ups | stream handshakes | runs all cancelled |",
            "|---|---|---|---|---|---|---|---|",
            *rows,
            "",
            f"Push needs {push / poll:.2f}x the wall time of polling here and no look-ups.",
            END,
        ]
    )
    print(section)
    if args.write:
        write_section(RESULTS, section, BEGIN, END)


if __name__ == "__main__":
    main()
