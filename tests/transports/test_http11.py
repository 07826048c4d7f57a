"""The native HTTP/1.1 transport (``_transports/native.py`` and the modules it names): parsing, framing, pooling, timeouts.

Parsing is checked by feeding a connection's protocol directly (every byte split hypothesis can
think of); pooling, keep-alive and timeouts over a real loopback socket with a scripted server.
The sandbox's socket faults run against this transport too (tests/engine/test_faults.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import socket
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanx_async import APIConnectionError, APITimeoutError, ResponseTooLargeError
from tests.conftest import until
from tests.internals import (
    Headers,
    Http11Sender,
    Pacer,
    RawResponse,
    _Connection,
    _Deadlines,
    _idle_timeout,
    _Origin,
    httpx,
    request_head,
)

URL = "http://127.0.0.1:9/sapi/v1/orders/cancel/"
TIMEOUT = httpx.Timeout(connect=2.0, read=2.0, write=2.0, pool=2.0)
CAP = 1 << 20


# --- the protocol, fed by hand ---------------------------------------------------------------


class FakeTransport(asyncio.Transport):
    def __init__(self) -> None:
        super().__init__()
        self.written: list[bytes] = []
        self.closing = False

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.written.append(bytes(data))

    def is_closing(self) -> bool:
        return self.closing

    def abort(self) -> None:
        self.closing = True

    def close(self) -> None:
        self.closing = True


async def feed(
    pieces: list[bytes], *, method: str = "POST", eof: bool = False, cap: int = CAP, wait: float = 1.0
) -> tuple[RawResponse, _Connection]:
    loop = asyncio.get_running_loop()
    conn = _Connection(loop, cap)
    transport = FakeTransport()
    conn.connection_made(transport)
    task = asyncio.ensure_future(conn.request(b"REQUEST", method, URL, 5.0))
    await asyncio.sleep(0)
    assert transport.written == [b"REQUEST"]
    for piece in pieces:
        conn.data_received(piece)
    if eof:
        conn.eof_received()
        conn.connection_lost(None)
    return await asyncio.wait_for(task, wait), conn


def chunked(body: bytes, sizes: list[int]) -> bytes:
    out, i = b"", 0
    for size in sizes:
        if i >= len(body):
            break
        part = body[i : i + max(1, size)]
        out += f"{len(part):x};ext=1\r\n".encode() + part + b"\r\n"
        i += len(part)
    if i < len(body):
        out += f"{len(body) - i:X}\r\n".encode() + body[i:] + b"\r\n"
    return out + b"0\r\nx-trailer: 1\r\n\r\n"


def encode(body: bytes, coding: str) -> bytes:
    if coding == "gzip":
        return gzip.compress(body)
    if coding == "deflate":
        return zlib.compress(body)
    if coding == "raw-deflate":
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        return c.compress(body) + c.flush()
    return body


def split(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts})
    pieces, last = [], 0
    for p in [*points, len(data)]:
        pieces.append(data[last:p])
        last = p
    return [p for p in pieces if p]


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    status=st.sampled_from([200, 201, 400, 401, 404, 429, 500, 503]),
    body=st.binary(max_size=3000),
    framing=st.sampled_from(["length", "chunked", "close"]),
    coding=st.sampled_from(["identity", "gzip", "deflate", "raw-deflate", None]),
    interim=st.booleans(),
    http10=st.booleans(),
    extra=st.dictionaries(
        st.from_regex(r"x-[a-z0-9-]{1,12}", fullmatch=True),
        st.from_regex(r"[ -~]{0,40}", fullmatch=True).map(str.strip),
        max_size=4,
    ),
    sizes=st.lists(st.integers(1, 700), max_size=8),
    cuts=st.lists(st.integers(0, 10_000), max_size=12),
)
def test_any_well_formed_answer_split_anywhere_parses(
    status: int,
    body: bytes,
    framing: str,
    coding: str | None,
    interim: bool,
    http10: bool,
    extra: dict[str, str],
    sizes: list[int],
    cuts: list[int],
) -> None:
    wire_body = encode(body, coding or "identity")
    version = b"HTTP/1.0" if http10 and framing != "chunked" else b"HTTP/1.1"
    head = version + f" {status} Whatever Reason\r\n".encode()
    for name, value in extra.items():
        head += f"{name.upper() if len(name) % 2 else name}:  {value}\r\n".encode()
    if coding is not None:
        head += f"Content-Encoding: {coding.replace('raw-', '')}\r\n".encode()
    if framing == "length":
        head += f"Content-Length: {len(wire_body)}\r\n".encode()
        payload = wire_body
    elif framing == "chunked":
        head += b"Transfer-Encoding: chunked\r\n"
        payload = chunked(wire_body, sizes)
    else:
        payload = wire_body
    data = (b"HTTP/1.1 100 Continue\r\n\r\n" if interim else b"") + head + b"\r\n" + payload

    raw, conn = asyncio.run(feed(split(data, cuts), eof=framing == "close"))
    assert raw.status == status
    assert raw.content == body
    for name, value in extra.items():
        assert raw.headers[name] == value
    assert "content-encoding" not in raw.headers or coding == "identity"
    assert conn.keep_alive is (framing != "close" and version == b"HTTP/1.1")


@settings(max_examples=300, deadline=None, database=None)
@given(data=st.binary(max_size=400), cuts=st.lists(st.integers(0, 500), max_size=6), eof=st.booleans())
def test_garbage_is_an_api_connection_error_or_an_answer_never_a_crash(
    data: bytes, cuts: list[int], eof: bool
) -> None:
    async def run() -> None:
        error: APIConnectionError | None = None
        raw: RawResponse | None = None
        try:
            raw, _ = await feed(split(b"HTTP/1.1 " + data, cuts), eof=eof, wait=1.0 if eof else 0.001)
        except APIConnectionError as exc:
            error = exc
        except asyncio.TimeoutError:
            # Still waiting is right only while the stream is open.
            assert not eof, "the answer neither completed nor failed at end of stream"
            return
        if error is not None:
            assert error.maybe_processed is True
        else:
            assert raw is not None
            assert 200 <= raw.status <= 999

    asyncio.run(run())


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"HTTP/2 200 OK\r\n\r\n", "Expected dot"),
        (b"HTTP/1.1 2x0 OK\r\n\r\n", "Invalid status code"),
        (b"ICY 200 OK\r\n\r\n", "bad status line"),
        (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "Invalid header token"),
        (b"HTTP/1.1 200 OK\r\nA: 1\r\n folded\r\n\r\n", "Unexpected whitespace"),
        (b"HTTP/1.1 200 OK\r\nName : 1\r\n\r\n", "Invalid header token"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5, 6\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", "Content-Length"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", "unsupported transfer-encoding"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabc\r\n", "after chunk data"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 1\r\n\r\nx", "content-encoding"),
        (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 3\r\n\r\nabc", "cannot decode"),
        (b"HTTP/1.1 101 Switching Protocols\r\n\r\n", "101"),
        (b"HTTP/1.1 200 OK\r\n" + b"x-pad: " + b"a" * 70_000, "headers longer"),
    ],
)
async def test_malformed_answers_fail_clearly_and_close_the_connection(data: bytes, why: str) -> None:
    with pytest.raises(APIConnectionError) as got:
        await feed([data], eof=True)
    assert why in str(got.value)
    assert got.value.maybe_processed is True


@pytest.mark.parametrize(
    "data",
    [
        b"HTTP/1.1 200 OK\r\nContent-Length: 2000\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7d0\r\n" + b"a" * 2000,
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3e8\r\n"
        + b"a" * 1000
        + b"\r\n3e8\r\n"
        + b"a" * 1000,
        b"HTTP/1.1 200 OK\r\n\r\n" + b"a" * 2000,
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gzip.compress(b"a" * 100_000),
    ],
    ids=["declared", "chunk-declared", "chunks", "until-close", "gzip-bomb"],
)
async def test_bodies_over_the_cap_are_refused(data: bytes) -> None:
    with pytest.raises(ResponseTooLargeError) as got:
        await feed([data], eof=True, cap=1024)
    assert got.value.maybe_processed is True


async def test_a_connection_lost_before_writing_says_nothing_was_sent() -> None:
    conn = _Connection(asyncio.get_running_loop(), CAP)
    transport = FakeTransport()
    conn.connection_made(transport)
    conn.connection_lost(ConnectionResetError())
    with pytest.raises(APIConnectionError) as got:
        await conn.request(b"REQUEST", "POST", URL, 5.0)
    assert got.value.maybe_processed is False
    assert transport.written == []


async def test_an_answer_held_by_the_pacer_stands_when_the_connection_then_fails() -> None:
    """Two answers complete in one iteration with room for one: the second is held. The
    connection it came on is then lost (and a read timeout would be due): the held answer is
    still handed over, whole, in the next iteration; nothing turns it into an error."""
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=1)
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
    conns, tasks = [], []
    for _ in range(2):
        conn = _Connection(loop, CAP)
        conn.pacer = pacer
        conn.connection_made(FakeTransport())
        conns.append(conn)
        tasks.append(asyncio.ensure_future(conn.request(b"REQUEST", "POST", URL, 5.0)))
    await asyncio.sleep(0)
    for conn in conns:
        conn.data_received(answer)
    assert tasks[0].done() is False and len(pacer) == 1  # the second answer is held
    conns[1].connection_lost(ConnectionResetError())
    conns[1].on_timeout(5.0)
    first, second = await asyncio.wait_for(asyncio.gather(*tasks), 1.0)
    assert (first.status, first.content) == (200, b"ok")
    assert (second.status, second.content) == (200, b"ok")
    assert conns[1].keep_alive is False and conns[1].closed is True  # never pooled again


async def test_no_body_for_head_204_and_304() -> None:
    raw, conn = await feed([b"HTTP/1.1 204 No Content\r\nContent-Length: 10\r\n\r\n"])
    assert (raw.status, raw.content, conn.keep_alive) == (204, b"", True)
    raw, conn = await feed([b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n"], method="HEAD")
    assert (raw.status, raw.content, conn.keep_alive) == (200, b"", True)


async def test_bytes_beyond_the_body_make_the_connection_unusable() -> None:
    raw, conn = await feed([b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokEXTRA"])
    assert raw.content == b"ok"
    assert conn.keep_alive is False
    assert conn.closed is True


async def test_connection_close_and_http10_are_not_kept() -> None:
    _, conn = await feed([b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"])
    assert conn.keep_alive is False
    _, conn = await feed([b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"])
    assert conn.keep_alive is False
    _, conn = await feed([b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"])
    assert conn.keep_alive is True


async def test_repeated_headers_are_joined_and_names_are_lowercase() -> None:
    raw, _ = await feed(
        [b"HTTP/1.1 429 Too Many\r\nRetry-After: 2\r\nX-A: 1\r\nx-a: 2\r\nContent-Length: 0\r\n\r\n"]
    )
    assert raw.headers == {"retry-after": "2", "x-a": "1, 2", "content-length": "0"}
    assert raw.to_httpx().headers["Retry-After"] == "2"


async def test_header_names_are_lowercase_whether_or_not_the_name_cache_has_room(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Names are looked up in a bounded cache of the names servers send; a full cache changes
    nothing but the cost."""
    from tests.internals import http11_module

    monkeypatch.setattr(http11_module, "_NAMES", {})
    monkeypatch.setattr(http11_module, "_NAMES_SIZE", 2)
    answer = b"HTTP/1.1 200 OK\r\nX-One: 1\r\nX-TWO: 2\r\nx-Three: 3\r\nContent-Length: 0\r\n\r\n"
    for _ in range(2):
        raw, _ = await feed([answer])
        assert raw.headers == {"x-one": "1", "x-two": "2", "x-three": "3", "content-length": "0"}
    assert http11_module._NAMES == {b"X-One": "x-one", b"X-TWO": "x-two"}


