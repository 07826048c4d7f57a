"""The fan-out: many orders' cancels run at once, one truthful outcome per distinct id.

``Batch`` fans ids out to a fixed set of workers, each settling one order at a time with
``_cancel.cancel_one`` (the evidence rule lives there). Workers never raise: every error becomes an
outcome, so one failing order cannot abort the others. An ``UNKNOWN`` outcome is held back and,
once every id has been tried, the settling pass (``_cancel.settle``) looks it up again with
backoff, within the batch deadline. The deadline lives inside the worker task (never around the
consumer), and ids still in flight or never sent when it expires get ``UNKNOWN``/``SKIPPED``.

Bounds: ``concurrency`` workers; memory bounded by the workers, the dedupe window
(``DEDUPE_WINDOW``), the held unknowns (``SETTLE_MAX_HELD``) and the confirmations running
(``CONFIRM_MAX_PENDING``), whatever the number of ids; the settling pass within the batch deadline
(without one, the session's deadline, at most ``SETTLE_TIMEOUT``).
"""

from __future__ import annotations

import contextlib
import functools
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING

import anyio
import attrs

from . import _constants as C
from . import _deadline
from ._attempts import Attempt, Attempts
from ._cancel import cancel_one, fetch_order, queued, settle
from ._confirm import Confirmer, ConfirmWith, open_confirmer
from ._duration import duration
from ._errors import (
    BatchInterruptedError,
    BatchTimeoutError,
    CancelNotConfirmedError,
    InvalidOrderIdError,
    TanxError,
)
from ._lane import Lane
from ._log import logger
from ._memory import RecentIds
from ._validate import order_id as check_order_id
from .models import CancelOutcome, CancelStatus

if TYPE_CHECKING:
    from ._session import AsyncTanxSession

__all__ = ["Batch"]

#: Where outcomes go: a plain function (``cancel_many``'s dict) or a coroutine function (the
#: hand-over of ``cancel_iter``, which may wait for the consumer).
Sink = Callable[[CancelOutcome], Awaitable[None] | None]


