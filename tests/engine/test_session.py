"""The session: construction, lifecycle, shared state of ``with_options`` views, headers."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import anyio
import httpx
import pytest
import respx

from tanx_async import (
    AsyncTanxSession,
    InternalServerError,
    RequestEvent,
    ResponseTooLargeError,
    ResponseValidationError,
    SessionClosedError,
)
from tests.conftest import (
    ACCESS_401,
    BASE,
    CANCEL_URL,
    ORDER,
    REFRESH_URL,
    FakeClock,
    envelope,
    json_response,
    make_jwt,
    open_session,
)
from tests.internals import (
    AnyioSender,
    Http11Sender,
    HttpxSender,
    auth_of,
    sender_of,
    shares_pipeline,
    start_transport,
)

HEALTH_URL = f"{BASE}/sapi/v1/health/"
GET_URL = f"{BASE}/sapi/v1/orders/{ORDER['id']}/"


# -- construction ---------------------------------------------------------------------------------


def test_defaults() -> None:
    session = AsyncTanxSession()
    assert session.base_url == "https://api.tanx.fi"
    assert session.max_concurrency == 64
    assert session.tokens is None
    assert not session.closed


@pytest.mark.parametrize(
    ("kwargs", "url"),
    [
        ({"network": "mainnet"}, "https://api.tanx.fi"),
        ({"network": "testnet"}, "https://api-testnet.tanx.fi"),
        ({"base_url": "https://api.tanx.fi/"}, "https://api.tanx.fi"),
        ({"base_url": "  https://api-testnet.tanx.fi  "}, "https://api-testnet.tanx.fi"),
        ({"base_url": "http://127.0.0.1:8000"}, "http://127.0.0.1:8000"),
        ({"base_url": "http://localhost:8000/"}, "http://localhost:8000"),
        ({"base_url": "http://[::1]:9000"}, "http://[::1]:9000"),
        ({"base_url": "http://sandbox.localhost"}, "http://sandbox.localhost"),
        ({"base_url": "http://10.0.0.5:8000", "allow_insecure_http": True}, "http://10.0.0.5:8000"),
        ({"base_url": "https://proxy.example.com/tanx"}, "https://proxy.example.com/tanx"),
    ],
)
def test_base_url(kwargs: dict[str, Any], url: str) -> None:
    assert AsyncTanxSession(**kwargs).base_url == url


@pytest.mark.parametrize(
    ("kwargs", "exc", "match"),
    [
        ({"base_url": "https://api.tanx.fi", "network": "mainnet"}, ValueError, "not both"),
        ({"network": "devnet"}, ValueError, "network"),
        ({"network": "MAINNET"}, ValueError, "network"),
        ({"base_url": "http://api.tanx.fi"}, ValueError, "plain http"),
        ({"base_url": "http://10.0.0.5:8000"}, ValueError, "plain http"),
        ({"base_url": "http://127.0.0.1.evil.com"}, ValueError, "plain http"),
        ({"base_url": "ftp://api.tanx.fi"}, ValueError, "http"),
        ({"base_url": "api.tanx.fi"}, ValueError, "http"),
        ({"base_url": "https://"}, ValueError, "host"),
        ({"base_url": "https://api.tanx.fi/?x=1"}, ValueError, "query"),
        ({"base_url": "https://api.tanx.fi/#frag"}, ValueError, "fragment"),
        ({"base_url": "https://user:pw@api.tanx.fi"}, ValueError, "user name or password"),
        ({"base_url": "http://127.0.0.1:abc"}, ValueError, "port from 1 to 65535"),
        ({"base_url": "http://127.0.0.1:99999"}, ValueError, "port from 1 to 65535"),
        ({"base_url": "http://127.0.0.1:-1"}, ValueError, "port from 1 to 65535"),
        ({"base_url": "http://127.0.0.1:0"}, ValueError, "port from 1 to 65535"),
        ({"base_url": "https://api.tanx.fi:"}, ValueError, "port from 1 to 65535"),
        ({"base_url": "https://exa mple.com"}, ValueError, "spaces"),
        ({"base_url": "ftp://user:pw@api.tanx.fi"}, ValueError, "user name or password"),
        ({"base_url": 5}, TypeError, "string"),
        ({"max_retries": -1}, ValueError, "max_retries"),
        ({"max_retries": 1.5}, TypeError, "max_retries"),
        ({"max_retries": True}, TypeError, "max_retries"),
        ({"max_concurrency": 0}, ValueError, "max_concurrency"),
        ({"max_concurrency": True}, TypeError, "max_concurrency"),
        ({"max_concurrency": 100}, ValueError, "max_connections"),
        ({"max_concurrency": 11, "limits": httpx.Limits(max_connections=10)}, ValueError, "max_connections"),
        ({"timeout": 0}, ValueError, "timeout"),
        ({"timeout": -1.0}, ValueError, "timeout"),
        ({"timeout": "5"}, TypeError, "timeout"),
        ({"timeout": float("inf")}, ValueError, "timeout"),
        ({"access_token": ""}, TypeError, "access_token"),
        ({"access_token": "   "}, TypeError, "access_token"),
        ({"refresh_token": 5}, TypeError, "refresh_token"),
        ({"eth_address": "0xabc"}, ValueError, "private_key"),
        ({"transport": "requests"}, ValueError, "transport"),
        ({"verify": "yes"}, TypeError, "verify"),
        ({"max_response_bytes": 10}, ValueError, "max_response_bytes"),
        ({"rate_limit": 0}, ValueError, "rate_limit"),
        ({"rate_limit": 5, "rate_limit_burst": 0}, ValueError, "rate_limit_burst"),
        ({"signer": object()}, TypeError, "signer"),
    ],
)
def test_constructor_errors(kwargs: dict[str, Any], exc: type[Exception], match: str) -> None:
    with pytest.raises(exc, match=match):
        AsyncTanxSession(**kwargs)


def test_max_concurrency_up_to_the_pool() -> None:
    limits = httpx.Limits(max_connections=10)
    assert AsyncTanxSession(limits=limits).max_concurrency == 6  # the pool keeps headroom for refreshes
    assert AsyncTanxSession(limits=limits, max_concurrency=10).max_concurrency == 10
    assert AsyncTanxSession(max_concurrency=68).max_concurrency == 68
    assert (
        AsyncTanxSession(limits=httpx.Limits(max_connections=None), max_concurrency=500).max_concurrency
        == 500
    )


async def test_constructor_sends_nothing(router: respx.Router) -> None:
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client:
        AsyncTanxSession(access_token="a", refresh_token="r", http_client=client)
    assert len(router.calls) == 0


# -- lifecycle --------------------------------------------------------------------------------------


async def test_async_with_closes_an_owned_httpx_client() -> None:
    async with AsyncTanxSession(transport="httpx") as session:
        sender = start_transport(session)  # built lazily; no request is sent
        assert isinstance(sender, HttpxSender)
        assert sender.owned
        assert not sender.client.is_closed
    assert session.closed
    assert sender.client.is_closed


async def test_auto_is_the_native_transport_on_asyncio_and_aclose_closes_its_connections() -> None:
    server_done = asyncio.Event()

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            body = b'{"status":"success","message":"Working fine!","payload":""}'
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
            await writer.drain()
            assert await reader.read() == b""  # until our side closes the kept-alive connection
        finally:
            writer.close()
            server_done.set()

    server = await asyncio.start_server(answer, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        async with AsyncTanxSession(base_url=f"http://127.0.0.1:{port}") as session:
            sender = start_transport(session)
            assert isinstance(sender, Http11Sender)
            assert await session.health() is True
            assert sender._open == 1  # kept alive
        assert not sender._idle
        assert sender.connections_in_use() == 0
        with anyio.fail_after(5):
            await server_done.wait()  # the server saw the connection closed
    finally:
        server.close()
        await server.wait_closed()


def test_under_trio_auto_is_the_built_in_client_over_anyio() -> None:
    trio = pytest.importorskip("trio")

    async def main() -> None:
        for name in ("auto", "native"):
            async with AsyncTanxSession(access_token="t", transport=name) as session:
                assert isinstance(start_transport(session), AnyioSender)
        async with AsyncTanxSession(access_token="t", transport="httpx") as session:
            assert isinstance(start_transport(session), HttpxSender)

    trio.run(main)


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport must be 'auto', 'native' or 'httpx'"):
        AsyncTanxSession(transport="requests")  # type: ignore[arg-type]


def test_the_withdrawn_aiohttp_transport_is_refused_with_the_reason() -> None:
    with pytest.raises(ValueError, match=r"transport='aiohttp' was withdrawn: .* stray answer"):
        AsyncTanxSession(transport="aiohttp")  # type: ignore[arg-type]


async def test_injected_client_is_not_closed(router: respx.Router) -> None:
    route = router.get(HEALTH_URL).mock(return_value=json_response(200, envelope("", "Working fine!")))
    async with httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client:
        async with AsyncTanxSession(http_client=client) as session:
            assert await session.health()
        assert session.closed
        assert not client.is_closed
        response = await client.get(HEALTH_URL)  # still usable
        assert response.status_code == 200
    assert route.call_count == 2


async def test_closed_session_refuses_requests(session: AsyncTanxSession, router: respx.Router) -> None:
    route = router.post(CANCEL_URL)
    await session.aclose()
    await session.aclose()  # idempotent
    assert session.closed
    with pytest.raises(SessionClosedError):
        await session.orders.cancel(1)
    with pytest.raises(SessionClosedError):
        await session.health()
    with pytest.raises(SessionClosedError):
        async with session:
            pass
    assert route.call_count == 0


async def test_closing_a_view_closes_the_session(session: AsyncTanxSession) -> None:
    view = session.with_options(max_retries=0)
    await view.aclose()
    assert session.closed
    with pytest.raises(SessionClosedError):
        await session.health()


# -- with_options -------------------------------------------------------------------------------


async def test_with_options_shares_pool_and_tokens(session: AsyncTanxSession, router: respx.Router) -> None:
    router.post(REFRESH_URL).mock(
        return_value=json_response(200, envelope({"access": "new-access", "refresh": "r2"}))
    )
    cancel = router.post(CANCEL_URL).mock(return_value=json_response(200, envelope(ORDER)))
    view = session.with_options(timeout=1.5, max_retries=0)
    assert view is not session
    assert shares_pipeline(view, session)
    assert view.base_url == session.base_url
    await view.refresh()
    assert session.tokens is not None and session.tokens.access == "new-access"
    await session.orders.cancel(ORDER["id"])
    assert cancel.calls.last.request.headers["Authorization"] == "JWT new-access"
    first_sender = sender_of(session)
    await view.orders.cancel(ORDER["id"])
    assert sender_of(session) is first_sender


def test_with_options_keeps_every_setting_and_checks_the_new_values() -> None:
    """Every setting carries over to the view (a copy sharing the pipeline), and the new values
    are checked exactly as the constructor checks them."""
    events: list[RequestEvent] = []
    session = AsyncTanxSession(
        base_url="http://127.0.0.1:9",
        access_token="a",
        refresh_token="r",
        max_concurrency=8,
        limits=httpx.Limits(max_connections=12),
        rate_limit=50,
        max_response_bytes=4096,
        on_event=events.append,
    )
    view = session.with_options(max_retries=0)
    assert shares_pipeline(view, session)
    assert (view.base_url, view.max_concurrency) == (session.base_url, 8)
    assert view.with_options(timeout=2).base_url == session.base_url
    with pytest.raises(ValueError, match="max_retries"):
        session.with_options(max_retries=-1)
    with pytest.raises(TypeError, match="timeout"):
        session.with_options(timeout="5")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="timeout"):
        session.with_options(timeout=0)
    # Left out means "keep"; None is a value, refused as the constructor refuses it.
    with pytest.raises(TypeError, match="timeout"):
        session.with_options(timeout=None)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="max_retries"):
        session.with_options(max_retries=None)  # type: ignore[arg-type]


async def test_with_options_timeout_reaches_the_request(
    session: AsyncTanxSession, router: respx.Router
) -> None:
    route = router.get(GET_URL).mock(return_value=json_response(200, envelope(ORDER)))
    await session.with_options(timeout=1.5).orders.get(ORDER["id"])
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 1.5,
        "read": 1.5,
        "write": 1.5,
        "pool": 1.5,
    }
    await session.with_options(timeout=httpx.Timeout(2.0, connect=0.5)).orders.get(ORDER["id"])
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 0.5,
        "read": 2.0,
        "write": 2.0,
        "pool": 2.0,
    }
    await session.orders.get(ORDER["id"])
    assert route.calls.last.request.extensions["timeout"] == {
        "connect": 3.0,
        "read": 5.0,
        "write": 5.0,
        "pool": 10.0,
    }


async def test_with_options_max_retries(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(GET_URL).mock(return_value=httpx.Response(503))
    with pytest.raises(InternalServerError):
        await session.with_options(max_retries=2).orders.get(ORDER["id"])
    assert route.call_count == 3


@pytest.mark.parametrize(("kwargs", "exc"), [({"max_retries": -1}, ValueError), ({"timeout": 0}, ValueError)])
def test_with_options_errors(kwargs: dict[str, Any], exc: type[Exception]) -> None:
    with pytest.raises(exc):
        AsyncTanxSession().with_options(**kwargs)


# -- secrets ------------------------------------------------------------------------------------


async def test_repr_never_shows_tokens(router: respx.Router) -> None:
    access = make_jwt(time.time() + 3600)
    refresh = make_jwt(time.time() + 86400, token_type="refresh")
    router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    router.post(REFRESH_URL).mock(
        return_value=json_response(401, envelope({"code": "token_not_valid"}, "bad", "error"))
    )
    async with open_session(router, access_token=access, refresh_token=refresh) as session:
        texts = [
            repr(session),
            str(session),
            repr(session.tokens),
            repr(auth_of(session)),
            repr(session.with_options(max_retries=1)),
        ]
        try:
            await session.orders.cancel(1)
        except Exception as exc:
            texts += [str(exc), repr(exc)]
    for text in texts:
        assert access not in text
        assert refresh not in text
    assert "api.tanx.fi" in texts[0]


# -- headers ------------------------------------------------------------------------------------


async def test_authorization_header_on_private_routes_only(
    session: AsyncTanxSession, router: respx.Router
) -> None:
    health = router.get(HEALTH_URL).mock(return_value=json_response(200, envelope("", "Working fine!")))
    cancel = router.post(CANCEL_URL).mock(return_value=json_response(200, envelope(ORDER)))
    get = router.get(GET_URL).mock(return_value=json_response(200, envelope(ORDER)))
    assert await session.health() is True
    await session.orders.cancel(ORDER["id"])
    await session.orders.get(ORDER["id"])
    assert session.tokens is not None
    token = session.tokens.access

    public = health.calls.last.request
    assert "Authorization" not in public.headers
    assert "Content-Type" not in public.headers
    assert public.headers["Accept"] == "application/json"

    for route in (cancel, get):
        request = route.calls.last.request
        assert request.headers["Authorization"] == f"JWT {token}"
        assert request.headers["Accept"] == "application/json"
        assert request.headers["User-Agent"].startswith("tanx-async")

    post = cancel.calls.last.request
    assert post.headers["Content-Type"] == "application/json"
    assert json.loads(post.content) == {"order_id": ORDER["id"]}
    assert "Content-Type" not in get.calls.last.request.headers
    assert get.calls.last.request.content == b""


async def test_health_false_when_not_success(session: AsyncTanxSession, router: respx.Router) -> None:
    router.get(HEALTH_URL).mock(return_value=json_response(200, {"status": "maintenance"}))
    assert await session.health() is False


# -- events and limits ----------------------------------------------------------------------------


async def test_on_event_reports_responses_retries_and_refreshes(
    router: respx.Router, clock: FakeClock
) -> None:
    events: list[RequestEvent] = []
    router.post(REFRESH_URL).mock(
        return_value=json_response(200, envelope({"access": "a2", "refresh": "r2"}))
    )
    router.post(CANCEL_URL).mock(
        side_effect=[json_response(401, ACCESS_401), httpx.Response(503), json_response(200, envelope(ORDER))]
    )
    async with open_session(router, on_event=events.append) as session:
        await session.orders.cancel(ORDER["id"])
    kinds = [(e.kind, e.path, e.status) for e in events]
    assert kinds == [
        ("response", "/sapi/v1/orders/cancel/", 401),
        ("response", "/sapi/v1/auth/token/refresh/", 200),
        ("token_refreshed", "/sapi/v1/auth/token/refresh/", None),
        ("response", "/sapi/v1/orders/cancel/", 503),
        ("retry", "/sapi/v1/orders/cancel/", 503),
        ("response", "/sapi/v1/orders/cancel/", 200),
    ]
    retry = events[4]
    assert retry.delay is not None and 0.05 <= retry.delay <= 0.1
    assert retry.error == "InternalServerError"


async def test_response_too_large(router: respx.Router) -> None:
    router.get(GET_URL).mock(return_value=httpx.Response(200, content=b"x" * 5000))
    async with open_session(router, max_response_bytes=1024, max_retries=0) as session:
        with pytest.raises(ResponseTooLargeError) as info:
            await session.orders.get(ORDER["id"])
    assert info.value.maybe_processed is True


@pytest.mark.parametrize(
    "body",
    [{"status": "error", "message": "down", "payload": ""}, {"status": 0}, {"message": "Working fine!"}],
)
async def test_health_false_when_the_answer_does_not_say_success(
    session: AsyncTanxSession, router: respx.Router, body: dict[str, object]
) -> None:
    router.get(HEALTH_URL).mock(return_value=json_response(200, body))
    assert await session.health() is False


async def test_health_raises_on_an_answer_that_is_no_envelope(
    session: AsyncTanxSession, router: respx.Router
) -> None:
    router.get(HEALTH_URL).mock(return_value=httpx.Response(200, content=b"<html>ok</html>"))
    with pytest.raises(ResponseValidationError):
        await session.health()
