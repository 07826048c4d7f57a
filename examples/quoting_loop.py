#!/usr/bin/env python3
"""A quoting loop: every tick, pull last tick's quotes (now stale) off the book, then quote again.

The cancels go through ``cancel_iter`` with a deadline shorter than the tick, so one slow or
failing cancel never stalls the loop: outcomes arrive as they complete, an order whose cancel
failed (or whose fate is unknown, or which the deadline skipped) is carried over and cancelled
again next tick, and the loop keeps ticking. At the end it sweeps its own quotes once more and
exits 0 if none is left open, 1 otherwise.

tanx-async cancels orders, it does not place them (tanX order placement is signed with your
Stark key, which this library does not handle). So this program runs against the sandbox
exchange, which it starts on a loopback port, and "places" quotes by writing them into the
sandbox directly (``SandboxPlacer``): swap in your own placement code for the real exchange.
``--fail-rate`` makes that share of cancel requests fail with a 5xx (retries are off) to show the
loop riding through errors.

    python examples/quoting_loop.py --ticks 20 --tick 0.5 --fail-rate 0.2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Awaitable, Callable

import anyio
import attrs

from tanx_async import AsyncTanxSession
from tanx_async.testing import Faults, SandboxExchange, SandboxServer

#: Places this tick's quotes and returns their order ids.
Placer = Callable[[int], Awaitable[list[int]]]


@attrs.define
class Tally:
    """What the loop did, for the report (and for tests)."""

    ticks: int = 0
    placed: int = 0
    pulled: int = 0
    failed: int = 0
    #: Quotes whose cancel has not succeeded yet (carried to the next tick).
    carried: set[int] = attrs.field(factory=set)


async def pull(session: AsyncTanxSession, order_ids: set[int], deadline: float, tally: Tally) -> None:
    """Cancel ``order_ids``; whatever is not ok within ``deadline`` stays in ``tally.carried``."""
    tally.carried |= order_ids
    batch = session.orders.cancel_iter(sorted(tally.carried), deadline=deadline)
    async with contextlib.aclosing(batch) as outcomes:
        async for outcome in outcomes:
            if outcome.ok:
                tally.pulled += 1
                tally.carried.discard(outcome.order_id)
            else:
                tally.failed += 1


async def quote(
    session: AsyncTanxSession, place: Placer, *, ticks: int, tick: float, deadline: float
) -> Tally:
    """Run ``ticks`` ticks of ``tick`` seconds each, then sweep; the cancels of a tick get
    ``deadline`` seconds (keep it below ``tick``)."""
    tally = Tally()
    live: set[int] = set()
    for n in range(ticks):
        started = anyio.current_time()
        await pull(session, live, deadline, tally)  # bounded by the deadline, whatever happens
        live = set(await place(n))
        tally.placed += len(live)
        tally.ticks += 1
        print(f"tick {n}: {len(live)} quotes up, {len(tally.carried)} stale still open", flush=True)
        await anyio.sleep_until(started + tick)
    for _ in range(3):  # the final sweep: a few rounds, carried-over cancels included
        await pull(session, live, deadline, tally)
        live = set()
        if not tally.carried:
            break
    return tally


@attrs.define
class SandboxPlacer:
    """Stands in for real order placement: writes ``per_tick`` quotes per tick into the sandbox."""

    exchange: SandboxExchange
    uid: str
    per_tick: int = 6

    async def __call__(self, tick: int) -> list[int]:
        markets = ("btcusdc", "ethusdc")
        return [
            self.exchange.add_order(self.uid, market=markets[i % 2], side="buy" if i % 4 < 2 else "sell")
            for i in range(self.per_tick)
        ]


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Quote, pull stale quotes every tick (against the sandbox).")
    parser.add_argument("--ticks", type=int, default=10)
    parser.add_argument("--tick", type=float, default=0.5, help="seconds per tick")
    parser.add_argument("--deadline", type=float, default=None, help="cancel deadline (default: tick / 2)")
    parser.add_argument("--fail-rate", type=float, default=0.0, help="share of cancels answered 5xx")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args(argv)


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    faults = Faults(seed=args.seed, error_rate=args.fail_rate, only_paths=("/sapi/v1/orders/cancel/",))
    exchange = SandboxExchange(seed=args.seed, faults=faults, cancel_delay=0)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    async with (
        SandboxServer(exchange) as server,
        AsyncTanxSession(
            base_url=server.url, access_token=access, refresh_token=refresh, max_retries=0
        ) as session,
    ):
        tally = await quote(
            session,
            SandboxPlacer(exchange, uid),
            ticks=args.ticks,
            tick=args.tick,
            deadline=args.deadline if args.deadline is not None else args.tick / 2,
        )
    still_open = [o.id for o in exchange.orders_of(uid) if o.state in ("wait", "pending")]
    print(
        f"{tally.ticks} ticks, {tally.placed} quotes placed, {tally.pulled} pulled, "
        f"{tally.failed} cancels failed and retried, {len(still_open)} left open"
    )
    return 1 if still_open else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
