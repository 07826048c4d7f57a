"""The cancel engine: one order's cancel settled into a truthful outcome, and the fan-out.

``cancel_one`` turns whatever happened into a ``CancelOutcome``, by one rule: an outcome is ok
only on positive evidence. That is a 2xx answer to the cancel (``QUEUED``), a look-up showing
the order ``cancel`` or ``done`` (``CANCELLED``/``ALREADY_CLOSED``), or this session's own 2xx
cancel of the same order moments earlier (``QUEUED``, said in ``note``; see ``CancelMemory``).
The words of a refusal never decide an outcome: they may only annotate it (``note``). When the
exchange refused or no answer came, the order is looked up (``resolve``).

``Batch`` fans ids out to a fixed set of workers. Workers never raise: every error becomes an
outcome, so one failing order cannot abort the others. An ``UNKNOWN`` outcome is held back and,
once every id has been tried, the settling pass (``settle``) looks it up again with backoff,
within the batch deadline. The deadline lives inside the worker task (never around the
consumer), and ids still in flight or never sent when it expires get ``UNKNOWN``/``SKIPPED``.
"""

from __future__ import annotations

import functools
import re
import time
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from . import _constants as C
from . import _deadline
from ._confirm import ConfirmWith, PushConfirmer, open_confirmer
from ._convert import cancel_echo, decode_echo, decode_echo_in, structure_order
from ._duration import duration
from ._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    BatchTimeoutError,
    CancelNotConfirmedError,
    InvalidOrderIdError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    SessionClosedError,
    TanxError,
    brief,
)
from ._lane import Lane
from ._log import logger
from ._memory import RecentIds
from ._pipeline import Attempt, Attempts
from ._validate import order_id as check_order_id
from .models import CancelOutcome, CancelStatus, Order, OrderState, queued_outcome

if TYPE_CHECKING:
    from ._session import AsyncTanxSession

__all__ = ["Batch", "cancel_one", "fetch_order", "iterate_batch", "settle"]

#: Words in a refusal that *suggest* the order is off the book. They only annotate an outcome.
_CLOSED_WORDS = re.compile(r"queued|pending|cancel+ed|filled|executed|closed|done", re.IGNORECASE)


async def fetch_order(session: AsyncTanxSession, oid: int) -> Order:
    path = f"{C.ORDERS_PATH}{oid}/"
    response = await session._send("GET", path, idempotent=True)
    order = structure_order(response.payload, raw=response.content, method="GET", endpoint=path)
    if order.id != oid:  # never evidence about order ``oid``
        raise ResponseValidationError(
            f"a look-up of order {oid} answered with order {order.id}",
            body=response.content,
            errors=(f"expected {oid} @ $.payload.id, got {order.id}",),
            method="GET",
            path=path,
        )
    return order


class _Outcomes:
    """Builds the outcomes of one order's cancel (its id, attempts and elapsed time)."""

    __slots__ = ("oid", "record", "started")

    def __init__(self, oid: int, record: Attempts, started: float) -> None:
        self.oid = oid
        self.record = record
        self.started = started

    def __call__(
        self,
        status: CancelStatus,
        order: Order | None = None,
        error: TanxError | None = None,
        note: str | None = None,
    ) -> CancelOutcome:
        return CancelOutcome(
            order_id=self.oid,
            status=status,
            order=order,
            error=error,
            attempts=self.record.count,
            elapsed=time.monotonic() - self.started,
            note=note,
        )


