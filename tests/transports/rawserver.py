"""A scripted HTTP/1.1 server on a loopback socket, for tests that need bytes no well-behaved
server sends (a stray answer on an idle connection, an answer trickled a byte at a time).

It runs in threads, so asyncio and trio clients alike talk to it. Each request read (head up to
the blank line, then ``Content-Length`` bytes) is handed to the script with a ``send`` for raw
bytes and ``close`` for the connection; requests of one connection are handled in order, in that
connection's thread. Everything is bounded: sockets time out every 0.1 s to see ``stop``, threads
are joined on exit.
"""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import anyio
import attrs
import pytest

from tanx_async import AsyncTanxSession
from tests.conftest import make_jwt
from tests.internals import (
    AnyioSender,
    Http11Sender,
    HttpxSender,
    TransportName,
    start_transport,
    use_anyio_transport,
)


@attrs.define
class Request:
    """One request as the server read it."""

    #: Which connection it came on (0: the first accepted) and its place overall (0: the first).
    connection: int
    index: int
    method: str
    target: str
    body: bytes
    send: Callable[[bytes], None] = attrs.field(repr=False)
    close: Callable[[], None] = attrs.field(repr=False)
    #: Set when the server stops: a script that waits should wait on it.
    stop: threading.Event = attrs.field(repr=False)


Script = Callable[[Request], None]


def answer(status: int, body: bytes, *, reason: str = "X", extra: str = "") -> bytes:
    """A complete answer with ``Content-Length``."""
    return f"HTTP/1.1 {status} {reason}\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


class RawServer:
    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.requests: list[Request] = []
        self.errors: list[BaseException] = []
        self.connections = 0
        self.stop = threading.Event()
        self._lock = threading.Lock()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.1)
        self.port: int = self._listener.getsockname()[1]
        self.url = f"{'https' if tls else 'http'}://127.0.0.1:{self.port}"
        self._threads: list[threading.Thread] = []

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                number = self.connections
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock, number), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, number: int) -> None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if self.tls is not None:
            sock.settimeout(5)
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)  # (each send: its own record)
            except OSError:
                sock.close()
                return
        sock.settimeout(0.1)
        closed = threading.Event()

        def send(data: bytes) -> None:
            if not closed.is_set():
                sock.sendall(data)

        def close() -> None:
            """Close the connection (our end's FIN now, before the script goes on)."""
            closed.set()
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_WR)

        buf = b""
        try:
            with sock:
                while not self.stop.is_set() and not closed.is_set():
                    if b"\r\n\r\n" not in buf:
                        data = self._recv(sock)
                        if data is None:
                            continue
                        if not data:
                            return
                        buf += data
                        continue
                    head, _, buf = buf.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    method, target, _ = lines[0].split(" ", 2)
                    length = 0
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        if name.strip().lower() == "content-length":
                            length = int(value)
                    while len(buf) < length and not self.stop.is_set():
                        data = self._recv(sock)
                        if data == b"":
                            return
                        buf += data or b""
                    body, buf = buf[:length], buf[length:]
                    with self._lock:
                        request = Request(
                            number, len(self.requests), method, target, body, send, close, self.stop
                        )
                        self.requests.append(request)
                    self.script(request)
        except OSError:
            return  # the client went away
        except BaseException as exc:  # a failing script: the test says so
            self.errors.append(exc)

    @staticmethod
    def _recv(sock: socket.socket) -> bytes | None:
        """What arrived (b"" at the end), or None after 0.1 s of nothing."""
        try:
            return sock.recv(65536)
        except TimeoutError:
            return None
        except ssl.SSLWantReadError:
            return None

    def __enter__(self) -> RawServer:
        thread = threading.Thread(target=self._accept, daemon=True)
        self._threads.append(thread)
        thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self._listener.close()
        for thread in list(self._threads):
            thread.join(timeout=5)
        assert not self.errors, self.errors


@contextlib.contextmanager
def raw_server(script: Script, tls: ssl.SSLContext | None = None) -> Iterator[RawServer]:
    """A ``RawServer`` running ``script`` (over TLS with ``tls``, a server context)."""
    with RawServer(script, tls) as server:
        yield server


#: Every transport that pools connections, and the event loop it runs on: the built-in one on
#: asyncio (its batch fast path, and a task per request), on anyio streams (the default under
#: trio; under asyncio too), and httpx.
POOLING = [
    ("native", "asyncio"),
    ("native-tasks", "asyncio"),
    ("anyio", "asyncio"),
    ("anyio", "trio"),
    ("httpx", "asyncio"),
    ("httpx", "trio"),
]


@contextlib.asynccontextmanager
async def raw_session(
    transport: str, backend: str, url: str, **kwargs: Any
) -> AsyncIterator[AsyncTanxSession]:
    """A session on ``url`` over ``transport`` (a pair of ``POOLING``) on the running loop."""
    kwargs.setdefault("access_token", make_jwt(time.time() + 3600))
    name: TransportName = "httpx" if transport == "httpx" else "auto"
    async with AsyncTanxSession(base_url=url, transport=name, **kwargs) as session:
        if transport == "native-tasks":
            session._pipeline.immediate_enabled = False
        if transport == "anyio" and backend == "asyncio":
            await use_anyio_transport(session)
        sender = start_transport(session)
        expected = {"httpx": HttpxSender, "anyio": AnyioSender}.get(transport, Http11Sender)
        assert isinstance(sender, expected), sender
        yield session


def run(backend: str, main: Callable[[], Awaitable[None]]) -> None:
    """``main`` on a new event loop of ``backend`` (asyncio or trio)."""
    if backend == "trio":
        pytest.importorskip("trio")
    anyio.run(main, backend=backend)
