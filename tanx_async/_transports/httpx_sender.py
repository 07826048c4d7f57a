"""``HttpxSender``: an ``httpx.AsyncClient`` as the transport.

Used when asked for (``transport="httpx"``), behind a proxy or without httptools (``make_sender``
says so in the log), and always for a client the caller injects (we never close that one). Not
the default: httpx's own pool is the costliest transport in CPU per cancel at the concurrency a
cancel burst runs at (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from .._errors import APIConnectionError, APITimeoutError
from .._httpx import httpx
from ._httpx_watch import WatchedStream, watch
from .base import RawResponse, pool_closed, too_large

__all__ = ["HttpxSender"]


class HttpxSender:
    def __init__(self, client: httpx.AsyncClient, *, owned: bool, max_response_bytes: int) -> None:
        self.client = client
        self.owned = owned
        if owned:
            watch(client)  # (an injected client is the caller's: used as it is)
        self._cap = max_response_bytes
        self._closing = False
        #: One cancel scope per request in flight, so that ``aclose`` can wind them up first.
        self._in_flight: set[Any] = set()  # anyio.CancelScope

    async def send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        if self._closing or self.client.is_closed:
            raise pool_closed()
        from anyio import CancelScope  # under trio too; imported here (only httpx needs it)

        scope = CancelScope()
        self._in_flight.add(scope)
        try:
            with scope:
                return await self._send(method, url, headers, content, timeout)
        finally:
            self._in_flight.discard(scope)
        # Only reached when ``aclose`` cancelled this request mid-flight.
        raise APIConnectionError("the connection pool was closed during the request", maybe_processed=True)

    async def _send(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        whole = _WholeExchange(timeout)
        request = self.client.build_request(
            method, url, headers=headers, content=content, timeout=timeout, extensions={"trace": whole.trace}
        )
        with whole.scope:
            return await self._exchange(request, method, url)
        # Only reached when the whole-exchange bound cancelled the request.
        raise APITimeoutError(whole.why(), maybe_processed=whole.written)

    async def _exchange(self, request: httpx.Request, method: str, url: str) -> RawResponse:
        try:
            response = await self.client.send(request, stream=True)
            stream = response.extensions.get("network_stream")
            if isinstance(stream, WatchedStream) and not stream.read_since_write:
                # Its head was complete before the request was written: not its answer.
                await stream.aclose()
                await response.aclose()
                raise APIConnectionError(
                    "an answer was already waiting on the connection when the request was written"
                    " (a stray answer from the server); not taken as this request's",
                    maybe_processed=True,
                )
            try:
                declared = response.headers.get("content-length")
                if declared is not None and declared.isdigit() and int(declared) > self._cap:
                    raise too_large(int(declared), self._cap)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._cap:
                        raise too_large(None, self._cap)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise _from_httpx(exc) from exc
        # No ``response=``: errors get a response rebuilt on a request without the live token
        # (``APIStatusError.response.request.headers`` must not carry it).
        return RawResponse(
            response.status_code,
            response.headers,
            b"".join(chunks),
            method=method,
            url=url,
        )

    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (0 if the client's transport has no pool)."""
        pool = getattr(getattr(self.client, "_transport", None), "_pool", None)
        connections = getattr(pool, "connections", None) or ()
        return sum(1 for c in connections if not c.is_idle() and not c.is_closed())

    async def aclose(self) -> None:
        # httpcore keeps a connection that is still being opened out of its pool's reach: closing
        # the client under it leaks the socket. Cancel our requests in flight (httpcore closes
        # their connections as they unwind), give them a moment, then close.
        from anyio import sleep

        self._closing = True
        for scope in list(self._in_flight):
            scope.cancel()
        for _ in range(100):
            if not self._in_flight:
                break
            await sleep(0.01)
        if self.owned:
            await self.client.aclose()


class _WholeExchange:
    """Bounds a request the way the built-in client does: ``read`` from the moment the request
    was written to the end of the answer, however it trickles in (httpx's own read timeout is
    per read: an answer a byte every half second would never end it). httpcore's trace says
    when the request was written; until then (and for a client whose transport traces
    nothing) the bound is every phase's timeout added up."""

    __slots__ = ("_read", "scope", "written")

    def __init__(self, timeout: httpx.Timeout) -> None:
        from anyio import CancelScope, current_time

        phases = (timeout.pool, timeout.connect, timeout.write, timeout.read)
        total = math.inf if None in phases else sum(t for t in phases if t is not None)
        self._read = timeout.read
        self.scope = CancelScope(deadline=current_time() + total)
        #: A byte of the request may have left (httpcore began to write it).
        self.written = False

    async def trace(self, event: str, info: dict[str, Any]) -> None:
        if event.endswith("send_request_headers.started"):
            self.written = True
        elif event.endswith("send_request_body.complete") and self._read is not None:
            from anyio import current_time

            self.scope.deadline = current_time() + self._read

    def why(self) -> str:
        if self.written and self._read is not None:
            return f"no complete response within {self._read:g} s (read timeout)"
        return "no response within the request's timeouts (connect, write, read and pool, added up)"


def _from_httpx(exc: httpx.TransportError) -> APIConnectionError:
    # Only failures before a byte of the request left prove it was not processed.
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    not_sent = not_sent or isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError)
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, maybe_processed=not not_sent
    )
