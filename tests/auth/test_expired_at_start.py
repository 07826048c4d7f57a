"""A session started with an access token this machine's clock already sees expired (issue 34,
item 9): the CLI with a cached pair, a kill switch started from tokens saved hours ago. The token
is renewed once, before the first request goes out: ``cancel_many`` of 300 ids makes exactly one
refresh and collects no 401 (before: 36-64 cancels went out with the dead token). On every
transport (the built-in one's fast path included), and through respx."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import respx

from tanx_async import CancelStatus
from tests.conftest import (
    ACCESS_401,
    CANCEL_URL,
    REFRESH_URL,
    envelope,
    json_response,
    make_jwt,
    open_session,
)
from tests.engine.test_unreadable_headers import IDS, TRANSPORTS, run_on, session_on
from tests.stub import Stub, reply


def _answers(expired: str, fresh: str) -> tuple[dict[str, int], Any]:
    """A scripted exchange that refuses ``expired`` with a 401 and accepts ``fresh``; counts."""
    counts = {"refresh": 0, "401": 0, "ok": 0}

    def answer(
        method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/token/refresh/"):
            counts["refresh"] += 1
            return reply(200, envelope({"access": fresh, "refresh": "refresh-2"}))
        if headers.get("authorization") != f"JWT {fresh}":
            counts["401"] += 1
            return reply(401, ACCESS_401)
        counts["ok"] += 1
        return reply(200, envelope({}))

    return counts, answer


@pytest.mark.parametrize(("loop", "transport"), TRANSPORTS, ids=IDS)
def test_a_token_expired_a_minute_ago_is_renewed_once_before_the_burst(loop: str, transport: str) -> None:
    expired = make_jwt(time.time() - 60)
    fresh = make_jwt(time.time() + 3600, iat=time.time())
    counts, answer = _answers(expired, fresh)

    async def main() -> None:
        async with Stub(answer) as stub:
            async with session_on(stub, transport, access_token=expired) as session:
                await session.warm_up(8)  # (the fast path needs warm connections; sends nothing)
                outcomes = await session.orders.cancel_many(range(1, 301), concurrency=64)
            assert [o.status for o in outcomes] == [CancelStatus.QUEUED] * 300
            assert counts == {"refresh": 1, "401": 0, "ok": 300}
            assert stub.paths()[0] == "/sapi/v1/auth/token/refresh/"  # before anything else

    run_on(loop, main)


async def test_through_respx_one_refresh_first_and_no_401(router: respx.Router) -> None:
    expired = make_jwt(time.time() - 60)
    fresh = make_jwt(time.time() + 3600)
    refresh = router.post(REFRESH_URL).mock(
        return_value=json_response(200, envelope({"access": fresh, "refresh": "refresh-2"}))
    )

    def cancel(request: httpx.Request) -> httpx.Response:
        if request.headers["Authorization"] != f"JWT {fresh}":
            return json_response(401, ACCESS_401)
        return json_response(200, envelope({"id": json.loads(request.content)["order_id"]}))

    cancels = router.post(CANCEL_URL).mock(side_effect=cancel)
    async with open_session(router, access_token=expired) as session:
        outcomes = await session.orders.cancel_many(range(1, 301), concurrency=64)
    assert all(o.status is CancelStatus.QUEUED for o in outcomes)
    assert refresh.call_count == 1
    assert cancels.call_count == 300
    assert all(call.request.headers["Authorization"] == f"JWT {fresh}" for call in cancels.calls)
    assert router.calls[0].request.url.path == "/sapi/v1/auth/token/refresh/"


async def test_the_guess_is_tried_once_a_wrong_guess_costs_one_refresh(router: respx.Router) -> None:
    """This machine's clock is ten minutes ahead: the exchange's tokens (300 s) all look
    expired here. One refresh before the first request, then the fresh token's ``iat`` teaches
    the offset: no storm, however many requests follow."""
    ahead = 600.0
    exchange_now = time.time() - ahead

    def tokens(request: httpx.Request) -> httpx.Response:
        issued = make_jwt(exchange_now + 300, iat=exchange_now)
        return json_response(200, envelope({"access": issued, "refresh": "refresh-2"}))

    refresh = router.post(REFRESH_URL).mock(side_effect=tokens)
    cancels = router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({})))
    given = make_jwt(exchange_now + 200, iat=exchange_now - 100)  # valid on the exchange's clock
    async with open_session(router, access_token=given) as session:
        for _ in range(3):
            outcomes = await session.orders.cancel_many(range(1, 101), concurrency=32)
            assert all(o.status is CancelStatus.QUEUED for o in outcomes)
    assert refresh.call_count == 1
    assert cancels.call_count == 300
