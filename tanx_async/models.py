"""What the exchange answers, as frozen attrs classes.

Money and volumes are ``Decimal`` (exact: ``"0.009000000000000001"`` stays that), timestamps are
timezone-aware ``datetime`` in UTC, and the enums keep values they do not know: a new order state
on the exchange must never break a cancel loop.
"""

from __future__ import annotations

import enum
from datetime import datetime
from decimal import Decimal
from typing import Any, Literal, Union

import attrs

# At run time, not only for type checkers: ``attrs.resolve_types`` and cattrs read
# ``CancelOutcome.error``'s annotation (``cattrs.Converter().unstructure(outcome)``).
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
    """Buys the market's base currency (``btc`` in ``btcusdt``) with its quote currency."""
    SELL = "sell"
    """Sells the market's base currency for its quote currency."""


class OrderType(_OpenStrEnum):
    """An order's type (``ord_type``); a type the exchange adds later is kept, not refused."""

    LIMIT = "limit"
    """Rests on the book at its ``price`` until filled or cancelled."""
    MARKET = "market"
    """Fills at the prices on the book; its ``price`` is None."""
    STOP_LIMIT = "stop_limit"
    """A limit order with a trigger price, ``stop_price``."""
    LIMIT_MAKER = "limit_maker"
    """Post-only: one that would match as a taker is cancelled instead ("Order cancelled because
    it was matched as a taker order")."""


class OrderState(_OpenStrEnum):
    """``pending``: accepted, not yet on the book; ``wait``: resting (maybe partly filled);
    ``done``: filled; ``cancel``: cancelled (maybe partly filled)."""

    PENDING = "pending"
    """Accepted, not yet on the book (a new order's first state)."""
    WAIT = "wait"
    """Resting on the book, maybe partly filled."""
    DONE = "done"
    """Filled completely: off the book."""
    CANCEL = "cancel"
    """Cancelled, maybe after partial fills: off the book (``cancel_reason`` says why)."""

    @property
    def is_open(self) -> bool:
        """``pending`` or ``wait``: the order is (or is about to be) on the book."""
        return self in (OrderState.PENDING, OrderState.WAIT)


@attrs.frozen(kw_only=True)
class Trade:
    """One fill of an order (``GET /sapi/v1/orders/{id}/`` lists them under ``trades``)."""

    id: int
    """The trade's id on the exchange."""
    order_id: int | None = None
    """The order this fill belongs to."""
    market: str | None = None
    """The market: base and quote currency in lower case (``btcusdt``)."""
    side: Side | None = None
    """The side of the order the fill belongs to."""
    taker_type: Side | None = None
    """The side that took liquidity in this fill (``buy``: the buyer was the taker)."""
    price: Decimal | None = None
    """The price of the fill, in the quote currency."""
    amount: Decimal | None = None
    """The volume filled, in the base currency."""
    total: Decimal | None = None
    """What the fill was worth, in the quote currency."""
    fee: Decimal | None = None
    """The fee rate applied, a fraction (``0.0004`` is 0.04 %)."""
    fee_amount: Decimal | None = None
    """The fee charged, in ``fee_currency``."""
    fee_currency: str | None = None
    """The currency the fee was charged in."""
    created_at: datetime | None = None
    """When the fill happened (UTC)."""


