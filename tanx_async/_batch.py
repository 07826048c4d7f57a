"""The cancel engine: one order's cancel settled into a truthful outcome, and the fan-out.

``cancel_one`` turns whatever happened into a ``CancelOutcome``. When the exchange refused or no
answer came, it looks the order up (``resolve``) so the caller is told the order's real state,
not a guess: a refused cancel on an order that is already ``cancel``/``done`` is
``ALREADY_CLOSED``; a lost answer on an order that is now ``cancel`` is ``CANCELLED``.

``Batch`` fans ids out to a fixed set of workers. Workers never raise: every error becomes an
outcome, so one failing order cannot abort the others. The batch deadline lives inside the worker
task (never around the consumer), and ids still in flight or never sent when it expires get
``UNKNOWN``/``SKIPPED`` outcomes.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING

import anyio

from . import _constants as C
from . import _deadline
from ._convert import is_order_payload, structure_order
from ._errors import (
    APIConnectionError,
    APIStatusError,
    BatchTimeoutError,
    CancelNotConfirmedError,
    InvalidOrderIdError,
    NotFoundError,
    RateLimitError,
    TanxError,
)
from ._log import logger
from ._pipeline import Attempts
from ._validate import order_id as check_order_id
from .models import CancelOutcome, CancelStatus, Order, OrderState

if TYPE_CHECKING:
    from ._session import AsyncTanxSession

__all__ = ["Batch", "cancel_one", "fetch_order", "iterate_batch"]

_QUEUED_TEXT = re.compile(r"queued|pending cancel", re.IGNORECASE)
_FILLED_TEXT = re.compile(r"already (?:been )?(?:filled|executed)", re.IGNORECASE)
_CANCELLED_TEXT = re.compile(r"already (?:been )?cancel", re.IGNORECASE)


async def fetch_order(session: AsyncTanxSession, oid: int) -> Order:
    response = await session._send("GET", f"{C.ORDERS_PATH}{oid}/", idempotent=True)
    return structure_order(response.payload, raw=response.content)


async def cancel_one(
    session: AsyncTanxSession,
    oid: int,
    *,
    resolve: bool = True,
    confirm: bool = False,
    confirm_timeout: float = C.CONFIRM_TIMEOUT,
    record: Attempts | None = None,
) -> CancelOutcome:
    """Cancel one (already validated) order id and settle what happened. Never raises a
    ``TanxError``: it is in the outcome."""
    record = record or Attempts()
    started = time.monotonic()

    def outcome(
        status: CancelStatus, order: Order | None = None, error: TanxError | None = None
    ) -> CancelOutcome:
        return CancelOutcome(
            order_id=oid,
            status=status,
            order=order,
            error=error,
            attempts=record.count,
            elapsed=time.monotonic() - started,
        )

    try:
        response = await session._send(
            "POST", C.CANCEL_PATH, json={"order_id": oid}, idempotent=True, attempts=record
        )
    except NotFoundError as exc:
        return outcome(CancelStatus.NOT_FOUND, error=exc)
    except APIStatusError as exc:
        if isinstance(exc, RateLimitError) or exc.status_code in (401, 403) or not resolve:
            return outcome(CancelStatus.UNKNOWN if record.ambiguous else CancelStatus.FAILED, error=exc)
        return await _settle(session, oid, exc, record, outcome)
    except APIConnectionError as exc:
        if not record.ambiguous:
            return outcome(CancelStatus.FAILED, error=exc)
        if not resolve:
            return outcome(CancelStatus.UNKNOWN, error=exc)
        return await _settle(session, oid, exc, record, outcome)
    except TanxError as exc:
        return outcome(CancelStatus.UNKNOWN if record.ambiguous else CancelStatus.FAILED, error=exc)

    payload = response.payload
    order: Order | None = None
    if is_order_payload(payload):
        try:
            order = structure_order(payload)
        except TanxError as exc:
            # The cancel was accepted; an order we cannot read must not turn that into a failure.
            logger.warning("order %d: cancel queued, but its echo did not decode: %s", oid, exc)
    if confirm:
        return await _confirm(session, oid, order, time.monotonic() + confirm_timeout, outcome)
    return outcome(CancelStatus.QUEUED, order)


_Make = Callable[[CancelStatus, "Order | None", "TanxError | None"], CancelOutcome]
Sink = Callable[[CancelOutcome], Awaitable[None]]


async def _settle(
    session: AsyncTanxSession, oid: int, cause: TanxError, record: Attempts, outcome: _Make
) -> CancelOutcome:
    """The cancel was refused or unanswered: look the order up and say what is true."""
    try:
        order = await fetch_order(session, oid)
    except NotFoundError:
        return outcome(CancelStatus.NOT_FOUND, None, cause)
    except TanxError:
        # No look-up: the refusal's own words may still settle it ("failed" would claim the
        # order is still open although the exchange just said it is not).
        if isinstance(cause, APIStatusError) and 400 <= cause.status_code < 500:
            if _QUEUED_TEXT.search(cause.message):
                return outcome(CancelStatus.QUEUED, None, None)
            if _FILLED_TEXT.search(cause.message) or (
                not record.ambiguous and _CANCELLED_TEXT.search(cause.message)
            ):
                return outcome(CancelStatus.ALREADY_CLOSED, None, cause)
        return outcome(CancelStatus.UNKNOWN if record.ambiguous else CancelStatus.FAILED, None, cause)
    if order.state == OrderState.CANCEL:
        if record.ambiguous and not _closed_before(order, record):
            # One of our attempts may have been processed before its answer was lost.
            return outcome(CancelStatus.CANCELLED, order, None)
        return outcome(CancelStatus.ALREADY_CLOSED, order, cause)
    if order.state == OrderState.DONE:
        # Filled: the exchange's refusal stays on the outcome, for the record.
        return outcome(CancelStatus.ALREADY_CLOSED, order, cause)
    if isinstance(cause, APIStatusError) and _QUEUED_TEXT.search(cause.message):
        # Still resting, but the exchange says a cancellation is already queued for it.
        return outcome(CancelStatus.QUEUED, order, None)
    if isinstance(cause, APIStatusError) and not record.ambiguous:
        return outcome(CancelStatus.FAILED, order, cause)
    return outcome(CancelStatus.UNKNOWN, order, cause)


def _closed_before(order: Order, record: Attempts) -> bool:
    """The exchange last touched the order clearly before our first attempt left."""
    if order.updated_at is None or record.first_sent is None:
        return False
    return order.updated_at.timestamp() < record.first_sent - C.CLOCK_SKEW_TOLERANCE


async def _confirm(
    session: AsyncTanxSession, oid: int, order: Order | None, deadline: float, outcome: _Make
) -> CancelOutcome:
    """Poll the order (with backoff, until ``deadline``) until the exchange reports it closed."""
    delay = C.CONFIRM_POLL_INITIAL
    last_error: TanxError | None = None
    while True:
        if order is not None and order.state == OrderState.CANCEL:
            return outcome(CancelStatus.CANCELLED, order, None)
        if order is not None and order.state == OrderState.DONE:
            # Filled before the queued cancel took effect.
            return outcome(CancelStatus.ALREADY_CLOSED, order, None)
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            note = f" (last look-up failed: {last_error})" if last_error else ""
            return outcome(
                CancelStatus.QUEUED,
                order,
                CancelNotConfirmedError(
                    f"order {oid}: cancel queued but not confirmed in time{note}", order_id=oid, order=order
                ),
            )
        await anyio.sleep(min(delay, remaining))
        delay = min(delay * 2, C.CONFIRM_POLL_CAP)
        try:
            order = await fetch_order(session, oid)
        except TanxError as exc:
            last_error = exc


class Batch:
    """One run of the fan-out: ids in, one outcome per (distinct) id out.

    Workers pull ids straight from the (possibly lazy) source, one at a time, only when they are
    free: memory is bounded by the number of workers, whatever the number of ids.
    """

    def __init__(
        self,
        session: AsyncTanxSession,
        ids: Iterable[object],
        *,
        concurrency: int,
        deadline: float | None,
        confirm: bool,
        confirm_timeout: float,
        resolve: bool,
        dedupe: bool,
    ) -> None:
        self._session = session
        self._source: Iterator[object] = iter(ids)
        self.workers = concurrency
        self._deadline = deadline
        self._confirm = confirm
        self._confirm_timeout = confirm_timeout
        self._resolve = resolve
        self._dedupe = dedupe
        self._exhausted = False
        self._in_flight: dict[int, Attempts] = {}
        self._unsent: dict[int, CancelOutcome] = {}
        self._seen: set[int] = set()
        #: An invalid id met in a lazy input; raised after every sent id has its outcome.
        self.invalid: InvalidOrderIdError | TypeError | None = None

    async def run(self, sink: Sink) -> None:
        """Cancel everything, handing each outcome to ``sink``."""
        with anyio.move_on_after(self._deadline) as deadline:
            async with anyio.create_task_group() as tg:
                for _ in range(self.workers):
                    tg.start_soon(self._worker, sink)
        if deadline.cancelled_caught:
            await self._expire(sink)

    def _take(self) -> int | None:
        """The next id to cancel, or None when the source is exhausted (or hit an invalid id)."""
        if self._exhausted:
            return None
        for raw in self._source:
            try:
                oid = check_order_id(raw)
            except (TypeError, InvalidOrderIdError) as exc:
                self.invalid = exc
                break
            if self._dedupe:
                if oid in self._seen:
                    continue
                self._seen.add(oid)
            return oid
        self._exhausted = True
        return None

    async def _worker(self, sink: Sink) -> None:
        while (oid := self._take()) is not None:
            record = Attempts()
            self._in_flight[oid] = record
            _deadline.begin(self._session.deadline, extra=self._confirm_timeout if self._confirm else 0.0)
            try:
                result = await cancel_one(
                    self._session,
                    oid,
                    resolve=self._resolve,
                    confirm=self._confirm,
                    confirm_timeout=self._confirm_timeout,
                    record=record,
                )
            except Exception as exc:  # a bug must not lose the outcome of the order
                logger.exception("order %d: unexpected error while cancelling", oid)
                result = CancelOutcome(
                    order_id=oid,
                    status=CancelStatus.UNKNOWN if record.count else CancelStatus.FAILED,
                    error=TanxError(f"unexpected {type(exc).__name__}: {exc}"),
                    attempts=record.count,
                )
            # Kept until delivered: a deadline striking during the hand-over must not lose it.
            self._unsent[oid] = result
            await sink(result)
            del self._unsent[oid], self._in_flight[oid]

    async def _expire(self, sink: Sink) -> None:
        # The deadline struck: every id still gets an outcome, sent or not.
        for oid, record in list(self._in_flight.items()):
            finished = self._unsent.get(oid)
            if finished is not None:
                await sink(finished)
                continue
            sent = record.count > 0
            await sink(
                CancelOutcome(
                    order_id=oid,
                    status=CancelStatus.UNKNOWN if sent else CancelStatus.SKIPPED,
                    error=BatchTimeoutError(f"order {oid}: batch deadline expired", order_id=oid, sent=sent),
                    attempts=record.count,
                )
            )
        self._in_flight.clear()
        self._unsent.clear()
        while (left := self._take()) is not None:
            await sink(
                CancelOutcome(
                    order_id=left,
                    status=CancelStatus.SKIPPED,
                    error=BatchTimeoutError(
                        f"order {left}: batch deadline expired before it was sent", order_id=left, sent=False
                    ),
                )
            )


async def iterate_batch(batch: Batch) -> AsyncGenerator[CancelOutcome, None]:
    """The batch as an async generator. Close it with ``contextlib.aclosing`` if you stop early."""
    send, recv = anyio.create_memory_object_stream[CancelOutcome](batch.workers)

    # anyio's stream send/receive yield to the event loop on every call; trying the no-wait
    # forms first keeps a hand-over that need not wait from costing a loop turn per outcome.
    async def hand_over(outcome: CancelOutcome) -> None:
        try:
            send.send_nowait(outcome)
        except anyio.WouldBlock:
            await send.send(outcome)

    async def produce() -> None:
        async with send:
            await batch.run(hand_over)

    # recv outlives the task group: closed first, a worker still handing over an outcome while
    # the consumer is being cancelled would die of BrokenResourceError (an exception group).
    async with recv, anyio.create_task_group() as tg:
        tg.start_soon(produce)
        try:
            while True:
                try:
                    item = recv.receive_nowait()
                except anyio.WouldBlock:
                    try:
                        item = await recv.receive()
                    except anyio.EndOfStream:
                        break
                except anyio.EndOfStream:
                    break
                yield item
        except GeneratorExit:
            # The consumer stopped early: wind the workers up here, then finish quietly
            # (re-raising inside the task group would surface as an exception group).
            tg.cancel_scope.cancel()
            return
    if batch.invalid is not None:
        raise batch.invalid
