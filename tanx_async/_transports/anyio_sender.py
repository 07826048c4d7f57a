"""``AnyioSender``: the built-in HTTP/1.1 client over anyio byte streams; the default under trio.

The same request bytes and the same answer parser as ``native.Http11Sender`` (the sans-IO
``_http11``, fed from ``stream.receive()`` instead of asyncio's ``data_received``), over
``anyio.connect_tcp`` (TCP, happy eyeballs, TLS through the standard
``ssl`` module), so trio gets the native client's CPU cost instead of httpx's pool. The pool is
simpler than the asyncio one: a LIFO list of idle connections per origin and a FIFO semaphore of
``max_connections`` slots (a freed connection closes and passes its slot on while requests
wait for one). Nothing reads an idle connection here, so before one is reused it is asked,
without waiting, whether anything arrived on it (``_StreamConnection.quiet``): if so, it is
closed, never handed the next request.

Timeouts: ``connect`` bounds TCP + TLS set-up, ``pool`` the wait for a slot, ``read`` the whole
exchange from the moment the request is handed to the stream. ``maybe_processed`` is honest as in
the asyncio client: only failures before the request was handed over say False.
"""

from __future__ import annotations

import select
import ssl
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING

import anyio
import anyio.abc
import anyio.streams.tls

from .. import _constants as C
from .._config import ssl_context as make_ssl_context
from .._duration import within
from .._errors import APIConnectionError, APITimeoutError
from ._http11 import Origin, ParseError, ResponseParser, request_bytes
from .base import RawResponse, idle_life, pool_closed, pool_sizes

if TYPE_CHECKING:
    from .._httpx import httpx

__all__ = ["AnyioSender"]

_URL_CACHE_SIZE = 256
_poll = getattr(select, "poll", None)
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError)


class _StreamConnection:
    """One keep-alive connection over an anyio byte stream, its answers read by the sans-IO
    parser."""

    __slots__ = ("closed", "idle_since", "parser", "stream")

    def __init__(self, stream: anyio.abc.ByteStream, cap: int) -> None:
        self.stream = stream
        self.closed = False
        self.idle_since = 0.0
        self.parser = ResponseParser(cap)

    def quiet(self) -> bool:
        """Nothing arrived while it sat idle, and the server has not closed it: it may carry a
        request. Asked without waiting and without reading: is the socket readable (a byte, the
        end of the stream or an error all make it so), and over TLS, does the TLS layer hold
        decrypted bytes. A byte nobody asked for (a stray second answer, a "408 idle" notice)
        would otherwise be read as the next request's answer."""
        stream = self.stream
        tls = stream.extra(anyio.streams.tls.TLSAttribute.ssl_object, None)
        if tls is not None and tls.pending():
            return False
        sock = stream.extra(anyio.abc.SocketAttribute.raw_socket, None)
        fd = sock.fileno() if sock is not None else -1
        if fd < 0:  # pragma: no cover - every stream we open is a live socket's
            return False
        if _poll is None:  # pragma: no cover - Windows
            readable, _, _ = select.select([fd], [], [], 0)
            return not readable
        poller = _poll()
        poller.register(fd, select.POLLIN)
        return not poller.poll(0)

    async def request(self, payload: bytes, method: str, url: str, read_timeout: float | None) -> RawResponse:
        parser = self.parser
        parser.start(method, url)
        sent = False
        answer: RawResponse | None = None
        try:
            with anyio.fail_after(read_timeout):
                try:
                    await self.stream.send(payload)
                    sent = True
                    while answer is None:
                        try:
                            data = await self.stream.receive()
                        except anyio.EndOfStream:
                            answer = parser.feed_eof()
                            self.closed = True
                            break
                        answer = parser.feed(data)
                except _STREAM_ERRORS as exc:
                    if not sent and not parser.received:
                        raise APIConnectionError(
                            f"the connection failed before the request was sent ({type(exc).__name__})",
                            maybe_processed=False,
                        ) from exc
                    answer = parser.feed_eof(exc)
                    self.closed = True
        except TimeoutError:
            self.closed = True
            raise APITimeoutError(
                f"no complete response{within(read_timeout)} (read timeout)", maybe_processed=True
            ) from None
        except ParseError as failure:
            self.closed = True
            raise failure.error from None
        except BaseException:
            self.closed = True  # cancelled mid-flight (or failed): never reused
            raise
        if not parser.keep_alive:
            self.closed = True
        return answer

    async def aclose(self) -> None:
        self.closed = True
        with anyio.CancelScope(shield=True):
            await anyio.aclose_forcefully(self.stream)