@attrs.frozen(kw_only=True)
class Order:
    """An order as the exchange reports it, with the API's own field names.

    ``price`` is None for market orders; ``stop_price`` and ``cancel_reason`` are None when null
    or absent (older payloads lack them). A cancel answer is the order *as it was when the cancel
    was queued*: ``state`` may still be ``wait``.
    """

    id: int
    """The order's id (read from ``order_id`` in the Brine-era cancel answer, which has no ``id``)."""
    market: str
    """The market: base and quote currency in lower case (``btcusdt``)."""
    side: Side
    """``buy`` or ``sell``."""
    ord_type: OrderType
    """``limit``, ``market``, ``stop_limit`` or ``limit_maker`` (another type is kept as is)."""
    state: OrderState
    """``pending``, ``wait``, ``done`` or ``cancel`` (another state is kept as is)."""
    origin_volume: Decimal
    """The volume ordered, in the base currency."""
    remaining_volume: Decimal
    """The volume not filled yet."""
    executed_volume: Decimal
    """The volume filled so far (exactly as sent: ``"0.009000000000000001"`` stays that)."""
    created_at: datetime
    """When the order was placed (UTC; the exchange sends its local time with an offset)."""
    updated_at: datetime | None = None
    """When the order last changed (UTC), or None when absent."""
    uuid: str | None = None
    """The order's UUID, or None when absent (the Brine-era cancel answer)."""
    price: Decimal | None = None
    """The limit price, in the quote currency; None for market orders."""
    stop_price: Decimal | None = None
    """The trigger price of a ``stop_limit`` order; None for other types or when absent."""
    avg_price: Decimal | None = None
    """The average price of the fills (``0.0`` until something fills), or None when absent."""
    maker_fee: Decimal | None = None
    """The fee rate if the order fills as maker, a fraction (``0.0004`` is 0.04 %)."""
    taker_fee: Decimal | None = None
    """The fee rate if the order fills as taker, a fraction."""
    trades_count: int = 0
    """How many fills the order has had."""
    cancel_reason: str | None = None
    """Why the order was cancelled, free text (``"Order cancelled by user"`` for a cancel of
    yours); None when the order is not cancelled or the payload lacks the field."""
    trades: tuple[Trade, ...] = ()
    """The order's fills, as ``GET /sapi/v1/orders/{id}/`` lists them (``session.orders.get()``,
    look-ups); empty from the other endpoints."""

    @property
    def is_open(self) -> bool:
        """Still resting (or about to): ``pending`` or ``wait``."""
        return self.state.is_open


