"""``confirm=True`` by push: a batch's cancels confirmed from the private order stream.

The batch opens the stream (subscribed to ``order``) before its first cancel is sent, and each
worker registers the order it is about to cancel (``watch``) before sending, so no update
that matters can be missed. An order is confirmed when its ``cancel`` update arrives (``done``:
filled first, ``ALREADY_CLOSED``), the same evidence rule as polling: ``CANCELLED`` only on a
``cancel`` state seen, by push or by look-up.

No silent loss: after a ``StreamGap`` (a reconnect, or a buffer overflow) every order still
waiting is looked up once. With ``confirm_with="auto"`` (the default) an order that no push
confirmed within ``CONFIRM_PUSH_WINDOW`` seconds of its cancel being queued (or half its
``confirm_timeout``, when that is shorter: ``CONFIRM_PUSH_SHARE``), and every order
once the stream is lost for good (or could not be opened), falls back to polling;
``confirm_with="stream"`` never polls (an unconfirmed order ends ``QUEUED`` with
``CancelNotConfirmedError``) and refuses to start the batch when the stream cannot be opened.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Literal

import anyio
import attrs

from . import _constants as C
from ._errors import CancelNotConfirmedError, TanxError, brief
from ._log import logger
from .models import CancelOutcome, CancelStatus, Order, OrderState, OrderUpdate, StreamGap

if TYPE_CHECKING:
    from ._session import AsyncTanxSession
    from ._stream import OrderStream

__all__ = ["CONFIRM_WITH", "ConfirmWith", "PushConfirmer", "closed_before", "open_confirmer"]

ConfirmWith = Literal["stream", "poll", "auto"]
CONFIRM_WITH: tuple[ConfirmWith, ...] = ("stream", "poll", "auto")
_Make = Callable[[CancelStatus, "Order | None", "TanxError | None"], CancelOutcome]
Poll = Callable[[Order | None, float], Awaitable[CancelOutcome]]
Lookup = Callable[[int], Awaitable[Order]]
_CLOSED = (OrderState.CANCEL, OrderState.DONE)


class _Watch:
    __slots__ = ("gap", "update", "wake")

    def __init__(self) -> None:
        self.update: OrderUpdate | None = None
        self.gap = False
        self.wake = anyio.Event()


class PushConfirmer:
    """The orders a batch waits for, fed by one stream consumer task."""

    def __init__(self, mode: ConfirmWith, window: float) -> None:
        self.mode = mode
        self.window = window
        self._watches: dict[int, _Watch] = {}
        #: The stream is gone for good (or never opened): waiters poll (auto) or give up.
        self.lost = False
        #: Confirmed by push / look-ups after a gap / orders handed to polling.
        self.pushed = 0
        self.reconciled = 0
        self.polled = 0

    def watch(self, oid: int) -> None:
        """Record ``oid``'s updates from now on (before its cancel is sent), until ``unwatch``."""
        self._watches[oid] = _Watch()

    def unwatch(self, oid: int) -> None:
        self._watches.pop(oid, None)

    async def consume(self, stream: OrderStream) -> None:
        """Feed the watches until the stream ends; never raises a ``TanxError``."""
        try:
            async for event in stream:
                if isinstance(event, OrderUpdate):
                    watch = self._watches.get(event.id)
                    if watch is not None and not (watch.update is not None and watch.update.state in _CLOSED):
                        # A closed state is final: a late (reordered or duplicated) "wait" never
                        # reopens the order.
                        watch.update = event
                        watch.wake.set()
                elif isinstance(event, StreamGap):
                    for watch in self._watches.values():
                        watch.gap = True
                        watch.wake.set()
        except TanxError as exc:
            logger.warning("confirmation stream lost (%s): falling back to polling", brief(exc))
        self.give_up()

    def give_up(self) -> None:
        self.lost = True
        for watch in self._watches.values():
            watch.wake.set()

    async def confirm(
        self,
        oid: int,
        order: Order | None,
        deadline: float,
        outcome: _Make,
        poll: Poll,
        lookup: Lookup,
        first_sent: float | None = None,
    ) -> CancelOutcome:
        """Wait for ``oid``'s closing update (its cancel was just queued; its first attempt
        left at ``first_sent``, on the exchange's clock as far as known)."""
        watch = self._watches.get(oid)
        if watch is None:  # pragma: no cover - the batch always watches before sending
            return await poll(order, deadline)
        now = time.monotonic()
        # At most ``window``, and at most a share of the time left: the poll gets the rest.
        push_until = now + min(self.window, max(0.0, deadline - now) * C.CONFIRM_PUSH_SHARE)
        while True:
            if watch.update is not None and watch.update.state in _CLOSED:
                self.pushed += 1
                update = watch.update
                if update.state == OrderState.CANCEL and closed_before(update.updated_at, first_sent):
                    # Cancelled before our cancel left (as the look-up path decides): not ours.
                    return outcome(CancelStatus.ALREADY_CLOSED, _merged(order, update), None)
                return _settled(update.state, _merged(order, update), outcome)
            if order is not None and order.state in _CLOSED:
                return _settled(order.state, order, outcome)
            if watch.gap:
                # Updates may have been missed while this order waited: look it up once.
                watch.gap = False
                self.reconciled += 1
                try:
                    order = await lookup(oid)
                except TanxError as exc:
                    logger.info("order %d: look-up after a stream gap failed: %s", oid, brief(exc))
                continue
            now = time.monotonic()
            if self.mode == "auto" and (self.lost or now >= push_until):
                self.polled += 1
                return await poll(order, deadline)
            if now >= deadline or (self.lost and self.mode == "stream"):
                return outcome(
                    CancelStatus.QUEUED,
                    order,
                    CancelNotConfirmedError(
                        f"order {oid}: cancel queued but no confirmation arrived on the stream",
                        order_id=oid,
                        order=order,
                    ),
                )
            watch.wake = anyio.Event()
            limit = push_until if self.mode == "auto" else deadline
            with anyio.move_on_after(max(0.0, limit - now)):
                await watch.wake.wait()


def closed_before(updated_at: datetime | None, first_sent: float | None) -> bool:
    """The exchange last touched the order (``updated_at``) clearly before our first attempt
    left (``first_sent``, on the exchange's clock as far as it is known): closed by someone
    else. A pushed update and a look-up are judged alike (``_cancel._closed_before``)."""
    if updated_at is None or first_sent is None:
        return False
    return updated_at.timestamp() < first_sent - C.CLOCK_SKEW_TOLERANCE


def _settled(state: OrderState, order: Order | None, outcome: _Make) -> CancelOutcome:
    if state == OrderState.CANCEL:
        return outcome(CancelStatus.CANCELLED, order, None)
    return outcome(CancelStatus.ALREADY_CLOSED, order, None)  # filled before the cancel took effect


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
    session: AsyncTanxSession, mode: ConfirmWith | None, deadline: float | None
) -> AsyncIterator[PushConfirmer | None]:
    """The confirmer for a batch (None when polling), its stream open and consumed.

    No cancel leaves before the stream is open, so with ``"auto"`` its opening is cut short
    (``CONFIRM_STREAM_OPEN_WITHIN``, and a share of the batch's ``deadline``): a stream that
    is slow to open costs the batch its pushes, never its cancels. With ``"stream"`` it may take
    the session's deadline (the batch's deadline cuts it, as it cuts everything)."""
    if mode is None or mode == "poll":
        yield None
        return
    confirmer = PushConfirmer(mode, C.CONFIRM_PUSH_WINDOW)
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
