"""The one cattrs converter: JSON payloads in, attrs models out.

Built once at import. Unknown keys are ignored (tanX adds fields over time), ``Decimal`` is parsed
from the API's strings (floats go through ``str`` so ``0.1`` stays ``0.1``), datetimes come back
aware and in UTC, and the open enums keep unknown values. Failures become
``ResponseValidationError`` with JSON-path messages.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timezone
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar

import cattrs
from cattrs.gen import make_dict_structure_fn, override

from ._constants import CANCEL_PATH
from ._errors import ResponseValidationError
from ._json import loads
from ._log import logger
from .models import Order, OrderState, OrderType, OrderUpdate, PendingOrder, Side, Trade, TradeUpdate

__all__ = ["converter", "structure", "structure_order"]

T = TypeVar("T")

converter = cattrs.Converter(detailed_validation=True, forbid_extra_keys=False)


def _decimal(value: object, _: type) -> Decimal:
    if type(value) is str:  # the API's form: the fast path of every cancel's decode
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal: {value!r}") from None
        if result.is_finite():
            return result
        raise ValueError(f"not a finite decimal: {value!r}")
    if isinstance(value, bool):
        raise TypeError(f"expected a decimal string, got {value!r}")
    if isinstance(value, str | int):
        try:
            result = Decimal(value)
        except InvalidOperation:
            raise ValueError(f"not a decimal: {value!r}") from None
    elif isinstance(value, float):
        result = Decimal(repr(value))
    else:
        raise TypeError(f"expected a decimal string, got {type(value).__name__}")
    if not result.is_finite():
        raise ValueError(f"not a finite decimal: {value!r}")
    return result


def _datetime(value: object, _: type) -> datetime:
    if type(value) is str:
        # The API's form, "2024-05-31T09:02:00+02:00": the fast path of every cancel's decode.
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            pass
        else:
            if parsed.tzinfo is not None:
                return parsed.astimezone(timezone.utc)
    if isinstance(value, bool):
        raise TypeError(f"expected a timestamp, got {value!r}")
    if isinstance(value, int | float):
        # The websocket stream sends unix seconds.
        return datetime.fromtimestamp(value, tz=timezone.utc)
    if not isinstance(value, str):
        raise TypeError(f"expected an ISO-8601 string, got {type(value).__name__}")
    text = value.strip()
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    parsed = datetime.fromisoformat(text)
    if parsed.tzinfo is None:
        # Undocumented but possible; the exchange's clock is UTC-based, so assume UTC.
        parsed = parsed.replace(tzinfo=timezone.utc)
    return parsed.astimezone(timezone.utc)


def _int(value: object, _: type) -> int:
    # JSON has no int/float distinction a server always respects; bool is never an int here.
    if isinstance(value, bool):
        raise TypeError(f"expected an integer, got {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        return int(value)
    raise TypeError(f"expected an integer, got {value!r}")


def _str(value: object, _: type) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise TypeError(f"expected a string, got {type(value).__name__}")


def _open_enum(cls: type[T]) -> Callable[[object, type], T]:
    def structure(value: object, _: type) -> T:
        if not isinstance(value, str):
            raise TypeError(f"expected a string for {cls.__name__}, got {type(value).__name__}")
        return cls(value)  # type: ignore[call-arg]

    return structure


converter.register_structure_hook(Decimal, _decimal)
converter.register_structure_hook(datetime, _datetime)
converter.register_structure_hook(int, _int)
converter.register_structure_hook(str, _str)
for _enum in (Side, OrderType, OrderState):
    converter.register_structure_hook(_enum, _open_enum(_enum))


def _optional(hook: Callable[[object, type], T]) -> Callable[[object, type], T | None]:
    def structure(value: object, cls: type) -> T | None:
        return None if value is None else hook(value, cls)

    return structure


# Direct hooks for the optional fields: cattrs' generic Optional handler dispatches on every call,
# and an order has eight of them (a quarter of the cost of decoding a cancel answer).
converter.register_structure_hook(Decimal | None, _optional(_decimal))
converter.register_structure_hook(datetime | None, _optional(_datetime))
converter.register_structure_hook(str | None, _optional(_str))
converter.register_structure_hook(int | None, _optional(_int))
converter.register_structure_hook(Side | None, _optional(_open_enum(Side)))
converter.register_structure_hook(OrderType | None, _optional(_open_enum(OrderType)))

converter.register_structure_hook(Trade, make_dict_structure_fn(Trade, converter))
_structure_order_fields = make_dict_structure_fn(Order, converter, trades=override(omit_if_default=True))


def _order(value: object, _: type) -> Order:
    if not isinstance(value, dict):
        raise TypeError(f"expected an order object, got {type(value).__name__}")
    if "id" not in value and "order_id" in value:
        # The Brine-era cancel answer names the identifier order_id.
        value = {**value, "id": value["order_id"]}
    if value.get("trades") is None and "trades" in value:
        value = {k: v for k, v in value.items() if k != "trades"}
    return _structure_order_fields(value, Order)


converter.register_structure_hook(Order, _order)


def _exact_id(value: object, _: type) -> int:
    """An identifier on the stream: a JSON integer and nothing else. The stream's updates are
    matched to orders by id, so ``"7"`` or ``7.0`` (which ``_int`` would read as 7) is a
    shape we do not know, never order 7: it fails the decode loudly."""
    if type(value) is int:
        return value
    raise TypeError(f"expected an integer id, got {value!r:.40}")


def _exact_optional_id(value: object, cls: type) -> int | None:
    return None if value is None else _exact_id(value, cls)


converter.register_structure_hook(
    OrderUpdate, make_dict_structure_fn(OrderUpdate, converter, id=override(struct_hook=_exact_id))
)
converter.register_structure_hook(
    TradeUpdate,
    make_dict_structure_fn(
        TradeUpdate,
        converter,
        id=override(struct_hook=_exact_id),
        order_id=override(struct_hook=_exact_optional_id),
    ),
)


def structure(
    value: object,
    cls: type[T],
    *,
    path: str = "$.payload",
    raw: bytes = b"",
    method: str | None = None,
    endpoint: str | None = None,
) -> T:
    """Structure ``value`` into ``cls`` or raise ``ResponseValidationError`` (naming the request
    it came from: ``method`` and ``endpoint``, the URL path)."""
    try:
        if getattr(cls, "__origin__", None) is list and not isinstance(value, list):
            # cattrs would iterate a dict's keys or a string's characters: {} and "" are no list.
            raise TypeError(f"expected a list, got {type(value).__name__}")
        return converter.structure(value, cls)
    except Exception as exc:  # cattrs raises groups and plain errors alike
        errors = _messages(exc, path)
        summary = errors[0] if errors else f"{type(exc).__name__} @ {path}"
        more = f" (+{len(errors) - 1} more)" if len(errors) > 1 else ""
        raise ResponseValidationError(
            f"unexpected response: {summary}{more}", body=raw, errors=errors, method=method, path=endpoint
        ) from exc


def structure_order(
    value: object,
    *,
    path: str = "$.payload",
    raw: bytes = b"",
    method: str | None = None,
    endpoint: str | None = None,
) -> Order:
    return structure(value, Order, path=path, raw=raw, method=method, endpoint=endpoint)


def _messages(exc: BaseException, path: str) -> list[str]:
    try:
        return list(cattrs.transform_error(exc, path=path))
    except Exception:  # pragma: no cover - transform_error copes with all cattrs errors
        return [f"{type(exc).__name__}: {exc} @ {path}"]


def decode_echo(order_id: int, payload: object, raw: bytes = b"") -> Order | None:
    """The order a cancel answer echoed, or None (with a warning) when it does not decode: the
    cancel was accepted, and an echo we cannot read must not turn that into a failure."""
    try:
        return structure_order(payload, raw=raw, method="POST", endpoint=CANCEL_PATH)
    except ResponseValidationError as exc:
        logger.warning("order %d: cancel queued, but its echo did not decode: %s", order_id, exc)
        return None


def decode_echo_in(order_id: int, raw: object) -> Order | None:
    """``decode_echo`` of the order in a cancel answer's raw body (``raw``: its bytes, already
    found to be a success envelope whose payload is an order). An outcome keeps those compact
    bytes rather than the decoded JSON: a burst's outcomes then hold no scattered dicts and
    strings, and the memory of each decoded answer is reused at once."""
    content = raw if isinstance(raw, bytes) else b""
    try:
        body = loads(content)
    except ValueError:
        body = None
    payload = body.get("payload") if isinstance(body, dict) else None
    return decode_echo(order_id, payload, content)


class CancelEcho(PendingOrder):
    """The order an accepted cancel echoed, kept as the answer's bytes until
    ``CancelOutcome.order`` is first read (``models.queued_outcome``)."""

    __slots__ = ("content",)

    def __init__(self, content: bytes) -> None:
        self.content = content

    def decode(self, order_id: int) -> Order | None:
        return decode_echo_in(order_id, self.content)

    def may_show_closed(self) -> bool:
        # A closed state is the JSON string "cancel" or "done": bytes without either cannot
        # decode to one (one with them is decoded, and its ``state`` decides).
        content = self.content
        return b'"cancel"' in content or b'"done"' in content


def cancel_echo(order_id: int, value: Any, raw: bytes) -> bool:
    """Whether a 2xx cancel answer's ``payload`` echoes the order (True) or is the bare ``{}``
    acknowledgement (False). Anything else raises ``ResponseValidationError``: a payload that
    is not an object, or an echo of another order (``id``, or Brine's ``order_id``). Neither
    is evidence that *this* order's cancel was accepted."""
    if type(value) is not dict:
        kind = type(value).__name__
        raise _odd_cancel_answer(
            f"cancel of order {order_id}: HTTP 2xx with a {kind} payload instead of an object",
            f"expected an object @ $.payload, got {kind}",
            raw,
        )
    echoed = value.get("id")
    if echoed is None:
        echoed = value.get("order_id")
        if echoed is None:
            return False
    if echoed != order_id or type(echoed) is not int:
        raise _odd_cancel_answer(
            f"cancel of order {order_id}: the answer echoes order {echoed!r}",
            f"expected {order_id} @ $.payload.id, got {echoed!r}",
            raw,
        )
    return True


def _odd_cancel_answer(message: str, error: str, raw: bytes) -> ResponseValidationError:
    return ResponseValidationError(message, body=raw, errors=(error,), method="POST", path=CANCEL_PATH)
