"""What the exchange answers, as frozen attrs classes.

Money and volumes are ``Decimal`` (exact: ``"0.009000000000000001"`` stays that), timestamps are
timezone-aware ``datetime`` in UTC, and the enums keep values they do not know: a new order state
on the exchange must never break a cancel loop.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Literal, Union

import attrs

if TYPE_CHECKING:
    from ._errors import TanxError

__all__ = [
    "CancelOutcome",
    "CancelStatus",
    "Order",
    "OrderState",
    "OrderType",
    "OrderUpdate",
    "Side",
    "StreamEvent",
    "StreamGap",
    "TokenPair",
    "Trade",
    "TradeUpdate",
]


class _OpenStrEnum(str, enum.Enum):
    """A string enum that accepts values it does not list, keeping the raw value.

    ``OrderState("reject")`` gives a member-like value with ``.value == "reject"`` that compares
    equal to ``"reject"``; ``.known`` tells it apart from the documented members.
    """

    @classmethod
    def _missing_(cls, value: object) -> _OpenStrEnum | None:
        if not isinstance(value, str):
            return None
        member = str.__new__(cls, value)
        member._name_ = f"UNKNOWN({value!r})"
        member._value_ = value
        return member

    @property
    def known(self) -> bool:
        """Whether the value is one of the documented members (False for a value kept as is)."""
        return self._name_ in type(self).__members__

    def __str__(self) -> str:
        return str(self.value)


class Side(_OpenStrEnum):
    """The side of an order: ``buy`` or ``sell``."""

    BUY = "buy"
    SELL = "sell"


class OrderType(_OpenStrEnum):
    """An order's type (``ord_type``); a type the exchange adds later is kept, not refused."""

    LIMIT = "limit"
    MARKET = "market"
    STOP_LIMIT = "stop_limit"
    LIMIT_MAKER = "limit_maker"


class OrderState(_OpenStrEnum):
    """``pending``: accepted, not yet on the book; ``wait``: resting (maybe partly filled);
    ``done``: filled; ``cancel``: cancelled (maybe partly filled)."""

    PENDING = "pending"
    WAIT = "wait"
    DONE = "done"
    CANCEL = "cancel"

    @property
    def is_open(self) -> bool:
        """``pending`` or ``wait``: the order is (or is about to be) on the book."""
        return self in (OrderState.PENDING, OrderState.WAIT)


@attrs.frozen(kw_only=True)
class Trade:
    """One fill of an order (``GET /sapi/v1/orders/{id}/`` lists them under ``trades``)."""

    id: int
    order_id: int | None = None
    market: str | None = None
    side: Side | None = None
    taker_type: Side | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    total: Decimal | None = None
    fee: Decimal | None = None
    fee_amount: Decimal | None = None
    fee_currency: str | None = None
    created_at: datetime | None = None


@attrs.frozen(kw_only=True)
class Order:
    """An order as the exchange reports it, with the API's own field names.

    ``price`` is None for market orders; ``stop_price`` and ``cancel_reason`` are None when null
    or absent (older payloads lack them). A cancel answer is the order *as it was when the cancel
    was queued*: ``state`` may still be ``wait``.
    """

    id: int
    market: str
    side: Side
    ord_type: OrderType
    state: OrderState
    origin_volume: Decimal
    remaining_volume: Decimal
    executed_volume: Decimal
    created_at: datetime
    updated_at: datetime | None = None
    uuid: str | None = None
    price: Decimal | None = None
    stop_price: Decimal | None = None
    avg_price: Decimal | None = None
    maker_fee: Decimal | None = None
    taker_fee: Decimal | None = None
    trades_count: int = 0
    cancel_reason: str | None = None
    trades: tuple[Trade, ...] = ()

    @property
    def is_open(self) -> bool:
        """Still resting (or about to): ``pending`` or ``wait``."""
        return self.state.is_open


class CancelStatus(str, enum.Enum):
    """What happened to one order of a cancel batch."""

    #: The exchange accepted the cancel with a 2xx (tanX queues cancellations; not yet
    #: confirmed), now or moments earlier in this session (then ``note`` says so).
    QUEUED = "queued"
    #: The exchange reports the order ``cancel`` after our cancel (confirmed or looked up).
    CANCELLED = "cancelled"
    #: The order was already ``done`` or ``cancel`` before this cancel: off the book, not by us.
    ALREADY_CLOSED = "already_closed"
    #: The exchange does not know the order (or it belongs to someone else).
    NOT_FOUND = "not_found"
    #: The cancel was refused or could not be sent; the order is still open as far as we know.
    FAILED = "failed"
    #: The cancel may have been processed (no answer came back, or an error answer that may
    #: hide a processed cancel), and neither a look-up nor the settling pass that follows could
    #: settle it before the deadline. Cancelling again is safe.
    UNKNOWN = "unknown"
    #: Never sent: the batch deadline expired or the batch was cancelled first.
    SKIPPED = "skipped"


