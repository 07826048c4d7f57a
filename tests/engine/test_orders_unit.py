"""``session.orders`` at unit level: input checks, the list query, batch outcome classification."""

from __future__ import annotations

import json
import re
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qsl

import httpx
import pytest
import respx

from tanx_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncTanxSession,
    BadRequestError,
    CancelOutcomeUnknownError,
    CancelStatus,
    InternalServerError,
    InvalidOrderIdError,
    NotFoundError,
    OrderState,
    Side,
)
from tests.conftest import BASE, CANCEL_URL, FakeClock, envelope, json_response, order_payload
from tests.internals import constants

SETTLE_MAX_LOOKUPS = constants.SETTLE_MAX_LOOKUPS

LIST_URL = f"{BASE}/sapi/v1/orders/"
BULK_URL = f"{BASE}/sapi/v1/user/bulkcancel/"
GET_PATTERN = re.compile(rf"^{re.escape(BASE)}/sapi/v1/orders/(?P<oid>\d+)/$")
UTC = timezone.utc


def _now_iso() -> str:
    return datetime.now(UTC).isoformat()


def _error(status: int, message: str) -> httpx.Response:
    return json_response(status, {"status": "error", "message": message, "payload": ""})


# -- input validation -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (True, TypeError),
        (False, TypeError),
        (1.0, TypeError),
        ("5", TypeError),
        (None, TypeError),
        (0, ValueError),
        (-3, ValueError),
        (2**63, ValueError),
    ],
)
async def test_cancel_rejects_bad_ids(
    session: AsyncTanxSession, router: respx.Router, value: Any, exc: type[Exception]
) -> None:
    with pytest.raises(exc):
        await session.orders.cancel(value)
    with pytest.raises(exc):
        await session.orders.get(value)
    assert len(router.calls) == 0


async def test_non_positive_id_is_an_invalid_order_id_error(session: AsyncTanxSession) -> None:
    with pytest.raises(InvalidOrderIdError):
        await session.orders.cancel(0)


@pytest.mark.parametrize(
    ("ids", "exc"),
    [
        ([1, "x"], TypeError),
        ([1, 2, 0], ValueError),
        ([1, True], TypeError),
        ([1, 2.0], TypeError),
        ("123", TypeError),
        (b"123", TypeError),
    ],
)
async def test_cancel_many_checks_every_id_before_sending(
    session: AsyncTanxSession, router: respx.Router, ids: Any, exc: type[Exception]
) -> None:
    route = router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({})))
    with pytest.raises(exc):
        await session.orders.cancel_many(ids)
    with pytest.raises(exc):
        session.orders.cancel_iter(ids)
    assert route.call_count == 0
    assert len(router.calls) == 0


@pytest.mark.parametrize(
    "kwargs",
    [{"concurrency": 0}, {"deadline": 0}, {"deadline": -1}, {"confirm_timeout": 0}, {"concurrency": 1.5}],
)
async def test_cancel_many_option_errors(
    session: AsyncTanxSession, router: respx.Router, kwargs: dict[str, Any]
) -> None:
    with pytest.raises((TypeError, ValueError)):
        await session.orders.cancel_many([1], **kwargs)
    assert len(router.calls) == 0


@pytest.mark.parametrize(
    ("kwargs", "exc"),
    [
        ({"limit": 0}, ValueError),
        ({"limit": 101}, ValueError),
        ({"limit": "10"}, TypeError),
        ({"page": 0}, ValueError),
        ({"side": "long"}, ValueError),
        ({"side": "BUY"}, ValueError),
        ({"market": "BTC-USDC"}, ValueError),
        ({"market": 5}, TypeError),
        ({"state": ""}, TypeError),
        ({"order_by": "up"}, ValueError),
        ({"start_time": datetime(2024, 1, 1)}, ValueError),  # naive
        ({"end_time": datetime(2024, 1, 1)}, ValueError),
        ({"start_time": -1}, ValueError),
        ({"start_time": 1.5}, TypeError),
        ({"start_time": 200, "end_time": 100}, ValueError),
    ],
)
async def test_list_rejects_bad_filters(
    session: AsyncTanxSession, router: respx.Router, kwargs: dict[str, Any], exc: type[Exception]
) -> None:
    with pytest.raises(exc):
        await session.orders.list(**kwargs)
    assert len(router.calls) == 0


