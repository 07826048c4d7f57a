"""``cancel_iter``'s iterator and ``cancel_many``'s ``on_outcome``: outcomes handed to the
caller's code without the caller's code ever holding the sending back.

``CancelIterator`` runs its batch in a task the session owns (``_owned``), outside the
caller's cancel scopes, and only reads what the batch hands over: leaving the ``async for`` by
``break``, ``return`` or an exception never cancels the caller's task (no task group is entered
by the iterator) and works the same on asyncio and trio. Outcomes wait for the consumer in a
buffer that never makes a worker wait for a sized input (at most one outcome per id) and holds
at most ``ITER_MAX_BUFFERED`` for a lazy one.

``Told`` calls ``on_outcome`` from a task of its own: never inside a transport callback (the
batch's fast path hands outcomes over there), never while a worker waits.
"""

from __future__ import annotations

import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import TYPE_CHECKING, Any

import anyio

from . import _constants as C
from ._batch import Batch
from ._errors import SessionClosedError
from ._instrument import operation
from ._log import logger
from .models import CancelOutcome

if TYPE_CHECKING:
    from ._instrument import Operation
    from ._owned import Job
    from ._pipeline import Pipeline

__all__ = ["CancelIterator", "Told", "collect_all"]


class CancelIterator(AsyncIterator[CancelOutcome]):
    """What [`cancel_iter`][tanx_async.orders.Orders.cancel_iter] returns: an async iterator of
    one ``CancelOutcome`` per distinct id, in completion order.

    The batch starts with the first ``__anext__``. Leaving the loop early (``break``,
    ``return``, an exception; ``aclose()`` or dropping the iterator) stops the batch: no more
    ids are sent, the cancels already sent finish and settle in the background (their outcomes
    are logged, not yielded), and the caller's task is never cancelled by it. ``stop()`` does
    the same and returns an outcome for every id not yet yielded."""

    def __init__(self, pipeline: Pipeline, batch: Batch, *, sized: bool) -> None:
        self._owned = pipeline.owned
        #: What the batch's task and this iterator share (the task never holds the iterator:
        #: a ``break`` drops it, and dropping it stops the batch).
        self._feed = _Feed(batch, None if sized else C.ITER_MAX_BUFFERED, pipeline)
        self._job: Job | None = None

    def __aiter__(self) -> CancelIterator:
        return self

    async def __anext__(self) -> CancelOutcome:
        feed = self._feed
        if self._job is None and not feed.closed:
            self._job = self._owned.spawn(feed.run, "tanx-async cancel_iter")
        return await feed.next()

    async def aclose(self) -> None:
        """Stop the batch (see the class docstring). Idempotent."""
        self._feed.close()

    def stop(self) -> list[CancelOutcome]:
        """Stop the batch now and return, for every id not yet yielded, its outcome as known
        now: decided ones as they are, the ids whose cancel is under way ``unknown`` (they may
        still take effect), the rest of a sized input ``skipped`` (a lazy input's ids not yet
        taken are not read). Safe in an ``except`` block of a cancelled task: it does not wait."""
        feed = self._feed
        if self._job is not None:
            self._job.cancel()  # first: a worker's fast path stops handing over at once
        left = list(feed.buffer)
        if not feed.done:
            left.extend(feed.batch.remaining(pull_lazy=False, interrupted=True))
        feed.close()
        return left

    def __del__(self) -> None:
        # A plain ``break`` drops the iterator without closing it.
        self._feed.close()


