"""``Http11Sender``: a small HTTP/1.1 keep-alive client on asyncio; the default transport there.

Why our own: a cancel burst is a few hundred small request/response pairs on warm keep-alive
connections to one host, and there a general-purpose client spends most of the CPU in its own
layers (``benchmarks/RESULTS.md`` compares this client with httpx's). This client does exactly
what the exchange needs and nothing else, in four parts, each in its module:

- ``_http11``: the request's bytes and the parser of its answer (llhttp through httptools, with
  our own checks), no I/O;
- ``_connection``: one connection on ``asyncio.BufferedProtocol``, one request at a time (no
  pipelining), reading while idle (a stray byte closes it);
- ``_pool``: a LIFO pool of idle connections per origin, bounded by ``max_connections``
  (waiters queue with the pool timeout), with ``_deadlines``, one timer for every read timeout;
- ``_channel``: a connection held by one caller, answers in a callback (``channel``).

No redirects, cookies or HTTP/2: the session never wanted them; no proxies either (where the
environment names one for the exchange, ``make_sender`` hands the session to the httpx transport
instead, and says so in the log).

Timeouts: ``connect`` bounds TCP + TLS set-up, ``pool`` the wait for a free connection, and
``read`` the whole exchange from the moment the request is written (the request is written in
one buffered call, so ``write`` needs no timer of its own).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from .._errors import APIConnectionError
from ._channel import Channel
from ._http11 import request_bytes
from ._pool import ConnectionPool
from .base import RawResponse, pool_closed

if TYPE_CHECKING:
    from .._httpx import httpx

__all__ = ["Channel", "Http11Sender"]


class Http11Sender(ConnectionPool):
    """The ``Sender`` (and ``Immediate``, ``Warmable``) of the asyncio transport: its pool, with
    a request sent on a checked-out connection (``send``) or on a ``Channel``."""

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        if self.closed:
            raise pool_closed()
        origin = self.origin(url)
        payload = request_bytes(method, url, origin, headers, content)
        self.connect_timeout = timeout
        # The usual case, a warm connection, needs no coroutine to wait on.
        conn = self.check_out_idle(origin.key) or await self.check_out(origin, timeout)
        try:
            return await conn.begin(payload, method, url, timeout.read)
        finally:
            conn.end()
            self.give_back(origin.key, conn)

    def channel(self, url: str, on_answer: Callable[[RawResponse | APIConnectionError], None]) -> Channel:
        """A ``Channel`` to ``url``'s origin: requests written at once on a warm connection it
        holds, each answer handed to ``on_answer`` from the transport's callbacks (through the
        pacer, as a task's answer would be). It holds no connection until its first ``send``."""
        return Channel(self, self.origin(url), on_answer)