class AnyioSender:
    """The pool: idle connections per origin (LIFO), at most ``max_connections`` open."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: bool | ssl.SSLContext,
        max_response_bytes: int,
        trust_env: bool = True,
    ) -> None:
        self._cap = max_response_bytes
        self._verify = verify
        self._trust_env = trust_env
        self._ssl: ssl.SSLContext | None = None
        self._max, self._max_idle, self._expiry = pool_sizes(limits)
        self._slots = anyio.Semaphore(self._max) if self._max is not None else None
        self._idle: dict[tuple[str, str, int], list[_StreamConnection]] = {}
        self._busy: set[_StreamConnection] = set()
        self._origins: dict[str, Origin] = {}
        self._closed = False
        self._dead: list[_StreamConnection] = []  # expired idle connections, to close

    @property
    def closed(self) -> bool:
        return self._closed

    def connections_in_use(self) -> int:
        return len(self._busy)

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,  # noqa: ASYNC109 - the HTTP timeouts of the request
    ) -> RawResponse:
        if self._closed:
            raise pool_closed()
        origin = self._origins.get(url)
        if origin is None:
            origin = Origin(url)
            if len(self._origins) >= _URL_CACHE_SIZE:
                self._origins.clear()
            self._origins[url] = origin
        payload = request_bytes(method, url, origin, headers, content)
        conn = self._pop_idle(origin.key)
        if self._dead:
            await self._bury()
        if conn is None:
            conn = await self._connect(origin, timeout)
        self._busy.add(conn)
        try:
            return await conn.request(payload, method, url, timeout.read)
        finally:
            self._busy.discard(conn)
            await self._release(origin.key, conn)

    def _pop_idle(self, key: tuple[str, str, int]) -> _StreamConnection | None:
        idle = self._idle.get(key)
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            life = idle_life(self._expiry, conn.parser.server_idle)
            if conn.closed or now - conn.idle_since > life or not conn.quiet():
                self._dead.append(conn)
                continue
            return conn
        return None

    async def _connect(self, origin: Origin, timeout: httpx.Timeout) -> _StreamConnection:  # noqa: ASYNC109
        if self._slots is not None:
            try:
                with anyio.fail_after(timeout.pool):
                    await self._slots.acquire()
            except TimeoutError:
                raise APITimeoutError(
                    f"no free connection{within(timeout.pool)} (pool timeout)",
                    maybe_processed=False,
                ) from None
        try:
            if self._closed:
                raise pool_closed()
            context = self.ssl_context() if origin.tls else None
            try:
                with anyio.fail_after(timeout.connect):
                    stream: anyio.abc.ByteStream
                    if context is None:
                        stream = await anyio.connect_tcp(
                            origin.host, origin.port, happy_eyeballs_delay=C.HAPPY_EYEBALLS_DELAY
                        )
                    else:
                        stream = await anyio.connect_tcp(
                            origin.host,
                            origin.port,
                            ssl_context=context,
                            tls_hostname=origin.host,
                            tls_standard_compatible=False,
                            happy_eyeballs_delay=C.HAPPY_EYEBALLS_DELAY,
                        )
            except TimeoutError:
                raise APITimeoutError(
                    f"could not connect to {origin.host}:{origin.port}{within(timeout.connect)}",
                    maybe_processed=False,
                ) from None
            except (OSError, ssl.SSLError, anyio.BrokenResourceError) as exc:
                text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                raise APIConnectionError(
                    f"could not connect to {origin.host}:{origin.port}: {text}", maybe_processed=False
                ) from exc
        except BaseException:
            if self._slots is not None:
                self._slots.release()
            raise
        return _StreamConnection(stream, self._cap)

    async def _release(self, key: tuple[str, str, int], conn: _StreamConnection) -> None:
        waiting = self._slots is not None and self._slots.statistics().tasks_waiting > 0
        if conn.closed or self._closed or waiting:
            await self._close(conn)  # its slot goes to the longest waiter, if any
            return
        idle = self._idle.setdefault(key, [])
        if self._max_idle is not None and len(idle) >= self._max_idle:
            await self._close(conn)
            return
        conn.idle_since = time.monotonic()
        idle.append(conn)

    async def _bury(self) -> None:
        dead, self._dead = self._dead, []
        for conn in dead:
            await self._close(conn)

    async def _close(self, conn: _StreamConnection) -> None:
        try:
            await conn.aclose()
        except Exception:
            pass
        finally:
            if self._slots is not None:
                self._slots.release()

    async def aclose(self) -> None:
        """Close every connection; a request in flight fails (maybe processed)."""
        self._closed = True
        conns = [conn for idle in self._idle.values() for conn in idle]
        self._idle.clear()
        with anyio.CancelScope(shield=True):
            for conn in [*conns, *self._dead, *self._busy]:
                conn.closed = True
                await anyio.aclose_forcefully(conn.stream)
        self._dead = []

    def ssl_context(self) -> ssl.SSLContext:
        if self._ssl is None:
            self._ssl = make_ssl_context(self._verify, trust_env=self._trust_env)
        return self._ssl
