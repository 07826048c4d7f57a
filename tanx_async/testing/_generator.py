"""Realistic orders for the sandbox's book: prices, volumes, partial fills and their trades.

Every draw comes from the exchange's one random stream (``SandboxExchange(seed=...)``), so a
seeded exchange generates the same orders every run. The caller holds the exchange's lock.
"""

from __future__ import annotations

import random
import uuid
from decimal import Decimal
from typing import Final

import attrs

from ._orders import CANCEL_REASON_USER, SandboxOrder, SandboxTrade
from ._wire import num

__all__ = ["DEFAULT_MARKETS", "OrderGenerator"]

DEFAULT_MARKETS: Final[dict[str, tuple[str, str]]] = {
    "btcusdc": ("btc", "usdc"),
    "btcusdt": ("btc", "usdt"),
    "ethusdc": ("eth", "usdc"),
    "ethusdt": ("eth", "usdt"),
    "usdcusdt": ("usdc", "usdt"),
    "maticusdt": ("matic", "usdt"),
}
_QUOTES: Final = ("usdc", "usdt", "btc", "eth")
_PRICE_RANGE: Final = {
    "btc": (58000, 71000),
    "eth": (2900, 3900),
    "usdc": (1, 1),
    "matic": (1, 1),
}


class OrderGenerator:
    """Makes new orders (ids from 25,000,000, trade ids from 9,100,000) for the markets it knows.

    ``markets`` maps a market to its ``(base, quote)`` units; a market it does not list is split
    at a known quote unit (``maticbtc`` -> ``matic``, ``btc``) and remembered.
    """

    def __init__(self, rng: random.Random, markets: dict[str, tuple[str, str]] | None = None) -> None:
        self.markets: dict[str, tuple[str, str]] = dict(markets or DEFAULT_MARKETS)
        self._rng = rng
        self._next_order_id = 25_000_000
        self._next_trade_id = 9_100_000

    def market_units(self, market: str) -> tuple[str, str]:
        """``(base, quote)`` of a market."""
        units = self.markets.get(market)
        if units is None:
            for quote in _QUOTES:
                if market.endswith(quote) and len(market) > len(quote):
                    units = (market[: -len(quote)], quote)
                    break
            else:
                units = (market, "")
            self.markets[market] = units
        return units

    def take_id(self) -> int:
        """A new order id."""
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_id

    def reserve_id(self, order_id: int) -> None:
        """Never hand out ``order_id`` (an order given its own id)."""
        self._next_order_id = max(self._next_order_id, order_id + 1)

    def generate(
        self,
        uid: str,
        market: str,
        state: str,
        side: str | None,
        ord_type: str,
        created_at: float,
        now: float,
    ) -> SandboxOrder:
        """A new order of ``uid`` (``side=None``: at random); about 30% of ``wait`` and ``cancel``
        orders are partly filled, ``done`` orders filled, each fill with its trades."""
        rng = self._rng
        base, _ = self.market_units(market)
        low, high = _PRICE_RANGE.get(base, (1, 100))
        price = Decimal(rng.randint(low * 100, high * 100 + 99)) / 100
        if low == high:
            price = Decimal(rng.randint(9950, 10050)) / 10000
        volume = Decimal(rng.randint(10, 5000)) / 10000
        if base not in ("btc", "eth"):
            volume = Decimal(rng.randint(10, 2000))
        filled_part = Decimal(0)
        if state == "done":
            filled_part = volume
        elif state in ("wait", "cancel") and rng.random() < 0.3:
            filled_part = volume * Decimal(rng.randint(1, 9)) / 10
            filled_part = filled_part.quantize(Decimal("0.0001"))
        remaining = volume - filled_part
        # float subtraction reproduces the artefacts the real server emits
        executed = repr(float(volume) - float(remaining)) if filled_part else "0.0"
        order = SandboxOrder(
            id=self.take_id(),
            uid=uid,
            uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            side=side or rng.choice(("buy", "sell")),
            ord_type=ord_type,
            market=market,
            price=None if ord_type == "market" else price,
            stop_price=price * Decimal("0.98") if ord_type == "stop_limit" else None,
            avg_price=0,
            state=state,
            created_at=created_at,
            # never in the future: a fill happened between creation and now
            updated_at=min(created_at + (rng.uniform(1, 600) if filled_part else 0), max(created_at, now)),
            origin_volume=volume,
            remaining_volume=remaining,
            executed_volume=executed,
            maker_fee="0.0004",
            taker_fee="0.0006",
            trades_count=0,
            cancel_reason=CANCEL_REASON_USER if state == "cancel" else None,
        )
        if not filled_part:
            return order
        trades, avg = self._fills(order, price, filled_part)
        return attrs.evolve(order, trades=trades, trades_count=len(trades), avg_price=avg)

    def _fills(
        self, order: SandboxOrder, price: Decimal, filled: Decimal
    ) -> tuple[tuple[SandboxTrade, ...], Decimal]:
        """1-3 trades whose amounts add up to ``filled``, and their volume-weighted price.

        A limit order rests on the book (maker) and fills at its price; a market order takes
        (taker) at prices within 0.2% of ``price``.
        """
        rng = self._rng
        step = Decimal("0.0001")
        units = int(filled / step)
        n = min(rng.randint(1, 3), units)
        cuts = sorted(rng.sample(range(1, units), n - 1)) if n > 1 else []
        amounts = [(b - a) * step for a, b in zip([0, *cuts], [*cuts, units], strict=True)]
        places = Decimal("0.01") if price >= 100 else step
        base, quote = self.market_units(order.market)
        maker = order.ord_type != "market"
        fee = Decimal(order.maker_fee if maker else order.taker_fee)
        times = sorted(rng.uniform(order.created_at, order.updated_at) for _ in amounts)
        trades = []
        for amount, at in zip(amounts, times, strict=True):
            fill_price = price if maker else (price * Decimal(rng.uniform(0.998, 1.002))).quantize(places)
            total = fill_price * amount
            trades.append(
                SandboxTrade(
                    id=self._next_trade_id,
                    order_id=order.id,
                    market=order.market,
                    side=order.side,
                    taker_type=order.side if not maker else ("sell" if order.side == "buy" else "buy"),
                    price=num(fill_price),
                    amount=num(amount),
                    total=num(total),
                    fee=num(fee),
                    fee_amount=num((amount if order.side == "buy" else total) * fee),
                    fee_currency=base if order.side == "buy" else quote,
                    created_at=at,
                )
            )
            self._next_trade_id += 1
        avg = sum((Decimal(t.price) * Decimal(t.amount) for t in trades), Decimal(0)) / filled
        return tuple(trades), avg.quantize(places)
