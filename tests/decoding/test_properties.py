"""Property tests: the decoder, the error classifier and Retry-After never fail in a surprising way."""

from __future__ import annotations

import json
import math
from datetime import timedelta
from decimal import Decimal
from typing import Any

import httpx
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tanx_async import (
    APIError,
    APIStatusError,
    AuthenticationError,
    BadRequestError,
    InternalServerError,
    NotFoundError,
    Order,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
)
from tests.conftest import ORDER
from tests.internals import (
    RawResponse,
    check_order_id,
    checked_ids,
    decode_envelope,
    parse_retry_after,
    structure,
    structure_order,
)

# Reproducible in CI: the same examples on every run, bounded so the suite stays fast.
PROFILE = settings(
    max_examples=200,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=30)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=5),
    max_leaves=20,
)

VALID_ORDER: dict[str, Any] = {
    **ORDER,
    "trades": [
        {"id": 1, "price": "1.5", "amount": "0.1", "side": "buy", "created_at": "2024-05-31T09:02:01Z"}
    ],
}
ENUM_FIELDS = ("side", "ord_type", "state")
DECIMAL_FIELDS = (
    "price",
    "stop_price",
    "avg_price",
    "origin_volume",
    "remaining_volume",
    "executed_volume",
    "maker_fee",
    "taker_fee",
)
DATETIME_FIELDS = ("created_at", "updated_at")
DECIMALISH = (
    st.text(max_size=25)
    | st.from_regex(r"-?[0-9]{0,20}(\.[0-9]{0,20})?([eE][+-]?[0-9]{1,4})?", fullmatch=True)
    | st.sampled_from(["NaN", "sNaN", "Infinity", "-inf", "1e999999", "0.009000000000000001", " 1 ", "1_000"])
    | st.floats()
    | st.integers()
)
DATETIMEISH = (
    st.text(max_size=30)
    | st.datetimes(timezones=st.timezones() | st.none()).map(lambda d: d.isoformat())
    | st.sampled_from(
        ["2024-05-31T09:02:00+02:00", "2024-05-31T09:02:00Z", "Z", "2024-05-31T25:00:00", "+02:00"]
    )
    | st.integers()
    | st.floats()
)


def _check_decoded(order: Order) -> None:
    assert isinstance(order.id, int)
    for name in DECIMAL_FIELDS:
        value = getattr(order, name)
        assert value is None or (isinstance(value, Decimal) and value.is_finite())
    for stamp in (order.created_at, order.updated_at):
        assert stamp is None or stamp.utcoffset() == timedelta(0)
    for enum_value in (order.side, order.ord_type, order.state):
        assert isinstance(enum_value, str)


def _decode_or_validation_error(value: object) -> None:
    error: ResponseValidationError | None = None
    try:
        order = structure_order(value)
    except ResponseValidationError as exc:  # anything else fails the test
        error = exc
    if error is not None:
        assert error.errors
        assert all(isinstance(e, str) for e in error.errors)
        assert str(error)
    else:
        assert isinstance(order, Order)
        _check_decoded(order)


@PROFILE
@given(JSON_VALUES)
def test_order_decoder_on_arbitrary_json(value: object) -> None:
    _decode_or_validation_error(value)


@PROFILE
@given(JSON_VALUES)
def test_list_decoder_on_arbitrary_json(value: object) -> None:
    try:
        orders = structure(value, list[Order])
    except ResponseValidationError:
        pass
    else:
        assert isinstance(orders, list)
        for order in orders:
            _check_decoded(order)


@st.composite
def mutated_orders(draw: st.DrawFn) -> dict[str, Any]:
    order = dict(VALID_ORDER)
    for key in draw(st.sets(st.sampled_from(sorted(order)), max_size=4)):
        del order[key]
    if draw(st.booleans()):
        order["order_id"] = draw(JSON_SCALARS)
    for key in draw(st.sets(st.sampled_from(ENUM_FIELDS))):
        order[key] = draw(st.text(max_size=15) | JSON_SCALARS)
    for key in draw(st.sets(st.sampled_from(DECIMAL_FIELDS), max_size=3)):
        order[key] = draw(DECIMALISH)
    for key in draw(st.sets(st.sampled_from(DATETIME_FIELDS))):
        order[key] = draw(DATETIMEISH)
    for key in draw(st.sets(st.sampled_from(sorted(VALID_ORDER)), max_size=2)):
        order[key] = draw(JSON_VALUES)
    if draw(st.booleans()):
        order["trades"] = draw(
            st.lists(
                st.dictionaries(st.sampled_from(["id", "price", "side", "created_at"]), JSON_SCALARS),
                max_size=3,
            )
        )
    order.update(draw(st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=3)))
    return order


