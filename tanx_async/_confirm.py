"""``confirm=True``: queued cancels confirmed beside the sending, by one confirmer.

A ``Confirmer`` holds every queued cancel of a batch (or of one ``cancel(confirm=True)``) that
waits to be seen closed, and resolves each by the rule everything else follows: ``CANCELLED``
only on a ``cancel`` state seen, by push or by look-up (``done``: ``ALREADY_CLOSED``). There is no
task and no event per order: adding one (``add``) is a dict entry and a heap entry for when it is
next due, made synchronously, from a worker task or from the batch's fast path alike.

Two tasks do the waiting, however many orders wait:

- the stream consumer (``consume``): the private order stream is open (subscribed to ``order``)
  before the first cancel is sent, and each order is watched (``watch``) before its cancel
  leaves, so an update that arrives before the cancel's answer is kept. A closing update
  resolves its order at once. After a ``StreamGap`` (a reconnect, a buffer overflow) every
  order waiting is looked up once.
- the poller (``run``): the look-ups and the deadlines. With ``confirm_with="poll"`` every order
  is looked up, with backoff (``CONFIRM_POLL_INITIAL`` doubling to ``CONFIRM_POLL_CAP``); with
  ``"auto"`` an order that no push confirmed within its push window (``CONFIRM_PUSH_WINDOW``,
  or ``CONFIRM_PUSH_SHARE`` of its ``confirm_timeout`` when that is shorter), and every order once
  the stream is lost for good (or could not be opened); with ``"stream"`` none.

Look-ups yield to the cancels: while the batch still has ids to send (``may_look_up`` says
False) none starts, unless the batch waits for ``room`` here; at most ``lookups`` run at once.
An order not confirmed within ``confirm_timeout`` of its cancel being queued (with
``"stream"``: at once when the stream is lost) ends ``QUEUED`` with
``CancelNotConfirmedError``; where look-ups confirm (``"poll"``, ``"auto"``), only after at
least one look-up: one that look-ups yielding to the cancels held back is made at its deadline,
even while the batch sends (within ``lookups``), so the answer comes within ``confirm_timeout``
and one look-up.

A resolved outcome is handed over by a task of the poller's, never by the stream consumer (a
slow consumer must not stop the pushes); it counts as waiting until it is handed over. At most
``CONFIRM_MAX_PENDING`` orders wait (``full``: the batch takes no new id until there is
``room``).
"""

from __future__ import annotations

import contextlib
import heapq
import inspect
import itertools
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import anyio
import attrs

from . import _constants as C
from . import _deadline
from ._attempts import Attempts
from ._deadline import Deadline
from ._errors import CancelNotConfirmedError, TanxError, brief
from ._log import logger
from ._outcomes import Outcomes
from .models import CancelOutcome, CancelStatus, Order, OrderState, OrderUpdate, StreamGap, may_show_closed

if TYPE_CHECKING:
    from anyio.abc import TaskGroup

    from ._session import AsyncTanxSession
    from ._stream import OrderStream

__all__ = ["CONFIRM_WITH", "ConfirmWith", "Confirmer", "closed_before", "open_confirmer"]

ConfirmWith = Literal["stream", "poll", "auto"]
CONFIRM_WITH: tuple[ConfirmWith, ...] = ("stream", "poll", "auto")
#: Where a resolved outcome goes: done at once, or an awaitable that completes the hand-over.
Deliver = Callable[[CancelOutcome], Awaitable[None] | None]
Fetch = Callable[[int], Awaitable[Order]]
_CLOSED = (OrderState.CANCEL, OrderState.DONE)