@pytest.mark.parametrize(
    ("url", "host", "port", "host_header", "target", "tls"),
    [
        ("https://api.tanx.fi", "api.tanx.fi", 443, "api.tanx.fi", "/", True),
        ("https://api.tanx.fi:443/a/b/?x=1&y=2", "api.tanx.fi", 443, "api.tanx.fi", "/a/b/?x=1&y=2", True),
        ("http://127.0.0.1:8080/p", "127.0.0.1", 8080, "127.0.0.1:8080", "/p", False),
        ("http://localhost:80/", "localhost", 80, "localhost", "/", False),
        ("http://[::1]:9000/x", "::1", 9000, "[::1]:9000", "/x", False),
        ("https://[::1]/x", "::1", 443, "[::1]", "/x", True),
        ("HTTPS://user:pw@Example.com/", "example.com", 443, "Example.com", "/", True),
    ],
)
def test_origins(url: str, host: str, port: int, host_header: str, target: str, tls: bool) -> None:
    origin = _Origin(url)
    assert (origin.host, origin.port, origin.host_header, origin.target, origin.tls) == (
        host,
        port,
        host_header,
        target,
        tls,
    )


@pytest.mark.parametrize(
    "url", ["ftp://h/x", "http:///x", "http://h:99999/", "http://h/a b", "http://h/é", "http://h/\r\nX: 1"]
)
def test_unusable_urls_are_refused_before_sending(url: str) -> None:
    with pytest.raises(APIConnectionError) as got:
        _Origin(url)
    assert got.value.maybe_processed is False
    assert "invalid URL" in str(got.value)


