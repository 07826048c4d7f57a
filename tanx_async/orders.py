"""``session.orders``: cancel one, cancel many, cancel a market, and find orders.

tanX *queues* cancellations: a successful cancel means "queued", and the order may still say
``state == "wait"`` for a moment. Pass ``confirm=True`` to the batch methods to wait until the
exchange reports ``cancel``.
"""

from __future__ import annotations

import builtins
import functools
import os
import time
from collections.abc import AsyncGenerator, Callable, Collection, Iterable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

import attrs

from . import _constants as C
from . import _validate as V
from ._attempts import Attempts
from ._batch import Batch
from ._cancel import cancel_one, fetch_order
from ._confirm import CONFIRM_WITH, ConfirmWith, open_confirmer
from ._convert import structure
from ._deadline import within
from ._errors import (
    APIStatusError,
    CancelNotConfirmedError,
    CancelOutcomeUnknownError,
    SessionClosedError,
    TanxError,
    brief,
)
from ._instrument import operation
from ._iterate import CancelIterator, collect_all
from ._log import logger
from ._memory import CancelMemory
from .models import CancelOutcome, CancelStatus, Order, OrderState, OrderType, Side

if TYPE_CHECKING:
    from ._deadman import DeadManSwitch
    from ._session import AsyncTanxSession

__all__ = ["Orders"]