@PROFILE
@given(mutated_orders())
def test_order_decoder_on_mutated_orders(value: dict[str, Any]) -> None:
    _decode_or_validation_error(value)


@PROFILE
@given(st.sampled_from(ENUM_FIELDS), st.text(min_size=1, max_size=20))
def test_any_enum_string_decodes_and_is_kept(field: str, raw: str) -> None:
    order = structure_order({**ORDER, field: raw})
    value = getattr(order, field)
    assert value == raw
    assert value.value == raw


@PROFILE
@given(st.decimals(allow_nan=False, allow_infinity=False))
def test_decimal_strings_round_trip_exactly(value: Decimal) -> None:
    order = structure_order({**ORDER, "executed_volume": str(value)})
    assert order.executed_volume == value
    assert str(order.executed_volume) == str(value)


@PROFILE
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_json_floats_become_their_shortest_decimal(value: float) -> None:
    order = structure_order(json.loads(json.dumps({**ORDER, "price": value})))
    assert order.price == Decimal(repr(value))


# -- the error classifier -------------------------------------------------------------------------


def _expected_class(status: int) -> type[APIStatusError]:
    if status >= 500:
        return InternalServerError
    return {
        400: BadRequestError,
        401: AuthenticationError,
        403: PermissionDeniedError,
        404: NotFoundError,
        429: RateLimitError,
    }.get(status, BadRequestError if 200 <= status < 300 else APIStatusError)


ENVELOPES = st.fixed_dictionaries(
    {},
    optional={
        "status": st.sampled_from(["success", "error"]) | JSON_SCALARS,
        "message": st.text(max_size=40) | JSON_SCALARS,
        "payload": JSON_VALUES,
        "detail": st.text(max_size=20),
    },
)
BODIES = (
    st.binary(max_size=200)
    | JSON_VALUES.map(lambda v: json.dumps(v).encode())
    | ENVELOPES.map(lambda v: json.dumps(v).encode())
    | st.text(max_size=80).map(lambda t: f"<html><head><title>{t}</title></head></html>".encode())
)
HEADER_TEXT = st.text(max_size=40)
HEADERS = st.fixed_dictionaries(
    {},
    optional={
        "retry-after": HEADER_TEXT | st.floats().map(str) | st.integers().map(str),
        "retry-after-ms": HEADER_TEXT | st.floats().map(str),
        "content-type": st.sampled_from(["application/json", "text/html"]),
        "server": HEADER_TEXT,
    },
)


@PROFILE
@given(st.integers(min_value=100, max_value=599), BODIES, HEADERS)
def test_decode_envelope_returns_a_dict_or_the_right_error(
    status: int, content: bytes, headers: dict[str, str]
) -> None:
    raw = RawResponse(
        status, headers, content, method="POST", url="https://api.tanx.fi/sapi/v1/orders/cancel/"
    )
    body: dict[str, Any] | None = None
    error: APIError | None = None
    try:
        body = decode_envelope(raw, method="POST", path="/sapi/v1/orders/cancel/")
    except APIError as exc:  # anything that is not an APIError fails the test
        error = exc
    if isinstance(error, APIStatusError):
        assert type(error) is _expected_class(status)
        assert error.status_code == status
        assert isinstance(error.message, str) and error.message
        assert isinstance(error.response, httpx.Response)
        assert error.response.status_code == status
        assert error.response.content == content
        assert str(error).startswith(f"HTTP {status}: ")
        if isinstance(error, RateLimitError):
            assert error.retry_after is None or (math.isfinite(error.retry_after) and error.retry_after >= 0)
        if 200 <= status < 300:
            # A 2xx fails only with an explicit "status": "error" envelope.
            decoded = json.loads(content)
            assert isinstance(decoded, dict) and decoded.get("status") == "error"
    elif isinstance(error, ResponseValidationError):
        # A success status whose body is not an envelope.
        assert 200 <= status < 300
        assert error.body == content
        assert error.errors
    else:
        assert error is None, f"unexpected {type(error).__name__}"
        assert 200 <= status < 300
        assert isinstance(body, dict)
        assert body.get("status") != "error"


