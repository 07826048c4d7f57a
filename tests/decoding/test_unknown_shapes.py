"""Answers of shapes the API does not document are never evidence (the audit of 2026-11-28).

A 2xx cancel whose envelope does not say ``"success"``, whose payload is not an object, or which
echoes another order, is not ``queued``: the cancel may well have been processed, so the order is
looked up, as after a lost answer. A look-up that answers with another order proves nothing.
``cancel_all`` touches only the market and side asked for, whatever the listing returns, and a
bulk cancel is not resent after an attempt that may have been processed. Both batch paths: the
task path here (respx), the fast path over a loopback stub server below.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
import respx

from tanx_async import AsyncTanxSession, CancelStatus, InternalServerError
from tests.conftest import BASE, CANCEL_URL, envelope, json_response, make_jwt, order_payload
from tests.transports.test_http11 import Script, ok

ORDERS_URL = f"{BASE}/sapi/v1/orders/"
#: What a look-up showing the order cancelled settles it as (``already_closed`` when the order
#: was last touched before our cancel left, as ``order_payload``'s timestamps are).
CLOSED = {CancelStatus.CANCELLED, CancelStatus.ALREADY_CLOSED}
BULK_URL = f"{BASE}/sapi/v1/user/bulkcancel/"

#: 2xx cancel answers that say nothing we know (the order they are about: 5).
ODD_ANSWERS = [
    {"status": 1},
    {},
    {"detail": "Not found."},
    {"status": "fail", "message": "Order not found", "payload": ""},
    {"status": "Error", "message": "x", "payload": ""},
    envelope(""),
    envelope([]),
    envelope(None),
    envelope(order_payload(id=999)),
    envelope({"order_id": 999}),
    envelope(order_payload(id="5")),
]


def _order_route(router: respx.Router, oid: int, state: str, *, answer_id: int | None = None) -> respx.Route:
    body = envelope(order_payload(id=oid if answer_id is None else answer_id, state=state))
    return router.get(f"{ORDERS_URL}{oid}/").mock(return_value=json_response(200, body))


@pytest.mark.parametrize("answer", ODD_ANSWERS)
async def test_an_odd_2xx_cancel_is_looked_up_never_queued(
    router: respx.Router, session: AsyncTanxSession, answer: dict[str, Any]
) -> None:
    router.post(CANCEL_URL).mock(return_value=json_response(200, answer))
    lookup = _order_route(router, 5, "cancel")
    (outcome,) = await session.orders.cancel_many([5])
    # Settled by the look-up (the order shows cancelled), with the odd answer kept as the error.
    assert outcome.status in CLOSED and outcome.ok
    assert outcome.error is not None and "ResponseValidationError" in type(outcome.error).__name__
    assert lookup.call_count == 1
    # Still resting: not ok, whatever the 2xx said.
    router.routes.clear()
    router.post(CANCEL_URL).mock(return_value=json_response(200, answer))
    _order_route(router, 5, "wait")
    (outcome,) = await session.with_options(deadline=0.5).orders.cancel_many([5], deadline=1.0)
    assert not outcome.ok and outcome.status is CancelStatus.UNKNOWN


async def test_a_look_up_answered_with_another_order_proves_nothing(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    router.post(CANCEL_URL).mock(return_value=json_response(400, envelope("", "refused", "error")))
    lookup = _order_route(router, 5, "cancel", answer_id=77)
    (outcome,) = await session.orders.cancel_many([5])
    # (It was already_closed and ok, on order 77's state.)
    assert not outcome.ok and outcome.status is CancelStatus.FAILED
    assert outcome.order is None and lookup.call_count == 1


async def test_the_echo_of_the_order_itself_is_queued(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    for answer in (envelope(order_payload(id=5)), envelope({"order_id": 5}), envelope({})):
        router.post(CANCEL_URL).mock(return_value=json_response(200, answer))
        (outcome,) = await session.orders.cancel_many([5])
        assert outcome.status is CancelStatus.QUEUED and outcome.ok, answer


async def test_cancel_all_cancels_only_the_market_and_side_asked_for(
    router: respx.Router, session: AsyncTanxSession, caplog: pytest.LogCaptureFixture
) -> None:
    # An exchange that ignores the filters lists everything.
    listed = [
        order_payload(id=1, market="btcusdc", side="sell"),
        order_payload(id=2, market="btcusdc", side="buy"),
        order_payload(id=3, market="ethusdc", side="sell"),
    ]

    def listing(request: httpx.Request) -> httpx.Response:
        return json_response(200, envelope(listed if request.url.params["state"] == "wait" else []))

    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        return json_response(200, envelope(order_payload(id=oid)))

    router.get(ORDERS_URL).mock(side_effect=listing)
    cancels = router.post(CANCEL_URL).mock(side_effect=cancel)
    with caplog.at_level(logging.WARNING, logger="tanx_async"):
        outcomes = await session.orders.cancel_all("btcusdc", side="sell")
    assert [o.order_id for o in outcomes] == [1]
    assert [json.loads(c.request.content)["order_id"] for c in cancels.calls] == [1]
    assert any("2 order(s) of another market or side" in r.getMessage() for r in caplog.records)


async def test_a_bulk_cancel_is_not_resent_after_a_5xx(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    route = router.post(BULK_URL).mock(
        side_effect=[
            json_response(502, envelope("", "Bad Gateway", "error")),
            json_response(200, envelope({})),
        ]
    )
    with pytest.raises(InternalServerError):
        await session.orders.bulk_cancel("btcusdc", limit=10)
    assert route.call_count == 1


# -- the fast path (the built-in transport's lane), against a loopback stub ----------------------


@asynccontextmanager
async def _stub(cancel_body: Callable[[int], bytes], order_state: str) -> AsyncIterator[str]:
    """A loopback HTTP/1.1 server (``test_http11.Script``): a cancel answers 200
    ``cancel_body(order_id)``, a look-up of any order shows it in ``order_state``."""

    async def handler(request: bytes, writer: asyncio.StreamWriter) -> None:
        head, _, content = request.partition(b"\r\n\r\n")
        target = head.split(b" ")[1].decode()
        if target.endswith("/cancel/"):
            body = cancel_body(json.loads(content)["order_id"])
        else:
            oid = int(target.rstrip("/").rsplit("/", 1)[1])
            body = json.dumps(envelope(order_payload(id=oid, state=order_state))).encode()
        writer.write(ok(body))

    server = await asyncio.start_server(Script(handler).serve, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    finally:
        server.close()
        await server.wait_closed()


@pytest.mark.parametrize(
    "answer",
    [
        lambda oid: b'{"status":"fail","message":"x","payload":""}',
        lambda oid: b'{"status":"success","message":"x","payload":""}',
        lambda oid: json.dumps(envelope(order_payload(id=oid + 1))).encode(),
    ],
    ids=["status-fail", "payload-string", "echo-of-another-order"],
)
async def test_on_the_fast_path_an_odd_2xx_is_looked_up_never_queued(answer: Callable[[int], bytes]) -> None:
    async with (
        _stub(answer, "cancel") as url,
        AsyncTanxSession(base_url=url, access_token=make_jwt(), allow_insecure_http=True) as session,
    ):
        warm = await session.orders.cancel_many([1])  # (the lane needs a warm connection)
        outcomes = await session.orders.cancel_many(range(10, 40), concurrency=8)
    assert {o.status for o in [*warm, *outcomes]} <= CLOSED
    assert all(o.error is not None for o in outcomes)


async def test_an_exchange_serving_50_per_page_is_walked_to_the_end(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    """No largest page is documented: an exchange that serves 50 rows when asked for 100 must
    not end the walk after its first page (cancel_all cancelled 50 of 120 and said nothing)."""
    open_ids = list(range(1000, 1120))
    cancelled: set[int] = set()

    def listing(request: httpx.Request) -> httpx.Response:
        page, state = int(request.url.params["page"]), request.url.params["state"]
        rows = [oid for oid in open_ids if oid not in cancelled] if state == "wait" else []
        chunk = rows[(page - 1) * 50 : page * 50]
        return json_response(200, envelope([order_payload(id=oid) for oid in chunk]))

    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        return json_response(200, envelope(order_payload(id=oid)))  # queued: still listed as wait

    router.get(ORDERS_URL).mock(side_effect=listing)
    router.post(CANCEL_URL).mock(side_effect=cancel)
    assert [o.id async for o in session.orders.iter(market="btcusdc", state="wait")] == open_ids
    outcomes = await session.orders.cancel_all("btcusdc")
    assert sorted(o.order_id for o in outcomes) == open_ids and all(o.ok for o in outcomes)
