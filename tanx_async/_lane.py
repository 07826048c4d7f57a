"""The batch's fast path: a worker's cancels sent and settled in the transport's callbacks.

On the task path every cancel of a batch costs its worker task a wake-up and a chain of
coroutine frames (the worker, ``cancel_one``, ``Pipeline.send``, the sender, the answer's
future). That chain is what the worst cases need (retries, token renewal, look-ups, waits), and
the happy case does not: a cancel answered with a 2xx success. A ``Lane`` sends its worker's
cancel with an ``Express`` (``Pipeline.express``) and, in the callback that gets the success, records the
outcome, hands it over and sends the worker's next cancel: no task runs per cancel
(the task per cancel is the largest cost left on a cancel's happy path: ``benchmarks/RESULTS.md``,
"What one cancel costs, counted").

What makes an outcome does not change: ``QUEUED`` only from a 2xx success envelope, decoded as
``Pipeline.send`` decodes it, built by the function ``cancel_one`` uses (``_cancel.queued``), and
handed to the batch as the worker hands its own (``Batch.finished``: confirmation, hand-over).
The batch's state is the batch's: the lane takes its next order with ``Batch.begin`` and keeps
a late answer with ``Batch.keep``. The lane stops and hands the order in hand to its worker
task, which goes on the ordinary way from exactly where the lane left it, when:

- the answer is anything but a success (an error status, a body that does not decode, an
  expired token, a connection error, a read timeout): ``cancel_one(first=...)`` continues from
  that answer, so retries, renewal and look-ups are the task path's, and the attempt is not
  made twice;
- the next cancel cannot be sent at once (``Express.send`` says False: a closed session, no usable
  token, a rate limit or 429 pause, a full limiter, no warm idle connection): the worker sends it;
- the ids run out, or the confirmer has no room for another order (the worker waits for it);
- handing an outcome over must wait (the worker waits).

The lane belongs to its worker: when the worker is cancelled (the batch deadline, the consumer
stopped) the attempt in flight is aborted (its connection closed) and stays in the batch's
records as sent, so the batch reports it ``UNKNOWN``, as it does on the task path. Answers reach
the lane through the pool's pacer: at most ``ANSWERS_PER_TURN`` per loop iteration, as on the
task path.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

from . import _constants as C
from ._attempts import Attempt, Attempts
from ._cancel import cancel_body
from ._deadline import Deadline
from ._errors import APIConnectionError
from ._httpx import httpx
from ._pipeline import Pipeline
from ._transports import RawResponse
from .models import CancelOutcome

__all__ = ["Lane", "Owner", "Stop"]


class Owner(Protocol):
    """What a lane asks of its batch (``_batch.Batch``)."""

    def begin(self) -> tuple[int, Attempts] | None: ...

    def finished(self, result: CancelOutcome, record: Attempts, started: float) -> Awaitable[None] | None: ...

    def keep(self, result: CancelOutcome) -> None: ...


class Stop:
    """Why a lane stopped, and what its worker task takes over.

    ``oid`` is None when the lane took no next order (the ids ran out, or the confirmer has no
    room). Otherwise the order ``oid`` (begun by the batch, its ``record`` and ``deadline``
    begun at ``started``) is the worker's to cancel, going on from ``first`` when an attempt
    was made. ``handing``: a hand-over the worker must wait for first. ``error``: a bug met in
    the lane (the worker raises it)."""

    __slots__ = ("deadline", "error", "first", "handing", "oid", "record", "started")

    def __init__(
        self,
        *,
        oid: int | None = None,
        record: Attempts | None = None,
        deadline: Deadline | None = None,
        started: float = 0.0,
        first: Attempt | None = None,
        handing: Awaitable[None] | None = None,
        error: Exception | None = None,
    ) -> None:
        self.handing = handing
        self.oid = oid
        self.record = record
        self.deadline = deadline
        self.started = started
        self.first = first
        self.error = error


class Lane:
    """One batch worker's run of callback-driven cancels (see the module's docstring)."""

    __slots__ = (
        "_batch",
        "_express",
        "_loop",
        "_make",
        "_oid",
        "_per_order",
        "_record",
        "_started",
        "_stop",
        "_wake",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        batch: Owner,
        *,
        timeout: httpx.Timeout,
        per_order: float | None,
        make: Callable[[int, Attempts, float, dict[str, Any], bytes], CancelOutcome],
    ) -> None:
        #: Seconds each order's cancel may take in all (the session's ``deadline``), or None.
        self._per_order = per_order
        if per_order is not None:
            # Every attempt the lane makes is an order's first, made as the order begins.
            timeout = Deadline.cut(timeout, per_order)
        self._express = pipeline.express("POST", C.CANCEL_PATH, timeout, self._answered)
        #: The batch: the next order, and where its outcome goes.
        self._batch = batch
        #: The ``QUEUED`` outcome of a success (``_cancel.queued``).
        self._make = make
        self._loop = asyncio.get_running_loop()
        self._wake: asyncio.Future[Stop] | None = None
        self._stop: Stop | None = None
        self._oid = 0
        self._record = Attempts()
        self._started = 0.0

    @property
    def usable(self) -> bool:
        """False where the transport cannot send from callbacks: the lane never sends."""
        return self._express is not None

    def send(self, oid: int, record: Attempts, started: float) -> bool:
        """Send ``oid``'s cancel at once (``started``: when its operation began, by
        ``time.monotonic``) and run the lane from its answer; False, with nothing sent, when
        something stands in the way (the worker then sends it the ordinary way)."""
        express = self._express
        if express is None or not express.send(cancel_body(oid), record, started):
            return False
        self._oid, self._record, self._started = oid, record, started
        return True

    async def stopped(self) -> Stop:
        """Wait until the lane stops. Cancelled meanwhile: the attempt in flight is aborted."""
        stop, self._stop = self._stop, None
        if stop is not None:
            return stop
        wake: asyncio.Future[Stop] = self._loop.create_future()
        self._wake = wake
        try:
            stop = await wake
            return stop
        except BaseException:
            if self._express is not None:
                self._express.abort()
            raise
        finally:
            self._wake = None

    def close(self) -> None:
        """The worker is done with the lane (however it ended): an attempt still in flight is
        aborted and the lane lets go of its express. They hold each other, and the lane holds
        the batch: kept, a finished batch and all its outcomes would stay in memory until the
        cyclic garbage collector found them, long after the caller dropped them."""
        express, self._express = self._express, None
        if express is not None:
            express.close()

    def _halt(self, stop: Stop) -> None:
        express = self._express
        if express is not None:
            express.release()
        wake = self._wake
        if wake is None:
            self._stop = stop  # (not waited on yet)
        elif not wake.done():
            wake.set_result(stop)

    def _hand_back(self, oid: int, record: Attempts, started: float, first: Attempt | None = None) -> None:
        """Stop, handing order ``oid`` (begun at ``started``, by ``time.monotonic``, which is
        asyncio's clock) to the worker, with its deadline, to go on from ``first`` if given."""
        per_order = self._per_order
        deadline = None if per_order is None else Deadline.since(per_order, started)
        self._halt(Stop(oid=oid, record=record, deadline=deadline, started=started, first=first))

    def _answered(self, body: dict[str, Any] | None, result: RawResponse | APIConnectionError) -> None:
        """The express's callback, when the attempt in flight ended: what the task path does in
        four coroutines, in one function (the outcome of a success, handed over, and the next
        cancel sent; anything else stops the lane). Never raises (it runs in the transport's
        callbacks, where an exception would leave the worker waiting forever)."""
        try:
            oid, record, started = self._oid, self._record, self._started
            express = self._express
            assert express is not None
            wake = self._wake
            if wake is not None and wake.done():
                # The worker was cancelled (the batch deadline, the consumer gone) and has not
                # run since: nothing more is sent. A success's outcome is kept for the batch's
                # deadline (``Batch.remaining``); any other answer leaves the order "sent", hence
                # unknown.
                express.release()
                if body is not None:
                    try:
                        self._batch.keep(self._make(oid, record, started, body, result.content))  # type: ignore[union-attr]
                    except Exception:  # a 2xx we cannot read: may have been processed
                        record.ambiguous = True
                return
            if body is None:
                # Not a success: the worker goes on from this answer (``cancel_one(first=...)``).
                self._hand_back(oid, record, started, express.first())
                return
            try:
                outcome = self._make(oid, record, started, body, result.content)  # type: ignore[union-attr]
            except Exception:  # a 2xx we cannot read: the worker meets it again (and looks it up)
                record.ambiguous = True  # (as ``cancel_one`` says of it: it may have been processed)
                self._hand_back(oid, record, started, express.first())
                return
            batch = self._batch
            handing = batch.finished(outcome, record, started)
            if handing is not None:
                self._halt(Stop(handing=handing))  # the worker waits for it
                return
            taken = batch.begin()  # (a sized input's next id: no caller's code runs)
            if taken is None:
                self._halt(Stop())  # no more ids, or no room to confirm another yet
                return
            # The worker's next cancel, sent from this callback (no task wakes for it).
            oid, record = taken
            started = time.monotonic()
            try:
                sent = self.send(oid, record, started)
            except Exception:  # nothing was sent (a bad header, say): the worker's attempt says why
                sent = False
            if not sent:
                self._hand_back(oid, record, started)
        except Exception as exc:  # pragma: no cover - a bug: the worker raises it
            self._halt(Stop(error=exc))