class _Wait:
    """One order whose cancel was queued, waiting to be seen closed."""

    __slots__ = (
        "deadline",
        "delay",
        "due",
        "gap",
        "last_error",
        "looked",
        "looking",
        "oid",
        "outcome",
        "polling",
        "push_until",
        "queued",
        "update",
    )

    def __init__(
        self, queued: CancelOutcome, record: Attempts, started: float, update: OrderUpdate | None, gap: bool
    ) -> None:
        self.oid = queued.order_id
        #: The cancel's ``QUEUED`` outcome, and how its settled one is built (its attempts, and
        #: when it began).
        self.queued = queued
        self.outcome = Outcomes(self.oid, record, started)
        #: The latest update the stream brought (a closed state is final).
        self.update = update
        #: Updates may have been missed (a stream gap): look it up once.
        self.gap = gap
        #: Looked up with backoff from now on (``delay``: the next wait), not waiting for a push.
        self.polling = False
        self.delay = C.CONFIRM_POLL_INITIAL
        self.looking = False
        #: A look-up of it ended (its deadline may end it only after one, when look-ups confirm).
        self.looked = False
        self.last_error: Exception | None = None
        #: When the poller next looks at it, the end of its push window, and its deadline
        #: (``time.monotonic``).
        self.due = 0.0
        self.push_until = 0.0
        self.deadline = 0.0

    def order(self) -> Order | None:
        """The order as the cancel's answer echoed it, if it did and we can read it."""
        try:
            return self.queued.order
        except TanxError:  # an echo we cannot read: the look-ups say what is true
            return None


