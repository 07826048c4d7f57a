"""Where tanx-async's CPU per cancel goes, layer by layer, against the Python floor.

    .venv/bin/python benchmarks/layers.py [--rounds 8] [--n 5000] [--tls] [--layers floor,sender,...]

A probe for performance work, not a client: it drives tanx-async's private layers directly.
Each layer runs N cancels (after a warm-up) at concurrency 64 in its own child process, against
one fake exchange (latency 0); every round runs all layers back to back, and the figure per layer
is the median over rounds of its CPU per cancel divided by the floor's in the same round.

- ``floor``: ``floor.py``, the least an asyncio client can do.
- ``sender``: the built-in transport alone (``Http11Sender.send``) from 64 worker tasks.
- ``proto``: ``sender`` plus the envelope decode and one ``CancelOutcome`` per order: what any
  library with this transport must do, with no pipeline and no batch engine.
- ``lane``: the same work with no task per cancel: each answer is checked in the protocol
  callback and the next cancel written from there (llhttp, the read timeout, the envelope check
  and one outcome per order kept; no token, rate-limit, deadline or retry handling, no
  fallback, no pacing). A measurement of what a callback-driven batch path could reach, not a
  client: the library's own fast path (``_lane``, what ``cancel_many`` runs) is this idea with
  every rule kept, and the distance between the two rows is what the rules cost.
- ``pipeline``: ``Pipeline.send`` from 64 worker tasks; ``session``: ``session._send``.
- ``cancel_many``: ``session.orders.cancel_many`` (what users call).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

from _common import cpu_seconds, make_access_token
from _harness import BENCH, fake_server, run_child

LAYERS = ("floor", "sender", "proto", "lane", "pipeline", "session", "cancel_many")
CONCURRENCY = 64


async def pool(ids: Iterable[int], one: Callable[[int], Awaitable[Any]]) -> None:
    it = iter(ids)

    async def worker() -> None:
        for oid in it:
            await one(oid)

    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))


async def child(layer: str, url: str, n: int, cafile: str | None) -> dict[str, float]:
    """Run ``layer`` over ids 1..n after a warm-up; the CPU seconds of the measured part."""
    if layer == "floor":
        from floor import bench_floor

        # bench_floor prints its own JSON line (its Meter covers the measured part only).
        await bench_floor(url, n, CONCURRENCY, CONCURRENCY, make_access_token(), cafile)
        return {}
    import ssl

    from tanx_async import AsyncTanxSession
    from tanx_async._constants import CANCEL_PATH
    from tanx_async._convert import CancelEcho
    from tanx_async._envelope import decode_envelope
    from tanx_async._json import dumps
    from tanx_async._transports._http11 import request_bytes
    from tanx_async._transports.native import Http11Sender
    from tanx_async.models import CancelOutcome, queued_outcome

    verify: Any = ssl.create_default_context(cafile=cafile) if cafile else True
    async with AsyncTanxSession(base_url=url, access_token=make_access_token(), verify=verify) as session:
        await session.orders.cancel_many(list(range(10**6, 10**6 + CONCURRENCY)), concurrency=CONCURRENCY)
        pipeline = session._pipeline
        sender, _ = pipeline.start(session._timeout)
        assert isinstance(sender, Http11Sender)
        headers = pipeline._headers(await pipeline.token(), True)
        endpoint = pipeline.base_url + CANCEL_PATH
        timeout = session._timeout
        origin = sender.origin(endpoint)
        outcomes: dict[int, CancelOutcome] = {}

        async def via_sender(oid: int) -> None:
            await sender.send("POST", endpoint, headers, dumps({"order_id": oid}), timeout)

        async def via_proto(oid: int) -> None:
            started = time.monotonic()
            raw = await sender.send("POST", endpoint, headers, b'{"order_id":%d}' % oid, timeout)
            decode_envelope(raw, method="POST", path=CANCEL_PATH)
            outcomes[oid] = queued_outcome(oid, 1, time.monotonic() - started, CancelEcho(raw.content))

        async def via_pipeline(oid: int) -> None:
            await pipeline.send(
                "POST",
                CANCEL_PATH,
                json={"order_id": oid},
                idempotent=True,
                timeout=timeout,
                policy=session._retry,
            )

        async def via_session(oid: int) -> None:
            await session._send("POST", CANCEL_PATH, json={"order_id": oid}, idempotent=True)

        loop = asyncio.get_running_loop()
        #: The lane's connections, taken out of the pool on its first run (it never hands them back).
        conns: list[Any] = []

        async def lane(ids: range) -> None:
            if not conns:
                conns.extend(
                    c for c in (sender._pop_idle(origin.key) for _ in range(CONCURRENCY)) if c is not None
                )
            it = iter(ids)
            finished = loop.create_future()
            left = [len(conns)]

            class Slot:
                """Stands in for the answer's future: the connection hands the answer to it."""

                def __init__(self, conn: Any) -> None:
                    self.conn, self.oid, self.started = conn, 0, 0.0

                def done(self) -> bool:
                    return False

                def cancelled(self) -> bool:
                    return False

                def set_result(self, raw: Any) -> None:
                    body = decode_envelope(raw, method="POST", path=CANCEL_PATH)
                    assert body.get("status") == "success"
                    outcomes[self.oid] = queued_outcome(
                        self.oid, 1, time.monotonic() - self.started, CancelEcho(raw.content)
                    )
                    self.next()

                def next(self) -> None:
                    oid = next(it, None)
                    if oid is None:
                        left[0] -= 1
                        if not left[0]:
                            finished.set_result(None)
                        return
                    conn = self.conn
                    self.oid, self.started = oid, time.monotonic()
                    payload = request_bytes("POST", endpoint, origin, headers, b'{"order_id":%d}' % oid)
                    conn.start(self, payload, "POST", endpoint, 5.0)

            for conn in conns:
                conn.pacer = None
                Slot(conn).next()
            await finished

        ones = {"sender": via_sender, "proto": via_proto, "pipeline": via_pipeline, "session": via_session}
        warm = range(2 * 10**6, 2 * 10**6 + CONCURRENCY)
        if layer == "lane":
            await lane(warm)
        elif layer in ones:
            await pool(warm, ones[layer])
        outcomes.clear()
        u0, s0 = cpu_seconds()
        if layer == "lane":
            await lane(range(1, n + 1))
        elif layer in ones:
            await pool(range(1, n + 1), ones[layer])
        else:
            done = await session.orders.cancel_many(list(range(1, n + 1)), concurrency=CONCURRENCY)
            assert sum(o.ok for o in done) == n
        u1, s1 = cpu_seconds()
        if layer in ("lane", "proto"):
            assert len(outcomes) == n, len(outcomes)
    return {"user_s": u1 - u0, "sys_s": s1 - s0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--n", type=int, default=5000)
    parser.add_argument("--tls", action="store_true")
    parser.add_argument("--layers", default=",".join(LAYERS), help="comma-separated, of " + ", ".join(LAYERS))
    parser.add_argument("--child", choices=LAYERS, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cafile", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        result = asyncio.run(child(args.child, args.url, args.n, args.cafile))
        if result:
            print(json.dumps(result))
        return
    layers = [x for x in args.layers.split(",") if x]
    if "floor" not in layers or any(x not in LAYERS for x in layers) or args.rounds < 1 or args.n < 1:
        parser.error("--layers must name known layers, the floor among them; --rounds and --n positive")
    cpu_us: dict[str, list[float]] = {x: [] for x in layers}
    ratios: dict[str, list[float]] = {x: [] for x in layers}
    with fake_server(0.0, tls=args.tls) as server:
        for rnd in range(args.rounds):
            got: dict[str, float] = {}
            for layer in layers:
                cmd = [sys.executable, str(BENCH / "layers.py"), "--child", layer, "--url", server.url]
                cmd += ["--n", str(args.n), *server.client_args()]
                data = run_child(cmd, timeout=300)
                if "error" in data:
                    print(f"  {layer} round {rnd + 1} failed: {data['error']}", flush=True)
                    continue
                got[layer] = (data["user_s"] + data["sys_s"]) / args.n * 1e6
                cpu_us[layer].append(got[layer])
            if "floor" in got:
                for layer, value in got.items():
                    ratios[layer].append(value / got["floor"])
            print(f"  round {rnd + 1}: " + ", ".join(f"{k} {v:.0f}" for k, v in got.items()), flush=True)
    print(f"\n{'layer':12s} {'CPU / cancel (µs, median)':>26s} {'vs floor (median of rounds)':>28s}")
    for layer in layers:
        if cpu_us[layer] and ratios[layer]:
            print(
                f"{layer:12s} {statistics.median(cpu_us[layer]):26.1f} {statistics.median(ratios[layer]):27.2f}x"
            )
    print(f"({'TLS' if args.tls else 'plain HTTP'}, latency 0, n={args.n}, concurrency {CONCURRENCY})")


if __name__ == "__main__":
    main()
