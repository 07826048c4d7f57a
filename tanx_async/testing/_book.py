"""The sandbox's order book: every user's orders, queued cancels, and who is told of changes.

Each method takes the exchange's lock (shared with the other rooms: the server thread handles
requests while the test thread seeds and inspects). Queued cancels take effect lazily, on the
next read or ``tick()``, once the exchange's clock passes their due time.
"""

from __future__ import annotations

import heapq
import threading
from collections.abc import Callable, Iterable, Sequence
from typing import Any, Final, Literal

import attrs

from ._clock import SandboxClock
from ._generator import OrderGenerator
from ._orders import CANCEL_REASON_USER, SandboxOrder

__all__ = ["CancelResult", "OrderBook", "OrderObserver"]

#: Called (under the exchange's lock: keep it cheap) with ``(before, after)`` whenever an order
#: snapshot is stored; ``before`` is None for a new order.
OrderObserver = Callable[["SandboxOrder | None", "SandboxOrder"], None]

#: What a cancel request did to the sandbox's state (not the library's ``CancelOutcome``).
CancelResult = Literal[
    "queued",
    "not_found",
    "already_cancelled",
    "already_filled",
    "already_queued",
    "not_open",
]

_OPEN_STATES: Final = frozenset({"wait", "pending"})


class OrderBook:
    """Orders by id and by user, oldest first, and the heap of queued cancels.

    ``cancel_delay``: seconds until a queued cancel takes effect (0: at once). ``observers`` are
    told of every stored snapshot (see ``OrderObserver``). The ``SandboxExchange`` methods of the
    same names (``seed_orders``, ``add_order``, ...) check the user and call these; the ASGI app
    calls ``find``, ``cancel``, ``bulk_cancel`` and ``list_orders``.
    """

    def __init__(
        self, lock: threading.Lock, clock: SandboxClock, generator: OrderGenerator, cancel_delay: float
    ) -> None:
        self.cancel_delay = cancel_delay
        self.observers: list[OrderObserver] = []
        self.generator = generator
        self._lock = lock
        self._clock = clock
        self._orders: dict[int, SandboxOrder] = {}
        self._orders_by_uid: dict[str, list[int]] = {}
        self._cancel_heap: list[tuple[float, int]] = []

    # -- seeding and inspection (the test's side) ----------------------------------------------

    def seed(
        self, uid: str, n: int, markets: Sequence[str], state: str, side: str | None, ord_type: str
    ) -> list[int]:
        """Generate ``n`` orders of ``uid`` (markets round-robin, 7 s apart); their ids."""
        with self._lock:
            now = self._clock.now()
            ids = []
            for i in range(n):
                market = markets[i % len(markets)]
                created = now - (n - i) * 7.0
                order = self.generator.generate(uid, market, state, side, ord_type, created, now)
                self._store(order)
                ids.append(order.id)
            return ids

    def add(self, uid: str, fields: dict[str, Any]) -> int:
        """Store one order of ``uid``: generated, then ``fields`` (any ``SandboxOrder`` field but
        ``uid``) put over it. Its id."""
        with self._lock:
            now = self._clock.now()
            base = self.generator.generate(
                uid,
                fields.get("market", "btcusdc"),
                fields.get("state", "wait"),
                fields.get("side"),
                fields.get("ord_type", "limit"),
                fields.get("created_at", now),
                now,
            )
            if "id" in fields:
                if fields["id"] in self._orders:
                    raise ValueError(f"order {fields['id']} exists")
                self.generator.reserve_id(fields["id"])
            if "uid" in fields:
                raise TypeError("uid is the first argument")
            if "created_at" in fields and "updated_at" not in fields:
                fields["updated_at"] = fields["created_at"]
            order = attrs.evolve(base, **fields)
            self._store(order)
            return order.id

    def update(self, order_id: int, fields: dict[str, Any]) -> SandboxOrder:
        """Replace the given fields of an order; the new snapshot."""
        with self._lock:
            self._apply_due(self._clock.now())
            order = attrs.evolve(self._orders[order_id], **fields)
            self._put(order)
            return order

    def get(self, order_id: int) -> SandboxOrder:
        """Current snapshot of an order (KeyError if unknown)."""
        with self._lock:
            self._apply_due(self._clock.now())
            return self._orders[order_id]

    def of(self, uid: str) -> list[SandboxOrder]:
        """All orders of a user, oldest first."""
        with self._lock:
            self._apply_due(self._clock.now())
            return [self._orders[i] for i in self._orders_by_uid.get(uid, ())]

    def tick(self) -> None:
        """Apply the queued cancels that are due."""
        with self._lock:
            self._apply_due(self._clock.now())

    # -- the requests (the ASGI app's side) ----------------------------------------------------

    def find(self, uid: str, order_id: int) -> SandboxOrder | None:
        """``uid``'s order ``order_id``, or None (unknown, or another user's)."""
        with self._lock:
            self._apply_due(self._clock.now())
            order = self._orders.get(order_id)
        return order if order is not None and order.uid == uid else None

    def cancel(self, uid: str, order_id: int) -> tuple[CancelResult, SandboxOrder | None]:
        """Queue a cancel; returns the outcome and the pre-cancel snapshot."""
        with self._lock:
            now = self._clock.now()
            self._apply_due(now)
            order = self._orders.get(order_id)
            if order is None or order.uid != uid:
                return "not_found", None
            if order.state == "cancel":
                return "already_cancelled", order
            if order.state == "done":
                return "already_filled", order
            if order.cancel_due is not None:
                return "already_queued", order
            if order.state not in _OPEN_STATES:
                return "not_open", order
            self._queue_cancel(order, now)
            if self.cancel_delay <= 0:
                self._apply_due(now)
            return "queued", order

    def bulk_cancel(self, uid: str, market: str, limit: int, side: str | None) -> tuple[int, ...]:
        """Queue cancels for up to ``limit`` open orders, oldest first."""
        with self._lock:
            now = self._clock.now()
            self._apply_due(now)
            picked: list[int] = []
            for order_id in self._orders_by_uid.get(uid, ()):
                if len(picked) >= limit:
                    break
                order = self._orders[order_id]
                if (
                    order.market == market
                    and order.state in _OPEN_STATES
                    and order.cancel_due is None
                    and (side is None or order.side == side)
                ):
                    self._queue_cancel(order, now)
                    picked.append(order_id)
            if self.cancel_delay <= 0:
                self._apply_due(now)
            return tuple(picked)

    def list_orders(
        self,
        uid: str,
        filters: dict[str, str],
        start_time: int | None,
        end_time: int | None,
        limit: int,
        page: int,
        descending: bool,
    ) -> list[SandboxOrder]:
        """A page of ``uid``'s orders matching ``filters`` (market, state, side, ord_type, base_unit,
        quote_unit) and the time range, oldest first (``descending``: newest first)."""
        with self._lock:
            self._apply_due(self._clock.now())
            id_list = self._orders_by_uid.get(uid, [])
            ids: Iterable[int] = reversed(id_list) if descending else id_list
            market = filters.get("market")
            state = filters.get("state")
            side = filters.get("side")
            ord_type = filters.get("ord_type")
            base_unit = filters.get("base_unit")
            quote_unit = filters.get("quote_unit")
            skip = (page - 1) * limit
            out: list[SandboxOrder] = []
            for order_id in ids:
                o = self._orders[order_id]
                if (
                    (market is not None and o.market != market)
                    or (state is not None and o.state != state)
                    or (side is not None and o.side != side)
                    or (ord_type is not None and o.ord_type != ord_type)
                    or (start_time is not None and o.created_at < start_time)
                    or (end_time is not None and o.created_at > end_time)
                ):
                    continue
                if base_unit is not None or quote_unit is not None:
                    base, quote = self.generator.market_units(o.market)
                    if (base_unit is not None and base != base_unit) or (
                        quote_unit is not None and quote != quote_unit
                    ):
                        continue
                if skip:
                    skip -= 1
                    continue
                out.append(o)
                if len(out) >= limit:
                    break
            return out

    # -- storage (the lock held) ---------------------------------------------------------------

    def _store(self, order: SandboxOrder) -> None:
        self._put(order)
        self._orders_by_uid.setdefault(order.uid, []).append(order.id)

    def _put(self, order: SandboxOrder) -> None:
        """Store a snapshot and tell the observers."""
        before = self._orders.get(order.id)
        self._orders[order.id] = order
        for observer in self.observers:
            observer(before, order)

    def _apply_due(self, now: float) -> None:
        heap = self._cancel_heap
        while heap and heap[0][0] <= now:
            due, order_id = heapq.heappop(heap)
            order = self._orders.get(order_id)
            if order is None or order.cancel_due != due:
                continue
            if order.state in _OPEN_STATES:
                order = attrs.evolve(
                    order,
                    state="cancel",
                    cancel_reason=CANCEL_REASON_USER,
                    updated_at=due,
                    cancel_due=None,
                )
            else:
                order = attrs.evolve(order, cancel_due=None)
            self._put(order)

    def _queue_cancel(self, order: SandboxOrder, now: float) -> None:
        due = now + max(0.0, self.cancel_delay)
        self._orders[order.id] = attrs.evolve(order, cancel_due=due)
        heapq.heappush(self._cancel_heap, (due, order.id))
