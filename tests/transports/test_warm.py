"""``session.warm_up()`` and ``keep_warm=True``: connections opened ahead of need, replaced
before they lapse, and never a request more than the caller's.

Counted from the server's side: connections accepted and requests read, by the loopback
sandbox and by a small scripted server that can advertise ``Keep-Alive: timeout=N`` and close
idle connections (on time, or early without a word).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager

import pytest

from tanx_async import APIConnectionError, AsyncTanxSession
from tests.conftest import until
from tests.internals import C, httpx, keeper_of
from tests.sandbox import running_sandbox

BODY = b'{"status":"success","message":"ok","payload":{}}'


class IdleServer:
    """Answers every request with a success envelope; counts connections and requests.

    ``idle_close``: close a connection idle this long. ``hint``: advertise that as
    ``Keep-Alive: timeout=N`` (a well-behaved server); without it the close comes unannounced.
    """

    def __init__(self, idle_close: float | None = None, hint: int | None = None) -> None:
        self.idle_close = idle_close
        self.hint = hint
        self.connections = 0
        self.requests = 0
        self.open = 0
        self.url = ""

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self.open += 1
        try:
            while True:
                try:
                    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), self.idle_close)
                except (TimeoutError, asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                    return
                length = 0
                for line in head.split(b"\r\n"):
                    name, _, value = line.partition(b":")
                    if name.strip().lower() == b"content-length":
                        length = int(value)
                await reader.readexactly(length)
                self.requests += 1
                hint = b"Keep-Alive: timeout=%d\r\n" % self.hint if self.hint else b""
                writer.write(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                    + hint
                    + b"Content-Length: %d\r\n\r\n" % len(BODY)
                    + BODY
                )
        finally:
            self.open -= 1
            writer.close()


@asynccontextmanager
async def idle_server(
    idle_close: float | None = None, hint: int | None = None, tls: ssl.SSLContext | None = None
) -> AsyncIterator[IdleServer]:
    server = IdleServer(idle_close, hint)
    listener = await asyncio.start_server(server.serve, "127.0.0.1", 0, ssl=tls)
    port = listener.sockets[0].getsockname()[1]
    server.url = f"{'https' if tls else 'http'}://127.0.0.1:{port}"
    try:
        yield server
    finally:
        listener.close()
        await listener.wait_closed()


@pytest.fixture
def fast_keep_warm(monkeypatch: pytest.MonkeyPatch) -> None:
    """Keep-warm's clock scaled down: poll every 20 ms, replace 0.3 s before a lapse."""
    monkeypatch.setattr(C, "KEEP_WARM_POLL", 0.02)
    monkeypatch.setattr(C, "KEEP_WARM_LEAD", 0.3)
    monkeypatch.setattr(C, "KEEP_WARM_MIN_LIFE", 0.1)
    monkeypatch.setattr(C, "SERVER_IDLE_MARGIN", 0.5)


def limits(n: int) -> httpx.Limits:
    return httpx.Limits(max_connections=n, max_keepalive_connections=n, keepalive_expiry=30.0)


# --- warm_up ---------------------------------------------------------------------------------


async def test_warm_up_opens_connections_the_burst_then_uses_and_sends_nothing() -> None:
    with running_sandbox() as sandbox:
        ids = sandbox.exchange.seed_orders(sandbox.uid, 8)
        async with sandbox.session(limits=limits(8), max_concurrency=8) as session:
            assert await session.warm_up(connections=8) == 8
            await until(lambda: sandbox.server.connections_accepted >= 8)  # the server's thread
            assert sandbox.server.connections_accepted == 8
            assert sandbox.exchange.requests == []
            outcomes = await session.orders.cancel_many(ids, concurrency=8)
            assert all(o.ok for o in outcomes)
            assert sandbox.server.connections_accepted == 8  # no handshake during the burst
            assert len(sandbox.exchange.requests) == 8


async def test_warm_up_is_bounded_by_the_pool_and_counts_what_is_already_warm() -> None:
    async with (
        idle_server() as server,
        AsyncTanxSession(
            base_url=server.url, access_token="t", limits=limits(4), max_concurrency=4
        ) as session,
    ):
        assert await session.warm_up(connections=10) == 4
        assert await session.warm_up() == 4  # already warm: nothing new opened
        assert await session.warm_up(connections=2) == 4
        await until(lambda: server.connections == 4)
        assert (server.connections, server.requests) == (4, 0)


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-1, ValueError), ("3", TypeError), (True, TypeError)]
)
async def test_warm_up_refuses_bad_counts_before_connecting(value: object, error: type[Exception]) -> None:
    async with idle_server() as server, AsyncTanxSession(base_url=server.url, access_token="t") as session:
        with pytest.raises(error, match="connections"):
            await session.warm_up(connections=value)  # type: ignore[arg-type]
        assert server.connections == 0


