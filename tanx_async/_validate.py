"""Checking what the caller passes, before anything is sent.

One rule throughout: a value of the wrong type raises ``TypeError``, a value of the right type
outside its range raises ``ValueError`` (``InvalidOrderIdError`` is a ``ValueError``).
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Any

from ._errors import InvalidOrderIdError

__all__ = ["market_name", "order_id", "positive_int", "seconds", "setting_int", "side_value", "timestamp"]

_MARKET = re.compile(r"[a-z0-9]{2,32}")
#: Order ids are signed 64-bit integers on the exchange.
MAX_ORDER_ID = 2**63 - 1
ORDER_ID_RANGE = f"an integer from 1 to 2**63-1 ({MAX_ORDER_ID})"


def order_id(value: object) -> int:
    """An order id: an int from 1 to 2**63-1 (the exchange's ids are signed 64-bit).
    ``TypeError`` for other types (bool included), ``ValueError`` (``InvalidOrderIdError``) for
    ints outside that range."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"order_id must be a positive int, got {type(value).__name__} {value!r}")
    if value <= 0 or value > MAX_ORDER_ID:
        raise InvalidOrderIdError(f"order_id must be {ORDER_ID_RANGE}, got {value!r}")
    return int(value)


def positive_int(name: str, value: object, *, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < 1 or (maximum is not None and value > maximum):
        bound = f" and at most {maximum}" if maximum is not None else ""
        raise ValueError(f"{name} must be at least 1{bound}, got {value}")
    return int(value)


def setting_int(name: str, value: object, *, minimum: int) -> int:
    """An int setting (``max_retries``, ``max_concurrency``) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {type(value).__name__} {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def seconds(name: str, value: object, *, also: str = "") -> float:
    """A positive (finite) number of seconds (``also`` names another accepted form in the
    message)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError(
            f"{name} must be a positive number of seconds{also}, got {type(value).__name__} {value!r}"
        )
    if not 0 < value < float("inf"):
        raise ValueError(f"{name} must be a positive number of seconds{also}, got {value!r}")
    return float(value)


def market_name(value: object) -> str:
    if not isinstance(value, str):
        raise TypeError(f"market must be a string such as 'btcusdc', got {type(value).__name__}")
    market = value.strip().lower()
    if not _MARKET.fullmatch(market):
        raise ValueError(f"market must look like 'btcusdc' (lowercase base+quote), got {value!r}")
    return market


def side_value(value: object) -> str:
    if value not in ("buy", "sell"):
        raise ValueError(f"side must be 'buy' or 'sell', got {value!r}")
    return str(value)


def choice(name: str, value: object, allowed: tuple[str, ...] | None = None) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError(f"{name} must be a non-empty string, got {value!r}")
    text = str(value).strip()
    if allowed is not None and text not in allowed:
        raise ValueError(f"{name} must be one of {', '.join(allowed)}, got {value!r}")
    return text


def timestamp(name: str, value: Any) -> int:
    """Unix seconds from an aware ``datetime`` or a non-negative int."""
    if isinstance(value, datetime):
        if value.tzinfo is None:
            raise ValueError(f"{name} must be timezone-aware")
        return int(value.timestamp())
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an aware datetime or unix seconds (int >= 0), got {value!r}")
    if value < 0:
        raise ValueError(f"{name} must be unix seconds >= 0, got {value!r}")
    return value
