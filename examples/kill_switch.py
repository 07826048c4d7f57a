#!/usr/bin/env python3
"""A market maker's kill switch: pull every resting order off the book, in every market.

It arms itself, then waits for one of three things: SIGINT (Ctrl-C), SIGTERM (your process
supervisor, ``kill``), or a risk trigger: more open orders than ``--max-open-orders`` (a quoting
loop gone wrong) or the file ``--trigger-file`` appearing (an operator's panic button). Then it
cancels every open order of the account with confirmation (``cancel_many(confirm=True)``, bounded
by ``--deadline``), lists the open orders again, prints a report, and exits

- 0 when nothing is left open,
- 1 when an order is still open, or what is open could not be checked: read the report and act,
- 130 or 143 when a second SIGINT or SIGTERM stopped the cancelling: the report still has a line
  for every order, each as known (``queued``, ``unknown`` under way, ``skipped`` never sent).

The report has one line per order, then the counts and what is still open.

While it waits and while it cancels, a dead man's switch is armed
(``session.orders.dead_man_switch``, ``--dead-man`` seconds, default 5; 0 turns it off): if this
process is killed (SIGKILL, the OOM killer), crashes or hangs, its watchdog process cancels every
open order of the account all the same. ``--watchdog-log`` names the watchdog's log file (default:
this process's stderr).

``--now`` skips the waiting and fires at once. Credentials come from the environment, never the
command line: ``TANX_ACCESS_TOKEN`` and ``TANX_REFRESH_TOKEN``; ``--base-url`` (default ``TANX_BASE_URL``, as
for the CLI, else mainnet).

    TANX_ACCESS_TOKEN=... TANX_REFRESH_TOKEN=... python examples/kill_switch.py --max-open-orders 200
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, nullcontext
from pathlib import Path

import anyio

from tanx_async import AsyncTanxSession, CancelOutcome, OrderState, TanxError


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Cancel every open order on a signal or a risk trigger.")
    parser.add_argument(
        "--base-url",
        default=os.environ.get("TANX_BASE_URL") or None,
        help="exchange URL (default: $TANX_BASE_URL, else mainnet)",
    )
    parser.add_argument("--max-open-orders", type=int, default=None, help="fire when more are open")
    parser.add_argument("--trigger-file", type=Path, default=None, help="fire when this file exists")
    parser.add_argument("--poll", type=float, default=1.0, help="seconds between risk checks")
    parser.add_argument("--deadline", type=float, default=30.0, help="seconds for the whole cancel")
    parser.add_argument("--now", action="store_true", help="fire at once")
    parser.add_argument(
        "--dead-man",
        type=float,
        default=5.0,
        help="seconds of silence after which a watchdog process cancels everything (0: off)",
    )
    parser.add_argument("--watchdog-log", type=Path, default=None, help="the watchdog's log file")
    return parser.parse_args(argv)


async def open_order_ids(session: AsyncTanxSession) -> dict[int, str]:
    """Every open order of the account (all markets): id -> market."""
    found: dict[int, str] = {}
    for state in (OrderState.WAIT, OrderState.PENDING):
        async for order in session.orders.iter(state=state):
            found[order.id] = order.market
    return found


async def risk_trigger(session: AsyncTanxSession, args: argparse.Namespace) -> str:
    """Poll the risk checks; return the reason once one fires."""
    while True:
        if args.trigger_file is not None and args.trigger_file.exists():
            return f"trigger file {args.trigger_file} exists"
        if args.max_open_orders is not None:
            count = len(await open_order_ids(session))
            if count > args.max_open_orders:
                return f"{count} open orders > limit {args.max_open_orders}"
        await anyio.sleep(args.poll)


async def wait_for_reason(
    session: AsyncTanxSession, args: argparse.Namespace, signals: AsyncIterator[int]
) -> str:
    """Whichever comes first: SIGINT/SIGTERM or the risk trigger."""
    reason = ""
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal reason
            async for signum in signals:
                reason = f"received {signal.Signals(signum).name}"
                tg.cancel_scope.cancel()
                return

        async def on_risk() -> None:
            nonlocal reason
            reason = await risk_trigger(session, args)
            tg.cancel_scope.cancel()

        tg.start_soon(on_signal)
        tg.start_soon(on_risk)
        print("armed: waiting for SIGINT, SIGTERM or a risk trigger", flush=True)
    return reason


async def flatten(
    session: AsyncTanxSession, deadline: float, signals: AsyncIterator[int]
) -> tuple[list[CancelOutcome], dict[int, str] | None, str | None]:
    """Cancel every open order with confirmation; return the outcomes, what is still open (None
    when that could not be checked: then nothing may be assumed) and the signal that stopped
    the firing, if one did.

    ``deadline`` bounds the cancels; the listings before and after get as long again. Every
    order gets its outcome even when the firing is cut short (a second SIGINT or SIGTERM, the
    deadline): ``on_outcome`` is told each one, the unanswered ``unknown``, the unsent ``skipped``.
    """
    told: dict[int, CancelOutcome] = {}
    left: dict[int, str] | None = None
    stopped_by: str | None = None
    async with anyio.create_task_group() as tg:

        async def on_signal() -> None:
            nonlocal stopped_by
            async for signum in signals:
                stopped_by = signal.Signals(signum).name
                tg.cancel_scope.cancel()
                return

        tg.start_soon(on_signal)
        with anyio.move_on_after(deadline * 2):
            try:
                open_now = await open_order_ids(session)
                print(f"cancelling {len(open_now)} open orders", flush=True)
                await session.orders.cancel_many(
                    list(open_now),
                    confirm=True,
                    deadline=deadline,
                    on_outcome=lambda outcome: told.__setitem__(outcome.order_id, outcome),
                )
                left = await open_order_ids(session)
            except TanxError as exc:
                print(f"listing the open orders failed: {exc}", flush=True)
        tg.cancel_scope.cancel()
    return list(told.values()), left, stopped_by


def dead_man_switch(
    session: AsyncTanxSession, args: argparse.Namespace
) -> AbstractAsyncContextManager[object]:
    """Armed while inside: should this process die or hang, its watchdog cancels everything."""
    if args.dead_man <= 0:
        return nullcontext()
    return session.orders.dead_man_switch(args.dead_man, log_file=args.watchdog_log)


def report(outcomes: list[CancelOutcome], left: dict[int, str] | None) -> int:
    """One line per order, then the counts and what is still open."""
    for outcome in outcomes:
        error = f": {outcome.error}" if outcome.error is not None and not outcome.ok else ""
        print(f"  order {outcome.order_id}: {outcome.status.value}{error}")
    counts = Counter(outcome.status.value for outcome in outcomes)
    print(f"cancelled: {len(outcomes)} orders: " + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))
    if left is None:
        print("COULD NOT VERIFY what is still open: check the account by hand")
        return 1
    if left:
        by_market = ", ".join(f"{m}: {n}" for m, n in sorted(Counter(left.values()).items()))
        print(f"STILL OPEN: {len(left)} orders ({by_market})")
        return 1
    print("nothing left open")
    return 0


async def main(argv: list[str]) -> int:
    args = parse_args(argv)
    access, refresh = os.environ.get("TANX_ACCESS_TOKEN"), os.environ.get("TANX_REFRESH_TOKEN")
    if not access:
        print("set TANX_ACCESS_TOKEN (and TANX_REFRESH_TOKEN) in the environment", file=sys.stderr)
        return 2
    # The receiver stays open until the end: a signal while cancelling stops the firing, and
    # every order is still reported, each as known (then the exit says which signal).
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with (
            AsyncTanxSession(base_url=args.base_url, access_token=access, refresh_token=refresh) as session,
            dead_man_switch(session, args),
        ):
            reason = "--now" if args.now else await wait_for_reason(session, args, signals)
            print(f"firing: {reason}", flush=True)
            outcomes, left, stopped_by = await flatten(session, args.deadline, signals)
    code = report(outcomes, left)
    if stopped_by is not None:
        print(f"interrupted by {stopped_by}", flush=True)
        return 128 + signal.Signals[stopped_by].value
    return code


if __name__ == "__main__":
    sys.exit(anyio.run(main, sys.argv[1:]))
