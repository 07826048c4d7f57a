"""Decoding that fails loudly (issue 11 section 4): each malformed answer replayed from the wild
raises the right error, naming the request, and keeps what the server sent."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
import respx

from tanx_async import (
    AsyncTanxSession,
    AuthenticationError,
    CancelOutcomeUnknownError,
    ResponseValidationError,
)
from tests.conftest import BASE, CANCEL_URL, FakeClock, envelope, json_response, make_jwt, order_payload

ORDERS_URL = f"{BASE}/sapi/v1/orders/"
REFRESH_URL = f"{BASE}/sapi/v1/auth/token/refresh/"
NONCE_URL = f"{BASE}/sapi/v2/auth/nonce/"
LOGIN_URL = f"{BASE}/sapi/v2/auth/login/"
REFUSED = "Invalid Credentials or Token Expired, Kindly login again."


class FakeSigner:
    """A signer that signs anything (the mock exchange does not check)."""

    address = "0x" + "ab" * 20

    async def sign(self, message: str) -> str:
        return "0x" + "00" * 65


@pytest.mark.parametrize("payload", [{}, "", None, 0, {"0": ORDERS_URL}])
async def test_a_list_payload_that_is_no_list_is_an_error(
    router: respx.Router, session: AsyncTanxSession, payload: Any
) -> None:
    raw = json.dumps(envelope(payload, "Orders retrieved")).encode()
    router.get(url__startswith=ORDERS_URL).mock(return_value=httpx.Response(200, content=raw))
    with pytest.raises(ResponseValidationError) as caught:
        await session.orders.list(market="btcusdc")
    error = caught.value
    assert (error.method, error.path) == ("GET", "/sapi/v1/orders/")
    assert error.body == raw
    assert any("expected a list" in e for e in error.errors), error.errors
    # cancel_all must not read "no open orders" into it and cancel nothing.
    with pytest.raises(ResponseValidationError):
        await session.orders.cancel_all("btcusdc")


async def test_an_empty_list_is_still_an_empty_list(router: respx.Router, session: AsyncTanxSession) -> None:
    router.get(url__startswith=ORDERS_URL).mock(return_value=json_response(200, envelope([])))
    assert await session.orders.list() == []


@pytest.mark.parametrize("http_status", [200, 400])
async def test_a_refused_refresh_is_an_authentication_error_and_forgets_the_tokens(
    router: respx.Router, http_status: int
) -> None:
    refresh = router.post(REFRESH_URL).mock(
        return_value=json_response(http_status, {"status": "error", "message": REFUSED, "payload": ""})
    )
    expired = make_jwt(time.time() - 10)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(access_token=expired, refresh_token="dead", http_client=client) as session,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await session.refresh()
        error = caught.value
        assert error.status_code == http_status and error.message == REFUSED
        assert (error.method, error.path) == ("POST", "/sapi/v1/auth/token/refresh/")
        # The dead pair no longer looks usable.
        assert session.tokens is None
        # Later requests are told the tokens were refused (not that none were given: issue 34).
        with pytest.raises(AuthenticationError, match="refused this session's refresh token"):
            await session.orders.get(1)
    assert refresh.call_count == 1


async def test_a_login_refused_with_http_200_is_an_authentication_error(router: respx.Router) -> None:
    router.post(NONCE_URL).mock(return_value=json_response(200, envelope("Sign this message")))
    router.post(LOGIN_URL).mock(
        return_value=json_response(200, {"status": "error", "message": REFUSED, "payload": ""})
    )
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(signer=FakeSigner(), http_client=client) as session,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await session.login()
        assert caught.value.status_code == 200 and caught.value.message == REFUSED
        assert (caught.value.method, caught.value.path) == ("POST", "/sapi/v2/auth/login/")
        assert session.tokens is None


async def test_a_refused_refresh_with_a_signer_logs_in_and_the_dead_pair_is_gone(
    router: respx.Router,
) -> None:
    router.post(REFRESH_URL).mock(
        return_value=json_response(200, {"status": "error", "message": REFUSED, "payload": ""})
    )
    router.post(NONCE_URL).mock(return_value=json_response(200, envelope("Sign this message")))
    fresh = make_jwt(time.time() + 3600)
    router.post(LOGIN_URL).mock(
        return_value=json_response(
            200, {**envelope({"uid": "u1"}), "token": {"access": fresh, "refresh": "r2"}}
        )
    )
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(
            access_token=make_jwt(time.time() - 10),
            refresh_token="dead",
            signer=FakeSigner(),
            http_client=client,
        ) as session,
    ):
        pair = await session.refresh()
    assert pair.access == fresh and pair.refresh == "r2"


@pytest.mark.parametrize(
    ("url", "body"),
    [
        (REFRESH_URL, envelope({"access": 12})),
        (REFRESH_URL, envelope("")),
        (NONCE_URL, envelope({"message": "not a string payload"})),
        (NONCE_URL, envelope("")),
    ],
)
async def test_a_refresh_or_nonce_answer_of_the_wrong_shape_keeps_its_raw_bytes(
    router: respx.Router, url: str, body: dict[str, Any]
) -> None:
    raw = json.dumps(body).encode() + b"  "
    router.post(url).mock(return_value=httpx.Response(200, content=raw))
    refresh_token = "r1" if url == REFRESH_URL else None
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(refresh_token=refresh_token, signer=FakeSigner(), http_client=client) as session,
    ):
        with pytest.raises(ResponseValidationError) as caught:
            await (session.refresh() if refresh_token else session.login())
    error = caught.value
    assert error.body == raw
    assert (error.method, error.path) == ("POST", httpx.URL(url).path)


async def test_a_look_up_that_fails_to_decode_names_its_request(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    router.post(CANCEL_URL).mock(return_value=json_response(200, envelope({}, "queued")))
    raw = json.dumps(envelope({"id": 5, "state": "wait"})).encode()
    router.get(f"{BASE}/sapi/v1/orders/5/").mock(return_value=httpx.Response(200, content=raw))
    # The cancel was queued with a bare {} ack; the look-up that fetches the order is malformed.
    with pytest.raises(ResponseValidationError) as caught:
        await session.orders.cancel(5)
    assert (caught.value.method, caught.value.path) == ("GET", "/sapi/v1/orders/5/")
    assert caught.value.body == raw
    with pytest.raises(ResponseValidationError) as direct:
        await session.orders.get(5)
    assert (direct.value.method, direct.value.path) == ("GET", "/sapi/v1/orders/5/")


async def test_the_unknown_message_says_what_happened(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    get = router.get(f"{BASE}/sapi/v1/orders/5/")
    get.mock(return_value=json_response(200, envelope(order_payload(id=5, state="wait"))))
    router.post(CANCEL_URL).mock(
        return_value=json_response(500, envelope("", "Internal Server Error", "error"))
    )
    with pytest.raises(CancelOutcomeUnknownError) as answered:
        await session.orders.cancel(5)
    text = answered.value.message
    assert "answered HTTP 500: Internal Server Error" in text
    assert "an error answer that may hide a processed cancel" in text
    assert "no answer came back" not in text
    assert "a look-up shows the order still wait" in text

    router.post(CANCEL_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    get.mock(side_effect=httpx.ConnectError("down"))
    with pytest.raises(CancelOutcomeUnknownError) as silent:
        await session.orders.cancel(5)
    text = silent.value.message
    assert "no answer came back" in text and "ReadTimeout" in text
    assert "no look-up could settle it" in text


@pytest.mark.parametrize(
    "body",
    [
        {"status": "success", "message": "", "token": {"access": "ACCESS-1", "refresh": "REFRESH-1"}},
        {"status": "success", "message": "", "access_token": "ACCESS-1", "refresh_token": "REFRESH-1"},
        {"status": "success", "message": "", "payload": {"jwt": make_jwt(time.time() + 60)}},
    ],
)
async def test_a_refresh_answer_of_the_wrong_shape_keeps_no_token(
    router: respx.Router, body: dict[str, Any]
) -> None:
    """The error keeps the answer, but never a token in it (rule: no token in an exception)."""
    router.post(REFRESH_URL).mock(return_value=json_response(200, body))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(refresh_token="r1", http_client=client) as session,
    ):
        with pytest.raises(ResponseValidationError) as caught:
            await session.refresh()
    kept = caught.value.body
    assert isinstance(kept, bytes) and b"<redacted>" in kept
    assert b"ACCESS-1" not in kept and b"REFRESH-1" not in kept and b"eyJ" not in kept


async def test_a_login_answer_without_its_tokens_keeps_none_of_those_it_had(router: respx.Router) -> None:
    router.get(url__startswith=NONCE_URL).mock(return_value=json_response(200, envelope("sign me")))
    router.post(url__startswith=NONCE_URL).mock(return_value=json_response(200, envelope("sign me")))
    answer = envelope({"uid": "U1", "access": "ACCESS-1", "refresh": "REFRESH-1"}, "Login Successful")
    router.post(LOGIN_URL).mock(return_value=json_response(200, answer))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(signer=FakeSigner(), http_client=client) as session,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await session.login()
    assert "ACCESS-1" not in repr(caught.value.body) and "REFRESH-1" not in repr(caught.value.body)
    assert "U1" in repr(caught.value.body)