# -- Retry-After ------------------------------------------------------------------------------------


@PROFILE
@given(
    st.dictionaries(
        st.sampled_from(["retry-after", "retry-after-ms", "date", "x-other"]),
        st.text(max_size=40)
        | st.floats().map(str)
        | st.integers().map(str)
        | st.datetimes().map(lambda d: d.strftime("%a, %d %b %Y %H:%M:%S GMT"))
        | st.from_regex(
            r"[A-Z][a-z]{2}, [0-9]{1,2} [A-Z][a-z]{2} [0-9]{1,6} [0-9:]{5,8} [+-][0-9]{4}", fullmatch=True
        )
        # Years no calendar holds (``year 10000``, 20 digits: OverflowError), zones out of range.
        | st.builds(
            "Mon, {:02d} Jan {} 00:00:{:02d} {}".format,
            st.integers(0, 99),
            st.integers(-(10**30), 10**30),
            st.integers(0, 99),
            st.sampled_from(["GMT", "+9999", "-9999", "-0000", "UT", ""]),
        ),
    ),
    st.none() | st.floats(min_value=-1e12, max_value=1e12),
)
def test_parse_retry_after_never_raises(headers: dict[str, str], now: float | None) -> None:
    value = parse_retry_after(headers, now=now)
    assert value is None or (isinstance(value, float) and math.isfinite(value) and value >= 0)


@PROFILE
@given(
    st.sampled_from(["retry-after", "date"]),
    st.builds(
        "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
        st.sampled_from(["Mon", "Xyz", ""]),
        st.integers(1, 28) | st.integers(0, 99),
        st.sampled_from(["Jan", "Dec", "Foo"]),
        st.integers(-(10**30), 10**30) | st.integers(9990, 10010) | st.integers(2**31 - 5, 2**64),
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59) | st.integers(60, 99),
        st.sampled_from(["GMT", "+9999", "-9999", "-0000", "UT", "EST", ""]),
    ),
    st.none() | st.floats(min_value=-1e12, max_value=1e12),
)
@example("retry-after", "Mon, 01 Jan 99999999999999999999 00:00:00 GMT", None)  # (issue 34)
def test_parse_retry_after_never_raises_on_any_http_date(key: str, value: str, now: float | None) -> None:
    """An HTTP date in ``Retry-After`` (or the answer's ``Date`` it counts from) of any year:
    a number of seconds or None, never ``OverflowError``/``ValueError``."""
    headers = {"retry-after": "Mon, 01 Jan 2024 00:00:00 GMT", key: value}
    got = parse_retry_after(headers, now=now)
    assert got is None or (isinstance(got, float) and math.isfinite(got) and got >= 0)


# -- order ids ----------------------------------------------------------------------------------------


class _Id(int):
    """An int subclass (as an IntEnum or numpy-like id type would be)."""


ID_VALUES = (
    st.integers()
    | st.integers(min_value=2**63 - 3, max_value=2**63 + 3)
    | st.integers(min_value=-3, max_value=3)
    | st.integers(min_value=-(2**70), max_value=2**70).map(_Id)
    | st.booleans()
    | st.floats()
    | st.text(max_size=5)
    | st.none()
)


@PROFILE
@given(st.lists(ID_VALUES, max_size=5))
def test_cancel_many_ids_are_checked_as_order_id_checks_each(values: list[object]) -> None:
    """``cancel_many``'s list of ids (a plain in-range int taken as is, without a call) says
    exactly what ``order_id`` says of each: the same ids as plain ints, or the same error."""
    try:
        expected: list[int] | type[Exception] = list(dict.fromkeys(check_order_id(v) for v in values))
    except (TypeError, ValueError) as exc:
        expected = type(exc)
    try:
        got: list[int] | type[Exception] = checked_ids(values)  # type: ignore[arg-type]  # (anything a caller may pass)
    except (TypeError, ValueError) as exc:
        got = type(exc)
    assert got == expected
    if isinstance(got, list):
        assert all(type(i) is int for i in got)