class _Feed:
    """The outcomes a batch hands over and its consumer has not read yet."""

    def __init__(self, batch: Batch, cap: int | None, pipeline: Pipeline) -> None:
        self.batch = batch
        self._pipeline = pipeline
        #: The instrumentation's operation while the batch runs (``cancel_iter``), and its count.
        self._operation: Operation | None = None
        self._count = 0
        #: At most this many outcomes wait for the consumer (None: a sized input, one per id).
        self._cap = cap
        self.buffer: deque[CancelOutcome] = deque()
        self.done = False
        self.closed = False
        self._error: BaseException | None = None
        #: Set when the consumer may go on (an outcome, the end) / a worker may hand over.
        self._readable: anyio.Event | None = None
        self._writable: anyio.Event | None = None

    async def next(self) -> CancelOutcome:
        while True:
            if self.buffer:
                outcome = self.buffer.popleft()
                if self._writable is not None:
                    self._writable.set()
                return outcome
            if self.done or self.closed:
                error, self._error = self._error, None
                if error is not None:
                    raise error
                raise StopAsyncIteration
            self._readable = anyio.Event()
            await self._readable.wait()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.batch.stop()
        self.buffer.clear()
        for event in (self._writable, self._readable):
            if event is not None:
                with contextlib.suppress(RuntimeError):  # (dropped after its event loop closed)
                    event.set()

    async def run(self) -> None:
        try:
            # The operation is current in the batch's task only, never in the consumer's code.
            with operation(self._pipeline, "cancel_iter") as self._operation:
                await self.batch.run(self._hand)
                if self._operation is not None:
                    self._operation.set("batch_size", self._count)
            self._error = self.batch.invalid
        except Exception as exc:  # the batch refused to start (confirm_with="stream", no stream)
            self._error = exc
        except BaseException:
            if not self.closed:
                self._error = SessionClosedError("the session was closed while cancel_iter ran")
            raise
        finally:
            self.done = True
            if self._readable is not None:
                self._readable.set()

    def _hand_now(self, outcome: CancelOutcome) -> bool:
        if self.closed:
            logger.info("order %d: %s (after the consumer left)", outcome.order_id, outcome.status.value)
        elif self._cap is not None and len(self.buffer) >= self._cap:
            return False
        else:
            self.buffer.append(outcome)
            if self._readable is not None:
                self._readable.set()
        if self._operation is not None:
            self._count += 1
            self._operation.outcomes((outcome,))
        return True

    def _hand(self, outcome: CancelOutcome) -> Coroutine[Any, Any, None] | None:
        return None if self._hand_now(outcome) else self._wait_to_hand(outcome)

    async def _wait_to_hand(self, outcome: CancelOutcome) -> None:
        while not self._hand_now(outcome):
            # One event for every waiting worker: the consumer's read wakes them all.
            if self._writable is None or self._writable.is_set():
                self._writable = anyio.Event()
            await self._writable.wait()


class Told:
    """Calls ``on_outcome`` for each outcome, from ``run``'s task (or ``flush``)."""

    def __init__(self, on_outcome: Callable[[CancelOutcome], object]) -> None:
        self._on_outcome = on_outcome
        self._pending: deque[CancelOutcome] = deque()
        self._wake = anyio.Event()
        self._finished = False

    def add(self, outcome: CancelOutcome) -> None:
        self._pending.append(outcome)
        self._wake.set()

    def finish(self) -> None:
        """No more outcomes: ``run`` returns once it has told the pending ones."""
        self._finished = True
        self._wake.set()

    def flush(self) -> None:
        """Tell every pending outcome now."""
        while self._pending:
            outcome = self._pending.popleft()
            try:
                self._on_outcome(outcome)
            except Exception:  # the caller's bug must not cost the other outcomes theirs
                logger.exception("on_outcome raised for order %d", outcome.order_id)

    async def run(self) -> None:
        while True:
            self.flush()
            if self._finished:
                return
            self._wake = anyio.Event()
            await self._wake.wait()


async def collect_all(
    batch: Batch, results: dict[int, CancelOutcome], on_outcome: Callable[[CancelOutcome], object] | None
) -> None:
    """``cancel_many``'s run of ``batch``: every outcome into ``results`` (by id) and to
    ``on_outcome`` (from a task of its own). If the awaiting task is cancelled, every id not
    told yet gets its outcome as known now (``Batch.remaining``) before the cancellation goes
    on."""
    told = None if on_outcome is None else Told(on_outcome)

    def collect(outcome: CancelOutcome) -> None:
        results[outcome.order_id] = outcome
        if told is not None:
            told.add(outcome)

    try:
        if told is None:
            await batch.run(collect)
            return
        refused: Exception | None = None
        async with anyio.create_task_group() as tg:
            tg.start_soon(told.run)
            try:
                await batch.run(collect)
            except Exception as exc:  # (the batch refused to start: raised as it is, not in a group)
                refused = exc
            told.finish()
        if refused is not None:
            raise refused
    except anyio.get_cancelled_exc_class():
        for outcome in batch.remaining(pull_lazy=False, interrupted=True):
            collect(outcome)
        if told is not None:
            told.flush()
        raise