class Orders:
    """Order operations of one session (``session.orders``)."""

    def __init__(self, session: AsyncTanxSession, cancels: CancelMemory | None = None) -> None:
        self._session = session
        #: The orders this session (and all its ``with_options`` views) recently got a 2xx
        #: cancel answer for: evidence for the cancel engine (``_cancel``), not the HTTP layer's.
        self._cancels = CancelMemory() if cancels is None else cancels

    # -- one order ------------------------------------------------------------------------

    async def cancel(
        self,
        order_id: int,
        *,
        deadline: float | None = None,
        confirm: bool = False,
        confirm_timeout: float = C.CONFIRM_TIMEOUT,
        confirm_with: ConfirmWith = "auto",
    ) -> Order:
        """Cancel one order; returns the order as the exchange reported it.

        Success means *queued for cancellation*: the returned order may still say
        ``state == "wait"`` (pass ``confirm=True`` to wait for ``cancel``). It is
        returned only on evidence (see "What counts as success" in docs/cancelling.md): a 2xx answer,
        a look-up showing the order ``cancel``, or this session's own 2xx cancel of the same
        order moments earlier; never because of the words of a refusal. When the exchange
        acknowledges with an empty payload (``{}``, seen in the wild), the order is fetched so
        that what you get is the exchange's current view. If that look-up fails, its error
        (``method == "GET"``) is raised although the cancel itself was queued.

        Raises the exchange's error when the cancel is refused (``NotFoundError`` for an unknown
        order, ``BadRequestError`` for one already closed or refused for any other reason), and
        ``CancelOutcomeUnknownError`` when the cancel may have been processed (no answer came
        back, or an error answer that may hide a processed cancel) but a look-up did not settle
        it. ``order_id`` must be an int from 1 to 2**63-1 (checked before sending).

        ``deadline`` (seconds, default the session's ``deadline``) bounds the whole operation:
        the cancel with its retries and the look-up that settles it. When it strikes after the
        cancel left, the outcome is unknown (``CancelOutcomeUnknownError``).

        ``confirm=True`` waits as ``cancel_many`` does for each order (the same engine:
        ``confirm_timeout`` is added to the deadline, ``confirm_with`` chooses push or polling)
        until the exchange reports the order ``cancel``, and returns it then. Not seen ``cancel``
        in time, or filled (``done``) before the cancel took effect: ``CancelNotConfirmedError``
        (its ``order``: the order as last seen).
        """
        oid = V.order_id(order_id)
        seconds = self._session._operation(deadline)
        if confirm and seconds is not None:  # as in a batch: the wait for the confirmation on top
            seconds += V.seconds("confirm_timeout", confirm_timeout)
        with within(seconds), operation(self._session._pipeline, "cancel", order_id=oid) as op:
            if confirm:
                result = await self._confirmed(oid, deadline, confirm_timeout, confirm_with)
            else:
                result = await cancel_one(self._session, oid)
            if op is not None:
                op.outcomes((result,))
            if result.status in (CancelStatus.QUEUED, CancelStatus.CANCELLED) and result.ok:
                if result.order is not None:
                    return result.order
                return await fetch_order(self._session, oid)
        error = result.error
        if result.status == CancelStatus.UNKNOWN and error is not None:
            raise CancelOutcomeUnknownError(
                f"order {oid}: {_unknown_reason(error, result.order)}",
                order_id=oid,
                order=result.order,
                cause=error,
            ) from error
        if error is None:  # pragma: no cover - every other status carries its error
            raise TanxError(f"order {oid}: {result.status.value}")
        raise error

    async def _confirmed(
        self, oid: int, deadline: float | None, confirm_timeout: float, confirm_with: ConfirmWith
    ) -> CancelOutcome:
        """``cancel(..., confirm=True)``'s outcome, from the batch engine's confirmation
        (``cancel_one`` with ``confirm``, by push through ``open_confirmer`` or by polling): ok
        only when ``CANCELLED``; otherwise it carries the error ``cancel`` raises."""
        V.seconds("confirm_timeout", confirm_timeout)
        V.choice("confirm_with", confirm_with, CONFIRM_WITH)
        session = self._session
        if session.closed:
            raise SessionClosedError("this AsyncTanxSession is closed")
        settled: list[CancelOutcome] = []
        async with open_confirmer(
            session,
            confirm_with,
            session._operation(deadline),
            fetch=functools.partial(fetch_order, session),
            confirm_timeout=confirm_timeout,
            per_order=None,  # (the whole call's deadline, ``within``, bounds the look-ups)
            deliver=settled.append,
        ) as confirmer:
            confirmer.watch(oid)  # before the cancel leaves: no update can be missed
            record, started = Attempts(), time.monotonic()
            result = await cancel_one(session, oid, record=record, started=started)
            if result.status is CancelStatus.QUEUED:
                now = confirmer.add(result, record, started)
                confirmer.close()
                if now is None:
                    await confirmer.run()
                    now = settled[0]
                result = now
            else:
                confirmer.unwatch(oid)
        if result.status is CancelStatus.CANCELLED or result.error is not None:
            return result
        # Off the book (filled first) or queued (this session's own earlier 2xx), never seen "cancel".
        done = result.status is CancelStatus.ALREADY_CLOSED
        why = "filled (done) before the cancel took effect" if done else "cancel queued but not confirmed"
        error = CancelNotConfirmedError(f"order {oid}: {why}", order_id=oid, order=result.order)
        return attrs.evolve(result, error=error)

    async def get(self, order_id: int, *, deadline: float | None = None) -> Order:
        """``GET /sapi/v1/orders/{id}/``: the order with its ``trades``. ``deadline`` (seconds,
        default the session's) bounds it, retries included."""
        oid = V.order_id(order_id)
        with (
            within(self._session._operation(deadline)),
            operation(self._session._pipeline, "get", order_id=oid),
        ):
            return await fetch_order(self._session, oid)

    # -- finding orders -------------------------------------------------------------------

    async def list(
        self,
        *,
        market: str | None = None,
        state: OrderState | str | None = None,
        side: Side | Literal["buy", "sell"] | None = None,
        ord_type: OrderType | str | None = None,
        base_unit: str | None = None,
        quote_unit: str | None = None,
        start_time: datetime | int | None = None,
        end_time: datetime | int | None = None,
        limit: int | None = None,
        page: int | None = None,
        order_by: Literal["asc", "desc"] | None = None,
        deadline: float | None = None,
    ) -> builtins.list[Order]:
        """One page of ``GET /sapi/v1/orders/`` with the documented filters (``limit`` 1-100,
        ``page`` from 1). Use ``iter`` to walk every page. ``deadline`` (seconds, default the
        session's) bounds it, retries included. An unknown ``state``, ``ord_type``, ``side`` or
        ``order_by`` raises ``ValueError`` listing the known ones."""
        params = _filters(
            market=market,
            state=state,
            side=side,
            ord_type=ord_type,
            base_unit=base_unit,
            quote_unit=quote_unit,
            start_time=start_time,
            end_time=end_time,
            order_by=order_by,
        )
        if limit is not None:
            params["limit"] = V.positive_int("limit", limit, maximum=C.LIST_MAX_LIMIT)
        if page is not None:
            params["page"] = V.positive_int("page", page)
        return await self._page(params, self._session._operation(deadline))

    async def iter(
        self,
        *,
        market: str | None = None,
        state: OrderState | str | None = None,
        side: Side | Literal["buy", "sell"] | None = None,
        ord_type: OrderType | str | None = None,
        base_unit: str | None = None,
        quote_unit: str | None = None,
        start_time: datetime | int | None = None,
        end_time: datetime | int | None = None,
        order_by: Literal["asc", "desc"] | None = None,
        page_size: int = C.LIST_PAGE_LIMIT,
    ) -> AsyncGenerator[Order, None]:
        """Every matching order, page after page, until a short page (under 50 rows, the page size
        tanX documents, or under ``page_size`` if smaller: a longer page may be the exchange's
        own cap, so the walk goes on). An order that moves between
        pages while we walk them is yielded once. The pages are numbered, so an order that
        leaves the list meanwhile (filled or cancelled elsewhere) moves the ones after it to an
        earlier page, and one of those can be missed: list again to be sure (``cancel_all``
        does). Each page is one operation, bounded by the session's ``deadline``."""
        params = _filters(
            market=market,
            state=state,
            side=side,
            ord_type=ord_type,
            base_unit=base_unit,
            quote_unit=quote_unit,
            start_time=start_time,
            end_time=end_time,
            order_by=order_by,
        )
        params["limit"] = size = V.positive_int("page_size", page_size, maximum=C.LIST_MAX_LIMIT)
        full = min(size, C.LIST_SERVED_PAGE)  # a page this long may not be the last
        seen: set[int] = set()
        page = 1
        while True:
            orders = await self._page({**params, "page": page}, self._session.deadline)
            fresh = [o for o in orders if o.id not in seen]
            for order in fresh:
                seen.add(order.id)
                yield order
            if len(orders) < full or not fresh:
                return
            page += 1

    async def _page(self, params: dict[str, Any], deadline: float | None) -> builtins.list[Order]:
        with within(deadline), operation(self._session._pipeline, "list", page=params.get("page", 1)):
            response = await self._session._send("GET", C.ORDERS_PATH, params=params, idempotent=True)
        return structure(
            response.payload, builtins.list[Order], raw=response.content, method="GET", endpoint=C.ORDERS_PATH
        )

    # -- many orders ----------------------------------------------------------------------

    async def cancel_many(
        self,
        order_ids: Iterable[int],
        *,
        concurrency: int | None = None,
        deadline: float | None = None,
        confirm: bool = False,
        confirm_timeout: float = C.CONFIRM_TIMEOUT,
        confirm_with: ConfirmWith = "auto",
        resolve: bool = True,
        on_outcome: Callable[[CancelOutcome], object] | None = None,
    ) -> builtins.list[CancelOutcome]:
        """Cancel many orders at once; one ``CancelOutcome`` per distinct id, in input order.

        Every id is checked before anything is sent (a bad one raises ``TypeError`` or
        ``ValueError`` and nothing is sent). Duplicates are cancelled once. One failing order
        never aborts the others. ``concurrency`` (default: the session's ``max_concurrency``,
        never more) bounds the requests in flight; ``deadline`` (seconds) bounds the whole
        batch, after which ids still in flight are ``UNKNOWN`` (``QUEUED``, not ok, when the
        exchange accepted the cancel and ``confirm`` was waiting) and ids never sent ``SKIPPED``.
        ``resolve`` looks an order up when its cancel was refused or unanswered, so the outcome
        says what is true; ``confirm`` waits (up to ``confirm_timeout`` per order) until the
        exchange reports the order ``cancel``. Each order's cancel and look-ups together are
        bounded by the session's ``deadline`` (plus ``confirm_timeout`` with ``confirm``).

        ``confirm_with`` chooses how: ``"auto"`` (default) opens the private order stream before
        the first cancel and confirms by push, looking an order up once after a stream gap and
        polling the orders no push confirmed within a few seconds (all of them if the stream
        cannot be opened or is lost); ``"stream"`` never polls (and raises ``StreamError`` before
        sending anything if the stream cannot be opened); ``"poll"`` looks every order up.
        Confirming runs beside the sending: no cancel waits for another order's confirmation.

        ``on_outcome(outcome)`` is called once per distinct id as soon as its outcome is
        decided (from a task of the batch, never while a cancel waits on it; what it raises is
        logged). If the task awaiting ``cancel_many`` is cancelled (Ctrl-C, SIGTERM, a timeout
        around the call), it is first called for every id not told yet: outcomes decided as
        they are, cancels under way ``unknown`` and ids never sent ``skipped`` (both with a
        ``BatchInterruptedError``), then the cancellation goes on. Nothing already known is lost.
        """
        ids = _checked_ids(order_ids)
        if on_outcome is not None and not callable(on_outcome):
            raise TypeError(f"on_outcome must be callable, got {type(on_outcome).__name__}")
        results: dict[int, CancelOutcome] = {}
        # The ids are distinct already: no deduplication window is needed.
        batch = self._batch(
            ids,
            concurrency,
            deadline,
            confirm,
            confirm_timeout,
            resolve,
            dedupe=False,
            confirm_with=confirm_with,
            checked=True,
        )

        try:
            with operation(self._session._pipeline, "cancel_many", batch_size=len(ids)) as op:
                await collect_all(batch, results, on_outcome)
                if op is not None:
                    op.outcomes(results.values())
            return [results[oid] for oid in ids]
        finally:
            # A cancelled worker's traceback may keep the batch, hence ``collect``, until the
            # cyclic garbage collector runs: it then holds no outcome the caller has dropped.
            results.clear()

    def cancel_iter(
        self,
        order_ids: Iterable[int],
        *,
        concurrency: int | None = None,
        deadline: float | None = None,
        confirm: bool = False,
        confirm_timeout: float = C.CONFIRM_TIMEOUT,
        confirm_with: ConfirmWith = "auto",
        resolve: bool = True,
        dedupe: bool = True,
    ) -> CancelIterator:
        """Like ``cancel_many``, yielding outcomes as they complete: one per distinct id, the
        same outcomes ``cancel_many`` gives, in completion order.

        An ``unknown`` outcome is held back until the settling pass (after every id was tried)
        has looked the order up again; it is yielded once, settled or still unknown, never
        revised. Ids are pulled lazily: a generator of 100,000 ids is never materialised. A
        sized collection is checked and deduplicated up front; for a lazy iterable an invalid id
        (or an error the iterable raises) stops the feed, every id already sent still gets its
        outcome, then the error is raised.

        For a lazy iterable, "distinct" is judged against every id in flight or held, plus the
        last ``DEDUPE_WINDOW`` (50,000) ids taken: a repeat within that window is dropped (its
        id's one outcome stands), a repeat from further back is cancelled and reported again
        (typically ``already_closed`` then). ``dedupe=False`` keeps memory bounded by
        ``concurrency`` alone: only repeats of ids in flight are dropped, and any later repeat
        is cancelled and reported again.

        The batch runs in a task the session owns, not in the caller's: a slow consumer never
        slows the sending (outcomes wait for it: all of them for a sized input, at most
        ``ITER_MAX_BUFFERED`` (10,000) for a lazy one, after which no new id is taken until it
        reads). Leaving the loop early (``break``, ``return``, an exception, ``aclose()``)
        never cancels the caller: no more ids are sent, the cancels already sent finish and
        settle in the background (logged, not yielded). ``stop()`` on the iterator does the
        same and returns an outcome for every id not yet yielded (for an ``except`` block).
        ``session.aclose()`` ends a batch still running.
        """
        ids: Iterable[object] = order_ids
        checked = isinstance(order_ids, Collection)
        if checked:
            ids = _checked_ids(order_ids)
            dedupe = False  # deduplicated already
        batch = self._batch(
            ids,
            concurrency,
            deadline,
            confirm,
            confirm_timeout,
            resolve,
            dedupe=dedupe,
            confirm_with=confirm_with,
            checked=checked,
        )
        return CancelIterator(self._session._pipeline, batch, sized=checked)

    async def cancel_all(
        self,
        market: str,
        *,
        side: Side | Literal["buy", "sell"] | None = None,
        concurrency: int | None = None,
        deadline: float | None = None,
        confirm: bool = False,
        confirm_timeout: float = C.CONFIRM_TIMEOUT,
        confirm_with: ConfirmWith = "auto",
        on_outcome: Callable[[CancelOutcome], object] | None = None,
    ) -> builtins.list[CancelOutcome]:
        """Cancel every open order (``pending`` and ``wait``) of a market, one outcome each.

        Unlike ``bulk_cancel`` (one server-side request, at most ``limit`` orders, no list of
        what it cancelled), this lists the open orders, cancels each with the batch engine (so
        you learn what happened to every one), then lists them again. The list comes in
        numbered pages: an order that fills or is cancelled elsewhere while they are walked
        shifts the ones after it to an earlier page, where the walk no longer looks, and an
        order may be placed meanwhile. Each order a new listing finds without an outcome yet is
        cancelled in the next round; up to 3 listings, stopping at the first that finds none.
        An order already given an outcome is not cancelled again, whatever it says (a queued
        cancel may still be listed as ``wait``): retry the ones that are not ``ok`` yourself.

        ``deadline`` (seconds) bounds the whole call, the listings included: when it strikes,
        orders in flight are ``UNKNOWN`` and orders not yet sent ``SKIPPED``, as in
        ``cancel_many``; a first listing it cuts short raises its ``APITimeoutError`` (nothing
        was sent). A later listing that fails or is cut short ends the rounds: the outcomes so
        far are returned and a warning is logged (``tanx_async`` logger), since the market was
        not seen clear. Each listing page is also bounded by the session's ``deadline``.
        ``on_outcome`` is ``cancel_many``'s: called once per order cancelled, as it is decided
        (and for every order of the round under way if the call is cancelled).
        """
        market = V.market_name(market)
        seconds = deadline
        if seconds is not None:
            V.seconds("deadline", seconds)
        until = None if seconds is None else time.monotonic() + seconds
        outcomes: dict[int, CancelOutcome] = {}
        for listing in range(C.CANCEL_ALL_LISTINGS):
            left = None if until is None else until - time.monotonic()
            if left is not None and left <= 0:
                logger.warning(
                    "cancel_all(%r): the deadline passed before listing the open orders again", market
                )
                break
            try:
                with within(left):
                    found = await self._open_ids(market, side)
            except TanxError as exc:
                if not listing:
                    raise
                logger.warning("cancel_all(%r): listing the open orders again failed: %s", market, brief(exc))
                break
            fresh = [oid for oid in found if oid not in outcomes]
            if not fresh:
                break
            left = None if until is None else max(until - time.monotonic(), _LAST_MOMENT)
            batch = await self.cancel_many(
                fresh,
                concurrency=concurrency,
                deadline=left,
                confirm=confirm,
                confirm_timeout=confirm_timeout,
                confirm_with=confirm_with,
                on_outcome=on_outcome,
            )
            outcomes.update((o.order_id, o) for o in batch)
        return builtins.list(outcomes.values())

    def dead_man_switch(
        self,
        timeout: float = C.DEADMAN_TIMEOUT,
        *,
        markets: Iterable[str] | None = None,
        deadline: float = C.DEADMAN_DEADLINE,
        log_file: str | os.PathLike[str] | None = None,
        local: bool = True,
    ) -> DeadManSwitch:
        """A client-side dead man's switch: ``async with session.orders.dead_man_switch(2.0):``.

        Arming starts a watchdog process with its own connection and the session's tokens (kept
        current as they rotate). Inside the block the session's event loop sends it a heartbeat
        every ``timeout / 4`` seconds. When none came for ``timeout`` seconds (the process was
        killed, SIGKILL included, crashed, or its loop stalled), the watchdog cancels every open
        order of the account (or of ``markets``) with ``cancel_all``, lists again until none is
        open (or ``deadline`` seconds pass), logs every outcome and exits. Leaving the block by an
        exception (cancellation included) cancels the same from the session, within ``deadline``,
        before the exception goes on; leaving it normally disarms the watchdog, which exits
        without cancelling. One switch per session at a time (a second raises ``RuntimeError``).

        The watchdog logs to ``log_file`` (appended), else to this process's stderr; no token is
        ever logged or passed in its arguments or environment. It runs on the same machine: it
        cannot cover a dead host or a dead network link (see the docs).

        With a ``redis://`` fleet, the switch also keeps a heartbeat key in the fleet's Redis (a
        TTL of ``timeout``), which ``tanx-async guard`` on another machine watches: that covers a
        dead host, a frozen VM and a cut network link. ``local=False`` (a redis:// fleet needed)
        leaves the switch to the guard alone, without the same-machine watchdog.
        """
        from ._deadman import DeadManSwitch

        return DeadManSwitch(
            self._session, timeout=timeout, markets=markets, deadline=deadline, log_file=log_file, local=local
        )

    async def _open_ids(self, market: str, side: Side | Literal["buy", "sell"] | None) -> builtins.list[int]:
        """The ids of ``market``'s open orders: ``pending`` listed first, then ``wait`` (an order
        that moves from one to the other meanwhile is found in the second). A listed order of
        another market or side (an exchange that ignored the filter) is left alone and logged:
        ``cancel_all("btcusdc")`` never cancels anything else."""
        wanted_side = None if side is None else V.side_value(side)
        ids: dict[int, None] = {}
        stray = 0
        for state in (OrderState.PENDING, OrderState.WAIT):
            async for order in self.iter(market=market, side=side, state=state):
                if order.market != market or (wanted_side is not None and order.side != wanted_side):
                    stray += 1
                    continue
                ids[order.id] = None
        if stray:
            logger.warning(
                "cancel_all(%r): the listing returned %d order(s) of another market or side: left alone",
                market,
                stray,
            )
        return builtins.list(ids)

    async def bulk_cancel(
        self,
        market: str,
        *,
        side: Side | Literal["buy", "sell"] | None = None,
        limit: int | None = None,
    ) -> None:
        """``POST /sapi/v1/user/bulkcancel/``: the exchange queues the cancellation of up to
        ``limit`` (server default 100) open orders of ``market`` (optionally one ``side``).

        The answer carries no list of what it cancelled, and which orders are chosen when more
        are open is undocumented; use ``cancel_all`` to know the outcome of each order.
        """
        body: dict[str, Any] = {"market": V.market_name(market)}
        if side is not None:
            body["side"] = V.side_value(side)
        if limit is not None:
            body["limit"] = V.positive_int("limit", limit)
        # Not idempotent: which orders it picks is undocumented, so a resend after an attempt
        # that may have been processed could cancel up to ``limit`` more.
        await self._session.request("POST", C.BULK_CANCEL_PATH, json=body, idempotent=False)

    def _batch(
        self,
        ids: Iterable[object],
        concurrency: int | None,
        deadline: float | None,
        confirm: bool,
        confirm_timeout: float,
        resolve: bool,
        *,
        dedupe: bool,
        confirm_with: ConfirmWith,
        checked: bool = False,
    ) -> Batch:
        if self._session.closed:
            # A programming error, not one failed outcome per id.
            raise SessionClosedError("this AsyncTanxSession is closed")
        self._session._pipeline.check_loop()  # the same: not one failed outcome per id
        ceiling = self._session.max_concurrency
        workers = ceiling if concurrency is None else min(V.positive_int("concurrency", concurrency), ceiling)
        if deadline is not None:
            V.seconds("deadline", deadline)
        V.seconds("confirm_timeout", confirm_timeout)
        V.choice("confirm_with", confirm_with, CONFIRM_WITH)
        return Batch(
            self._session,
            ids,
            concurrency=workers,
            deadline=deadline,
            confirm=confirm,
            confirm_timeout=float(confirm_timeout),
            resolve=resolve,
            dedupe=dedupe,
            confirm_with=confirm_with,
            checked=checked,
        )