async def test_list_sends_every_filter(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.get(LIST_URL).mock(return_value=json_response(200, envelope([])))
    await session.orders.list(
        market="BTCUSDC",
        state=OrderState.WAIT,
        side=Side.SELL,
        ord_type="limit",
        base_unit="BTC",
        quote_unit="usdc",
        start_time=datetime(2023, 9, 15, 15, 48, 59, tzinfo=timezone(timedelta(hours=2))),
        end_time=1694785739,
        limit=10,
        page=2,
        order_by="desc",
    )
    assert route.call_count == 1
    url = route.calls.last.request.url
    assert url.path == "/sapi/v1/orders/"
    assert dict(parse_qsl(url.query.decode())) == {
        "market": "btcusdc",
        "state": "wait",
        "side": "sell",
        "ord_type": "limit",
        "base_unit": "btc",
        "quote_unit": "usdc",
        "start_time": "1694785739",
        "end_time": "1694785739",
        "limit": "10",
        "page": "2",
        "order_by": "desc",
    }


async def test_list_without_filters_sends_no_query(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.get(LIST_URL).mock(return_value=json_response(200, envelope([])))
    await session.orders.list()
    assert str(route.calls.last.request.url) == LIST_URL


async def test_iter_walks_pages_until_a_short_one(session: AsyncTanxSession, router: respx.Router) -> None:
    pages = {
        "1": [order_payload(id=1), order_payload(id=2)],
        "2": [order_payload(id=2), order_payload(id=3)],  # id 2 moved between pages
        "3": [order_payload(id=4)],
    }

    def handler(request: httpx.Request) -> httpx.Response:
        return json_response(200, envelope(pages[request.url.params["page"]]))

    route = router.get(LIST_URL).mock(side_effect=handler)
    ids = [o.id async for o in session.orders.iter(market="btcusdc", page_size=2)]
    assert ids == [1, 2, 3, 4]
    assert route.call_count == 3
    assert [c.request.url.params["limit"] for c in route.calls] == ["2", "2", "2"]
    assert [c.request.url.params["market"] for c in route.calls] == ["btcusdc"] * 3


async def test_cancel_all_lists_again_and_a_failed_listing_ends_the_rounds_with_a_warning(
    session: AsyncTanxSession, router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    """Round one: ``pending`` then ``wait`` listed, both orders cancelled. The listing after it
    answers 503: the two outcomes are returned (never lost to a listing), and the log says the
    market was not seen clear."""
    asked: list[str] = []

    def listing(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["state"])
        if len(asked) > 2:
            return _error(503, "Service Unavailable")
        orders = [order_payload(id=7), order_payload(id=8)] if asked[-1] == "wait" else []
        return json_response(200, envelope(orders))

    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        return json_response(200, envelope(order_payload(id=oid)))

    router.get(LIST_URL).mock(side_effect=listing)
    router.post(CANCEL_URL).mock(side_effect=cancel)
    with caplog.at_level("WARNING", logger="tanx_async"):
        outcomes = await session.with_options(max_retries=0).orders.cancel_all("btcusdc")
    assert [(o.order_id, o.status) for o in outcomes] == [(7, CancelStatus.QUEUED), (8, CancelStatus.QUEUED)]
    assert asked == ["pending", "wait", "pending"]
    [record] = [r for r in caplog.records if "listing the open orders again failed" in r.getMessage()]
    assert "btcusdc" in record.getMessage() and "503" in record.getMessage()


async def test_cancel_all_stops_after_three_listings(session: AsyncTanxSession, router: respx.Router) -> None:
    """Orders keep appearing (a strategy still quoting): each listing's new ones are cancelled,
    and the rounds end after the third listing, however many more would come."""
    asked: list[str] = []

    def listing(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.params["state"])
        fresh = 100 + len(asked)  # a new order on every page asked for
        return json_response(200, envelope([order_payload(id=fresh)] if asked[-1] == "wait" else []))

    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        return json_response(200, envelope(order_payload(id=oid)))

    router.get(LIST_URL).mock(side_effect=listing)
    router.post(CANCEL_URL).mock(side_effect=cancel)
    outcomes = await session.orders.cancel_all("btcusdc")
    assert asked == ["pending", "wait"] * constants.CANCEL_ALL_LISTINGS
    assert [o.order_id for o in outcomes] == [102, 104, 106]
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}


async def test_cancel_all_checks_its_deadline_before_listing(
    session: AsyncTanxSession, router: respx.Router
) -> None:
    with pytest.raises(ValueError, match="deadline"):
        await session.orders.cancel_all("btcusdc", deadline=0)
    assert len(router.calls) == 0


async def test_bulk_cancel_body(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.post(BULK_URL).mock(
        return_value=json_response(200, envelope({}, "Orders are successfully queued for cancellation"))
    )
    await session.orders.bulk_cancel("BTCUSDT", side="buy", limit=100)
    assert json.loads(route.calls.last.request.content) == {"market": "btcusdt", "side": "buy", "limit": 100}
    await session.orders.bulk_cancel("ethusdc")
    assert json.loads(route.calls.last.request.content) == {"market": "ethusdc"}
    with pytest.raises(ValueError):
        await session.orders.bulk_cancel("ethusdc", side="both")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        await session.orders.bulk_cancel("ethusdc", limit=0)
    assert route.call_count == 2


async def test_bulk_cancel_missing_market_error(session: AsyncTanxSession, router: respx.Router) -> None:
    router.post(BULK_URL).mock(return_value=_error(400, "please provide market, market is a mandatory field"))
    with pytest.raises(BadRequestError, match="mandatory"):
        await session.orders.bulk_cancel("btcusdt")


# -- single cancel errors ----------------------------------------------------------------------


async def test_cancel_404_raises_not_found(session: AsyncTanxSession, router: respx.Router) -> None:
    cancel = router.post(CANCEL_URL).mock(return_value=_error(404, "Order not found"))
    get = router.get(url__regex=GET_PATTERN.pattern)
    with pytest.raises(NotFoundError):
        await session.orders.cancel(5)
    assert cancel.call_count == 1
    assert get.call_count == 0


async def test_cancel_refused_raises_the_refusal(session: AsyncTanxSession, router: respx.Router) -> None:
    router.post(CANCEL_URL).mock(return_value=_error(400, "Order is already cancelled"))
    router.get(url__regex=GET_PATTERN.pattern).mock(
        return_value=json_response(200, envelope(order_payload(id=5, state="cancel")))
    )
    with pytest.raises(BadRequestError, match="already cancelled"):
        await session.orders.cancel(5)


async def test_cancel_unanswered_raises_outcome_unknown(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    cancel = router.post(CANCEL_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    router.get(url__regex=GET_PATTERN.pattern).mock(
        return_value=json_response(200, envelope(order_payload(id=5, state="wait")))
    )
    with pytest.raises(CancelOutcomeUnknownError) as info:
        await session.orders.cancel(5)
    assert cancel.call_count == 4
    assert info.value.order_id == 5
    assert info.value.order is not None and info.value.order.state is OrderState.WAIT
    assert isinstance(info.value.cause, APITimeoutError)


async def test_cancel_answered_500_raises_outcome_unknown_not_a_connection_error(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    """A 500 may hide a processed cancel: the outcome is unknown, its cause the 500, and the
    error is no ``APIConnectionError`` (a connection was never the problem)."""
    router.post(CANCEL_URL).mock(return_value=json_response(500, {"status": "error", "message": "boom"}))
    router.get(url__regex=GET_PATTERN.pattern).mock(
        return_value=json_response(200, envelope(order_payload(id=5, state="wait")))
    )
    with pytest.raises(CancelOutcomeUnknownError) as info:
        await session.orders.cancel(5)
    assert isinstance(info.value.cause, InternalServerError)
    assert not isinstance(info.value, APIConnectionError | APIStatusError)
    assert isinstance(info.value, APIError) and info.value.maybe_processed
    assert (info.value.method, info.value.path) == ("POST", "/sapi/v1/orders/cancel/")


async def test_cancel_unanswered_but_cancelled(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    router.post(CANCEL_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    router.get(url__regex=GET_PATTERN.pattern).mock(
        return_value=json_response(200, envelope(order_payload(id=5, state="cancel", updated_at=_now_iso())))
    )
    order = await session.orders.cancel(5)
    assert order.state is OrderState.CANCEL


# -- batch classification -------------------------------------------------------------------------

QUEUED, NOT_FOUND, CANCELLED_400, DONE_400, OTHER_400, LOST_CANCEL, LOST_WAIT, QUEUED_400, LOST_OLD = (
    101,
    102,
    103,
    104,
    105,
    106,
    107,
    108,
    109,
)


def _batch_routes(router: respx.Router) -> tuple[respx.Route, respx.Route]:
    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        if oid == QUEUED:
            return json_response(
                200, envelope(order_payload(id=oid), "Order is successfully queued for cancellation")
            )
        if oid == NOT_FOUND:
            return _error(404, "Order not found")
        if oid == CANCELLED_400:
            return _error(400, "Order is already cancelled")
        if oid == DONE_400:
            return _error(400, "Order is already filled")
        if oid == OTHER_400:
            return _error(400, "Something else went wrong")
        if oid == QUEUED_400:
            return _error(400, "Order is already queued for cancellation")
        raise httpx.ReadTimeout("no answer", request=request)

    states = {
        CANCELLED_400: order_payload(id=CANCELLED_400, state="cancel"),
        DONE_400: order_payload(id=DONE_400, state="done", remaining_volume="0.0"),
        OTHER_400: order_payload(id=OTHER_400, state="wait"),
        QUEUED_400: order_payload(id=QUEUED_400, state="wait"),
        LOST_CANCEL: order_payload(id=LOST_CANCEL, state="cancel", updated_at=_now_iso()),
        LOST_WAIT: order_payload(id=LOST_WAIT, state="wait"),
        # Cancelled long before our first attempt: not our doing.
        LOST_OLD: order_payload(id=LOST_OLD, state="cancel", updated_at="2024-05-31T09:02:00+02:00"),
    }

    def get(request: httpx.Request, oid: str) -> httpx.Response:
        if int(oid) not in states:
            return _error(404, "Order not found")
        return json_response(200, envelope(states[int(oid)], "Order Retrieved Successfully"))

    return (
        router.post(CANCEL_URL).mock(side_effect=cancel),
        router.get(url__regex=GET_PATTERN.pattern).mock(side_effect=get),
    )


def _posts(route: respx.Route, oid: int) -> int:
    return sum(1 for c in route.calls if json.loads(c.request.content)["order_id"] == oid)


def _gets(route: respx.Route, oid: int) -> int:
    return sum(1 for c in route.calls if c.request.url.path == f"/sapi/v1/orders/{oid}/")


async def test_cancel_many_classifies_every_outcome(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    cancel, get = _batch_routes(router)
    ids = [
        LOST_WAIT,
        QUEUED,
        OTHER_400,
        NOT_FOUND,
        LOST_CANCEL,
        QUEUED,
        CANCELLED_400,
        DONE_400,
        QUEUED_400,
        LOST_OLD,
        NOT_FOUND,
    ]
    outcomes = await session.orders.cancel_many(ids)

    expected_order = list(dict.fromkeys(ids))
    assert [o.order_id for o in outcomes] == expected_order  # input order, duplicates once
    by_id = {o.order_id: o for o in outcomes}

    queued = by_id[QUEUED]
    assert queued.status is CancelStatus.QUEUED
    assert queued.ok and queued.error is None
    assert queued.order is not None and queued.order.id == QUEUED
    assert queued.attempts == 1

    missing = by_id[NOT_FOUND]
    assert missing.status is CancelStatus.NOT_FOUND
    assert not missing.ok
    assert isinstance(missing.error, NotFoundError)

    for oid, state in ((CANCELLED_400, OrderState.CANCEL), (DONE_400, OrderState.DONE)):
        closed = by_id[oid]
        assert closed.status is CancelStatus.ALREADY_CLOSED, oid
        assert closed.ok
        assert closed.order is not None and closed.order.state is state
        assert isinstance(closed.error, BadRequestError)  # the refusal, kept for the record

    failed = by_id[OTHER_400]
    assert failed.status is CancelStatus.FAILED
    assert not failed.ok
    assert isinstance(failed.error, BadRequestError)
    assert failed.error.message == "Something else went wrong"
    assert failed.order is not None and failed.order.state is OrderState.WAIT

    # "already queued" in a refusal is only words: the look-up shows the order resting, and this
    # session never got a 2xx for it, so nothing says it is leaving the book.
    already_queued = by_id[QUEUED_400]
    assert already_queued.status is CancelStatus.FAILED
    assert not already_queued.ok
    assert already_queued.note is not None and "nothing confirmed it" in already_queued.note

    lost_cancelled = by_id[LOST_CANCEL]
    assert lost_cancelled.status is CancelStatus.CANCELLED  # an unanswered attempt may have done it
    assert lost_cancelled.ok
    assert lost_cancelled.order is not None and lost_cancelled.order.state is OrderState.CANCEL
    assert lost_cancelled.attempts == 4

    lost_old = by_id[LOST_OLD]
    assert lost_old.status is CancelStatus.ALREADY_CLOSED
    assert lost_old.ok

    # Unanswered, still resting: the settling pass looked it up again (the cancel sent once more,
    # unanswered again) until its bound on look-ups, and it stays unknown.
    unknown = by_id[LOST_WAIT]
    assert unknown.status is CancelStatus.UNKNOWN
    assert not unknown.ok
    assert isinstance(unknown.error, APITimeoutError)
    assert unknown.order is not None and unknown.order.state is OrderState.WAIT
    assert unknown.attempts == 8
    assert unknown.note is not None and unknown.note.startswith("still unknown after the settling pass")

    # Every id was cancelled once (duplicates included); refused or unanswered ones were looked up once.
    assert _posts(cancel, QUEUED) == 1
    assert _posts(cancel, NOT_FOUND) == 1
    for oid in (CANCELLED_400, DONE_400, OTHER_400, QUEUED_400):
        assert _posts(cancel, oid) == 1
        assert _gets(get, oid) == 1
    for oid in (LOST_CANCEL, LOST_OLD):
        assert _posts(cancel, oid) == 4  # idempotent: read timeouts are retried
        assert _gets(get, oid) == 1
    assert _posts(cancel, LOST_WAIT) == 8
    assert _gets(get, LOST_WAIT) == 1 + SETTLE_MAX_LOOKUPS
    assert _gets(get, QUEUED) == 0
    assert _gets(get, NOT_FOUND) == 0


async def test_cancel_many_without_resolve(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    _, get = _batch_routes(router)
    outcomes = await session.orders.cancel_many([CANCELLED_400, LOST_WAIT, QUEUED], resolve=False)
    assert [o.status for o in outcomes] == [CancelStatus.FAILED, CancelStatus.UNKNOWN, CancelStatus.QUEUED]
    assert get.call_count == 0


async def test_cancel_many_lookup_fails(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    router.post(CANCEL_URL).mock(side_effect=[_error(400, "nope"), *[httpx.ReadTimeout("x")] * 4])
    router.get(url__regex=GET_PATTERN.pattern).mock(return_value=httpx.Response(500))
    (first,) = await session.with_options(max_retries=0).orders.cancel_many([1])
    assert first.status is CancelStatus.FAILED
    (second,) = await session.orders.cancel_many([2])
    assert second.status is CancelStatus.UNKNOWN


async def test_cancel_many_empty(session: AsyncTanxSession, router: respx.Router) -> None:
    assert await session.orders.cancel_many([]) == []
    assert len(router.calls) == 0


async def test_cancel_many_respects_concurrency(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({})))
    router.get(url__regex=GET_PATTERN.pattern).mock(
        return_value=json_response(200, envelope(order_payload()))
    )
    outcomes = await session.orders.cancel_many(range(1, 51), concurrency=3)
    assert len(outcomes) == 50
    assert all(o.status is CancelStatus.QUEUED for o in outcomes)
    assert route.call_count == 50
