"""``Channel``: a connection of the asyncio pool held by one caller for a run of requests, each
answered in a callback (``Http11Sender.channel``, used by the pipeline's ``Express``): no task
waits for an answer."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .._errors import APIConnectionError
from ._http11 import Origin, request_head, with_body
from .base import RawResponse

if TYPE_CHECKING:
    from .._httpx import httpx
    from ._connection import Connection
    from ._pool import ConnectionPool

__all__ = ["Channel"]


class Channel:
    """Stands in for the answer's future on its connection (``done``, ``cancelled``,
    ``exception``, ``set_result``, ``set_exception``: what the connection and the pacer ask of
    one) and calls ``on_answer`` with the answer or the connection error. Between requests it
    keeps its connection (no trip through the pool); ``release`` gives it back, ``abort`` gives
    up on a request in flight."""

    __slots__ = ("_conn", "_error", "_key", "_on_answer", "_origin", "_pool", "_state")

    def __init__(
        self,
        pool: ConnectionPool,
        origin: Origin,
        on_answer: Callable[[RawResponse | APIConnectionError], None],
    ) -> None:
        self._pool = pool
        self._origin = origin
        self._key = origin.key
        self._on_answer = on_answer
        self._conn: Connection | None = None
        self._error: APIConnectionError | None = None
        self._state = 1  # 0 a request in flight, 1 none, 2 aborted

    def head(self, method: str, url: str, headers: Mapping[str, str]) -> bytes:
        """The head of requests with these ``headers`` (for ``send``): built once, and checked
        then (a header that cannot be sent raises here, before anything is written)."""
        return request_head(method, url, self._origin, headers)

    def send(self, method: str, url: str, head: bytes, content: bytes, timeout: httpx.Timeout) -> bool:
        """Write the request (``head`` from ``head()``, then ``content``) now, on the held
        connection or a warm idle one; False, with nothing written, when there is none (or the
        pool is closed)."""
        pool = self._pool
        payload = with_body(head, content)
        conn = self._conn
        if conn is None or conn.is_closing():
            if conn is not None:
                self.release()
            conn = pool.check_out_idle(self._key)
            if conn is None:
                return False
            self._conn = conn
        pool.connect_timeout = timeout
        self._state, self._error = 0, None
        try:
            conn.start(self, payload, method, url, timeout.read)
        except APIConnectionError:  # refused before writing (the connection was lost)
            self._state = 1
            self.release()
            return False
        except BaseException:  # nothing written (``start`` writes last): no request in flight
            self._state = 1
            conn.end()  # (drops the read timeout armed, closes the connection)
            self.release()
            raise
        return True

    def release(self) -> None:
        """Give the connection back to the pool (between requests), or close it if it may not
        be reused."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._pool.give_back(self._key, conn)

    def abort(self) -> None:
        """Give up on the request in flight: the connection is closed (its request may have
        been processed) and ``on_answer`` is not called for it."""
        if self._state == 0:
            self._state = 2
            conn = self._conn
            if conn is not None:
                conn.end()  # (closes it: not answered, or "cancelled")
        self.release()

    def close(self) -> None:
        """Done for good: ``abort``, and let go of ``on_answer`` (a bound method of the caller,
        which holds this channel: kept, the two would wait for the cyclic garbage collector)."""
        self.abort()
        self._on_answer = _no_answer

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return self._state == 2

    def exception(self) -> APIConnectionError | None:
        return self._error

    def set_result(self, answer: RawResponse) -> None:
        if self._state == 0:
            self._state = 1
            conn = self._conn
            assert conn is not None
            conn.end()  # (kept open if the server keeps it, for the next request)
            if conn.closed:
                self.release()
            self._on_answer(answer)

    def set_exception(self, error: APIConnectionError) -> None:
        if self._state == 0:
            self._state = 1
            self._error = error
            conn = self._conn
            assert conn is not None
            conn.end()  # (closes it)
            self.release()
            self._on_answer(error)


def _no_answer(result: RawResponse | APIConnectionError) -> None:
    """A closed ``Channel``'s callback (never called: a closed channel has no request)."""