# --- over a loopback socket ------------------------------------------------------------------

Handler = Callable[[bytes, asyncio.StreamWriter], Awaitable[None]]


class Script:
    """A loopback HTTP/1.1 server answering each request through ``handler``; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.tasks: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.open = 0
        self.max_open = 0
        self.requests: list[bytes] = []
        self.port = 0

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        self.open += 1
        self.max_open = max(self.max_open, self.open)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                body = await reader.readexactly(length)
                self.requests.append(head + body)
                await self.handler(head + body, writer)
                if writer.is_closing():
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            pass  # the test is over (a task of this server, not of the code under test)
        finally:
            self.open -= 1
            writer.close()


def ok(body: bytes = b'{"status":"success"}', extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + extra + f"Content-Length: {len(body)}\r\n\r\n".encode() + body


async def answer_ok(request: bytes, writer: asyncio.StreamWriter) -> None:
    writer.write(ok())


async def answer_slowly(request: bytes, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(0.01)
    writer.write(ok())


@asynccontextmanager
async def scripted(
    handler: Handler = answer_ok, **limits: Any
) -> AsyncIterator[tuple[Script, Http11Sender, str]]:
    script = Script(handler)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    sender = Http11Sender(
        limits=httpx.Limits(**{"max_connections": 8, "max_keepalive_connections": 8, **limits}),
        verify=True,
        max_response_bytes=CAP,
    )
    try:
        yield script, sender, f"http://127.0.0.1:{script.port}/sapi/v1/orders/cancel/?a=1"
    finally:
        await sender.aclose()
        server.close()
        for task in script.tasks:
            task.cancel()
        await asyncio.gather(*script.tasks, return_exceptions=True)
        await server.wait_closed()
    assert sender.connections_in_use() == 0


HEADERS = {"Authorization": "JWT abc", "Content-Type": "application/json"}


async def test_the_request_on_the_wire() -> None:
    async with scripted() as (script, sender, url):
        raw = await sender.send("POST", url, HEADERS, b'{"order_id":1}', TIMEOUT)
        assert raw.status == 200
        assert raw.content == b'{"status":"success"}'
        await sender.send("GET", url, {"Authorization": "JWT abc"}, None, TIMEOUT)
        await sender.send("DELETE", url, {}, None, TIMEOUT)
    post, get, delete = script.requests
    assert post == (
        b"POST /sapi/v1/orders/cancel/?a=1 HTTP/1.1\r\n"
        + f"Host: 127.0.0.1:{script.port}\r\n".encode()
        + b"Authorization: JWT abc\r\nContent-Type: application/json\r\n"
        + b'Accept-Encoding: gzip, deflate\r\nContent-Length: 14\r\n\r\n{"order_id":1}'
    )
    assert get.endswith(b"Accept-Encoding: gzip, deflate\r\n\r\n")
    assert get.startswith(b"GET /sapi/v1/orders/cancel/?a=1 HTTP/1.1\r\n")
    assert b"Content-Length" not in get
    assert b"Content-Length" not in delete
    assert script.connections == 1  # kept alive across all three


async def test_post_without_a_body_says_content_length_zero() -> None:
    async with scripted() as (script, sender, url):
        await sender.send("POST", url, {}, None, TIMEOUT)
    assert b"\r\nContent-Length: 0\r\n" in script.requests[0]


@pytest.mark.parametrize(
    "headers",
    [
        {"Authorization": "JWT a\r\nX-Evil: 1"},
        {"Authorization": "JWT a\nb"},
        {"X\r\n": "1"},
        {"A": "\0"},
        {"A": "€"},
    ],
)
async def test_unsafe_headers_are_refused_before_anything_is_sent(headers: dict[str, str]) -> None:
    async with scripted() as (script, sender, url):
        with pytest.raises(APIConnectionError) as got:
            await sender.send("POST", url, headers, b"{}", TIMEOUT)
        assert got.value.maybe_processed is False
        assert "JWT" not in str(got.value)  # the value (a token) is never echoed
    assert script.connections == 0


async def test_server_closing_an_idle_connection_is_not_an_error() -> None:
    async def answer_then_close(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok())
        await writer.drain()
        writer.close()

    async with scripted(answer_then_close) as (script, sender, url):
        for _ in range(3):
            assert (await sender.send("GET", url, {}, None, TIMEOUT)).status == 200
            await asyncio.sleep(0.02)  # the FIN arrives while the connection is idle
    assert script.connections == 3


async def test_connection_close_header_opens_a_new_connection() -> None:
    async def answer_close(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(extra=b"Connection: close\r\n"))

    async with scripted(answer_close) as (script, sender, url):
        for _ in range(3):
            assert (await sender.send("GET", url, {}, None, TIMEOUT)).status == 200
    assert script.connections == 3


async def test_idle_connections_expire() -> None:
    async with scripted(keepalive_expiry=0.5) as (script, sender, url):
        await sender.send("GET", url, {}, None, TIMEOUT)
        await sender.send("GET", url, {}, None, TIMEOUT)
        assert script.connections == 1
        await asyncio.sleep(1.0)
        await sender.send("GET", url, {}, None, TIMEOUT)
        assert script.connections == 2


async def test_the_pool_never_opens_more_than_max_connections() -> None:
    async with scripted(answer_slowly, max_connections=3, max_keepalive_connections=3) as (
        script,
        sender,
        url,
    ):
        results = await asyncio.gather(*(sender.send("GET", url, {}, None, TIMEOUT) for _ in range(30)))
        assert [r.status for r in results] == [200] * 30
    assert script.max_open == 3
    assert script.connections == 3


async def test_only_max_keepalive_connections_stay_idle() -> None:
    async with scripted(answer_slowly, max_connections=4, max_keepalive_connections=1) as (
        _script,
        sender,
        url,
    ):
        await asyncio.gather(*(sender.send("GET", url, {}, None, TIMEOUT) for _ in range(4)))
        assert sum(len(v) for v in sender._idle.values()) == 1


async def test_the_servers_keep_alive_timeout_is_respected() -> None:
    async def short_idle(request: bytes, writer: asyncio.StreamWriter) -> None:
        writer.write(ok(extra=b"Keep-Alive: timeout=1.3, max=100\r\n"))

    async with scripted(short_idle) as (script, sender, url):
        await sender.send("GET", url, {}, None, TIMEOUT)
        await sender.send("GET", url, {}, None, TIMEOUT)  # within 1.3 s - 1 s margin
        assert script.connections == 1
        await asyncio.sleep(0.4)  # past the server's timeout minus our margin
        await sender.send("GET", url, {}, None, TIMEOUT)
        assert script.connections == 2


@pytest.mark.parametrize(
    ("hint", "seconds"),
    [
        ("timeout=5", 5.0),
        ("timeout=5, max=1000", 5.0),
        ('max=3, Timeout="2.5"', 2.5),
        ("max=3", None),
        ("timeout=x", None),
        ("timeout=-1", None),
        ("timeout=nan", None),
    ],
)
def test_keep_alive_hints(hint: str, seconds: float | None) -> None:
    assert _idle_timeout(hint) == seconds


async def test_a_freed_connection_goes_to_the_longest_waiter_not_a_newcomer() -> None:
    """A newcomer scheduled just before a connection is released must queue behind the request
    that was already waiting (otherwise waiters can starve into pool timeouts under load)."""
    served: list[bytes] = []

    async def record(request: bytes, writer: asyncio.StreamWriter) -> None:
        served.append(request.split(b"X-Who: ")[1].split(b"\r\n")[0])
        writer.write(ok())

    async with scripted(record, max_connections=1) as (_script, sender, url):
        origin = _Origin(url)
        held = await sender._acquire(origin, TIMEOUT)  # the pool is now full
        waiter = asyncio.ensure_future(sender.send("GET", url, {"X-Who": "waiter"}, None, TIMEOUT))
        await asyncio.sleep(0.01)
        assert len(sender._waiters) == 1
        newcomer = asyncio.ensure_future(sender.send("GET", url, {"X-Who": "newcomer"}, None, TIMEOUT))
        sender._release(origin.key, held)  # in the same step: the newcomer runs first
        await asyncio.gather(waiter, newcomer)
    assert served == [b"waiter", b"newcomer"]


@pytest.mark.parametrize("reusable", [True, False])
async def test_a_waiter_cancelled_after_being_handed_a_connection_passes_it_on(reusable: bool) -> None:
    async with scripted(max_connections=1) as (script, sender, url):
        origin = _Origin(url)
        held = await sender._acquire(origin, TIMEOUT)
        held.keep_alive = reusable  # reusable: the connection itself is handed over; else its slot
        first = asyncio.ensure_future(sender.send("GET", url, {}, None, TIMEOUT))
        second = asyncio.ensure_future(sender.send("GET", url, {}, None, TIMEOUT))
        await asyncio.sleep(0.01)
        assert len(sender._waiters) == 2
        sender._release(origin.key, held)  # handed to ``first``...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        assert (await second).status == 200
        assert sender.connections_in_use() == 0
        assert sender._open == 1  # exactly the one kept-alive connection
        assert (await sender.send("GET", url, {}, None, TIMEOUT)).status == 200
    assert len(script.requests) == 2


async def test_pool_timeout_says_nothing_was_sent() -> None:
    release = asyncio.Event()

    async def held(request: bytes, writer: asyncio.StreamWriter) -> None:
        await release.wait()
        writer.write(ok())

    async with scripted(held, max_connections=1) as (script, sender, url):
        first = asyncio.ensure_future(sender.send("GET", url, {}, None, TIMEOUT))
        await asyncio.sleep(0.02)
        short = httpx.Timeout(2.0, pool=0.05)
        with pytest.raises(APITimeoutError) as got:
            await sender.send("GET", url, {}, None, short)
        assert got.value.maybe_processed is False
        assert "pool timeout" in str(got.value)
        release.set()
        assert (await first).status == 200
        assert len(script.requests) == 1


async def test_read_timeout_closes_the_connection() -> None:
    calls = 0

    async def first_stalls(request: bytes, writer: asyncio.StreamWriter) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            await asyncio.sleep(1)
        writer.write(ok())

    async with scripted(first_stalls) as (script, sender, url):
        with pytest.raises(APITimeoutError) as got:
            await sender.send("POST", url, {}, b"{}", httpx.Timeout(2.0, read=0.05))
        assert got.value.maybe_processed is True
        assert sender.connections_in_use() == 0
        assert (await sender.send("POST", url, {}, b"{}", TIMEOUT)).status == 200
    assert script.connections == 2


async def test_read_timeouts_of_concurrent_requests_each_fire_for_their_own_request() -> None:
    # One timer serves every request in flight: the later deadline must still fire after the
    # earlier one did, an answered request must never be failed, and each error names its own
    # timeout.
    async def by_body(request: bytes, writer: asyncio.StreamWriter) -> None:
        if b'"stall"' in request:
            await asyncio.sleep(1)
        writer.write(ok())

    async with scripted(by_body) as (_, sender, url):
        results = await asyncio.gather(
            sender.send("POST", url, {}, b'{"stall":1}', httpx.Timeout(2.0, read=0.3)),
            sender.send("POST", url, {}, b'{"stall":2}', httpx.Timeout(2.0, read=0.1)),
            sender.send("POST", url, {}, b"{}", httpx.Timeout(2.0, read=0.2)),
            return_exceptions=True,
        )
        slow, fast, answered = results
        assert isinstance(slow, APITimeoutError) and "within 0.3 s" in str(slow)
        assert isinstance(fast, APITimeoutError) and "within 0.1 s" in str(fast)
        assert isinstance(answered, RawResponse) and answered.status == 200
        assert sender.connections_in_use() == 0


async def test_refused_connection_was_never_sent() -> None:
    server = await asyncio.start_server(lambda r, w: None, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    server.close()
    await server.wait_closed()
    sender = Http11Sender(limits=httpx.Limits(), verify=True, max_response_bytes=CAP)
    try:
        with pytest.raises(APIConnectionError) as got:
            await sender.send("POST", f"http://127.0.0.1:{port}/", {}, b"{}", TIMEOUT)
        assert got.value.maybe_processed is False
        assert "could not connect" in str(got.value)
    finally:
        await sender.aclose()
    assert sender.connections_in_use() == 0
    assert sender._open == 0


async def test_cancelling_a_request_in_flight_closes_its_connection() -> None:
    async def never_the_first(request: bytes, writer: asyncio.StreamWriter) -> None:
        if len(script.requests) == 1:
            await asyncio.sleep(5)
        writer.write(ok())

    async with scripted(never_the_first) as (script, sender, url):
        task = asyncio.ensure_future(sender.send("POST", url, {}, b"{}", TIMEOUT))
        await until(lambda: len(script.requests) == 1)  # in flight: the server has it
        assert len(script.requests) == 1
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert sender.connections_in_use() == 0
        assert sender._open == 0
        assert (await sender.send("GET", url, {}, None, TIMEOUT)).status == 200


async def test_aclose_fails_requests_in_flight_as_maybe_processed() -> None:
    async def never(request: bytes, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(5)

    async with scripted(never) as (script, sender, url):
        tasks = [asyncio.ensure_future(sender.send("POST", url, {}, b"{}", TIMEOUT)) for _ in range(3)]
        await until(lambda: len(script.requests) == 3)  # all three written
        assert len(script.requests) == 3
        await sender.aclose()
        results = await asyncio.gather(*tasks, return_exceptions=True)
        assert all(isinstance(r, APIConnectionError) and r.maybe_processed for r in results), results
        with pytest.raises(APIConnectionError) as got:
            await sender.send("POST", url, {}, b"{}", TIMEOUT)
        assert got.value.maybe_processed is False


async def test_gzip_answer_over_the_socket() -> None:
    body = b'{"status":"success","payload":' + b'"x"' * 0 + b'"' + b"a" * 5000 + b'"}'

    async def gz(request: bytes, writer: asyncio.StreamWriter) -> None:
        assert b"Accept-Encoding: gzip, deflate" in request
        writer.write(ok(gzip.compress(body), extra=b"Content-Encoding: gzip\r\n"))

    async with scripted(gz) as (_script, sender, url):
        raw = await sender.send("GET", url, {}, None, TIMEOUT)
    assert raw.content == body
    assert "content-encoding" not in raw.headers
    assert raw.to_httpx().json()["status"] == "success"


async def test_interoperates_with_aiohttp_servers_chunked_and_compressed_answers() -> None:
    """An independent server implementation: chunked streaming and gzip, on one kept-alive socket."""
    web = pytest.importorskip("aiohttp.web")
    body = b'{"status":"success","payload":[' + b",".join(b'{"id":%d}' % i for i in range(2000)) + b"]}"

    async def streamed(request: Any) -> Any:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.enable_compression()  # gzip or deflate, as our Accept-Encoding allows
        await response.prepare(request)
        for i in range(0, len(body), 1000):
            await response.write(body[i : i + 1000])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/stream", streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]
    sender = Http11Sender(limits=httpx.Limits(), verify=True, max_response_bytes=CAP)
    try:
        for _ in range(3):
            raw = await sender.send("GET", f"http://127.0.0.1:{port}/stream", {}, None, TIMEOUT)
            assert raw.status == 200
            assert raw.content == body
            assert raw.headers["transfer-encoding"] == "chunked"
            assert "content-encoding" not in raw.headers  # decoded
        assert sender._open == 1  # chunked answers keep the connection alive
    finally:
        await sender.aclose()
        await runner.cleanup()


async def test_happy_eyeballs_moves_past_an_address_that_black_holes(monkeypatch: pytest.MonkeyPatch) -> None:
    """The first address swallows SYNs (a full accept queue on loopback: the kernel drops them,
    as a dead IPv6 route would); the second answers. We connect within the race delay, not the
    connect timeout."""
    black_hole = socket.socket()
    black_hole.bind(("127.0.0.1", 0))
    black_hole.listen(0)
    hole_port = black_hole.getsockname()[1]
    fillers = []
    for _ in range(4):  # fill the accept queue (never accepted)
        s = socket.socket()
        s.setblocking(False)
        with contextlib.suppress(BlockingIOError):
            s.connect(("127.0.0.1", hole_port))
        fillers.append(s)
    await asyncio.sleep(0.05)
    try:
        async with scripted() as (script, sender, _url):
            loop = asyncio.get_running_loop()

            async def two_addresses(host: str, port: int, **kwargs: Any) -> list[Any]:
                assert host == "exchange.test"
                tcp = (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "")
                return [(*tcp, ("127.0.0.1", hole_port)), (*tcp, ("127.0.0.1", script.port))]

            monkeypatch.setattr(loop, "getaddrinfo", two_addresses)
            # Waiting the black hole out would take the 30 s connect timeout; the race takes the
            # race delay (0.25 s). The bound between them is loose on purpose: a loaded machine.
            timeout = httpx.Timeout(connect=30.0, read=2.0, write=2.0, pool=2.0)
            url = f"http://exchange.test:{script.port}/x"
            try:
                raw = await asyncio.wait_for(sender.send("GET", url, {}, None, timeout), 10)
            except asyncio.TimeoutError:
                pytest.fail("the black hole was waited out")
            assert raw.status == 200
            assert script.requests[0].startswith(b"GET /x HTTP/1.1\r\nHost: exchange.test:")
    finally:
        for s in fillers:
            s.close()
        black_hole.close()


@pytest.mark.parametrize(("size", "fits"), [(60_000, True), (70_000, False)])
@pytest.mark.parametrize("piece", [1000, 100_000])
async def test_the_head_cap_holds_whatever_the_reads(size: int, fits: bool, piece: int) -> None:
    """64 KiB of head: a 60 KB head passes in one read or in a hundred; a 70 KB one never."""
    data = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * size + b"\r\nContent-Length: 2\r\n\r\nok"
    pieces = [data[i : i + piece] for i in range(0, len(data), piece)]
    if fits:
        raw, _ = await feed(pieces)
        assert raw.content == b"ok"
    else:
        with pytest.raises(APIConnectionError, match="headers longer than 65536"):
            await feed(pieces)


async def test_read_timeouts_still_fire_after_arming_their_timer_failed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``Deadlines`` keeps one timer for every read timeout. If scheduling a new, earlier timer
    raises, the timer already armed stays (it used to be cancelled first, leaving no timer while
    ``_at`` still claimed one): the timeouts due fire, and later ones still arm."""
    loop = asyncio.get_running_loop()
    deadlines = _Deadlines(loop)
    fired: list[str] = []
    all_fired = asyncio.Event()

    class Conn:
        def __init__(self, name: str) -> None:
            self.name, self.deadline, self.read_timeout = name, 0.0, 0.0

        def on_timeout(self, seconds: float) -> None:
            fired.append(self.name)
            if len(fired) == 3:
                all_fired.set()

    now = loop.time()
    deadlines.add(Conn("late"), now + 0.2, 0.2)
    call_at = loop.call_at

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("no timer now")

    monkeypatch.setattr(loop, "call_at", refuse)
    with pytest.raises(RuntimeError):
        deadlines.add(Conn("early"), now + 0.05, 0.05)
    monkeypatch.setattr(loop, "call_at", call_at)
    deadlines.add(Conn("later"), now + 0.3, 0.3)
    with anyio.fail_after(5):
        await all_fired.wait()
    assert sorted(fired) == ["early", "late", "later"]
    deadlines.cancel()


def test_a_request_head_is_prepared_once_per_headers_value_and_kept_on_it() -> None:
    """The pipeline's ``Headers`` cannot change, so the head built from them for a method and
    URL is kept on them (no cache keyed by object identity); a plain mapping is built each time.
    Their repr names the fields, never a value (the token)."""
    headers = Headers({"Authorization": "JWT secret-token", "Content-Type": "application/json"})
    origin = _Origin(URL)
    head = request_head("POST", URL, origin, headers)
    assert head.startswith(b"POST /sapi/v1/orders/cancel/ HTTP/1.1\r\nHost: 127.0.0.1:9\r\n")
    assert b"Authorization: JWT secret-token\r\n" in head and head.endswith(b"Content-Length: ")
    assert headers.prepared == {("POST", URL): head}
    assert request_head("POST", URL, origin, headers) is head
    plain = {"Authorization": "JWT secret-token", "Content-Type": "application/json"}
    assert request_head("POST", URL, origin, plain) == head
    assert "secret-token" not in repr(headers)
    with pytest.raises(TypeError):
        headers["Authorization"] = "JWT other"  # type: ignore[index]
