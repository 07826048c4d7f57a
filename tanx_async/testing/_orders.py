"""The sandbox's order and trade records: immutable snapshots and their wire form.

The book (``_book.py``) stores them; a change replaces the stored snapshot.
"""

from __future__ import annotations

from datetime import timezone
from decimal import Decimal
from typing import Any, Final

import attrs

from ._wire import iso, num

__all__ = ["CANCEL_REASON_USER", "SandboxOrder", "SandboxTrade"]

CANCEL_REASON_USER: Final = "Order cancelled by user"


def _decimal_str(value: object) -> str:
    """Numbers in the API's form (``"450.0"``); strings are kept exactly as given."""
    if isinstance(value, str):
        return value
    if isinstance(value, float | int | Decimal) and not isinstance(value, bool):
        return num(value)
    raise TypeError(f"expected a number or a decimal string, got {value!r}")


def _opt_decimal_str(value: object) -> str | None:
    return None if value is None else _decimal_str(value)


@attrs.frozen
class SandboxOrder:
    """One order as the exchange holds it (immutable snapshot).

    ``created_at``/``updated_at`` are unix seconds; ``to_payload()`` renders the wire
    form. ``cancel_due`` is the exchange-clock time a queued cancellation takes effect.
    Numbers given as ``int``/``float``/``Decimal`` are stored in the API's string form
    (``1134`` -> ``"1134.0"``); strings are kept as given. ``trades`` are the fills of a
    generated order (see ``SandboxExchange.seed_orders()``).
    """

    id: int
    uid: str
    uuid: str
    side: str
    ord_type: str
    market: str
    price: str | None = attrs.field(converter=_opt_decimal_str)
    stop_price: str | None = attrs.field(converter=_opt_decimal_str)
    avg_price: str = attrs.field(converter=_decimal_str)
    state: str
    created_at: float
    updated_at: float
    origin_volume: str = attrs.field(converter=_decimal_str)
    remaining_volume: str = attrs.field(converter=_decimal_str)
    executed_volume: str = attrs.field(converter=_decimal_str)
    maker_fee: str = attrs.field(converter=_decimal_str)
    taker_fee: str = attrs.field(converter=_decimal_str)
    trades_count: int
    cancel_reason: str | None
    cancel_due: float | None = None
    trades: tuple[SandboxTrade, ...] = ()

    @property
    def cancel_queued(self) -> bool:
        """A cancellation was accepted and has not taken effect yet."""
        return self.cancel_due is not None

    def to_payload(
        self,
        *,
        legacy: bool = False,
        newer_fields: bool = True,
        trades: bool = False,
        offset: timezone | None = None,
    ) -> dict[str, Any]:
        """The order object as the API returns it.

        ``legacy``: ``order_id`` instead of ``id`` (the Brine-era cancel echo).
        ``newer_fields``: include ``stop_price`` and ``cancel_reason`` (added in 2024).
        ``trades``: add the ``trades`` list (GET order only). ``offset``: write the times
        in this offset instead of the server's own.
        """
        payload: dict[str, Any] = {
            "order_id" if legacy else "id": self.id,
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": self.price,
            "stop_price": self.stop_price,
            "avg_price": self.avg_price,
            "state": self.state,
            "market": self.market,
            "created_at": iso(self.created_at, offset),
            "updated_at": iso(self.updated_at, offset),
            "origin_volume": self.origin_volume,
            "remaining_volume": self.remaining_volume,
            "executed_volume": self.executed_volume,
            "maker_fee": self.maker_fee,
            "taker_fee": self.taker_fee,
            "trades_count": self.trades_count,
            "cancel_reason": self.cancel_reason,
        }
        if not newer_fields:
            del payload["stop_price"], payload["cancel_reason"]
        if trades:
            payload["trades"] = [t.to_payload(offset) for t in self.trades]
        return payload


@attrs.frozen
class SandboxTrade:
    """One fill of an order, in the fields of ``GET /sapi/v1/trades/`` (the keys of the
    ``trades`` list on GET order are **inferred** to be the same; no source shows one)."""

    id: int
    order_id: int
    market: str
    side: str
    taker_type: str
    price: str
    amount: str
    total: str
    fee: str
    fee_amount: str
    fee_currency: str
    created_at: float

    def to_payload(self, offset: timezone | None = None) -> dict[str, Any]:
        """The trade object as the API returns it."""
        return {
            "id": self.id,
            "price": self.price,
            "amount": self.amount,
            "total": self.total,
            "fee_currency": self.fee_currency,
            "fee": self.fee,
            "fee_amount": self.fee_amount,
            "market": self.market,
            "created_at": iso(self.created_at, offset),
            "taker_type": self.taker_type,
            "side": self.side,
            "order_id": self.order_id,
        }