_OFF_BOOK = frozenset({CancelStatus.QUEUED, CancelStatus.CANCELLED, CancelStatus.ALREADY_CLOSED})


@attrs.frozen(kw_only=True)
class CancelOutcome:
    """The outcome of cancelling one order.

    ``ok`` is True only on positive evidence: a 2xx answer to the cancel (``queued``), a look-up
    showing the order ``cancel`` or ``done`` (``cancelled``, ``already_closed``: then ``error``
    keeps the exchange's refusal, for the record), or this session's own 2xx cancel of the same
    order moments earlier (``queued``, said in ``note``). The words of a refusal never make an
    outcome ok. A queued cancel that ``confirm=True`` could not confirm in time is not ok.
    ``order`` is the exchange's latest view of the order when one was seen; ``error`` explains
    every non-ok outcome; ``note`` says what else the outcome rests on (its evidence, a refusal
    that did not change it, a settling pass), or is None.

    The order echoed by an accepted cancel is decoded when ``order`` is first read (a burst that
    only looks at ``status`` never pays for it); an echo that cannot be decoded then reads as
    None, with a warning, as it would have when decoded at once.
    """

    order_id: int
    status: CancelStatus
    _order: Order | None = attrs.field(default=None, alias="order", repr=False, eq=False)
    error: TanxError | None = attrs.field(default=None, eq=False)
    attempts: int = 0
    elapsed: float = 0.0
    note: str | None = attrs.field(default=None, eq=False)
    #: Decodes the cancel answer's echo (from ``echo_payload``, the answer's raw bytes) on first
    #: read of ``order`` (None: nothing to decode). A shared function and one bytes object, not a
    #: closure or the decoded JSON: an outcome stays one object the garbage collector tracks, and
    #: a burst's outcomes keep ~600 compact bytes each instead of a tree of dicts and strings.
    _echo: Callable[[int, object], Order | None] | None = attrs.field(
        default=None, alias="echo", repr=False, eq=False
    )
    _echo_payload: object = attrs.field(default=None, alias="echo_payload", repr=False, eq=False)

    @property
    def order(self) -> Order | None:
        """The exchange's latest view of the order, when one was seen (decoded on first read)."""
        if self._order is None and self._echo is not None:
            object.__setattr__(self, "_order", self._echo(self.order_id, self._echo_payload))
            object.__setattr__(self, "_echo", None)
            object.__setattr__(self, "_echo_payload", None)
        return self._order

    @property
    def ok(self) -> bool:
        """The order is off the book or on its way off, on evidence (see the class docstring)."""
        if self.status is CancelStatus.QUEUED:
            return self.error is None
        return self.status in _OFF_BOOK


@attrs.frozen
class TokenPair:
    """An access/refresh token pair. The repr never shows the tokens."""

    access: str = attrs.field(repr=False)
    refresh: str | None = attrs.field(repr=False)
    access_expires_at: datetime | None = None


# -- the private stream (``session.stream()``) --------------------------------------------------


@attrs.frozen(kw_only=True)
class OrderUpdate:
    """An order's new state, pushed on the private stream (``{"order": {...}}``).

    Decoded like ``Order`` (``Decimal`` numbers, aware UTC datetimes from the stream's unix-second
    integers, open enums, unknown keys ignored). ``kind`` is ``bid``/``ask``; the stream carries no
    ``uuid``, fees, ``stop_price`` or ``cancel_reason``. Only ``id`` and ``state`` are required.
    """

    id: int
    state: OrderState
    market: str | None = None
    side: Side | None = None
    kind: str | None = None
    ord_type: OrderType | None = None
    price: Decimal | None = None
    avg_price: Decimal | None = None
    origin_volume: Decimal | None = None
    remaining_volume: Decimal | None = None
    executed_volume: Decimal | None = None
    trades_count: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    at: datetime | None = None


@attrs.frozen(kw_only=True)
class TradeUpdate:
    """A fill of one of the user's orders, pushed on the private stream (``{"trade": {...}}``)."""

    id: int
    order_id: int | None = None
    market: str | None = None
    side: Side | None = None
    taker_type: Side | None = None
    price: Decimal | None = None
    amount: Decimal | None = None
    total: Decimal | None = None
    created_at: datetime | None = None


@attrs.frozen(kw_only=True)
class StreamGap:
    """Updates may have been missed between ``started`` and ``ended`` (UTC).

    ``reason`` is ``"reconnect"`` (the socket was dropped, closed or stalled and has been opened
    and subscribed again) or ``"overflow"`` (the consumer was too slow and ``dropped`` updates were
    discarded from the bounded buffer). Look up the orders you care about to catch up.
    """

    reason: Literal["reconnect", "overflow"]
    started: datetime
    ended: datetime
    dropped: int = 0


#: What ``session.stream()`` yields.
StreamEvent = Union[OrderUpdate, TradeUpdate, StreamGap]  # noqa: UP007 - a runtime alias on 3.10
