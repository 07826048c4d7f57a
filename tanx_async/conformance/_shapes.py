"""What the library expects of each answer, field by field, and how a value is described.

The expectations are the documented shapes (``shared/tanx-api.md`` sections 3-6) as the
library's decoders read them (``_convert.py``, ``_envelope.py``) and as the sandbox's profiles
write them (``testing/_wire.py``: ``docs``, ``full``, ``brine``, ``ack``). A ``Finding`` names
the check, the field (as a JSON path) and the value's *shape*, never a secret.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from ..models import OrderState, OrderType, Side

__all__ = ["Finding", "check_envelope", "check_order", "check_stream_message", "describe"]

_DECIMAL = re.compile(r"-?\d+(\.\d+)?")
_ISO = re.compile(r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?([+-]\d{2}:?\d{2}|Z)")


@attrs.frozen
class Finding:
    """One checked thing: ``ok`` (matched) or a deviation, with the field and the value's shape."""

    check: str
    field: str
    ok: bool
    detail: str

    def line(self) -> str:
        mark = "ok  " if self.ok else "DEVIATION"
        where = f" {self.field}" if self.field else ""
        return f"{mark} {self.check}{where}: {self.detail}"


def describe(value: Any, *, show: bool = False) -> str:
    """The shape of ``value`` (its JSON type and form); ``show`` adds the value itself (for enum
    values and short texts that are never secret)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, int):
        return "integer" + (f" {value}" if show else "")
    if isinstance(value, float):
        return "number (not a string)" + (f" {value!r}" if show else "")
    if isinstance(value, str):
        if show:
            return f"string {value[:60]!r}"
        if _DECIMAL.fullmatch(value):
            return "decimal string"
        if "e" in value.lower() and _is_float(value):
            return "decimal string in exponent form"
        if _ISO.fullmatch(value):
            return "ISO-8601 string with offset"
        return f"string of {len(value)} chars"
    if isinstance(value, list):
        return f"array of {len(value)}"
    if isinstance(value, dict):
        keys = ", ".join(sorted(map(str, value))[:8])
        return f"object with keys {{{keys}{', ...' if len(value) > 8 else ''}}}"
    return type(value).__name__


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# -- field checks: each returns None when the value matches, else what was expected -------------


def _int(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "an integer"


def _str(value: Any) -> str | None:
    return None if isinstance(value, str) else "a string"


def _opt_str(value: Any) -> str | None:
    return None if value is None or isinstance(value, str) else "a string or null"


def _decimal(value: Any) -> str | None:
    return None if isinstance(value, str) and _DECIMAL.fullmatch(value) else 'a decimal string ("450.0")'


def _opt_decimal(value: Any) -> str | None:
    return None if value is None else _decimal(value)


def _time(value: Any) -> str | None:
    if isinstance(value, str) and _ISO.fullmatch(value):
        return None
    return 'an ISO-8601 string with an offset ("2024-05-31T09:02:00+02:00")'


def _unix(value: Any) -> str | None:
    return None if isinstance(value, int) and not isinstance(value, bool) else "unix seconds (an integer)"


def _enum(known: tuple[str, ...]) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if isinstance(value, str) and value in known:
            return None
        return f"one of {', '.join(known)}"

    return check


_SIDES = tuple(s.value for s in Side)
_TYPES = tuple(t.value for t in OrderType)
_STATES = tuple(s.value for s in OrderState)
_ENUMS = {"side", "ord_type", "state", "taker_type", "kind"}

#: The order object (section 4): field -> (check, always present).
ORDER: dict[str, tuple[Callable[[Any], str | None], bool]] = {
    "id": (_int, True),
    "uuid": (_str, True),
    "side": (_enum(_SIDES), True),
    "ord_type": (_enum(_TYPES), True),
    "price": (_opt_decimal, True),
    "stop_price": (_opt_decimal, False),
    "avg_price": (_decimal, True),
    "state": (_enum(_STATES), True),
    "market": (_str, True),
    "created_at": (_time, True),
    "updated_at": (_time, True),
    "origin_volume": (_decimal, True),
    "remaining_volume": (_decimal, True),
    "executed_volume": (_decimal, True),
    "maker_fee": (_decimal, True),
    "taker_fee": (_decimal, True),
    "trades_count": (_int, True),
    "cancel_reason": (_opt_str, False),
}

#: A trade in GET order's ``trades`` (section 3.6).
TRADE: dict[str, tuple[Callable[[Any], str | None], bool]] = {
    "id": (_int, True),
    "price": (_decimal, True),
    "amount": (_decimal, True),
    "total": (_decimal, True),
    "fee_currency": (_str, True),
    "fee": (_decimal, True),
    "fee_amount": (_decimal, True),
    "market": (_str, True),
    "created_at": (_time, True),
    "taker_type": (_enum(_SIDES), True),
    "side": (_enum(_SIDES), True),
    "order_id": (_int, True),
}

#: The private stream's order update (section 6): unix-second times, ``kind`` bid/ask.
STREAM_ORDER: dict[str, tuple[Callable[[Any], str | None], bool]] = {
    "id": (_int, True),
    "at": (_unix, False),
    "avg_price": (_decimal, False),
    "created_at": (_unix, False),
    "executed_volume": (_decimal, False),
    "kind": (_enum(("bid", "ask")), False),
    "market": (_str, True),
    "ord_type": (_enum(_TYPES), False),
    "origin_volume": (_decimal, False),
    "price": (_opt_decimal, False),
    "remaining_volume": (_decimal, False),
    "side": (_enum(_SIDES), False),
    "state": (_enum(_STATES), True),
    "trades_count": (_int, False),
    "updated_at": (_unix, False),
}
STREAM_TRADE: dict[str, tuple[Callable[[Any], str | None], bool]] = {
    "id": (_int, True),
    "amount": (_decimal, False),
    "created_at": (_unix, False),
    "market": (_str, True),
    "order_id": (_int, True),
    "price": (_decimal, False),
    "side": (_enum(_SIDES), False),
    "taker_type": (_enum(_SIDES), False),
    "total": (_decimal, False),
}


def check_fields(
    check: str, path: str, value: Any, spec: Mapping[str, tuple[Callable[[Any], str | None], bool]]
) -> list[Finding]:
    """Every field of ``value`` against ``spec``: missing, unknown, wrong form or enum value."""
    if not isinstance(value, dict):
        return [Finding(check, path, False, f"expected an object, got {describe(value)}")]
    found: list[Finding] = []
    for name, (field_check, required) in spec.items():
        if name not in value:
            if required:
                found.append(Finding(check, f"{path}.{name}", False, "missing field"))
            continue
        expected = field_check(value[name])
        if expected is not None:
            shown = describe(value[name], show=name in _ENUMS)
            what = "undocumented value" if name in _ENUMS and isinstance(value[name], str) else "wrong form"
            found.append(Finding(check, f"{path}.{name}", False, f"{what}: expected {expected}, got {shown}"))
    for name in value:
        if name not in spec:
            found.append(Finding(check, f"{path}.{name}", False, f"unknown field ({describe(value[name])})"))
    return found


def profile_of(order: dict[str, Any], endpoint: str) -> str | None:
    """The sandbox profile whose shape this order has on ``endpoint`` (``get``/``list``/
    ``cancel``), or None when no profile writes it so (``testing/_wire.Shape``)."""
    newer = [name in order for name in ("stop_price", "cancel_reason")]
    legacy = "order_id" in order and "id" not in order
    if legacy:
        return "brine" if endpoint == "cancel" and not any(newer) else None
    if all(newer):
        return "full" if endpoint == "get" else "docs/full"
    if not any(newer):
        return "docs" if endpoint == "get" else "brine"
    return None


def check_order(check: str, path: str, order: Any, endpoint: str) -> list[Finding]:
    """One order object of ``endpoint`` (``get``, ``list``, ``cancel``)."""
    if not isinstance(order, dict):
        return [Finding(check, path, False, f"expected an order object, got {describe(order)}")]
    spec = dict(ORDER)
    value = order
    if endpoint == "cancel" and "id" not in order and "order_id" in order:
        value = {("id" if k == "order_id" else k): v for k, v in order.items()}  # the Brine echo
    trades = value.get("trades")
    if endpoint == "get":
        spec["trades"] = (lambda v: None if isinstance(v, list) else "an array", True)
    found = check_fields(check, path, value, spec)
    if isinstance(trades, list):
        for index, trade in enumerate(trades):
            found += check_fields(check, f"{path}.trades[{index}]", trade, TRADE)
    profile = profile_of(order, endpoint)
    if profile is None:
        found.append(
            Finding(check, path, False, "stop_price/cancel_reason present in a mix no known profile sends")
        )
    return found


#: Success messages the documentation or the connectors show, per endpoint (section 3).
MESSAGES: dict[str, tuple[str, ...]] = {
    "list": ("Orders Retrieved Successfully",),
    "get": ("Order Retrieved Successfully",),
    "cancel": ("Order is successfully queued for cancellation", "Cancelled Order Successfully"),
    "refresh": (),
}


def check_envelope(check: str, status: int, body: Any, *, success: bool) -> list[Finding]:
    """The envelope: ``status``/``message``/``payload`` and nothing else; ``success`` says which
    kind of answer is expected (a 2xx success, or a 4xx with ``"status": "error"``)."""
    found: list[Finding] = []
    if not isinstance(body, dict):
        return [Finding(check, "$", False, f"expected an envelope object, got {describe(body)}")]
    for name in ("status", "message", "payload"):
        if name not in body:
            found.append(Finding(check, f"$.{name}", False, "missing field"))
    for name in body:
        if name not in ("status", "message", "payload"):
            found.append(Finding(check, f"$.{name}", False, f"unknown field ({describe(body[name])})"))
    said = body.get("status")
    want = "success" if success else "error"
    if said != want:
        found.append(Finding(check, "$.status", False, f"expected {want!r}, got {describe(said, show=True)}"))
    if "message" in body and not isinstance(body["message"], str):
        found.append(
            Finding(check, "$.message", False, f"expected a string, got {describe(body['message'])}")
        )
    if success and not 200 <= status < 300:
        found.append(Finding(check, "HTTP status", False, f"expected 2xx, got {status}"))
    if not success and status not in (400, 404):
        found.append(Finding(check, "HTTP status", False, f"expected a refusal (400 or 404), got {status}"))
    if not success and "payload" in body and not isinstance(body["payload"], str | dict):
        found.append(
            Finding(check, "$.payload", False, f'expected "" or an object, got {describe(body["payload"])}')
        )
    return found


def check_stream_message(check: str, message: Any) -> list[Finding]:
    """One message of the private stream: an ack (``success``), an ``order`` or a ``trade``."""
    if not isinstance(message, dict):
        return [Finding(check, "$", False, f"expected an object, got {describe(message)}")]
    if "success" in message:
        return []
    if "order" in message:
        return check_fields(check, "$.order", message["order"], STREAM_ORDER)
    if "trade" in message:
        return check_fields(check, "$.trade", message["trade"], STREAM_TRADE)
    return [Finding(check, "$", False, f"a message of no documented kind ({describe(message)})")]
