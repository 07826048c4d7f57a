"""``AnyioSender``: the built-in HTTP/1.1 client over anyio byte streams; the default under trio.

The same request bytes and the same answer parser as ``native.Http11Sender`` (its
``_Connection`` does the parsing, fed from ``stream.receive()`` instead of asyncio's
``data_received``), over ``anyio.connect_tcp`` (TCP, happy eyeballs, TLS through the standard
``ssl`` module), so trio gets the native client's CPU cost instead of httpx's pool. The pool is
simpler than the asyncio one: a LIFO list of idle connections per origin and a FIFO semaphore of
``max_connections`` slots (a freed connection closes and passes its slot on while requests
wait for one).

Timeouts: ``connect`` bounds TCP + TLS set-up, ``pool`` the wait for a slot, ``read`` the whole
exchange from the moment the request is handed to the stream. ``maybe_processed`` is honest as in
the asyncio client: only failures before the request was handed over say False.
"""

from __future__ import annotations

import ssl
import time
from typing import TYPE_CHECKING

import anyio
import anyio.abc

from .. import _constants as C
from .._config import ssl_context as make_ssl_context
from .._duration import within
from .._errors import APIConnectionError, APITimeoutError
from .base import RawResponse, pool_closed, pool_sizes
from .native import Heads, _Connection, _Origin, idle_life, request_bytes

if TYPE_CHECKING:
    from .._httpx import httpx

__all__ = ["AnyioSender"]

_URL_CACHE_SIZE = 256
_STREAM_ERRORS = (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError, ssl.SSLError)


class _Slot:
    """What the parser completes in place of an asyncio future."""

    __slots__ = ("error", "result")

    def __init__(self) -> None:
        self.result: RawResponse | None = None
        self.error: APIConnectionError | None = None

    def done(self) -> bool:
        return self.result is not None or self.error is not None

    def cancelled(self) -> bool:
        return False

    def set_result(self, result: RawResponse) -> None:
        self.result = result

    def set_exception(self, error: APIConnectionError) -> None:
        self.error = error

    def exception(self) -> APIConnectionError | None:
        return self.error


class _Shim:
    """The transport the parser talks to: it only ever aborts (on a malformed answer)."""

    __slots__ = ("conn",)

    def __init__(self, conn: _StreamConnection) -> None:
        self.conn = conn

    def abort(self) -> None:
        self.conn.closed = True

    def is_closing(self) -> bool:
        return self.conn.closed


class _StreamConnection:
    """One keep-alive connection over an anyio byte stream."""

    __slots__ = ("closed", "idle_since", "parser", "stream")

    def __init__(self, stream: anyio.abc.ByteStream, cap: int) -> None:
        self.stream = stream
        self.closed = False
        self.idle_since = 0.0
        # The asyncio client's parser; its loop is never used (no timers, no futures here).
        self.parser = _Connection(None, cap)  # type: ignore[arg-type]
        self.parser.connection_made(_Shim(self))  # type: ignore[arg-type]

    async def request(self, payload: bytes, method: str, url: str, read_timeout: float | None) -> RawResponse:
        parser = self.parser
        parser._reset(method, url)
        slot = _Slot()
        parser._waiter = slot  # type: ignore[assignment]
        sent = False
        try:
            with anyio.fail_after(read_timeout):
                try:
                    await self.stream.send(payload)
                    sent = True
                    while not slot.done():
                        try:
                            data = await self.stream.receive()
                        except anyio.EndOfStream:
                            parser.eof_received()
                            parser.connection_lost(None)
                            break
                        parser.data_received(data)
                except _STREAM_ERRORS as exc:
                    if not sent and not parser._received:
                        raise APIConnectionError(
                            f"the connection failed before the request was sent ({type(exc).__name__})",
                            maybe_processed=False,
                        ) from exc
                    parser.connection_lost(exc if isinstance(exc, Exception) else None)
        except TimeoutError:
            self.closed = True
            raise APITimeoutError(
                f"no complete response{within(read_timeout)} (read timeout)", maybe_processed=True
            ) from None
        except BaseException:
            self.closed = True  # cancelled mid-flight (or failed): never reused
            raise
        finally:
            parser._waiter = None
        if slot.error is not None:
            self.closed = True
            raise slot.error
        if slot.result is None:  # pragma: no cover - the loop ends only with the slot done
            self.closed = True
            raise APIConnectionError("the connection closed without an answer", maybe_processed=True)
        if not parser.keep_alive or parser.closed:
            self.closed = True
        return slot.result

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
        self._origins: dict[str, _Origin] = {}
        self._heads: Heads = {}
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
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,  # noqa: ASYNC109 - the HTTP timeouts of the request
    ) -> RawResponse:
        if self._closed:
            raise pool_closed()
        origin = self._origins.get(url)
        if origin is None:
            origin = _Origin(url)
            if len(self._origins) >= _URL_CACHE_SIZE:
                self._origins.clear()
            self._origins[url] = origin
        payload = request_bytes(self._heads, method, url, origin, headers, content)
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
            if conn.closed or now - conn.idle_since > idle_life(self._expiry, conn.parser.server_idle):
                self._dead.append(conn)
                continue
            return conn
        return None

    async def _connect(self, origin: _Origin, timeout: httpx.Timeout) -> _StreamConnection:  # noqa: ASYNC109
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