class CancelStatus(str, enum.Enum):
    """What happened to one order of a cancel batch."""

    QUEUED = "queued"
    """The exchange accepted the cancel with a 2xx (tanX queues cancellations; not yet
    confirmed), now or moments earlier in this session (then ``note`` says so)."""
    CANCELLED = "cancelled"
    """The exchange reports the order ``cancel`` after our cancel (confirmed or looked up)."""
    ALREADY_CLOSED = "already_closed"
    """The order was already ``done`` or ``cancel`` before this cancel: off the book, not by us."""
    NOT_FOUND = "not_found"
    """The exchange does not know the order (or it belongs to someone else)."""
    FAILED = "failed"
    """The cancel was refused or could not be sent; the order is still open as far as we know."""
    UNKNOWN = "unknown"
    """The cancel may have been processed (no answer came back, or an error answer that may
    hide a processed cancel), and neither a look-up nor the settling pass that follows could
    settle it before the deadline. Cancelling again is safe."""
    SKIPPED = "skipped"
    """Never sent: the batch deadline expired or the batch was cancelled first."""


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
    None, with a warning, as it would have when decoded at once. Every reader (``attrs.asdict``,
    cattrs, ``pickle``, ``attrs.evolve``) reads ``order`` and so sees the decoded value.
    """

    order_id: int
    """The order the cancel was for."""
    status: CancelStatus
    """What happened to the order (see ``CancelStatus``)."""
    order: Order | None = attrs.field(default=None, repr=False, eq=False)
    """The exchange's latest view of the order, when one was seen (an accepted cancel's echo, a
    look-up, a confirmation), else None."""
    error: TanxError | None = attrs.field(default=None, eq=False)
    """Why the outcome is not ok (always set then). On an ok outcome, None, or for ``cancelled``
    and ``already_closed`` the refusal a look-up then overruled (kept for the record)."""
    attempts: int = 0
    """Cancel attempts made for the order, retries and a settling pass's resend included (look-ups
    are not counted); 0 when none was made."""
    elapsed: float = 0.0
    """Seconds from the order's first cancel request to its outcome, look-ups and confirmation
    included; 0.0 when the batch deadline decided the outcome before an answer came."""
    note: str | None = attrs.field(default=None, eq=False)
    """What else the outcome rests on (its evidence, a refusal that did not change it, a settling
    pass), or None."""

    @property
    def ok(self) -> bool:
        """The order is off the book or on its way off, on evidence (see the class docstring)."""
        if self.status is CancelStatus.QUEUED:
            return self.error is None
        return self.status in _OFF_BOOK


class PendingOrder:
    """An order not decoded yet: the library's own (``_convert.CancelEcho``, the echo of an
    accepted cancel kept as its answer's bytes), put in ``CancelOutcome.order`` by
    ``queued_outcome`` and never shown: the first read of ``order`` decodes it and keeps the
    result."""

    __slots__ = ()

    def decode(self, order_id: int) -> Order | None:
        raise NotImplementedError

    def may_show_closed(self) -> bool:
        """Whether the decoded order could be closed (False only when it cannot be)."""
        return True


class _OrderSlot:
    """``CancelOutcome.order``: its slot, read through ``PendingOrder.decode`` once."""

    def __init__(self, slot: Any) -> None:
        self.get = slot.__get__
        self.set = slot.__set__

    def __get__(self, outcome: CancelOutcome | None, owner: type | None = None) -> Any:
        if outcome is None:
            return self
        value = self.get(outcome, owner)
        if isinstance(value, PendingOrder):
            value = value.decode(outcome.order_id)
            self.set(outcome, value)
        return value

    def __set__(self, outcome: CancelOutcome, value: Order | PendingOrder | None) -> None:
        self.set(outcome, value)


# The slots' setters, for ``queued_outcome`` (a frozen class's ``__setattr__`` refuses).
_slots: dict[str, Any] = {
    field.name: CancelOutcome.__dict__[field.name] for field in attrs.fields(CancelOutcome)
}
_order_slot = _OrderSlot(_slots["order"])
setattr(CancelOutcome, "order", _order_slot)  # noqa: B010 (for mypy ``order`` stays a field)
_set_order_id = _slots["order_id"].__set__
_set_status = _slots["status"].__set__
_set_order = _order_slot.set
_set_error = _slots["error"].__set__
_set_attempts = _slots["attempts"].__set__
_set_elapsed = _slots["elapsed"].__set__
_set_note = _slots["note"].__set__
del _slots
_new = object.__new__


def may_show_closed(outcome: CancelOutcome) -> bool:
    """Whether ``outcome.order`` could show the order closed, decoding nothing that cannot (a
    queued cancel's confirmation asks this of every order, and most echoes show it open)."""
    value = _order_slot.get(outcome)
    if isinstance(value, PendingOrder):
        return value.may_show_closed()
    return value is not None


def queued_outcome(order_id: int, attempts: int, elapsed: float, echo: PendingOrder | None) -> CancelOutcome:
    """``CancelOutcome(order_id=..., status=QUEUED, attempts=..., elapsed=...)`` whose ``order``
    is decoded from ``echo`` when first read. Made without the constructor (a burst makes one per
    order; the saving is in ``benchmarks/RESULTS.md``): an object and its slots' own setters, no
    keyword dict and no ``object.__setattr__`` per field. Every field is set
    (``tests/decoding/test_models.py`` compares the two)."""
    outcome: CancelOutcome = _new(CancelOutcome)
    _set_order_id(outcome, order_id)
    _set_status(outcome, CancelStatus.QUEUED)
    _set_order(outcome, echo)
    _set_error(outcome, None)
    _set_attempts(outcome, attempts)
    _set_elapsed(outcome, elapsed)
    _set_note(outcome, None)
    return outcome


@attrs.frozen
class TokenPair:
    """An access/refresh token pair. The repr never shows the tokens."""

    access: str = attrs.field(repr=False)
    """The access token (sent as ``Authorization: JWT <access>``)."""
    refresh: str | None = attrs.field(repr=False)
    """The refresh token (a renewal may return a new one: keep the newest), or None when the
    session has none."""
    access_expires_at: datetime | None = None
    """When the access token expires (its JWT ``exp``, read unverified; UTC), or None when no
    ``exp`` could be read: absent, not a number, or no time a ``datetime`` holds (``1e300``,
    NaN). Such an expiry is unknown: the token is sent, and a 401 renews it."""


# -- the private stream (``session.stream()``) --------------------------------------------------


@attrs.frozen(kw_only=True)
class OrderUpdate:
    """An order's new state, pushed on the private stream (``{"order": {...}}``).

    Decoded like ``Order`` (``Decimal`` numbers, aware UTC datetimes from the stream's unix-second
    integers, open enums, unknown keys ignored). ``kind`` is ``bid``/``ask``; the stream carries no
    ``uuid``, fees, ``stop_price`` or ``cancel_reason``. Only ``id`` and ``state`` are required.
    """

    id: int
    """The order's id."""
    state: OrderState
    """The order's state now (``cancel``: cancelled, ``done``: filled completely)."""
    market: str | None = None
    """The market (``btcusdt``), or None when the update lacks it (so for every field below)."""
    side: Side | None = None
    """``buy`` or ``sell``."""
    kind: str | None = None
    """``bid`` (a buy) or ``ask`` (a sell), as the stream sends it."""
    ord_type: OrderType | None = None
    """The order's type (``limit``, ``market``, ...)."""
    price: Decimal | None = None
    """The limit price (None for market orders)."""
    avg_price: Decimal | None = None
    """The average price of the order's fills so far."""
    origin_volume: Decimal | None = None
    """The volume ordered."""
    remaining_volume: Decimal | None = None
    """The volume still open."""
    executed_volume: Decimal | None = None
    """The volume filled so far."""
    trades_count: int | None = None
    """How many fills the order has had."""
    created_at: datetime | None = None
    """When the order was placed (UTC, from the stream's unix seconds)."""
    updated_at: datetime | None = None
    """When the order last changed (UTC)."""
    at: datetime | None = None
    """The update's ``at`` timestamp (UTC); undocumented (the documented example has it equal to
    ``created_at``)."""


@attrs.frozen(kw_only=True)
class TradeUpdate:
    """A fill of one of the user's orders, pushed on the private stream (``{"trade": {...}}``)."""

    id: int
    """The trade's id."""
    order_id: int | None = None
    """Which of the user's orders filled, or None when the update lacks it (so for every field
    below)."""
    market: str | None = None
    """The market (``btcusdt``)."""
    side: Side | None = None
    """The side of the order that filled."""
    taker_type: Side | None = None
    """The side that took liquidity (``buy``: the buyer was the taker)."""
    price: Decimal | None = None
    """The fill's price, in the quote currency."""
    amount: Decimal | None = None
    """The fill's volume, in the base currency."""
    total: Decimal | None = None
    """The fill's worth, in the quote currency."""
    created_at: datetime | None = None
    """When it filled (UTC, from the stream's unix seconds)."""


@attrs.frozen(kw_only=True)
class StreamGap:
    """Updates may have been missed between ``started`` and ``ended`` (UTC).

    ``reason`` is ``"reconnect"`` (the socket was dropped, closed or stalled and has been opened
    and subscribed again) or ``"overflow"`` (the consumer was too slow and ``dropped`` updates were
    discarded from the bounded buffer). Look up the orders you care about to catch up.
    """

    reason: Literal["reconnect", "overflow"]
    """``"reconnect"`` (the socket was lost and is subscribed again) or ``"overflow"`` (the
    consumer fell behind)."""
    started: datetime
    """When the loss was noticed (a stall only after its silence) or the buffer filled (UTC)."""
    ended: datetime
    """When the socket was subscribed again or the buffer had room again (UTC)."""
    dropped: int = 0
    """Updates discarded from the full buffer (``overflow``); 0 after a reconnect, where how many
    were missed is unknown."""


StreamEvent = Union[OrderUpdate, TradeUpdate, StreamGap]  # noqa: UP007 - a runtime alias on 3.10
"""What ``session.stream()`` yields: ``OrderUpdate | TradeUpdate | StreamGap``."""