async def cancel_one(
    session: AsyncTanxSession,
    oid: int,
    *,
    resolve: bool = True,
    confirm: bool = False,
    confirm_timeout: float = C.CONFIRM_TIMEOUT,
    record: Attempts | None = None,
    push: PushConfirmer | None = None,
    first: Attempt | None = None,
    started: float | None = None,
) -> CancelOutcome:
    """Cancel one (already validated) order id and settle what happened. Never raises a
    ``TanxError``: it is in the outcome. ``first``: an attempt already made (the batch's fast
    path, ``_lane``) to go on from, with its ``record``; ``started``: when the cancel began."""
    record = record or Attempts()
    if started is None:
        started = time.monotonic()
    try:
        response = await session._send(
            "POST", C.CANCEL_PATH, json={"order_id": oid}, idempotent=True, attempts=record, first=first
        )
        if not confirm:
            return queued(session, oid, record, started, response.body, response.content)
        echo = cancel_echo(oid, response.payload, response.content)
    except NotFoundError as exc:
        return _Outcomes(oid, record, started)(CancelStatus.NOT_FOUND, error=exc)
    except APIStatusError as exc:
        outcome = _Outcomes(oid, record, started)
        if isinstance(exc, AuthenticationError | PermissionDeniedError | RateLimitError) or not resolve:
            return _unsettled(session, outcome, exc)
        return await _look_up(session, exc, outcome)
    except APIConnectionError as exc:
        outcome = _Outcomes(oid, record, started)
        if not record.ambiguous or not resolve:
            return _unsettled(session, outcome, exc)
        return await _look_up(session, exc, outcome)
    except ResponseValidationError as exc:
        outcome = _Outcomes(oid, record, started)
        if exc.method == "POST" and exc.path == C.CANCEL_PATH:
            # The exchange answered the cancel 2xx in a shape we do not know: it may well have
            # been processed. Never ok on that; a look-up says what is true.
            record.ambiguous = True
            if resolve:
                return await _look_up(session, exc, outcome)
        return _unsettled(session, outcome, exc)
    except TanxError as exc:
        return _unsettled(session, _Outcomes(oid, record, started), exc)

    session._pipeline.cancels.accepted(oid)
    outcome = _Outcomes(oid, record, started)
    # (Not for the bare ``{}`` acknowledgement.)
    order = decode_echo(oid, response.payload, response.content) if echo else None
    deadline = time.monotonic() + confirm_timeout
    if push is not None:  # by the stream (``_confirm.py``), polling as its fallback

        async def poll(order: Order | None, deadline: float) -> CancelOutcome:
            return await _confirm(session, oid, order, deadline, outcome)

        return await push.confirm(oid, order, deadline, outcome, poll, lambda o: fetch_order(session, o))
    return await _confirm(session, oid, order, deadline, outcome)


def queued(
    session: AsyncTanxSession,
    oid: int,
    record: Attempts,
    started: float,
    body: dict[str, Any],
    content: bytes,
) -> CancelOutcome:
    """The outcome of a cancel the exchange answered with a 2xx success (``body``, the decoded
    envelope; ``content``, its bytes), remembered as evidence (``CancelMemory``). The echo is
    decoded only if the caller reads ``outcome.order``."""
    echo = cancel_echo(oid, body.get("payload"), content)  # (raises on a payload we do not know)
    session._pipeline.cancels.accepted(oid)
    # (Not decoded for the bare ``{}`` acknowledgement.)
    return queued_outcome(
        oid, record.count, time.monotonic() - started, decode_echo_in if echo else None, content
    )


_Make = Callable[..., CancelOutcome]
#: Where outcomes go: a plain function (``cancel_many``'s dict) or a coroutine function (the
#: hand-over of ``cancel_iter``, which may wait for the consumer).
Sink = Callable[[CancelOutcome], Awaitable[None] | None]


async def _give(sink: Sink, outcome: CancelOutcome) -> None:
    pending = sink(outcome)
    if pending is not None:
        await pending


async def _look_up(session: AsyncTanxSession, cause: TanxError, outcome: _Outcomes) -> CancelOutcome:
    """The cancel was refused or unanswered: look the order up and say what is true."""
    try:
        order = await fetch_order(session, outcome.oid)
    except NotFoundError:
        return outcome(CancelStatus.NOT_FOUND, None, cause)
    except TanxError as exc:
        return _unsettled(session, outcome, cause, lookup_error=exc)
    return _closed(session, order, cause, outcome) or _unsettled(session, outcome, cause, order)


def _closed(
    session: AsyncTanxSession, order: Order, cause: TanxError | None, outcome: _Outcomes
) -> CancelOutcome | None:
    """The outcome a look-up showing the order ``cancel`` or ``done`` proves, else None."""
    if order.state == OrderState.DONE:
        # Filled: the exchange's refusal (if any) stays on the outcome, for the record.
        return outcome(CancelStatus.ALREADY_CLOSED, order, cause)
    if order.state != OrderState.CANCEL:
        return None
    record = outcome.record
    if session._pipeline.cancels.age(outcome.oid) is not None:
        return outcome(CancelStatus.CANCELLED, order, None, "cancelled after this session's own 2xx cancel")
    if record.ambiguous and not _closed_before(order, record):
        # One of our attempts may have been processed before its answer was lost.
        return outcome(CancelStatus.CANCELLED, order, None)
    return outcome(CancelStatus.ALREADY_CLOSED, order, cause)


