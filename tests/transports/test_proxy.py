"""Proxies and CA settings from the environment (``trust_env=True``, httpx's rules), on every
transport; and the native transport's fallback to httpx when httptools cannot be imported.

Two small proxies on loopback, written here, count what passes through them: a forward proxy
for ``http://`` (absolute-form requests) and a ``CONNECT`` tunnel for ``https://``.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import ssl
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import anyio
import attrs
import pytest
import trustme

from tanx_async import APIConnectionError, AsyncTanxSession, CancelStatus, MissingDependencyError
from tests.internals import (
    Http11Sender,
    HttpxSender,
    env_proxy,
    start_transport,
    transport_notices,
)
from tests.sandbox import TRANSPORTS, Sandbox, running_sandbox, transport_name

HEALTH = b'{"status":"success","message":"Working fine!","payload":null}'


@attrs.define
class Proxy:
    """A forward proxy (absolute-form requests, each sent upstream on its own connection) and a
    CONNECT tunnel, counting both."""

    forwarded: int = 0
    tunnels: int = 0
    port: int = 0
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *lines = head[:-4].split(b"\r\n")
                method, target, _ = request_line.split(b" ")
                if method == b"CONNECT":
                    self.tunnels += 1
                    host, _, port = target.decode().rpartition(":")
                    up_reader, up_writer = await asyncio.open_connection(host, int(port))
                    writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
                    return
                self.forwarded += 1
                url = urlsplit(target.decode())
                assert url.scheme == "http" and url.hostname == "127.0.0.1", target
                length = 0
                kept = []
                for line in lines:
                    name = line.split(b":", 1)[0].strip().lower()
                    if name == b"content-length":
                        length = int(line.split(b":", 1)[1])
                    if name not in (b"connection", b"proxy-connection", b"keep-alive"):
                        kept.append(line)
                body = await reader.readexactly(length)
                path = (url.path or "/") + (f"?{url.query}" if url.query else "")
                up_reader, up_writer = await asyncio.open_connection(url.hostname, url.port)
                up_writer.write(
                    b"\r\n".join([f"{method.decode()} {path} HTTP/1.1".encode(), *kept, b"Connection: close"])
                    + b"\r\n\r\n"
                    + body
                )
                answer = await up_reader.read()  # until the upstream closes (Connection: close)
                up_writer.close()
                writer.write(answer)
                await writer.drain()
                if b"\r\nconnection: close" in answer.split(b"\r\n\r\n")[0].lower():
                    return
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()


@asynccontextmanager
async def proxy() -> AsyncIterator[Proxy]:
    counted = Proxy()
    server = await asyncio.start_server(counted.serve, "127.0.0.1", 0)
    counted.port = server.sockets[0].getsockname()[1]
    try:
        yield counted
    finally:
        server.close()
        for task in counted.tasks:
            task.cancel()
        await asyncio.gather(*counted.tasks, return_exceptions=True)
        await server.wait_closed()


@attrs.define
class TlsExchange:
    """A TLS server on loopback answering every request with the health answer."""

    port: int = 0
    requests: int = 0
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                self.requests += 1
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(HEALTH) + HEALTH)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return path


@asynccontextmanager
async def tls_exchange(ca: trustme.CA) -> AsyncIterator[TlsExchange]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("localhost", "127.0.0.1").configure_cert(context)
    exchange = TlsExchange()
    server = await asyncio.start_server(exchange.serve, "127.0.0.1", 0, ssl=context)
    exchange.port = server.sockets[0].getsockname()[1]
    try:
        yield exchange
    finally:
        server.close()
        for task in exchange.tasks:
            task.cancel()
        await asyncio.gather(*exchange.tasks, return_exceptions=True)
        with suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 2)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=5) as sb:
        yield sb


@pytest.fixture(autouse=True)
def _fresh_notices() -> Iterator[None]:
    """Each "logged once" notice may be said again in the next test."""
    transport_notices.clear()
    yield
    transport_notices.clear()


def notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "tanx_async" and r.levelno == logging.WARNING]


# --- http:// through a forward proxy ---------------------------------------------------------


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy", "ALL_PROXY"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_batch_of_cancels_goes_through_the_proxy_the_environment_names(
    sandbox: Sandbox,
    transport: str,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.WARNING, logger="tanx_async")
    ids = sandbox.exchange.seed_orders(sandbox.uid, 20)
    async with proxy() as counted:
        monkeypatch.setenv(variable, counted.url)
        async with sandbox.session(transport=transport_name(transport)) as session:
            sender = start_transport(session)
            outcomes = await session.orders.cancel_many(ids)
            # A view built by with_options shares the pipeline, so the same proxied transport.
            assert await session.with_options(timeout=3.0).health() is True
    assert [o.status for o in outcomes] == [CancelStatus.QUEUED] * len(ids)
    assert counted.forwarded >= len(ids) + 1
    if transport == "native":
        assert isinstance(sender, HttpxSender)  # handed over: the native client speaks no proxy
        [said] = notices(caplog)
        assert "proxy" in said and "httpx transport" in said
    else:
        assert not notices(caplog)


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_proxy_and_trust_env_false_go_direct(
    sandbox: Sandbox, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with proxy() as counted:
        monkeypatch.setenv("HTTP_PROXY", counted.url)
        monkeypatch.setenv("NO_PROXY", "example.com,127.0.0.1")
        async with sandbox.session(transport=transport_name(transport)) as session:
            sender = start_transport(session)
            assert await session.health() is True
        monkeypatch.delenv("NO_PROXY")
        async with sandbox.session(transport=transport_name(transport), trust_env=False) as session:
            assert await session.health() is True
            assert await session.with_options(max_retries=0).health() is True
    assert counted.forwarded == 0
    if transport == "native":
        assert isinstance(sender, Http11Sender)


# --- https:// through a CONNECT tunnel, and the CA from the environment ----------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_https_goes_through_a_connect_tunnel_trusting_ssl_cert_file(
    ca: trustme.CA, ca_file: Path, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with tls_exchange(ca) as exchange, proxy() as counted:
        monkeypatch.setenv("HTTPS_PROXY", counted.url)
        monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
        monkeypatch.delenv("SSL_CERT_DIR", raising=False)
        url = f"https://localhost:{exchange.port}"
        async with AsyncTanxSession(base_url=url, transport=transport_name(transport)) as session:
            assert await session.health() is True
            assert await session.health() is True
    assert counted.tunnels >= 1
    assert exchange.requests == 2


def _hashed_ca_dir(ca_file: Path, folder: Path) -> Path:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("SSL_CERT_DIR needs the CA under its subject hash: no openssl command here")
    digest = subprocess.run(
        [openssl, "x509", "-subject_hash", "-noout", "-in", str(ca_file)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    folder.mkdir()
    shutil.copy(ca_file, folder / f"{digest}.0")
    return folder


@pytest.mark.parametrize("variable", ["SSL_CERT_FILE", "SSL_CERT_DIR"])
@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_the_ca_from_the_environment_is_trusted_unless_trust_env_is_false(
    ca: trustme.CA,
    ca_file: Path,
    tmp_path: Path,
    transport: str,
    variable: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    value = ca_file if variable == "SSL_CERT_FILE" else _hashed_ca_dir(ca_file, tmp_path / "certs")
    monkeypatch.setenv(variable, str(value))
    async with tls_exchange(ca) as exchange:
        url = f"https://localhost:{exchange.port}"
        async with AsyncTanxSession(base_url=url, transport=transport_name(transport)) as session:
            assert await session.health() is True
        async with AsyncTanxSession(
            base_url=url, transport=transport_name(transport), trust_env=False, max_retries=0
        ) as session:
            with pytest.raises(APIConnectionError) as got:
                await session.health()
            assert got.value.maybe_processed is False
    assert exchange.requests == 1


# --- the rules, and the fallback without httptools -------------------------------------------


@pytest.mark.parametrize(
    ("env", "url", "expected"),
    [
        ({"HTTPS_PROXY": "http://p:1"}, "https://api.tanx.fi", "http://p:1"),
        ({"HTTPS_PROXY": "p:1"}, "https://api.tanx.fi", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1"}, "https://api.tanx.fi", None),
        ({"ALL_PROXY": "http://p:2", "HTTPS_PROXY": "http://p:1"}, "https://api.tanx.fi", "http://p:1"),
        ({"ALL_PROXY": "http://p:2"}, "https://api.tanx.fi", "http://p:2"),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "tanx.fi"}, "https://api.tanx.fi", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": ".tanx.fi"}, "https://api.tanx.fi", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "*"}, "https://api.tanx.fi", None),
        ({"HTTPS_PROXY": "http://p:1", "NO_PROXY": "other.fi"}, "https://api.tanx.fi", "http://p:1"),
        ({"HTTP_PROXY": "http://p:1", "NO_PROXY": "localhost"}, "http://localhost:8000", None),
    ],
)
def test_which_proxy_applies_follows_httpx(
    env: dict[str, str], url: str, expected: str | None, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert env_proxy(url) == expected


async def test_without_httptools_auto_uses_httpx_and_says_why_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tanx_async")
    monkeypatch.setitem(sys.modules, "httptools", None)  # `import httptools` now raises ImportError
    for _ in range(2):
        async with AsyncTanxSession(base_url="http://127.0.0.1:9") as session:
            assert isinstance(start_transport(session), HttpxSender)
    [said] = notices(caplog)
    assert "httptools" in said and "httpx transport" in said
    with pytest.raises(MissingDependencyError, match="httptools"):
        async with AsyncTanxSession(base_url="http://127.0.0.1:9", transport="native") as session:
            start_transport(session)
    monkeypatch.delitem(sys.modules, "httptools")
    async with AsyncTanxSession(base_url="http://127.0.0.1:9") as session:
        assert isinstance(start_transport(session), Http11Sender)


def test_trust_env_must_be_a_bool() -> None:
    with pytest.raises(TypeError, match="trust_env"):
        AsyncTanxSession(trust_env="yes")  # type: ignore[arg-type]


# --- the private stream follows the same proxy rules --------------------------------------


async def test_the_stream_tunnels_through_the_proxy_the_environment_names(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tanx_async import OrderUpdate

    ids = sandbox.exchange.seed_orders(sandbox.uid, 2)
    async with proxy() as counted:
        monkeypatch.setenv("HTTP_PROXY", counted.url)
        async with sandbox.session(transport="httpx") as session, session.stream() as events:
            assert counted.tunnels == 1  # the WebSocket went through CONNECT
            await session.orders.cancel_many(ids)
            seen: set[int] = set()
            with anyio.fail_after(10):
                async for event in events:
                    if isinstance(event, OrderUpdate) and event.state == "cancel":
                        seen.add(event.id)
                    if seen == set(ids):
                        break
        monkeypatch.setenv("NO_PROXY", "127.0.0.1")
        async with sandbox.session(transport="httpx") as session, session.stream():
            pass
        monkeypatch.delenv("NO_PROXY")
        async with sandbox.session(transport="httpx", trust_env=False) as session, session.stream():
            pass
    assert counted.tunnels == 1  # NO_PROXY and trust_env=False connected directly


async def test_a_proxy_that_refuses_the_tunnel_is_a_stream_error_without_the_url(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tanx_async import StreamError

    async def refuse(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b"HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(refuse, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    monkeypatch.setenv("HTTP_PROXY", f"http://user:s3cret@127.0.0.1:{port}")
    try:
        async with sandbox.session(transport="httpx") as session:
            with pytest.raises(StreamError) as caught:
                async with session.stream(max_reconnects=1) as events:
                    async for _ in events:
                        pass
    finally:
        server.close()
        await server.wait_closed()
    text = f"{caught.value!r} {caught.value}"
    assert "s3cret" not in text and sandbox.access not in text