#: The least deadline a round of ``cancel_all`` hands its batch (a listing may end a hair before
#: the call's deadline): the batch then expires at once, every order ``SKIPPED`` or ``UNKNOWN``.
_LAST_MOMENT = 0.001


def _unknown_reason(error: TanxError, order: Order | None) -> str:
    """What made a cancel's outcome unknown, in words for what happened."""
    if isinstance(error, APIStatusError):
        what = f"the exchange answered {brief(error)}, an error answer that may hide a processed cancel"
    else:
        what = f"no answer came back ({brief(error)}), so the cancel may have been processed"
    if order is None:
        return f"{what}; no look-up could settle it"
    return f"{what}; a look-up shows the order still {order.state.value}"


def _checked_ids(order_ids: Iterable[int]) -> builtins.list[int]:
    """All ids validated (nothing is sent if one is bad), duplicates dropped, order kept."""
    if isinstance(order_ids, str | bytes):
        raise TypeError("order_ids must be an iterable of ints, not a string")
    top = V.MAX_ORDER_ID
    # A plain int in range is its own id (the common case, checked without a call per id);
    # anything else goes through ``V.order_id``, which refuses it or normalises an int subclass.
    ids = [oid if type(oid) is int and 0 < oid <= top else V.order_id(oid) for oid in order_ids]
    return builtins.list(dict.fromkeys(ids))