async def test_warm_up_is_a_logged_no_op_where_the_transport_cannot(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tanx_async")
    async with (
        idle_server() as server,
        AsyncTanxSession(
            base_url=server.url,
            access_token="t",
            transport="httpx",
        ) as session,
    ):
        assert await session.warm_up(connections=4) == 0
        assert server.connections == 0
    assert "cannot open connections ahead of need" in caplog.text


async def test_warm_up_fails_loudly_when_no_connection_opens() -> None:
    async with idle_server() as server:
        url = server.url
    async with AsyncTanxSession(base_url=url, access_token="t") as session:
        with pytest.raises(APIConnectionError, match="could not connect") as caught:
            await session.warm_up(connections=3)
        assert caught.value.maybe_processed is False


@contextmanager
def tls_pair() -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    yield server_ctx, client_ctx


async def test_warm_up_over_tls_verifies_the_certificate() -> None:
    with tls_pair() as (server_ctx, client_ctx):
        async with idle_server(tls=server_ctx) as server:
            async with AsyncTanxSession(base_url=server.url, access_token="t", verify=client_ctx) as session:
                assert await session.warm_up(connections=3) == 3
                await session.request("POST", "/x/", json={}, idempotent=True)
            assert (server.connections, server.requests) == (3, 1)
            # A certificate we do not trust: the warm-up fails, as the request would.
            async with AsyncTanxSession(base_url=server.url, access_token="t") as session:
                with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED"):
                    await session.warm_up(connections=2)


# --- keep_warm -------------------------------------------------------------------------------


@pytest.mark.usefixtures("fast_keep_warm")
async def test_keep_warm_replaces_connections_before_the_servers_keep_alive_timeout() -> None:
    # The server closes connections idle for 2 s and says so; keep-warm reconnects before that.
    async with (
        idle_server(idle_close=2.0, hint=2) as server,
        AsyncTanxSession(
            base_url=server.url, access_token="t", limits=limits(4), max_concurrency=4, keep_warm=True
        ) as session,
    ):
        await asyncio.gather(*(session.request("POST", "/x/", json={}, idempotent=True) for _ in range(4)))
        opened = server.connections
        # life = 2 - 0.5 (margin) = 1.5 s, replaced at 1.5 - 0.3 = 1.2 s of idleness
        await until(lambda: server.connections >= opened + 4)
        assert server.connections >= opened + 4
        assert server.requests == 4  # reconnecting only: no request of its own
        await session.request("POST", "/x/", json={}, idempotent=True)
        assert server.requests == 5


@pytest.mark.usefixtures("fast_keep_warm")
@pytest.mark.parametrize("keep_warm", [True, False])
async def test_server_closing_idle_connections_early(keep_warm: bool) -> None:
    # No Keep-Alive hint: the server drops idle connections after 0.3 s without notice.
    async with (
        idle_server(idle_close=0.3) as server,
        AsyncTanxSession(
            base_url=server.url, access_token="t", limits=limits(4), max_concurrency=4, keep_warm=keep_warm
        ) as session,
    ):
        assert await session.warm_up(connections=4) == 4
        await until(lambda: server.connections >= 8 if keep_warm else server.open == 0)
        if keep_warm:
            assert server.connections >= 8  # the closed ones were replaced
            await until(lambda: server.open == 4)
            assert server.open == 4
        else:
            assert (server.connections, server.open) == (4, 0)  # left closed
        assert server.requests == 0
        # Either way the next requests go through on live connections, none of them failing.
        before = server.connections
        await asyncio.gather(*(session.request("POST", "/x/", json={}, idempotent=True) for _ in range(4)))
        assert server.requests == 4
        if not keep_warm:
            assert server.connections == before + 4


@pytest.mark.usefixtures("fast_keep_warm")
async def test_keep_warm_lets_go_of_connections_the_server_closes_at_once() -> None:
    # A server that closes every idle connection right away would make keep-warm churn: it stops.
    async with (
        idle_server(idle_close=0.01) as server,
        AsyncTanxSession(
            base_url=server.url, access_token="t", limits=limits(2), max_concurrency=2, keep_warm=True
        ) as session,
    ):
        await session.warm_up(connections=2)
        await until(lambda: server.open == 0)
        await asyncio.sleep(0.2)  # ten keep-warm ticks
        assert server.connections == 2
        await session.request("POST", "/x/", json={}, idempotent=True)  # still works
        assert server.requests == 1


def test_keep_warm_needs_the_built_in_transport() -> None:
    with pytest.raises(ValueError, match="keep_warm=True needs the built-in transport"):
        AsyncTanxSession(access_token="t", transport="httpx", keep_warm=True)
    with pytest.raises(TypeError, match="keep_warm must be True or False"):
        AsyncTanxSession(access_token="t", keep_warm=1)  # type: ignore[arg-type]


async def test_keep_warm_stops_with_the_session() -> None:
    async with idle_server() as server:
        session = AsyncTanxSession(base_url=server.url, access_token="t", keep_warm=True)
        async with session:
            await session.warm_up(connections=2)
            keeper = keeper_of(session)
            assert keeper is not None and not keeper.done()
        assert keeper.done()
