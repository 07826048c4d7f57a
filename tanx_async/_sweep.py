"""The dead man's switch's sweep: cancel every open order of the account (or of some markets)
until a listing finds none, logging every outcome.

Both sides of the switch run it: the watchdog process when it fires, the guarded session when its
block is left by an exception. Each round lists the open orders (``pending`` and ``wait``; the
whole account, or each covered market), then calls ``orders.cancel_all`` (with confirmation and
its own settling pass) for every market that has some; the next round's listing is the check. At
most ``DEADMAN_ROUNDS`` rounds, within ``deadline`` seconds (and one last listing within
``DEADMAN_VERIFY`` seconds when the deadline struck after a cancel). Nothing is ok without
evidence: the sweep is ``clear`` only when a listing, made after the last cancel, found nothing.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Collection
from typing import TYPE_CHECKING

import anyio
import attrs

from . import _constants as C
from ._deadline import within
from ._errors import TanxError, brief
from .models import CancelOutcome, OrderState

if TYPE_CHECKING:
    from ._session import AsyncTanxSession

__all__ = ["Sweep", "open_orders", "sweep"]

log = logging.getLogger("tanx_async.deadman")


@attrs.define
class Sweep:
    """What a sweep did: the last outcome of each order it cancelled (by id), and what its last
    listing found open (None: no listing after the last cancel succeeded, nothing is known)."""

    outcomes: dict[int, CancelOutcome] = attrs.field(factory=dict)
    markets: dict[int, str] = attrs.field(factory=dict)
    left: dict[int, str] | None = None
    rounds: int = 0

    @property
    def clear(self) -> bool:
        """A listing after the last cancel found nothing the switch covers open."""
        return self.left is not None and not self.left


async def open_orders(session: AsyncTanxSession, markets: Collection[str] | None) -> dict[int, str]:
    """The open orders (``pending``, then ``wait``) the switch covers: id -> market."""
    found: dict[int, str] = {}
    for market in [None] if markets is None else sorted(markets):
        for state in (OrderState.PENDING, OrderState.WAIT):
            async for order in session.orders.iter(market=market, state=state):
                if markets is None or order.market in markets:
                    found[order.id] = order.market
    return found


async def sweep(
    session: AsyncTanxSession, markets: Collection[str] | None, deadline: float, who: str
) -> Sweep:
    """Cancel until nothing the switch covers is listed open (see the module docstring); ``who``
    names the side in the log lines. Never raises a ``TanxError``: failures are logged."""
    until = time.monotonic() + deadline
    result = Sweep()
    for round_ in range(C.DEADMAN_ROUNDS + 1):
        left = until - time.monotonic()
        if left <= 0:
            log.warning("%s: the deadline (%.1f s) passed", who, deadline)
            break
        try:
            with within(left):
                found = await open_orders(session, markets)
        except TanxError as exc:
            log.warning("%s: listing the open orders failed: %s", who, brief(exc))
            result.left = None
            await anyio.sleep(min(C.DEADMAN_PAUSE, max(until - time.monotonic(), 0)))
            continue
        result.left = found
        result.markets.update(found)
        if not found or round_ == C.DEADMAN_ROUNDS:
            break
        result.rounds += 1
        by_market = Counter(found.values())
        log.warning(
            "%s: round %d: cancelling %d open orders (%s)",
            who,
            result.rounds,
            len(found),
            ", ".join(f"{m}: {n}" for m, n in sorted(by_market.items())),
        )
        result.left = None  # nothing is known after a cancel until the next listing
        left = max(until - time.monotonic(), 0.001)
        async with anyio.create_task_group() as tg:
            for market in sorted(by_market):
                tg.start_soon(_cancel_market, session, market, left, result, who)
        if round_ and time.monotonic() < until:
            await anyio.sleep(min(C.DEADMAN_PAUSE, until - time.monotonic()))
    if result.left is None and result.rounds:
        # The deadline struck after a cancel: one more listing, on its own short bound, so that
        # the log says what is open rather than nothing.
        try:
            with within(C.DEADMAN_VERIFY):
                result.left = await open_orders(session, markets)
        except TanxError as exc:
            log.warning("%s: listing the open orders failed: %s", who, brief(exc))
    _report(result, who)
    return result


async def _cancel_market(
    session: AsyncTanxSession, market: str, deadline: float, result: Sweep, who: str
) -> None:
    told: list[CancelOutcome] = []
    try:
        # Each outcome is logged as it is decided (``on_outcome``): none is lost when a later
        # listing fails or the sweep's deadline cuts the call short.
        await session.orders.cancel_all(market, deadline=deadline, confirm=True, on_outcome=told.append)
    except TanxError as exc:
        log.warning("%s: cancel_all(%r) failed: %s", who, market, brief(exc))
    finally:
        _log_outcomes(told, market, result, who)


def _log_outcomes(outcomes: list[CancelOutcome], market: str, result: Sweep, who: str) -> None:
    for outcome in outcomes:
        result.outcomes[outcome.order_id] = outcome
        result.markets.setdefault(outcome.order_id, market)
        if outcome.ok:
            log.info("%s: order %d (%s): %s", who, outcome.order_id, market, outcome.status.value)
        else:
            error = brief(outcome.error) if outcome.error is not None else "no error recorded"
            log.warning(
                "%s: order %d (%s): %s: %s", who, outcome.order_id, market, outcome.status.value, error
            )


def _report(result: Sweep, who: str) -> None:
    counts = Counter(o.status.value for o in result.outcomes.values())
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "none needed"
    if result.left is None:
        log.error(
            "%s: COULD NOT VERIFY what is still open after %d round(s) (outcomes: %s): check the account",
            who,
            result.rounds,
            summary,
        )
    elif result.left:
        for oid, market in sorted(result.left.items()):
            # Each by name, with what it is: open (a cancel never reached it, or its market's
            # listing failed before one could be sent).
            log.error("%s: order %d (%s): STILL OPEN", who, oid, market)
        by_market = ", ".join(f"{m}: {n}" for m, n in sorted(Counter(result.left.values()).items()))
        log.error(
            "%s: STILL OPEN after %d round(s): %d orders (%s); outcomes: %s",
            who,
            result.rounds,
            len(result.left),
            by_market,
            summary,
        )
    else:
        log.warning(
            "%s: nothing the switch covers is open after %d round(s); outcomes: %s",
            who,
            result.rounds,
            summary,
        )