class Confirmer:
    """The queued cancels waiting for confirmation (see the module's docstring)."""

    def __init__(
        self,
        mode: ConfirmWith,
        *,
        fetch: Fetch,
        confirm_timeout: float,
        per_order: float | None,
        deliver: Deliver,
        lookups: int = 1,
        may_look_up: Callable[[], bool] | None = None,
    ) -> None:
        #: The look-up of one order (``_cancel.fetch_order``).
        self._fetch = fetch
        self.mode = mode
        self._confirm_timeout = confirm_timeout
        #: Each order's look-ups are bounded by its deadline: ``per_order`` (the session's
        #: deadline) plus ``confirm_timeout`` since its cancel began (None: the caller's).
        self._per_order = per_order
        self._deliver = deliver
        self._lookups = lookups
        self._may_look_up = may_look_up
        #: The stream is gone for good (or never opened, or not asked for).
        self.lost = mode == "poll"
        #: Orders whose cancel is about to leave or under way: the latest update of each (a
        #: closed state is final), and those a stream gap may have hidden updates of.
        self._watched: dict[int, OrderUpdate | None] = {}
        self._gapped: set[int] = set()
        #: Orders whose cancel was queued, waiting.
        self._waits: dict[int, _Wait] = {}
        #: Orders queued and not resolved yet.
        self.pending = 0
        self._heap: list[tuple[float, int, _Wait]] = []
        self._seq = itertools.count()
        #: Look-ups due and not started (the batch still sends, or ``lookups`` run already),
        #: first due first.
        self._ready: dict[int, _Wait] = {}
        #: Look-ups due past the order's deadline, never made: they may start at once.
        self._overdue: dict[int, _Wait] = {}
        #: Resolved outcomes whose hand-over must wait (``deliver`` returned an awaitable), and
        #: whether the task completing them (``_hand_over``) runs.
        self._handings: deque[Awaitable[None]] = deque()
        self._handing_over = False
        self._looking = 0
        self._closed = False
        self._wake: anyio.Event | None = None
        self._sleeping_until = 0.0
        self._room: anyio.Event | None = None
        self._room_waiters = 0

    # -- what the batch calls ---------------------------------------------------------------

    def watch(self, oid: int) -> None:
        """Keep ``oid``'s updates from now on (before its cancel is sent), until it is resolved
        or ``unwatch``."""
        if not self.lost:
            self._watched[oid] = None

    def unwatch(self, oid: int) -> None:
        self._watched.pop(oid, None)
        self._gapped.discard(oid)

    @property
    def full(self) -> bool:
        return self.pending >= C.CONFIRM_MAX_PENDING

    async def room(self) -> None:
        """Wait until fewer than ``CONFIRM_MAX_PENDING`` orders wait (look-ups may run now)."""
        while self.full:
            self._room_waiters += 1
            self.wake()
            try:
                if self._room is None or self._room.is_set():
                    self._room = anyio.Event()
                await self._room.wait()
            finally:
                self._room_waiters -= 1

    def add(self, queued: CancelOutcome, record: Attempts, started: float) -> CancelOutcome | None:
        """``queued``'s order waits for confirmation from now on; its outcome now if what is
        known already settles it (an update that came before the answer, a closed echo), or if
        a bug stopped it from waiting (queued, not confirmed: the outcome is never lost)."""
        oid = queued.order_id
        try:
            return self._add(queued, record, started)
        except Exception as exc:
            logger.exception("order %d: unexpected error while confirming", oid)
            wait = self._waits.get(oid)
            if wait is not None and wait.queued is queued:
                del self._waits[oid]  # (it waits no more: delivered here, once)
                self.pending -= 1
            why = f"cancel queued; confirming failed (unexpected {type(exc).__name__})"
            error = CancelNotConfirmedError(f"order {oid}: {why}", order_id=oid, order=None)
            return attrs.evolve(queued, error=error)

    def _add(self, queued: CancelOutcome, record: Attempts, started: float) -> CancelOutcome | None:
        oid = queued.order_id
        gap = False
        if self._gapped:
            gap = oid in self._gapped
            self._gapped.discard(oid)
        wait = _Wait(queued, record, started, self._watched.pop(oid, None), gap)
        now = time.monotonic()
        wait.deadline = now + self._confirm_timeout
        settled = self._settled_by_push(wait) or self._settled_by_echo(wait)
        if settled is not None:
            return settled
        self._waits[oid] = wait
        self.pending += 1
        if self.mode == "auto":
            wait.push_until = now + min(C.CONFIRM_PUSH_WINDOW, self._confirm_timeout * C.CONFIRM_PUSH_SHARE)
        else:
            wait.push_until = wait.deadline
        if wait.gap:
            self._due(wait, now)
        elif self.mode == "stream" and self.lost:
            self._due(wait, now)  # (expired at once: nothing more can confirm it)
        elif self.lost:
            wait.polling = True
            self._due(wait, now + wait.delay)
        else:
            self._due(wait, wait.push_until)
        return None

    def queued(self, oid: int) -> CancelOutcome | None:
        """``oid``'s queued outcome while it waits for confirmation, else None."""
        wait = self._waits.get(oid)
        return None if wait is None else wait.queued

    def close(self) -> None:
        """No more orders will be added: ``run`` returns once none waits."""
        self._closed = True
        self.wake()

    def wake(self) -> None:
        """Something changed for the poller (look-ups may run now, say)."""
        if self._wake is not None:
            self._wake.set()

    # -- the stream consumer ----------------------------------------------------------------

    async def consume(self, stream: OrderStream) -> None:
        """Resolve the orders the stream shows closed until it ends; never raises a
        ``TanxError``."""
        try:
            async for event in stream:
                try:
                    if isinstance(event, OrderUpdate):
                        self._pushed(event)
                    elif isinstance(event, StreamGap):
                        self._gap()
                except Exception:  # a bug must not cost the other orders their pushes
                    logger.exception("confirmation: unexpected error on a stream event (ignored)")
        except TanxError as exc:
            logger.warning("confirmation stream lost (%s): falling back to polling", brief(exc))
        self.give_up()

    def _pushed(self, update: OrderUpdate) -> None:
        oid = update.id
        if oid in self._watched:  # its cancel's answer has not come yet
            earlier = self._watched[oid]
            if earlier is None or earlier.state not in _CLOSED:
                self._watched[oid] = update
            return
        wait = self._waits.get(oid)
        if wait is None or (wait.update is not None and wait.update.state in _CLOSED):
            # Not ours, or closed already: a late (reordered or duplicated) "wait" never
            # reopens an order.
            return
        wait.update = update
        settled = self._settled_by_push(wait)
        if settled is not None:
            self._resolve(wait, settled)

    def give_up(self) -> None:
        """The stream is gone for good: orders waiting for a push are looked up now (``auto``)
        or end not confirmed (``stream``)."""
        self.lost = True
        self._watched.clear()  # (their cancels' answers find them gone: polled)
        self._gapped.clear()
        now = time.monotonic()
        for wait in self._waits.values():
            if not wait.polling and not wait.looking:
                if self.mode == "auto":
                    wait.polling = True
                self._due(wait, now)

    def _gap(self) -> None:
        self._gapped.update(self._watched)
        now = time.monotonic()
        for wait in self._waits.values():
            wait.gap = True
            if not wait.looking:
                self._due(wait, now)

    # -- the poller -------------------------------------------------------------------------

    async def run(self) -> None:
        """Look orders up when due and end those past their deadline, until ``close`` was
        called and no order waits."""
        try:
            async with anyio.create_task_group() as tg:
                while not (self._closed and self.pending == 0):
                    now = time.monotonic()
                    until = self._dispatch(now, tg)
                    if self._closed and self.pending == 0:
                        break  # (the last ones just ended)
                    self._wake = anyio.Event()
                    self._sleeping_until = until
                    with anyio.move_on_after(until - now):
                        await self._wake.wait()
                    self._wake = None
        finally:
            self._sleeping_until = 0.0
            while self._handings:  # (cancelled: the batch reports those outcomes, ``remaining``)
                handing = self._handings.popleft()
                if inspect.iscoroutine(handing):
                    handing.close()

    def _due(self, wait: _Wait, when: float) -> None:
        wait.due = when
        heap = self._heap
        heapq.heappush(heap, (when, next(self._seq), wait))
        if len(heap) > 2 * self.pending + 64:
            # Entries of resolved or rescheduled orders go (kept, they would hold those orders
            # and their outcomes until their old due times): memory follows ``pending``.
            heap[:] = [e for e in heap if self._waits.get(e[2].oid) is e[2] and e[2].due == e[0]]
            heapq.heapify(heap)
        if when < self._sleeping_until:
            self.wake()

    def _dispatch(self, now: float, tg: TaskGroup) -> float:
        """Whatever is due now: hand-overs, deadlines, look-ups (as far as they may start).
        Returns when something is due next."""
        heap, ready = self._heap, self._ready
        while heap and heap[0][0] <= now:
            due, _, wait = heapq.heappop(heap)
            if self._waits.get(wait.oid) is not wait or wait.due != due or wait.looking:
                continue  # resolved, or due at another time now
            if now >= wait.deadline or (self.mode == "stream" and self.lost and not wait.gap):
                if self.mode == "stream" or wait.looked:
                    self._expire(wait)
                else:  # never looked up (look-ups yielded to the cancels): once, first, now
                    wait.polling, wait.due = True, -1.0
                    ready.pop(wait.oid, None)
                    self._overdue[wait.oid] = wait
                continue
            # A look-up now: after a gap, polling, or past its push window (``auto``).
            wait.polling = wait.polling or not wait.gap
            ready[wait.oid] = wait
            self._due(wait, wait.deadline)  # (ended then, if it has been looked up by then)
        allowed = self._room_waiters > 0 or self._may_look_up is None or self._may_look_up()
        # An order past its deadline and never looked up may start its one look-up at once,
        # even while the batch sends (at most ``lookups`` at a time): its answer comes within
        # ``confirm_timeout`` and one look-up, however long the sending.
        for pool in (self._overdue, ready) if allowed else (self._overdue,):
            while pool and self._looking < self._lookups:
                wait = pool.pop(next(iter(pool)))
                if self._waits.get(wait.oid) is not wait or wait.looking:
                    continue
                wait.looking, wait.gap = True, False
                self._looking += 1
                tg.start_soon(self._look_up, wait)
        if self._handings and not self._handing_over:  # (the deadlines above may have added some)
            self._handing_over = True
            tg.start_soon(self._hand_over)
        return heap[0][0] if heap else now + 3600.0  # (woken by whatever changes meanwhile)

    async def _look_up(self, wait: _Wait) -> None:
        per_order = self._per_order
        if per_order is not None:
            # Within the order's deadline (its own, plus ``confirm_timeout``); its first look-up
            # gets at least a whole one of its own, however late look-ups could start.
            left = per_order + self._confirm_timeout - (time.monotonic() - wait.outcome.started)
            _deadline.enter(Deadline(left if wait.looked else max(left, per_order)))
        order: Order | None = None
        try:
            order = await self._fetch(wait.oid)
        except Exception as exc:  # a look-up that failed says nothing: the next one may
            wait.last_error = exc
            if not isinstance(exc, TanxError):
                logger.exception("order %d: unexpected error in a confirming look-up", wait.oid)
            elif not wait.polling:
                logger.info("order %d: look-up after a stream gap failed: %s", wait.oid, brief(exc))
        finally:
            self._looking -= 1
            wait.looking = False
            wait.looked = True
            self.wake()
        if self._waits.get(wait.oid) is not wait:
            return  # a push resolved it meanwhile
        try:
            self._looked_up(wait, order)
        except Exception:  # a bug must not cost the batch its other orders: this one unconfirmed
            logger.exception("order %d: unexpected error after a confirming look-up", wait.oid)
            if self._waits.get(wait.oid) is wait:
                self._resolve(wait, self._unconfirmed(wait, None))

    def _looked_up(self, wait: _Wait, order: Order | None) -> None:
        if order is not None and order.state in _CLOSED:
            self._resolve(wait, self._settled_by_push(wait) or wait.outcome(_status(order.state), order))
            return
        now = time.monotonic()
        if wait.gap:
            self._due(wait, now)  # a gap came while it was being looked up: once more
        elif now >= wait.deadline or (self.mode == "stream" and self.lost):
            self._expire(wait, order)
        elif wait.polling or self.lost:  # (the stream was lost meanwhile: ``auto`` polls)
            wait.polling = True
            self._due(wait, min(now + wait.delay, wait.deadline))
            wait.delay = min(wait.delay * 2, C.CONFIRM_POLL_CAP)
        else:  # a look-up after a gap: back to waiting for a push
            self._due(wait, wait.push_until)

    async def _hand_over(self) -> None:
        """Complete the hand-overs that must wait, one at a time, in order (one task: the
        consumer's reads then wake one hand-over, not all of them)."""
        try:
            while self._handings:
                handing = self._handings.popleft()
                try:
                    await handing
                finally:
                    self._handed()
        finally:
            self._handing_over = False

    # -- outcomes ---------------------------------------------------------------------------

    def _settled_by_push(self, wait: _Wait) -> CancelOutcome | None:
        update = wait.update
        if update is None or update.state not in _CLOSED:
            return None
        order = _merged(wait.order(), update)
        if update.state == OrderState.CANCEL and closed_before(
            update.updated_at, wait.outcome.record.first_sent
        ):
            # Cancelled before our cancel left (as the look-up path decides): not ours.
            return wait.outcome(CancelStatus.ALREADY_CLOSED, order)
        return wait.outcome(_status(update.state), order)

    def _settled_by_echo(self, wait: _Wait) -> CancelOutcome | None:
        """The cancel's answer echoed the order closed already (decoded only if it may have)."""
        if not may_show_closed(wait.queued):
            return None
        order = wait.order()
        if order is None or order.state not in _CLOSED:
            return None
        return wait.outcome(_status(order.state), order)

    def _expire(self, wait: _Wait, order: Order | None = None) -> None:
        """``wait``'s deadline passed (or the stream it relied on is lost): queued, not
        confirmed."""
        try:
            if order is None and wait.update is not None:
                order = _merged(wait.order(), wait.update)
            elif order is None:
                order = wait.order()
        except Exception:  # a bug must not cost the batch its other orders
            logger.exception("order %d: unexpected error reading its last known state", wait.oid)
            order = None
        self._resolve(wait, self._unconfirmed(wait, order))

    def _unconfirmed(self, wait: _Wait, order: Order | None) -> CancelOutcome:
        oid = wait.oid
        if self.mode == "stream":
            message = f"order {oid}: cancel queued but no confirmation arrived on the stream"
        else:
            note = f" (last look-up failed: {wait.last_error})" if wait.last_error else ""
            message = f"order {oid}: cancel queued but not confirmed in time{note}"
        error = CancelNotConfirmedError(message, order_id=oid, order=order)
        return wait.outcome(CancelStatus.QUEUED, order, error)

    def _resolve(self, wait: _Wait, outcome: CancelOutcome) -> None:
        """``wait``'s order is settled: its outcome handed over now, or by a task of the
        poller's when the hand-over must wait (the order counts as waiting until then)."""
        del self._waits[wait.oid]
        self._ready.pop(wait.oid, None)
        self._overdue.pop(wait.oid, None)
        handing = self._deliver(outcome)
        if handing is None:
            self._handed()
        else:
            self._handings.append(handing)
            self.wake()

    def _handed(self) -> None:
        self.pending -= 1
        if self._room is not None and not self.full:
            self._room.set()
        if self.pending == 0 and self._closed:
            self.wake()


