"""Tokens: proactive and reactive refresh, single flight, rotation, hooks, login."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import anyio
import httpx
import pytest
import respx

from tanx_async import (
    APIConnectionError,
    AsyncTanxSession,
    AuthenticationError,
    NotAuthenticatedError,
    Order,
    ResponseValidationError,
    TokenPair,
)
from tests.conftest import (
    ACCESS_401,
    BASE,
    CANCEL_URL,
    REFRESH_URL,
    FakeClock,
    envelope,
    json_response,
    make_jwt,
    open_session,
    order_payload,
    sequence,
)
from tests.internals import jwt_expiry, learn_clock

REFRESH_401 = {
    "status": "error",
    "message": "Token is invalid or expired",
    "payload": {"code": "token_not_valid"},
}
HEALTH_URL = f"{BASE}/sapi/v1/health/"
NONCE_URL = f"{BASE}/sapi/v2/auth/nonce/"
LOGIN_URL = f"{BASE}/sapi/v2/auth/login/"


def _tokens(access: str, refresh: str = "refresh-2") -> httpx.Response:
    return json_response(
        200, {"status": "success", "message": "", "payload": {"access": access, "refresh": refresh}}
    )


def _cancel_ok(request: httpx.Request) -> httpx.Response:
    oid = json.loads(request.content)["order_id"]
    return json_response(
        200, envelope(order_payload(id=oid), "Order is successfully queued for cancellation")
    )


def _auth(request: httpx.Request) -> str | None:
    value = request.headers.get("Authorization")
    return None if value is None else str(value)


# -- proactive and reactive --------------------------------------------------------------------


async def test_proactive_refresh_before_first_request(router: respx.Router) -> None:
    stale = make_jwt(time.time() + 10)  # inside the 30 s skew
    fresh = make_jwt(time.time() + 3600)
    refresh = router.post(REFRESH_URL).mock(return_value=_tokens(fresh))
    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    async with open_session(router, access_token=stale) as session:
        learn_clock(session)  # the exchange's clock is known (it is judged on that clock)
        await session.orders.cancel(5)
        assert session.tokens is not None
        assert session.tokens.access == fresh
    assert refresh.call_count == 1
    assert cancel.call_count == 1
    assert [call.request.url.path for call in router.calls] == [
        "/sapi/v1/auth/token/refresh/",
        "/sapi/v1/orders/cancel/",
    ]
    assert _auth(cancel.calls.last.request) == f"JWT {fresh}"
    refresh_request = refresh.calls.last.request
    assert json.loads(refresh_request.content) == {"refresh": "refresh-1"}
    assert refresh_request.headers["Content-Type"] == "application/json"
    assert "Authorization" not in refresh_request.headers


async def test_no_proactive_refresh_outside_the_skew(router: respx.Router) -> None:
    token = make_jwt(time.time() + 120)
    refresh = router.post(REFRESH_URL)
    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    async with open_session(router, access_token=token) as session:
        await session.orders.cancel(5)
    assert refresh.call_count == 0
    assert _auth(cancel.calls.last.request) == f"JWT {token}"


async def test_refresh_skew_is_configurable(router: respx.Router) -> None:
    token = make_jwt(time.time() + 120)
    refresh = router.post(REFRESH_URL).mock(return_value=_tokens("fresh"))
    router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    async with open_session(router, access_token=token, refresh_skew=300) as session:
        learn_clock(session)
        await session.orders.cancel(5)
    assert refresh.call_count == 1


async def test_reactive_refresh_on_401_access(router: respx.Router) -> None:
    old = "opaque-old-token"  # not a JWT: no exp, so only a 401 can tell it is stale
    refresh = router.post(REFRESH_URL).mock(return_value=_tokens("new-access"))
    cancel = router.post(CANCEL_URL).mock(side_effect=sequence(json_response(401, ACCESS_401), _cancel_ok))
    async with open_session(router, access_token=old) as session:
        order = await session.orders.cancel(5)
    assert order.id == 5
    assert refresh.call_count == 1
    assert cancel.call_count == 2
    assert _auth(cancel.calls[0].request) == f"JWT {old}"
    assert _auth(cancel.calls[1].request) == "JWT new-access"
    assert cancel.calls[0].request.content == cancel.calls[1].request.content


async def test_second_401_after_refresh_is_an_authentication_error(router: respx.Router) -> None:
    refresh = router.post(REFRESH_URL).mock(return_value=_tokens("new-access"))
    cancel = router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    async with open_session(router) as session:
        with pytest.raises(AuthenticationError):
            await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    assert refresh.call_count == 1
    assert cancel.call_count == 2


# -- single flight ------------------------------------------------------------------------------


def _cancel_accepting_only(access: str, *, delay: float) -> Any:
    """A cancel endpoint that answers 401 (access token expired) to any other token."""

    async def handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(delay)
        if _auth(request) != f"JWT {access}":
            return json_response(401, ACCESS_401)
        return _cancel_ok(request)

    return handler


async def _slow_refresh(access: str, calls: list[str]) -> Any:
    async def handler(request: httpx.Request) -> httpx.Response:
        calls.append(json.loads(request.content)["refresh"])
        await anyio.sleep(0.05)  # every other task notices the stale token meanwhile
        return _tokens(access)

    return handler


async def _cancel_all(session: AsyncTanxSession, ids: range) -> list[Order]:
    results: list[Order] = []

    async def one(oid: int) -> None:
        results.append(await session.orders.cancel(oid))

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            for oid in ids:
                tg.start_soon(one, oid)
    return results


async def test_100_concurrent_cancels_with_expired_token_refresh_once(router: respx.Router) -> None:
    expired = make_jwt(time.time() - 60)
    fresh = make_jwt(time.time() + 3600)
    calls: list[str] = []
    refresh = router.post(REFRESH_URL).mock(side_effect=await _slow_refresh(fresh, calls))
    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    async with open_session(router, access_token=expired, async_handler=True) as session:
        learn_clock(session)
        results = await _cancel_all(session, range(1, 101))
    assert refresh.call_count == 1
    assert calls == ["refresh-1"]
    assert len(results) == 100
    assert sorted(o.id for o in results) == list(range(1, 101))
    assert cancel.call_count == 100
    assert {_auth(c.request) for c in cancel.calls} == {f"JWT {fresh}"}


async def test_100_concurrent_401s_refresh_once(router: respx.Router) -> None:
    calls: list[str] = []
    refresh = router.post(REFRESH_URL).mock(side_effect=await _slow_refresh("new-access", calls))

    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_accepting_only("new-access", delay=0.01))
    async with open_session(router, access_token="opaque-old", async_handler=True) as session:
        results = await _cancel_all(session, range(1, 101))
    assert refresh.call_count == 1
    assert len(results) == 100
    stale = [c for c in cancel.calls if _auth(c.request) == "JWT opaque-old"]
    fresh = [c for c in cancel.calls if _auth(c.request) == "JWT new-access"]
    assert len(fresh) == 100
    assert cancel.call_count == 100 + len(stale)


async def test_refresh_failure_reaches_every_waiter(router: respx.Router) -> None:
    expired = make_jwt(time.time() - 60)

    async def refresh_handler(request: httpx.Request) -> httpx.Response:
        await anyio.sleep(0.5)  # every waiter joins the refresh before it fails
        return json_response(401, REFRESH_401)

    refresh = router.post(REFRESH_URL).mock(side_effect=refresh_handler)
    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    errors: list[BaseException] = []
    async with open_session(router, access_token=expired, async_handler=True) as session:
        learn_clock(session)

        async def one(oid: int) -> None:
            try:
                await session.orders.cancel(oid)
            except Exception as exc:
                errors.append(exc)

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                for oid in range(1, 21):
                    tg.start_soon(one, oid)
        assert session.tokens is None  # both tokens dropped: a new login is needed
        # Later requests fail at once, without sending anything, saying the tokens were refused
        # (not that none were given: issue 34).
        with pytest.raises(AuthenticationError, match="refused this session's refresh token"):
            await session.orders.cancel(99)
    assert refresh.call_count == 1
    assert cancel.call_count == 0
    assert len(errors) == 20
    for err in errors:
        assert isinstance(err, AuthenticationError)
        assert err.message == "Token is invalid or expired"
        assert err.status_code == 401
        assert err.payload == {"code": "token_not_valid"}


async def test_refresh_failure_on_reactive_path(router: respx.Router) -> None:
    refresh = router.post(REFRESH_URL).mock(return_value=json_response(401, REFRESH_401))
    cancel = router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    async with open_session(router) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.orders.cancel(1)
    assert info.value.message == "Token is invalid or expired"
    assert refresh.call_count == 1
    assert cancel.call_count == 1


async def test_refresh_400_becomes_authentication_error(router: respx.Router) -> None:
    body = envelope("", "Invalid Credentials or Token Expired, Kindly login again.", "error")
    router.post(REFRESH_URL).mock(return_value=json_response(400, body))
    router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    async with open_session(router) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.orders.cancel(1)
    assert info.value.status_code == 400
    assert info.value.message == "Invalid Credentials or Token Expired, Kindly login again."


# -- the refresh answer -------------------------------------------------------------------------


async def test_refresh_token_rotates(router: respx.Router) -> None:
    refresh = router.post(REFRESH_URL).mock(
        side_effect=[_tokens("access-2", "refresh-2"), _tokens("access-3", "refresh-3")]
    )
    cancel = router.post(CANCEL_URL).mock(
        side_effect=sequence(
            json_response(401, ACCESS_401), _cancel_ok, json_response(401, ACCESS_401), _cancel_ok
        )
    )
    async with open_session(router, access_token="access-1") as session:
        await session.orders.cancel(1)
        await session.orders.cancel(2)
        assert session.tokens == TokenPair("access-3", "refresh-3", None)
    assert [json.loads(c.request.content) for c in refresh.calls] == [
        {"refresh": "refresh-1"},
        {"refresh": "refresh-2"},
    ]
    assert [_auth(c.request) for c in cancel.calls] == [
        "JWT access-1",
        "JWT access-2",
        "JWT access-2",
        "JWT access-3",
    ]


async def test_refresh_reads_tokens_under_payload(router: respx.Router) -> None:
    fresh = make_jwt(1_900_000_000)
    router.post(REFRESH_URL).mock(return_value=_tokens(fresh, "refresh-9"))
    async with open_session(router) as session:
        pair = await session.refresh()
    assert pair.access == fresh
    assert pair.refresh == "refresh-9"
    assert pair.access_expires_at is not None
    assert pair.access_expires_at.timestamp() == 1_900_000_000


async def test_refresh_without_new_refresh_token_keeps_the_old(router: respx.Router) -> None:
    router.post(REFRESH_URL).mock(return_value=json_response(200, envelope({"access": "a2"})))
    async with open_session(router) as session:
        pair = await session.refresh()
    assert pair == TokenPair("a2", "refresh-1", None)


@pytest.mark.parametrize(
    "body",
    [
        envelope(""),
        envelope({}),
        envelope({"access": 5}),
        {"status": "success", "token": {"access": "a", "refresh": "r"}},
    ],
)
async def test_refresh_answer_without_tokens(router: respx.Router, body: dict[str, Any]) -> None:
    router.post(REFRESH_URL).mock(return_value=json_response(200, body))
    async with open_session(router) as session:
        with pytest.raises(ResponseValidationError) as info:
            await session.refresh()
        assert "payload.access" in str(info.value)


# -- the on_tokens hook -------------------------------------------------------------------------


async def test_on_tokens_sync_hook(router: respx.Router) -> None:
    seen: list[TokenPair] = []
    router.post(REFRESH_URL).mock(side_effect=[_tokens("a2", "r2"), _tokens("a3", "r3")])
    async with open_session(router, on_tokens=seen.append) as session:
        await session.refresh()
        await session.refresh()
    assert seen == [TokenPair("a2", "r2", None), TokenPair("a3", "r3", None)]


async def test_on_tokens_async_hook(router: respx.Router) -> None:
    seen: list[TokenPair] = []

    async def store(pair: TokenPair) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(pair)

    router.post(REFRESH_URL).mock(return_value=_tokens("a2", "r2"))
    async with open_session(router, on_tokens=store) as session:
        await session.refresh()
    assert seen == [TokenPair("a2", "r2", None)]


@pytest.mark.parametrize("is_async", [False, True])
async def test_raising_hook_does_not_break_the_request(router: respx.Router, is_async: bool) -> None:
    def sync_hook(pair: TokenPair) -> None:
        raise OSError("disk full")

    async def async_hook(pair: TokenPair) -> None:
        raise OSError("disk full")

    router.post(REFRESH_URL).mock(return_value=_tokens("new-access"))
    cancel = router.post(CANCEL_URL).mock(side_effect=sequence(json_response(401, ACCESS_401), _cancel_ok))
    async with open_session(router, on_tokens=async_hook if is_async else sync_hook) as session:
        order = await session.orders.cancel(3)
        assert session.tokens is not None
        assert session.tokens.access == "new-access"
    assert order.id == 3
    assert _auth(cancel.calls.last.request) == "JWT new-access"


# -- the refresh and the concurrency limiter -----------------------------------------------------


async def test_refresh_bypasses_the_concurrency_limiter(router: respx.Router) -> None:
    refreshed = anyio.Event()

    async def refresh_handler(request: httpx.Request) -> httpx.Response:
        refreshed.set()
        return _tokens("new-access")

    async def blocked_cancel(request: httpx.Request) -> httpx.Response:
        # Holds the only slot until the refresh has gone through.
        await refreshed.wait()
        return _cancel_ok(request)

    router.post(REFRESH_URL).mock(side_effect=refresh_handler)
    router.post(CANCEL_URL).mock(side_effect=blocked_cancel)
    cancelled: list[Order] = []
    async with open_session(router, async_handler=True, max_concurrency=1) as session:
        assert session.max_concurrency == 1

        async def cancel() -> None:
            cancelled.append(await session.orders.cancel(1))

        # A refresh queued behind the limiter would deadlock until this deadline cancels the
        # cancel (the shielded refresh itself cannot be cancelled, so check the outcome too).
        with anyio.move_on_after(30) as deadlock:
            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel)
                await anyio.sleep(0.01)
                await session.refresh()
        assert not deadlock.cancelled_caught
    assert refreshed.is_set()
    assert [o.id for o in cancelled] == [1]


async def test_reactive_refresh_with_one_slot(router: respx.Router) -> None:
    calls: list[str] = []
    refresh = router.post(REFRESH_URL).mock(side_effect=await _slow_refresh("new-access", calls))

    router.post(CANCEL_URL).mock(side_effect=_cancel_accepting_only("new-access", delay=0.005))
    async with open_session(router, access_token="old", async_handler=True, max_concurrency=1) as session:
        results = await _cancel_all(session, range(1, 11))
    assert len(results) == 10
    assert refresh.call_count == 1


# -- no credentials, signer login ---------------------------------------------------------------


async def test_no_tokens_no_signer_raises_before_sending(router: respx.Router) -> None:
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(http_client=client) as session,
    ):
        assert session.tokens is None
        with pytest.raises(NotAuthenticatedError):
            await session.orders.cancel(1)
        with pytest.raises(NotAuthenticatedError):
            await session.orders.get(1)
        with pytest.raises(NotAuthenticatedError):
            await session.orders.list()
        router.get(HEALTH_URL).mock(return_value=json_response(200, envelope("", "Working fine!")))
        assert await session.health() is True
    assert len(router.calls) == 1  # only the public health check went out


async def test_access_token_without_refresh_token_cannot_refresh(router: respx.Router) -> None:
    refresh = router.post(REFRESH_URL)
    router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(http_client=client, access_token="only-access") as session,
    ):
        with pytest.raises(AuthenticationError) as caught:
            await session.orders.cancel(1)
    assert refresh.call_count == 0
    # The exchange's status and words are kept, with what would have cured it.
    error = caught.value
    assert error.status_code == 401
    assert error.message.startswith("Given token not valid for any token type")
    assert "no refresh token or signer" in error.message
    assert (error.method, error.path) == ("POST", "/sapi/v1/orders/cancel/")


async def test_transient_early_refresh_failure_uses_current_token(
    router: respx.Router, clock: FakeClock
) -> None:
    soon = make_jwt(time.time() + 10)  # still valid, but inside the skew
    refresh = router.post(REFRESH_URL).mock(side_effect=httpx.ConnectError("refused"))
    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    async with open_session(router, access_token=soon) as session:
        learn_clock(session)
        await session.orders.cancel(1)
    assert refresh.call_count == 4  # connect errors prove the refresh never arrived: retried
    assert _auth(cancel.calls.last.request) == f"JWT {soon}"


async def test_transient_refresh_failure_with_expired_token_raises(
    router: respx.Router, clock: FakeClock
) -> None:
    expired = make_jwt(time.time() - 10)
    router.post(REFRESH_URL).mock(side_effect=httpx.ConnectError("refused"))
    cancel = router.post(CANCEL_URL)
    async with open_session(router, access_token=expired) as session:
        learn_clock(session)
        with pytest.raises(APIConnectionError):
            await session.orders.cancel(1)
    assert cancel.call_count == 0


class FakeSigner:
    address = "0x713Cf80b7c71440E7a09Dede1ee23dCBf862fB66"

    def __init__(self) -> None:
        self.signed: list[str] = []

    async def sign(self, message: str) -> str:
        self.signed.append(message)
        return "0x" + "ab" * 65


NONCE = "You\u2019re now signing into tanX Testnet, make sure the origin is https://testnet.tanx.finance (Login-code:YG2D)"


def _login_routes(router: respx.Router, access: str = "login-access") -> tuple[respx.Route, respx.Route]:
    nonce = router.post(NONCE_URL).mock(return_value=json_response(200, envelope(NONCE, "Nonce Acquired")))
    login = router.post(LOGIN_URL).mock(
        return_value=json_response(
            200,
            {
                "status": "success",
                "message": "Login Successful",
                "payload": {"uid": "IDDAF4F5E3C7", "signature": ""},
                "token": {"refresh": "login-refresh", "access": access},
            },
        )
    )
    return nonce, login


async def test_signer_logs_in_on_first_use(router: respx.Router) -> None:
    signer = FakeSigner()
    nonce, login = _login_routes(router)
    cancel = router.post(CANCEL_URL).mock(side_effect=_cancel_ok)
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(http_client=client, signer=signer) as session,
    ):
        await session.orders.cancel(1)
        assert session.tokens == TokenPair("login-access", "login-refresh", None)
    assert signer.signed == [NONCE]  # signed exactly as received
    assert json.loads(nonce.calls.last.request.content) == {"eth_address": signer.address}
    assert json.loads(login.calls.last.request.content) == {
        "eth_address": signer.address,
        "user_signature": "0x" + "ab" * 65,
    }
    assert _auth(cancel.calls.last.request) == "JWT login-access"


async def test_dead_refresh_token_with_signer_logs_in_again(router: respx.Router) -> None:
    signer = FakeSigner()
    _login_routes(router)
    refresh = router.post(REFRESH_URL).mock(return_value=json_response(401, REFRESH_401))
    cancel = router.post(CANCEL_URL).mock(side_effect=sequence(json_response(401, ACCESS_401), _cancel_ok))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(http_client=client, access_token="a", refresh_token="r", signer=signer) as session,
    ):
        await session.orders.cancel(1)
    assert refresh.call_count == 1
    assert _auth(cancel.calls.last.request) == "JWT login-access"


def test_jwt_expiry() -> None:
    assert jwt_expiry(make_jwt(1_700_000_000)) == 1_700_000_000.0
    assert jwt_expiry(make_jwt(None)) is None
    assert jwt_expiry("not-a-jwt") is None
    assert jwt_expiry("a.!!!.c") is None
    assert jwt_expiry("a.bnVsbA.c") is None  # claims are JSON null
    claims = base64.urlsafe_b64encode(b'{"exp": "soon"}').decode().rstrip("=")
    assert jwt_expiry(f"a.{claims}.c") is None
    claims = base64.urlsafe_b64encode(b'{"exp": true}').decode().rstrip("=")
    assert jwt_expiry(f"a.{claims}.c") is None