def _unsettled(
    session: AsyncTanxSession,
    outcome: _Outcomes,
    cause: TanxError,
    order: Order | None = None,
    *,
    lookup_error: TanxError | None = None,
) -> CancelOutcome:
    """No answer or look-up proved the order closed: ``FAILED`` when the cancel cannot have been
    processed, ``UNKNOWN`` when it may have been; ``QUEUED`` only on this session's own 2xx."""
    seen = "" if order is None else f"; a look-up shows it {order.state.value}"
    if lookup_error is not None:
        seen = f"; the look-up failed ({brief(lookup_error)})"
    age = session._pipeline.cancels.age(outcome.oid)
    if age is not None:
        return outcome(
            CancelStatus.QUEUED,
            order,
            None,
            f"queued: this session got a 2xx for this order's cancel {duration(age)} earlier; "
            f"this cancel got {brief(cause)}{seen}",
        )
    note = None
    if isinstance(cause, APIStatusError) and _CLOSED_WORDS.search(cause.message):
        note = f"the refusal's words suggest the order is off the book, but nothing confirmed it{seen}"
    status = CancelStatus.UNKNOWN if outcome.record.ambiguous else CancelStatus.FAILED
    return outcome(status, order, cause, note)


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


async def settle(
    session: AsyncTanxSession,
    unknown: CancelOutcome,
    record: Attempts,
    until: float,
    *,
    confirm: bool = False,
) -> CancelOutcome:
    """The settling pass for one ``UNKNOWN`` outcome: look the order up with backoff until the
    exchange answers, until ``until`` (monotonic) or ``SETTLE_MAX_LOOKUPS`` look-ups.

    A look-up showing ``cancel``/``done`` settles it. One showing the order still open means our
    cancel never arrived or is queued and not yet applied: the cancel is sent once more (a 2xx is
    evidence; with ``confirm`` the look-ups then go on until ``cancel``). Anything else leaves
    it ``UNKNOWN``, with a note."""
    oid = unknown.order_id
    outcome = _Outcomes(oid, record, time.monotonic() - unknown.elapsed)
    delay = C.CONFIRM_POLL_INITIAL
    last: str = brief(unknown.error) if unknown.error is not None else "no answer"
    order = unknown.order
    resent = False
    queued: CancelOutcome | None = None
    lookups = 0
    while lookups < C.SETTLE_MAX_LOOKUPS and (remaining := until - time.monotonic()) > 0:
        if lookups:
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, C.SETTLE_POLL_CAP)
        lookups += 1
        try:
            with anyio.fail_after(max(until - time.monotonic(), 0.001)):
                order = await fetch_order(session, oid)
        except NotFoundError as exc:
            return outcome(CancelStatus.NOT_FOUND, None, exc, "settled by a later look-up")
        except SessionClosedError:
            break
        except (TanxError, TimeoutError) as exc:
            last = f"the last look-up failed ({brief(exc)})"
            continue
        closed = _closed(session, order, unknown.error, outcome)
        if closed is not None:
            return attrs.evolve(closed, note=closed.note or f"settled by look-up {lookups} after {last}")
        last = f"the last look-up shows it {order.state.value}"
        if not resent:
            resent = True
            with anyio.move_on_after(max(until - time.monotonic(), 0.001)):
                again = await cancel_one(session, oid, resolve=False, record=record)
                if again.ok or again.status is CancelStatus.NOT_FOUND:
                    again = attrs.evolve(
                        again,
                        elapsed=time.monotonic() - outcome.started,
                        note=again.note or "settled: the cancel was sent again once the exchange answered",
                    )
                    if not (confirm and again.status is CancelStatus.QUEUED):
                        return again
                    queued = again
                last = f"sent again: {brief(again.error) if again.error else again.status.value}"
    if queued is not None:
        # Queued by the cancel sent again, but not seen ``cancel`` in time (confirm=True).
        error = CancelNotConfirmedError(
            f"order {oid}: cancel queued but not confirmed in time ({last})", order_id=oid, order=order
        )
        return attrs.evolve(queued, order=order, error=error, elapsed=time.monotonic() - outcome.started)
    return outcome(
        CancelStatus.UNKNOWN,
        order,
        unknown.error,
        f"still unknown after the settling pass ({lookups} look-up{'s' if lookups != 1 else ''}; {last})",
    )