# The documented filter values; anything else is refused before sending (the exchange would
# silently answer an empty list for an unknown state).
_KNOWN_STATES = tuple(s.value for s in OrderState)
_KNOWN_ORDER_TYPES = tuple(t.value for t in OrderType)


def _filters(
    *,
    market: str | None,
    state: OrderState | str | None,
    side: str | None,
    ord_type: OrderType | str | None,
    base_unit: str | None,
    quote_unit: str | None,
    start_time: datetime | int | None,
    end_time: datetime | int | None,
    order_by: str | None,
) -> dict[str, Any]:
    params: dict[str, Any] = {}
    if market is not None:
        params["market"] = V.market_name(market)
    if state is not None:
        params["state"] = V.choice("state", state, _KNOWN_STATES)
    if side is not None:
        params["side"] = V.side_value(side)
    if ord_type is not None:
        params["ord_type"] = V.choice("ord_type", ord_type, _KNOWN_ORDER_TYPES)
    if base_unit is not None:
        params["base_unit"] = V.choice("base_unit", base_unit).lower()
    if quote_unit is not None:
        params["quote_unit"] = V.choice("quote_unit", quote_unit).lower()
    if start_time is not None:
        params["start_time"] = V.timestamp("start_time", start_time)
    if end_time is not None:
        params["end_time"] = V.timestamp("end_time", end_time)
    if start_time is not None and end_time is not None and params["start_time"] > params["end_time"]:
        raise ValueError("start_time must not be after end_time")
    if order_by is not None:
        params["order_by"] = V.choice("order_by", order_by, ("asc", "desc"))
    return params