class Batch:
    """One run of the fan-out: ids in, one outcome per (distinct) id out.

    Workers pull ids straight from the (possibly lazy) source, one at a time, only when they are
    free. An id already in flight (or held for the settling pass) is never taken again, and with
    ``dedupe`` neither is one among the last ``DEDUPE_WINDOW`` ids taken: memory is bounded by
    the workers, the window, the held unknowns (at most ``SETTLE_MAX_HELD``) and the cancels
    waiting for confirmation (at most ``CONFIRM_MAX_PENDING``), whatever the number of ids.

    With ``confirm``, a worker hands each queued cancel to the batch's ``Confirmer`` and sends
    its next cancel at once: confirming never holds the sending back.

    The batch's state (the ids in flight, the outcomes being handed over, the held unknowns) is
    its own: its workers and their fast paths (``_lane``) go through ``begin``, ``finished``
    and ``keep``.
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
        self._confirmer: Confirmer | None = None
        self._sink: Sink | None = None
        #: Workers running, and whether more may still start (the confirmer is closed after both).
        self._live = 0
        self._starting = False
        self._exhausted = False
        #: ``stop()`` was called: no more ids are taken (those in flight finish).
        self._stopped = False
        #: Every id taken and not yet delivered, with its attempt record.
        self._in_flight: dict[int, Attempts] = {}
        #: Outcomes being handed over (kept until delivered: a deadline may strike meanwhile).
        self._unsent: dict[int, CancelOutcome] = {}
        #: ``UNKNOWN`` outcomes waiting for the settling pass.
        self._held: dict[int, CancelOutcome] = {}
        self._recent = RecentIds(C.DEDUPE_WINDOW if dedupe else 0)
        #: An invalid id met in a lazy input, or the error the input raised; raised after every
        #: sent id has its outcome.
        self.invalid: Exception | None = None

    def stop(self) -> None:
        """Take no more ids: the cancels in flight finish and settle, the rest are not sent."""
        self._stopped = True
        if self._confirmer is not None:
            self._confirmer.wake()  # (its look-ups need not wait for the sending any more)

    async def run(self, sink: Sink) -> None:
        """Cancel everything, settle what is unknown, handing each outcome to ``sink``."""
        self._sink = sink
        try:
            await self._run()
        finally:
            self._sink = None  # (it holds the consumer, which holds the batch: no cycle left)

    def _open_confirmer(self) -> AbstractAsyncContextManager[Confirmer | None]:
        if self._confirm_with is None:
            return contextlib.nullcontext()
        return open_confirmer(
            self._session,
            self._confirm_with,
            self._deadline,
            fetch=functools.partial(fetch_order, self._session),
            confirm_timeout=self._confirm_timeout,
            per_order=self._session.deadline,
            deliver=self._deliver,
            lookups=self.workers,
            may_look_up=self._sent_all,
        )

    async def _run(self) -> None:
        started = time.monotonic()
        with anyio.move_on_after(self._deadline) as deadline:
            # With confirm=True the stream is open before the first cancel leaves.
            async with self._open_confirmer() as self._confirmer, anyio.create_task_group() as tg:
                if self._confirmer is not None:
                    tg.start_soon(self._confirmer.run)
                # Started a few per event-loop iteration: each worker's first step sends a
                # request, and 64 of them in one iteration would hold the loop for milliseconds.
                self._starting = True
                for count in range(1, self.workers + 1):
                    self._live += 1  # (counted as it is started: it may not run before the loop ends)
                    tg.start_soon(self._worker)
                    if count % C.WORKERS_STARTED_PER_TURN == 0 and count < self.workers:
                        await anyio.lowlevel.checkpoint()
                        if self._exhausted:
                            break  # the workers running took every id: no more are needed
                self._starting = False
                self._workers_done()
            if self._held:
                if self._deadline is None:
                    # As long as one operation may take (the session's deadline), at most 5 s.
                    per_order = self._session.deadline
                    budget = C.SETTLE_TIMEOUT if per_order is None else min(C.SETTLE_TIMEOUT, per_order)
                    await self._settle_held(time.monotonic() + budget)
                else:
                    await self._settle_held(started + self._deadline)
        if deadline.cancelled_caught:
            # The deadline struck: every id still gets an outcome, sent or not.
            for outcome in self.remaining(pull_lazy=True):
                if (handing := self._deliver(outcome)) is not None:
                    await handing

    def _take(self, stopped_too: bool = False) -> int | None:
        """The next id to cancel, or None when the source is exhausted, hit an invalid id or
        raised (the error is kept in ``invalid``, raised once every id sent has its outcome),
        or the batch was stopped (``stopped_too``: the next id all the same, to report it)."""
        if self._exhausted or (self._stopped and not stopped_too):
            return None
        if self._checked:
            taken = next(self._source, None)
            if taken is None:
                self._ran_out()
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
        self._ran_out()
        return None

    def _ran_out(self) -> None:
        self._exhausted = True
        if self._confirmer is not None:
            self._confirmer.wake()  # (its look-ups need not wait for the sending any more)

    def _sent_all(self) -> bool:
        """No id is left to send (the confirmer's look-ups yield to the cancels until then)."""
        return self._exhausted or self._stopped

    def begin(self) -> tuple[int, Attempts] | None:
        """The next order to cancel, counted in flight with its new attempt record (and watched,
        with ``confirm``, before its cancel leaves); None when the ids ran out, or while the
        confirmer has no room for another order."""
        confirmer = self._confirmer
        if confirmer is not None and confirmer.full:
            return None
        oid = self._take()
        if oid is None:
            return None
        record = self._in_flight[oid] = Attempts()
        if confirmer is not None:
            confirmer.watch(oid)
        return oid, record

    def finished(self, result: CancelOutcome, record: Attempts, started: float) -> Awaitable[None] | None:
        """An order's cancel ended with ``result``: a queued cancel goes to the confirmer
        (``confirm``), an unknown one is held for the settling pass (``resolve``), and the rest
        is handed over (an awaitable, when the hand-over must wait; see ``_deliver``)."""
        oid = result.order_id
        confirmer = self._confirmer
        if confirmer is not None:
            if result.status is CancelStatus.QUEUED:
                settled = confirmer.add(result, record, started)
                if settled is None:
                    return None  # (the confirmer delivers it: ``_deliver``)
                result = settled
            else:
                confirmer.unwatch(oid)
        if result.status is CancelStatus.UNKNOWN and self._resolve and len(self._held) < C.SETTLE_MAX_HELD:
            self._held[oid] = result
            return None
        return self._deliver(result)

    def keep(self, result: CancelOutcome) -> None:
        """A cancel's outcome that arrived after its worker was stopped (the batch deadline, the
        consumer gone): kept for ``remaining``."""
        self._unsent[result.order_id] = result

    def _workers_done(self) -> None:
        if self._live == 0 and not self._starting and self._confirmer is not None:
            self._confirmer.close()  # (no more orders to confirm: its poller ends once none waits)

    async def _worker(self) -> None:
        per_order = self._session.deadline
        now = _deadline.clock()
        confirmer = self._confirmer  # open (or None) before any worker starts
        pipeline = self._session._pipeline
        lane: Lane | None = None
        lane_tried = False
        try:
            while True:
                if confirmer is not None and confirmer.full:
                    await confirmer.room()
                taken = self.begin()
                if taken is None:
                    return
                oid, record = taken
                if not lane_tried and pipeline.sender is not None:  # (built by the first request)
                    lane_tried = True
                    lane = self._lane(per_order)
                _deadline.begin(per_order, now=now)
                started = time.monotonic()
                first: Attempt | None = None
                if lane is not None:
                    try:
                        sent = lane.send(oid, record, started)
                    except Exception:  # nothing was sent: the ordinary path meets the error and says it
                        sent = False
                    if sent:
                        stop = await lane.stopped()
                        if stop.handing is not None:
                            await stop.handing
                        if stop.error is not None:
                            raise stop.error
                        if stop.oid is None or stop.record is None:
                            continue  # the lane took no next id (none left, or no room yet)
                        oid, record, started, first = stop.oid, stop.record, stop.started, stop.first
                        _deadline.enter(stop.deadline)
                try:
                    result = await cancel_one(
                        self._session, oid, resolve=self._resolve, record=record, first=first, started=started
                    )
                except Exception as exc:  # a bug must not lose the outcome of the order
                    logger.exception("order %d: unexpected error while cancelling", oid)
                    result = CancelOutcome(
                        order_id=oid,
                        status=CancelStatus.UNKNOWN if record.count else CancelStatus.FAILED,
                        error=TanxError(f"unexpected {type(exc).__name__}: {exc}"),
                        attempts=record.count,
                    )
                if (handing := self.finished(result, record, started)) is not None:
                    await handing
        finally:
            if lane is not None:
                lane.close()  # (it and its express hold each other, and the batch)
            self._live -= 1
            self._workers_done()

    def _lane(self, per_order: float | None) -> Lane | None:
        """A fast path for one worker (``_lane``), where the batch can use one: ids that need no
        caller's code to take (a sized input, checked up front: a lazy one is the caller's
        generator, which never runs inside a transport callback) and a session that may send
        from callbacks. (A sized input's outcomes are handed over at once, never to the
        caller's code: a dict, a buffer, ``Told``'s queue.)"""
        session = self._session
        pipeline = session._pipeline
        if not self._checked or pipeline.immediate_sender is None:
            return None
        lane = Lane(
            pipeline,
            self,
            timeout=session._timeout,
            per_order=per_order,
            make=functools.partial(queued, session),
        )
        return lane if lane.usable else None

    def _deliver(self, result: CancelOutcome) -> Awaitable[None] | None:
        """Hand ``result`` to the sink ``run`` was given: done at once for a plain function, else
        an awaitable that completes the hand-over (the outcome is kept meanwhile: a deadline may
        strike)."""
        oid = result.order_id
        assert self._sink is not None  # (set while the batch runs)
        pending = self._sink(result)
        if pending is None:
            self._in_flight.pop(oid, None)  # (gone already if the batch was interrupted)
            return None
        self._unsent[oid] = result
        return self._handed(result, pending)

    async def _handed(self, outcome: CancelOutcome, pending: Awaitable[None]) -> None:
        await pending
        self.delivered(outcome)

    def delivered(self, outcome: CancelOutcome) -> None:
        """``outcome`` reached the consumer: no longer the batch's to hand over (nor the
        deadline's, ``remaining``)."""
        oid = outcome.order_id
        if self._unsent.get(oid) is outcome:
            del self._unsent[oid]
            self._in_flight.pop(oid, None)

    async def _settle_held(self, until: float) -> None:
        """The settling pass: every held ``UNKNOWN`` looked up again, ``workers`` at a time."""
        waiting = list(self._held)
        logger.info(
            "settling %d unknown outcome(s) for up to %s", len(waiting), duration(until - time.monotonic())
        )

        async def settler() -> None:
            while waiting:
                oid = waiting.pop()
                held, record = self._held[oid], self._in_flight.get(oid) or Attempts()
                try:
                    result = await settle(self._session, held, record, until, confirm=self._confirm)
                except Exception as exc:  # a bug must not lose this outcome, nor the batch's others
                    logger.exception("order %d: unexpected error while settling", oid)
                    note = f"the settling pass failed (unexpected {type(exc).__name__}: {exc})"
                    result = attrs.evolve(held, note=f"{held.note}; {note}" if held.note else note)
                self._held.pop(oid, None)
                if (handing := self._deliver(result)) is not None:
                    await handing

        async with anyio.create_task_group() as tg:
            for _ in range(min(self.workers, len(waiting))):
                tg.start_soon(settler)

    def remaining(self, *, pull_lazy: bool, interrupted: bool = False) -> Iterator[CancelOutcome]:
        """The outcome of every id taken or still to take and not delivered yet, as far as it is
        known now (the batch's tasks have ended: its deadline struck, or its caller was
        cancelled): an outcome being handed over as it is; a held ``UNKNOWN`` as it is; a cancel
        queued and being confirmed ``QUEUED``, not confirmed; one interrupted mid-attempt, or
        after an attempt that may have been processed, ``UNKNOWN``; one between attempts that
        cannot have arrived ``FAILED``; the ids never sent ``SKIPPED``. ``pull_lazy``: a lazy
        input's ids not yet taken are pulled (to say ``SKIPPED`` for each) rather than left.
        ``interrupted``: the caller, not the deadline, ended the batch (``BatchInterruptedError``)."""
        why = "batch was interrupted" if interrupted else "batch deadline expired"
        error_class = BatchInterruptedError if interrupted else BatchTimeoutError
        for oid, record in list(self._in_flight.items()):
            finished = self._unsent.get(oid)
            if finished is not None:
                if self._confirm and finished.status is CancelStatus.QUEUED and finished.error is None:
                    # Answered 2xx after the batch stopped waiting: queued, never confirmed.
                    error = CancelNotConfirmedError(
                        f"order {oid}: cancel queued, not confirmed before the {why}",
                        order_id=oid,
                        order=None,
                    )
                    finished = attrs.evolve(finished, error=error)
                yield finished
                continue
            held = self._held.get(oid)
            if held is not None:
                note = f"the {why} before the settling pass could settle it"
                yield attrs.evolve(held, note=f"{held.note}; {note}" if held.note else note)
                continue
            queued = None if self._confirmer is None else self._confirmer.queued(oid)
            age = self._session.orders._cancels.age(oid)
            if queued is not None or age is not None:
                # The exchange answered this session's cancel 2xx (``confirm=True`` was waiting to
                # see it take effect): queued, not confirmed, never "not sent".
                since = "" if age is None else f" {duration(age)} ago"
                error = CancelNotConfirmedError(
                    f"order {oid}: cancel queued{since}, not confirmed before the {why}",
                    order_id=oid,
                    order=None,
                )
                if queued is not None:
                    yield attrs.evolve(queued, error=error)
                else:
                    yield CancelOutcome(
                        order_id=oid, status=CancelStatus.QUEUED, error=error, attempts=record.count
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
            yield CancelOutcome(
                order_id=oid,
                status=status,
                error=error_class(f"order {oid}: {why}", order_id=oid, sent=sent),
                attempts=record.count,
            )
        self._in_flight.clear()
        self._unsent.clear()
        self._held.clear()
        if not (self._checked or pull_lazy):
            return
        self._stopped = True
        while (left := self._take(stopped_too=True)) is not None:
            yield CancelOutcome(
                order_id=left,
                status=CancelStatus.SKIPPED,
                error=error_class(f"order {left}: {why} before it was sent", order_id=left, sent=False),
            )
