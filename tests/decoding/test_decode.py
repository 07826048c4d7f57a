"""Decoding every variant of the wire format tanX's docs and connectors show, directly and over respx."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

import httpx
import pytest
import respx

from tanx_async import (
    AsyncTanxSession,
    CancelStatus,
    InternalServerError,
    NotFoundError,
    Order,
    OrderState,
    OrderType,
    ResponseValidationError,
    Side,
    Trade,
)
from tests.conftest import BASE, CANCEL_URL, ORDER, envelope, json_response, order_payload
from tests.internals import structure, structure_order

GET_URL = f"{BASE}/sapi/v1/orders/{ORDER['id']}/"
LIST_URL = f"{BASE}/sapi/v1/orders/"
UTC = timezone.utc

# The docs' GET example: a market buy that was cancelled, price null, with trades.
GET_ORDER_DOCS: dict[str, Any] = {
    **ORDER,
    "id": 23157052,
    "ord_type": "market",
    "price": None,
    "state": "cancel",
    "cancel_reason": "Order cancelled by user",
    "trades": [
        {
            "id": 1,
            "price": "68700.5",
            "amount": "0.009000000000000001",
            "total": "618.3045",
            "fee_currency": "usdc",
            "fee": "0.0004",
            "fee_amount": "0.2473",
            "market": "btcusdc",
            "created_at": "2024-05-31T09:02:01+02:00",
            "taker_type": "buy",
            "side": "buy",
            "order_id": 23157052,
        }
    ],
}


# -- the decoder -------------------------------------------------------------------------------


def test_current_cancel_answer() -> None:
    order = structure_order(ORDER)
    assert order.id == 25768879
    assert order.uuid == "17be02d1-34ef-49df-9b92-264705047d99"
    assert order.side is Side.BUY
    assert order.ord_type is OrderType.LIMIT
    assert order.state is OrderState.WAIT
    assert order.market == "btcusdc"
    assert order.price == Decimal("68733.81")
    assert order.avg_price == Decimal("0.0")
    assert order.origin_volume == Decimal("0.0425")
    assert order.remaining_volume == Decimal("0.0335")
    assert order.maker_fee == order.taker_fee == Decimal("0.0004")
    assert order.trades_count == 2
    assert order.stop_price is None
    assert order.cancel_reason is None
    assert order.trades == ()


def test_brine_era_cancel_answer_uses_order_id() -> None:
    payload = order_payload(id=..., order_id=3, stop_price=..., cancel_reason=...)
    order = structure_order(payload)
    assert order.id == 3


def test_id_wins_over_order_id() -> None:
    assert structure_order(order_payload(order_id=3)).id == ORDER["id"]


def test_market_order_with_null_price() -> None:
    order = structure_order(order_payload(ord_type="market", price=None))
    assert order.price is None
    assert order.ord_type is OrderType.MARKET


def test_payload_lacking_stop_price_and_cancel_reason() -> None:
    order = structure_order(order_payload(stop_price=..., cancel_reason=..., uuid=..., updated_at=...))
    assert order.stop_price is None
    assert order.cancel_reason is None
    assert order.uuid is None
    assert order.updated_at is None


def test_stop_limit_with_stop_price_and_cancel_reason() -> None:
    order = structure_order(
        order_payload(ord_type="stop_limit", stop_price="68000.1", cancel_reason="Order cancelled by user")
    )
    assert order.ord_type is OrderType.STOP_LIMIT
    assert order.stop_price == Decimal("68000.1")
    assert order.cancel_reason == "Order cancelled by user"


def test_unknown_enum_values_decode_and_keep_raw_value() -> None:
    order = structure_order(order_payload(state="reject", ord_type="stop_market", side="short"))
    assert order.state == "reject"
    assert order.ord_type == "stop_market"
    assert order.side == "short"
    for value, cls in ((order.state, OrderState), (order.ord_type, OrderType), (order.side, Side)):
        assert isinstance(value, cls)
        assert not value.known
    assert order.state.value == "reject"
    assert not order.is_open


def test_decimal_float_artefacts_stay_exact() -> None:
    order = structure_order(order_payload(executed_volume="0.009000000000000001"))
    assert order.executed_volume == Decimal("0.009000000000000001")
    assert str(order.executed_volume) == "0.009000000000000001"


def test_json_numbers_become_exact_decimals() -> None:
    raw = json.loads(json.dumps(order_payload(price=0.1, origin_volume=3, remaining_volume=1e-7)))
    order = structure_order(raw)
    assert order.price == Decimal("0.1")
    assert str(order.price) == "0.1"
    assert order.origin_volume == Decimal(3)
    assert order.remaining_volume == Decimal("1e-7")


@pytest.mark.parametrize("bad", ["NaN", "Infinity", "-inf", "abc", "", True, [], {}])
def test_bad_decimals_are_rejected(bad: object) -> None:
    with pytest.raises(ResponseValidationError) as info:
        structure_order(order_payload(price=bad))
    assert any("$.payload.price" in e for e in info.value.errors)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024-05-31T09:02:00+02:00", datetime(2024, 5, 31, 7, 2, tzinfo=UTC)),
        ("2024-05-31T09:02:00+01:00", datetime(2024, 5, 31, 8, 2, tzinfo=UTC)),
        ("2024-05-31T07:02:00Z", datetime(2024, 5, 31, 7, 2, tzinfo=UTC)),
        ("2024-05-31T07:02:00.123456Z", datetime(2024, 5, 31, 7, 2, 0, 123456, tzinfo=UTC)),
        ("2024-05-31T07:02:00", datetime(2024, 5, 31, 7, 2, tzinfo=UTC)),
        (1659024868, datetime(2022, 7, 28, 16, 14, 28, tzinfo=UTC)),
        (1659024868.5, datetime(2022, 7, 28, 16, 14, 28, 500000, tzinfo=UTC)),
    ],
)
def test_timestamps_become_aware_utc(value: object, expected: datetime) -> None:
    order = structure_order(order_payload(created_at=value, updated_at=value))
    for stamp in (order.created_at, order.updated_at):
        assert stamp == expected
        assert stamp is not None
        assert stamp.utcoffset() == timedelta(0)
        assert stamp.tzinfo is UTC


@pytest.mark.parametrize("bad", ["yesterday", "", None, True, [], "2024-13-01T00:00:00Z", 1e30])
def test_bad_created_at_is_rejected(bad: object) -> None:
    with pytest.raises(ResponseValidationError) as info:
        structure_order(order_payload(created_at=bad))
    assert any("$.payload.created_at" in e for e in info.value.errors)


def test_trades_on_get_order() -> None:
    order = structure_order(GET_ORDER_DOCS)
    assert order.price is None
    assert order.state is OrderState.CANCEL
    assert order.cancel_reason == "Order cancelled by user"
    (trade,) = order.trades
    assert isinstance(trade, Trade)
    assert trade.order_id == 23157052
    assert trade.amount == Decimal("0.009000000000000001")
    assert trade.fee_amount == Decimal("0.2473")
    assert trade.taker_type is Side.BUY
    assert trade.created_at == datetime(2024, 5, 31, 7, 2, 1, tzinfo=UTC)


@pytest.mark.parametrize("trades", [[], None])
def test_empty_or_null_trades(trades: object) -> None:
    assert structure_order(order_payload(trades=trades)).trades == ()


def test_extra_unknown_keys_are_ignored() -> None:
    order = structure_order(
        order_payload(kind="bid", at=1659024868, brand_new={"nested": [1, 2]}, fee_token="usdc")
    )
    assert order == structure_order(ORDER)


#: The private stream's order sample from the docs (private WebSocket): unix-second timestamps,
#: ``kind``, no uuid or fees.
WS_ORDER = {
    "at": 1659024868,
    "avg_price": "23829.22",
    "created_at": 1659024868,
    "executed_volume": "0.001",
    "id": 8840859,
    "kind": "bid",
    "market": "btcusdc",
    "ord_type": "limit",
    "origin_volume": "0.001",
    "price": "24000.0",
    "remaining_volume": "0.0",
    "side": "buy",
    "state": "done",
    "trades_count": 1,
    "updated_at": 1659024869,
}


def test_websocket_shape_decodes() -> None:
    # The private stream's order: unix-second timestamps, ``kind``, no uuid or fees.
    order = structure_order(WS_ORDER)
    assert order.state is OrderState.DONE
    assert order.updated_at == datetime(2022, 7, 28, 16, 14, 29, tzinfo=UTC)


def test_list_payload_is_a_bare_array() -> None:
    orders = structure([ORDER, order_payload(id=2, state="done")], list[Order])
    assert [o.id for o in orders] == [ORDER["id"], 2]


@pytest.mark.parametrize(
    ("changes", "path"),
    [
        ({"side": 5}, "$.payload.side"),
        ({"state": None}, "$.payload.state"),
        ({"ord_type": ["limit"]}, "$.payload.ord_type"),
        ({"id": "abc"}, "$.payload.id"),
        ({"id": True}, "$.payload.id"),
        ({"id": ...}, "$.payload.id"),
        ({"market": None}, "$.payload.market"),
        ({"trades_count": 1.5}, "$.payload.trades_count"),
        ({"trades": [{"id": "x"}]}, "$.payload.trades[0].id"),
        ({"trades": "none"}, "$.payload.trades"),
    ],
)
def test_wrong_types_name_the_json_path(changes: dict[str, Any], path: str) -> None:
    raw = json.dumps(order_payload(**changes)).encode()
    with pytest.raises(ResponseValidationError) as info:
        structure_order(order_payload(**changes), raw=raw)
    err = info.value
    assert any(f"@ {path}" in e for e in err.errors), err.errors
    assert err.body == raw
    assert path in str(err)


def test_several_errors_are_all_listed() -> None:
    with pytest.raises(ResponseValidationError) as info:
        structure_order(order_payload(side=5, state=None))
    paths = " ".join(info.value.errors)
    assert "$.payload.side" in paths
    assert "$.payload.state" in paths
    assert "(+1 more)" in str(info.value)


def test_list_error_path_has_the_index() -> None:
    with pytest.raises(ResponseValidationError) as info:
        structure([ORDER, order_payload(side=5)], list[Order])
    assert any(e.endswith("@ $.payload[1].side") for e in info.value.errors), info.value.errors


@pytest.mark.parametrize("payload", [None, "", [], 5, "order"])
def test_not_an_order_object(payload: object) -> None:
    with pytest.raises(ResponseValidationError):
        structure_order(payload)


# -- over the wire ----------------------------------------------------------------------------


def _body(request: httpx.Request) -> Any:
    return json.loads(request.content)


async def test_cancel_current_answer(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.post(CANCEL_URL).mock(
        return_value=json_response(200, envelope(ORDER, "Order is successfully queued for cancellation"))
    )
    order = await session.orders.cancel(ORDER["id"])
    assert route.call_count == 1
    assert _body(route.calls.last.request) == {"order_id": ORDER["id"]}
    assert order == structure_order(ORDER)
    assert order.state is OrderState.WAIT  # queued, not yet cancelled


async def test_cancel_brine_era_answer(session: AsyncTanxSession, router: respx.Router) -> None:
    brine = order_payload(id=..., order_id=ORDER["id"], stop_price=..., cancel_reason=...)
    route = router.post(CANCEL_URL).mock(
        return_value=json_response(200, envelope(brine, "Cancelled Order Successfully"))
    )
    order = await session.orders.cancel(ORDER["id"])
    assert route.call_count == 1
    assert order.id == ORDER["id"]
    assert order.stop_price is None


async def test_cancel_empty_payload_fetches_the_order(
    session: AsyncTanxSession, router: respx.Router
) -> None:
    cancel = router.post(CANCEL_URL).mock(
        return_value=json_response(200, envelope({}, "Order is successfully queued for cancellation"))
    )
    get = router.get(GET_URL).mock(
        return_value=json_response(200, envelope(order_payload(state="cancel", trades=[])))
    )
    order = await session.orders.cancel(ORDER["id"])
    assert cancel.call_count == 1
    assert get.call_count == 1
    assert order.state is OrderState.CANCEL
    assert get.calls.last.request.headers["Authorization"].startswith("JWT ")


async def test_cancel_partial_echo_fetches_the_order(session: AsyncTanxSession, router: respx.Router) -> None:
    # The Go connector's mock answers ``payload: {"id": 1}``: not a readable order.
    router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({"id": ORDER["id"]})))
    get = router.get(GET_URL).mock(return_value=json_response(200, envelope(ORDER)))
    order = await session.orders.cancel(ORDER["id"])
    assert get.call_count == 1
    assert order.id == ORDER["id"]


async def test_cancel_empty_payload_then_get_404(session: AsyncTanxSession, router: respx.Router) -> None:
    router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({})))
    get = router.get(GET_URL).mock(
        return_value=json_response(404, {"status": "error", "message": "Order not found", "payload": ""})
    )
    with pytest.raises(NotFoundError) as info:
        await session.orders.cancel(ORDER["id"])
    assert get.call_count == 1  # 404 is never retried
    # The error names the look-up, not the cancel: the caller can tell the cancel itself was accepted.
    assert info.value.method == "GET"
    assert info.value.path == f"/sapi/v1/orders/{ORDER['id']}/"
    assert info.value.message == "Order not found"


async def test_cancel_empty_payload_then_get_fails(session: AsyncTanxSession, router: respx.Router) -> None:
    router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({})))
    get = router.get(GET_URL).mock(return_value=json_response(500, envelope("", "boom", "error")))
    with pytest.raises(InternalServerError) as info:
        await session.with_options(max_retries=0).orders.cancel(ORDER["id"])
    assert get.call_count == 1
    assert info.value.method == "GET"


async def test_get_order(session: AsyncTanxSession, router: respx.Router) -> None:
    url = f"{BASE}/sapi/v1/orders/{GET_ORDER_DOCS['id']}/"
    route = router.get(url).mock(
        return_value=json_response(200, envelope(GET_ORDER_DOCS, "Order Retrieved Successfully"))
    )
    order = await session.orders.get(GET_ORDER_DOCS["id"])
    assert route.call_count == 1
    assert str(route.calls.last.request.url) == url  # trailing slash, no query
    assert order.price is None
    assert len(order.trades) == 1


async def test_list_orders_bare_array(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.get(LIST_URL).mock(
        return_value=json_response(
            200, envelope([ORDER, order_payload(id=2, ord_type="market", price=None)], "Orders Retrieved")
        )
    )
    orders = await session.orders.list(market="btcusdc")
    assert route.call_count == 1
    assert [o.id for o in orders] == [ORDER["id"], 2]
    assert orders[1].price is None


async def test_list_orders_empty(session: AsyncTanxSession, router: respx.Router) -> None:
    router.get(LIST_URL).mock(return_value=json_response(200, envelope([])))
    assert await session.orders.list() == []


async def test_get_order_wrong_type_keeps_raw_body(session: AsyncTanxSession, router: respx.Router) -> None:
    raw = json.dumps(envelope(order_payload(side=5)), indent=1).encode()
    router.get(GET_URL).mock(return_value=httpx.Response(200, content=raw))
    with pytest.raises(ResponseValidationError) as info:
        await session.orders.get(ORDER["id"])
    err = info.value
    assert err.errors
    assert err.errors[0].endswith("@ $.payload.side")
    assert err.body == raw
    assert "$.payload.side" in str(err)


async def test_list_wrong_type_keeps_raw_body(session: AsyncTanxSession, router: respx.Router) -> None:
    raw = json.dumps(envelope({"results": [ORDER]})).encode()
    router.get(LIST_URL).mock(return_value=httpx.Response(200, content=raw))
    with pytest.raises(ResponseValidationError) as info:
        await session.orders.list()
    assert info.value.body == raw
    assert any("$.payload" in e for e in info.value.errors)


async def test_success_body_that_is_not_json(session: AsyncTanxSession, router: respx.Router) -> None:
    router.get(GET_URL).mock(return_value=httpx.Response(200, content=b"<html>hi</html>"))
    with pytest.raises(ResponseValidationError) as info:
        await session.orders.get(ORDER["id"])
    assert info.value.body == b"<html>hi</html>"
    assert info.value.errors == ("expected a JSON object @ $",)


async def test_cancel_many_decodes_the_echo_only_when_read(
    session: AsyncTanxSession, router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    # One good echo, one the converter cannot read: both cancels were accepted (QUEUED, ok); the
    # bad echo reads as None with a warning, at the moment ``order`` is read, not before.
    bad = {**ORDER, "id": 2, "price": "not a number"}
    router.post(CANCEL_URL).mock(
        side_effect=lambda request: json_response(
            200, envelope(ORDER if json.loads(request.content)["order_id"] == ORDER["id"] else bad)
        )
    )
    good_outcome, bad_outcome = await session.orders.cancel_many([ORDER["id"], 2])
    assert [good_outcome.ok, bad_outcome.ok] == [True, True]
    assert [good_outcome.status, bad_outcome.status] == [CancelStatus.QUEUED, CancelStatus.QUEUED]
    assert "did not decode" not in caplog.text
    assert good_outcome.order is not None and good_outcome.order.id == ORDER["id"]
    assert good_outcome.order is good_outcome.order  # decoded once, then kept
    assert bad_outcome.order is None
    assert "order 2: cancel queued, but its echo did not decode" in caplog.text