class Batch:
    """One run of the fan-out: ids in, one outcome per (distinct) id out.

    Workers pull ids straight from the (possibly lazy) source, one at a time, only when they are
    free. An id already in flight (or held for the settling pass) is never taken again, and with
    ``dedupe`` neither is one among the last ``DEDUPE_WINDOW`` ids taken: memory is bounded by
    the workers, the window and the held unknowns (at most ``SETTLE_MAX_HELD``), whatever the
    number of ids.
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
        confirm_with: ConfirmWith = "auto",
        checked: bool = False,
    ) -> None:
        self._session = session
        self._source: Iterator[object] = iter(ids)
        #: The ids were validated and deduplicated up front (a sized input): taken as they come.
        self._checked = checked
        self.workers = concurrency
        self._deadline = deadline
        self._confirm = confirm
        self._confirm_timeout = confirm_timeout
        self._resolve = resolve
        self._confirm_with: ConfirmWith | None = confirm_with if confirm else None
        self._push: PushConfirmer | None = None
        self._exhausted = False
        #: Every id taken and not yet delivered, with its attempt record.
        self._in_flight: dict[int, Attempts] = {}
        #: Outcomes being handed over (kept until delivered: a deadline may strike meanwhile).
        self._unsent: dict[int, CancelOutcome] = {}
        #: ``UNKNOWN`` outcomes waiting for the settling pass.
        self._held: dict[int, CancelOutcome] = {}
        self._recent = RecentIds(C.DEDUPE_WINDOW if dedupe else 0)
        self._instant: Callable[[CancelOutcome], bool] | None = None
        #: An invalid id met in a lazy input, or the error the input raised; raised after every
        #: sent id has its outcome.
        self.invalid: Exception | None = None

    async def run(self, sink: Sink, *, instant: Callable[[CancelOutcome], bool] | None = None) -> None:
        """Cancel everything, settle what is unknown, handing each outcome to ``sink``.

        ``instant``: hands an outcome over at once, or says False when that would mean waiting
        (then ``sink`` is used); given, the workers may take the fast path (``_lane``)."""
        self._instant = instant
        started = time.monotonic()
        with anyio.move_on_after(self._deadline) as deadline:
            # With confirm=True the stream is open before the first cancel leaves.
            async with (
                open_confirmer(self._session, self._confirm_with, self._deadline) as self._push,
                anyio.create_task_group() as tg,
            ):
                # Started a few per event-loop iteration: each worker's first step sends a
                # request, and 64 of them in one iteration would hold the loop for milliseconds.
                for count in range(1, self.workers + 1):
                    tg.start_soon(self._worker, sink)
                    if count % C.WORKERS_STARTED_PER_TURN == 0 and count < self.workers:
                        await anyio.lowlevel.checkpoint()
                        if self._exhausted:
                            break  # the workers running took every id: no more are needed
            if self._held:
                if self._deadline is None:
                    # As long as one operation may take (the session's deadline), at most 5 s.
                    per_order = self._session.deadline
                    budget = C.SETTLE_TIMEOUT if per_order is None else min(C.SETTLE_TIMEOUT, per_order)
                    await self._settle_held(sink, time.monotonic() + budget)
                else:
                    await self._settle_held(sink, started + self._deadline)
        if deadline.cancelled_caught:
            await self._expire(sink)

    def _take(self) -> int | None:
        """The next id to cancel, or None when the source is exhausted, hit an invalid id or
        raised (the error is kept in ``invalid``, raised once every id sent has its outcome)."""
        if self._exhausted:
            return None
        if self._checked:
            taken = next(self._source, None)
            if taken is None:
                self._exhausted = True
                return None
            return taken  # type: ignore[return-value]  # checked up front
        try:
            for raw in self._source:
                try:
                    oid = check_order_id(raw)
                except (TypeError, InvalidOrderIdError) as exc:
                    self.invalid = exc
                    break
                if oid in self._in_flight or oid in self._recent:
                    continue  # its outcome is (or was) the one for this repeat
                self._recent.add(oid)
                return oid
        except Exception as exc:  # the iterable itself failed: treated as an invalid id is
            self.invalid = exc
        self._exhausted = True
        return None

    async def _worker(self, sink: Sink) -> None:
        per_order = self._session.deadline
        extra = self._confirm_timeout if self._confirm else 0.0
        now = _deadline.clock()
        push = self._push  # open (or None) before any worker starts
        options: dict[str, Any] = {
            "resolve": self._resolve,
            "confirm": self._confirm,
            "confirm_timeout": self._confirm_timeout,
            "push": push,
        }
        pipeline = self._session._pipeline
        lane: Lane | None = None
        lane_tried = False
        try:
            oid = self._take()
            while oid is not None:
                if not lane_tried and pipeline.sender is not None:  # (built by the first request)
                    lane_tried = True
                    lane = self._lane(per_order)
                record = Attempts()
                self._in_flight[oid] = record
                _deadline.begin(per_order, extra=extra, now=now)
                started = time.monotonic()
                first: Attempt | None = None
                if lane is not None:
                    try:
                        sent = lane.send(oid, record, started)
                    except Exception:  # nothing was sent: the ordinary path meets the error and says it
                        sent = False
                    if sent:
                        stop = await lane.stopped()
                        if stop.error is not None:
                            raise stop.error
                        if stop.handing is not None:
                            if (handing := self._deliver(stop.handing, sink)) is not None:
                                await handing
                            oid = self._take()
                            continue
                        if stop.oid is None or stop.record is None:
                            return  # the ids ran out
                        oid, record, started, first = stop.oid, stop.record, stop.started, stop.first
                        _deadline.enter(stop.deadline)
                try:
                    if push is None:  # no context manager to enter: the common case
                        result = await cancel_one(
                            self._session, oid, record=record, first=first, started=started, **options
                        )
                    else:
                        with push.watching(oid):
                            result = await cancel_one(self._session, oid, record=record, **options)
                except Exception as exc:  # a bug must not lose the outcome of the order
                    logger.exception("order %d: unexpected error while cancelling", oid)
                    result = CancelOutcome(
                        order_id=oid,
                        status=CancelStatus.UNKNOWN if record.count else CancelStatus.FAILED,
                        error=TanxError(f"unexpected {type(exc).__name__}: {exc}"),
                        attempts=record.count,
                    )
                if (
                    result.status is CancelStatus.UNKNOWN
                    and self._resolve
                    and len(self._held) < C.SETTLE_MAX_HELD
                ):
                    self._held[oid] = result
                elif (handing := self._deliver(result, sink)) is not None:
                    await handing
                oid = self._take()
        finally:
            if lane is not None:
                lane.close()  # (it and its express hold each other, and the batch)

    def _lane(self, per_order: float | None) -> Lane | None:
        """A fast path for one worker (``_lane``), where the batch can use one: outcomes that
        can be handed over without waiting (``instant``), no confirmation to wait for, and a
        session that may send from callbacks."""
        instant = self._instant
        session = self._session
        pipeline = session._pipeline
        if instant is None or self._confirm or pipeline.immediate_sender is None:
            return None
        lane = Lane(
            pipeline,
            timeout=session._timeout,
            per_order=per_order,
            take=self._take,
            in_flight=self._in_flight,
            unsent=self._unsent,
            hand=instant,
            make=functools.partial(queued, session),
        )
        return lane if lane.usable else None

    def _deliver(self, result: CancelOutcome, sink: Sink) -> Awaitable[None] | None:
        """Hand ``result`` to ``sink``: done at once for a plain function, else an awaitable that
        completes the hand-over (the outcome is kept meanwhile: a deadline may strike)."""
        oid = result.order_id
        pending = sink(result)
        if pending is None:
            del self._in_flight[oid]
            return None
        self._unsent[oid] = result
        return self._handed(result, pending)

    async def _handed(self, outcome: CancelOutcome, pending: Awaitable[None]) -> None:
        await pending
        self.delivered(outcome)

    def delivered(self, outcome: CancelOutcome) -> None:
        """``outcome`` reached the consumer: no longer the batch's to hand over (nor the
        deadline's, ``_expire``). Said by the hand-over when it returns and by the consumer
        when it receives (``iterate_batch``): a worker cancelled by the deadline while its
        outcome was being taken can see its hand-over raise although the consumer has it."""
        oid = outcome.order_id
        if self._unsent.get(oid) is outcome:
            del self._unsent[oid]
            self._in_flight.pop(oid, None)

    async def _settle_held(self, sink: Sink, until: float) -> None:
        """The settling pass: every held ``UNKNOWN`` looked up again, ``workers`` at a time."""
        waiting = list(self._held)
        logger.info(
            "settling %d unknown outcome(s) for up to %s", len(waiting), duration(until - time.monotonic())
        )

        async def settler() -> None:
            while waiting:
                oid = waiting.pop()
                held, record = self._held[oid], self._in_flight[oid]
                try:
                    result = await settle(self._session, held, record, until, confirm=self._confirm)
                except Exception as exc:  # a bug must not lose this outcome, nor the batch's others
                    logger.exception("order %d: unexpected error while settling", oid)
                    note = f"the settling pass failed (unexpected {type(exc).__name__}: {exc})"
                    result = attrs.evolve(held, note=f"{held.note}; {note}" if held.note else note)
                del self._held[oid]
                if (handing := self._deliver(result, sink)) is not None:
                    await handing

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.workers, len(waiting))):
                tg.start_soon(settler)

    async def _expire(self, sink: Sink) -> None:
        # The deadline struck: every id still gets an outcome, sent or not.
        for oid, record in list(self._in_flight.items()):
            finished = self._unsent.get(oid)
            if finished is not None:
                await _give(sink, finished)
                continue
            held = self._held.get(oid)
            if held is not None:
                note = "the batch deadline expired before the settling pass could settle it"
                await _give(sink, attrs.evolve(held, note=f"{held.note}; {note}" if held.note else note))
                continue
            age = self._session._pipeline.cancels.age(oid)
            if age is not None:
                # The exchange answered this session's cancel 2xx (``confirm=True`` was waiting to
                # see it take effect): queued, not confirmed, never "not sent".
                error = CancelNotConfirmedError(
                    f"order {oid}: cancel queued {duration(age)} ago, not confirmed before the batch "
                    "deadline expired",
                    order_id=oid,
                    order=None,
                )
                await _give(
                    sink,
                    CancelOutcome(
                        order_id=oid, status=CancelStatus.QUEUED, error=error, attempts=record.count
                    ),
                )
                continue
            # Interrupted mid-attempt, or after one that may have been processed: unknown. Only
            # between attempts that cannot have arrived (refused connections): failed.
            sent = record.sending or record.ambiguous
            status = (
                CancelStatus.UNKNOWN
                if sent
                else CancelStatus.FAILED
                if record.count
                else CancelStatus.SKIPPED
            )
            await _give(
                sink,
                CancelOutcome(
                    order_id=oid,
                    status=status,
                    error=BatchTimeoutError(f"order {oid}: batch deadline expired", order_id=oid, sent=sent),
                    attempts=record.count,
                ),
            )
        self._in_flight.clear()
        self._unsent.clear()
        self._held.clear()
        while (left := self._take()) is not None:
            await _give(
                sink,
                CancelOutcome(
                    order_id=left,
                    status=CancelStatus.SKIPPED,
                    error=BatchTimeoutError(
                        f"order {left}: batch deadline expired before it was sent", order_id=left, sent=False
                    ),
                ),
            )


async def iterate_batch(batch: Batch) -> AsyncGenerator[CancelOutcome, None]:
    """The batch as an async generator. Close it with ``contextlib.aclosing`` if you stop early."""
    send, recv = anyio.create_memory_object_stream[CancelOutcome](batch.workers)

    # anyio's stream send/receive yield to the event loop on every call; trying the no-wait
    # forms first keeps a hand-over that need not wait from costing a loop turn per outcome.
    def hand_over_now(outcome: CancelOutcome) -> bool:
        try:
            send.send_nowait(outcome)
        except anyio.WouldBlock:
            return False
        return True

    async def hand_over(outcome: CancelOutcome) -> None:
        if not hand_over_now(outcome):
            await send.send(outcome)

    #: A batch that refuses to start (``confirm_with="stream"`` and no stream) raises its error
    #: as ``cancel_many`` does, not wrapped in the task group's exception group.
    refused: list[TanxError] = []

    async def produce() -> None:
        async with send:
            try:
                await batch.run(hand_over, instant=hand_over_now)
            except TanxError as exc:
                refused.append(exc)

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
                batch.delivered(item)
                yield item
        except GeneratorExit:
            # The consumer stopped early: wind the workers up here, then finish quietly
            # (re-raising inside the task group would surface as an exception group).
            tg.cancel_scope.cancel()
            return
    if refused:
        raise refused[0]
    if batch.invalid is not None:
        raise batch.invalid
