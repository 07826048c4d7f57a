"""``Connection``: one keep-alive HTTP/1.1 connection on ``asyncio.BufferedProtocol``.

It writes one request at a time and hands every byte the loop reads to the sans-IO parser
(``_http11.ResponseParser``); the answer goes to whoever waits for it (a ``Waiter``: a task's
future, or a ``Channel``), through the pool's ``Pacer``. It reads while idle too: a byte that
arrives when no answer is awaited (a server's "408 idle" notice, a stray second answer) closes
the connection at once, so the pool never hands it to the next request.

``maybe_processed`` is honest: only a request refused before a byte was written says False. A
connection that dies after the request was written (reset, EOF, timeout, a malformed answer,
cancellation) is closed, never reused, and says True.
"""

from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Protocol

from .. import _constants as C
from .._duration import within
from .._errors import APIConnectionError, APITimeoutError
from ._http11 import ParseError, ResponseParser
from .base import RawResponse

if TYPE_CHECKING:
    from .._pace import Pacer
    from ._deadlines import Deadlines

__all__ = ["Connection", "Waiter", "not_sent"]


class Waiter(Protocol):
    """What waits for a connection's answer: a task's future, or a ``Channel`` (which behaves as
    one here)."""

    def done(self) -> bool: ...

    def cancelled(self) -> bool: ...

    def exception(self) -> BaseException | None: ...

    def set_result(self, result: RawResponse, /) -> None: ...

    def set_exception(self, error: APIConnectionError, /) -> None: ...


def not_sent() -> APIConnectionError:
    return APIConnectionError("the connection closed before the request was sent", maybe_processed=False)


class Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; reads the answer to the one request in flight."""

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int, buffer: memoryview | None = None) -> None:
        self._loop = loop
        #: Where the loop reads into (``get_buffer``): the pool's one buffer, shared by its
        #: connections (each read is handed to ``data_received`` before the next one starts;
        #: llhttp hands out copies). No bytes object is allocated per read.
        self._buffer = buffer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.opened_at = time.monotonic()
        #: Spreads the answers of a wave over loop iterations (``_pace``); set by the pool.
        self.pacer: Pacer | None = None
        #: The pool's one timer for every read timeout (None: a timer per request); set by the pool.
        self.deadlines: Deadlines | None = None
        self.deadline = 0.0  # when the answer in flight times out (loop time)
        self.read_timeout = 0.0
        #: How long the server said it keeps this connection idle (``Keep-Alive: timeout=N``).
        self.server_idle: float | None = None
        self.keep_alive = False
        self.parser = ResponseParser(cap)
        #: Who waits for the answer in flight (None between requests).
        self.waiter: Waiter | None = None
        self._timer: asyncio.TimerHandle | None = None

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._buffer is None:
            self._buffer = memoryview(bytearray(C.READ_BUFFER_SIZE))
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._buffer is not None
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """Bytes read: parsed at once."""
        waiter = self.waiter
        parser = self.parser
        # Answered already (a paced answer may be held, not yet handed over), failed or cancelled.
        if waiter is None or not parser.reading or waiter.done():
            # Bytes nobody asked for (a server's "408 idle" notice, junk after a body): this
            # connection's framing can no longer be trusted.
            self.close()
            return
        try:
            answer = parser.feed(data)
        except ParseError as exc:
            self.fail(exc.error)
            return
        if answer is not None:
            self._answered(answer, waiter)

    def eof_received(self) -> bool:
        self.closed = True  # half-closed by the server: never reused
        waiter = self.waiter
        if self.parser.until_close and waiter is not None and not waiter.done():
            self._ended(None, waiter)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self.waiter
        if waiter is None or not self.parser.reading or waiter.done():
            return  # no request, or its answer is complete (perhaps held by the pacer)
        self._ended(exc, waiter)

    def _ended(self, exc: Exception | None, waiter: Waiter) -> None:
        """The stream ended with an answer in flight: complete (read until close) or failed."""
        try:
            answer = self.parser.feed_eof(exc)
        except ParseError as failure:
            self.fail(failure.error)
            return
        self._answered(answer, waiter)

    def _answered(self, answer: RawResponse, waiter: Waiter) -> None:
        """The answer is complete: from here on nothing fails it, and no read timeout runs,
        however long the pacer holds it before handing it over."""
        parser = self.parser
        self.keep_alive = parser.keep_alive
        if parser.server_idle is not None:
            self.server_idle = parser.server_idle
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.deadlines is not None:
            self.deadlines.discard(self)
        if self.pacer is None:
            waiter.set_result(answer)
        else:
            self.pacer.deliver(waiter, answer)

    # the request

    async def request(self, payload: bytes, method: str, url: str, read_timeout: float | None) -> RawResponse:
        """Write the request and wait for its answer (``begin``, then ``end`` whatever happens)."""
        try:
            return await self.begin(payload, method, url, read_timeout)
        finally:
            self.end()

    def begin(
        self, payload: bytes, method: str, url: str, read_timeout: float | None
    ) -> asyncio.Future[RawResponse]:
        """Write the request and return the future of its answer; ``end`` must follow, however
        the wait ends (the pool awaits the future itself: no coroutine per request). The pool
        hands over a connection it has just checked (``is_closing``); one lost since says so
        here (asyncio would drop the bytes silently)."""
        waiter: asyncio.Future[RawResponse] = self._loop.create_future()
        self.start(waiter, payload, method, url, read_timeout)
        return waiter

    def start(
        self, waiter: Waiter, payload: bytes, method: str, url: str, read_timeout: float | None
    ) -> None:
        """Write the request; its answer goes to ``waiter`` (a future, or a ``Channel``)."""
        transport = self.transport
        if transport is None or self.closed:
            self.keep_alive = False
            raise not_sent()
        loop = self._loop
        self.keep_alive = False
        self.parser.start(method, url)
        self.waiter = waiter
        # The read timeout is armed first and the write comes last: whatever raises here, no
        # byte of the request was written (asyncio's ``write`` refuses before sending), so a
        # caller may take the request as not sent.
        if read_timeout is not None:
            deadlines = self.deadlines
            if deadlines is not None:
                deadlines.add(self, loop.time() + read_timeout, read_timeout)
            else:
                self._timer = loop.call_at(loop.time() + read_timeout, self.on_timeout, read_timeout)
        transport.write(payload)

    def end(self) -> None:
        """The request is over (answered, failed, cancelled, or ``begin`` refused it): its read
        timeout is dropped, and the connection is closed unless its answer came whole and the
        server keeps it open."""
        waiter, self.waiter = self.waiter, None
        answered = self.parser.done  # (``_answered`` dropped the read timeout already)
        if not answered and self.deadlines is not None:
            self.deadlines.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is None or not answered or waiter.cancelled() or not self.keep_alive:
            # Cancelled mid-flight, failed, or the server will not keep it: never reused.
            self.keep_alive = False
            self.close()
            if waiter is not None and waiter.done() and not waiter.cancelled():
                waiter.exception()  # failed, then we were cancelled: not "never retrieved"

    def on_timeout(self, seconds: float) -> None:
        """The read timeout of the request in flight passed (the pool's ``Deadlines`` or our
        own timer)."""
        self._timer = None
        self.fail(
            APITimeoutError(f"no complete response{within(seconds)} (read timeout)", maybe_processed=True)
        )

    def fail(self, error: APIConnectionError) -> None:
        """Fail the request in flight, unless its answer is complete (handed over or held by
        the pacer, it stands), and close the connection."""
        waiter = self.waiter
        self.keep_alive = False
        if waiter is not None and not self.parser.done and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def is_closing(self) -> bool:
        """Closed by us, by the server (EOF, reset) or not connected: never to be written to."""
        return self.closed or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