def _status(state: OrderState) -> CancelStatus:
    # ``done``: filled before the queued cancel took effect.
    return CancelStatus.CANCELLED if state == OrderState.CANCEL else CancelStatus.ALREADY_CLOSED


def closed_before(updated_at: datetime | None, first_sent: float | None) -> bool:
    """The exchange last touched the order (``updated_at``) clearly before our first attempt
    left (``first_sent``, on the exchange's clock as far as it is known): closed by someone
    else. A pushed update and a look-up are judged alike (``_cancel._closed_before``)."""
    if updated_at is None or first_sent is None:
        return False
    return updated_at.timestamp() < first_sent - C.CLOCK_SKEW_TOLERANCE


_PUSHED_FIELDS = (
    "state",
    "avg_price",
    "remaining_volume",
    "executed_volume",
    "trades_count",
    "updated_at",
    "market",
    "side",
    "ord_type",
    "price",
    "origin_volume",
    "created_at",
)


def _merged(order: Order | None, update: OrderUpdate) -> Order | None:
    """The cancel answer's order with what the update says now; without an answer's order, an
    ``Order`` from the update alone when it carries every field one needs, else None."""
    fields = {name: value for name in _PUSHED_FIELDS if (value := getattr(update, name)) is not None}
    if order is not None:
        return attrs.evolve(order, **fields)
    try:
        return Order(id=update.id, **fields)
    except TypeError:
        return None


@contextlib.asynccontextmanager
async def open_confirmer(
    session: AsyncTanxSession,
    mode: ConfirmWith,
    deadline: float | None,
    *,
    fetch: Fetch,
    confirm_timeout: float,
    per_order: float | None,
    deliver: Deliver,
    lookups: int = 1,
    may_look_up: Callable[[], bool] | None = None,
) -> AsyncIterator[Confirmer]:
    """A ``Confirmer`` with its stream (unless ``mode`` is ``"poll"``) open and consumed; the
    caller runs its poller (``run``).

    No cancel leaves before the stream is open, so with ``"auto"`` its opening is cut short
    (``CONFIRM_STREAM_OPEN_WITHIN``, and a share of the batch's ``deadline``): a stream that
    is slow to open costs the batch its pushes, never its cancels. With ``"stream"`` it may take
    the session's deadline (the batch's deadline cuts it, as it cuts everything)."""
    confirmer = Confirmer(
        mode,
        fetch=fetch,
        confirm_timeout=confirm_timeout,
        per_order=per_order,
        deliver=deliver,
        lookups=lookups,
        may_look_up=may_look_up,
    )
    if mode == "poll":
        yield confirmer
        return
    within = None
    if mode == "auto":
        within = C.CONFIRM_STREAM_OPEN_WITHIN
        if deadline is not None:
            within = min(within, deadline * C.CONFIRM_STREAM_OPEN_SHARE)
    stream = session._push_stream(within)
    try:
        await stream.__aenter__()
    except TanxError as exc:
        if mode == "stream":
            raise
        logger.warning("confirmation stream unavailable (%s): confirming by polling", brief(exc))
        confirmer.give_up()
        yield confirmer
        return
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(confirmer.consume, stream)
            try:
                yield confirmer
            finally:
                tg.cancel_scope.cancel()
    finally:
        # Not shielded here: the stream's own task group must exit in its own scope (the
        # socket's close inside it is shielded).
        await stream.__aexit__(None, None, None)
