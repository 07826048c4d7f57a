"""How bytes go over the wire: one small ``Sender`` interface, three implementations, one choice.

- ``Http11Sender`` (``_http11.py``, ``transport="native"``, the default on asyncio): our own
  HTTP/1.1 keep-alive client on ``asyncio.Protocol``: a cancel costs 0.43-0.64x the client CPU
  of raw aiohttp's ``ClientSession`` (``benchmarks/RESULTS.md``).
- ``AiohttpSender`` (``transport="aiohttp"``, the ``aiohttp`` extra): aiohttp's connection pool
  driven directly. Not through the ``httpx-aiohttp`` adapter: it maps a connection dropped
  *after* the request was written to ``ConnectTimeout``, which would make a possibly-processed
  cancel look safely unsent.
- ``HttpxSender``: an ``httpx.AsyncClient``; used under trio, when asked for, and always for a
  client the caller injects (we never close that one). httpx's own pool costs 16-22x raw aiohttp's
  CPU per cancel at the concurrency a cancel burst runs at (``benchmarks/RESULTS.md``).

All read the whole body (refusing more than ``max_response_bytes``) and raise the library's own
connection errors with ``maybe_processed`` set honestly. ``make_sender`` is the only place the
choice is made.
"""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal, Protocol

from . import _constants as C
from ._errors import APIConnectionError, APITimeoutError, MissingDependencyError, ResponseTooLargeError
from ._httpx import httpx

if TYPE_CHECKING:
    import aiohttp

__all__ = ["RawResponse", "Sender", "TransportName", "make_sender"]

TransportName = Literal["auto", "native", "aiohttp", "httpx"]


class RawResponse:
    """Status, headers and the whole body of one answer; an ``httpx.Response`` on demand."""

    __slots__ = ("_response", "content", "headers", "method", "status", "url")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        *,
        method: str,
        url: str,
        response: httpx.Response | None = None,
    ) -> None:
        self.status = status
        self.headers = headers
        self.content = content
        self.method = method
        self.url = url
        self._response = response

    def to_httpx(self) -> httpx.Response:
        """The answer as an ``httpx.Response`` (built lazily: only error paths need it)."""
        if self._response is None:
            self._response = httpx.Response(
                self.status,
                # As bytes: aiohttp hands over UTF-8 (surrogate-escaped) text, which httpx would
                # try to encode as ASCII and fail on while we classify an error.
                headers=[(_header_bytes(k), _header_bytes(v)) for k, v in self.headers.items()],
                content=self.content,
                request=httpx.Request(self.method, self.url),
            )
        return self._response


def _header_bytes(text: str) -> bytes:
    try:
        return text.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return text.encode("utf-8", "replace")


class Sender(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse: ...

    def connections_in_use(self) -> int: ...

    async def aclose(self) -> None: ...


def pool_closed() -> APIConnectionError:
    """The session closed its pool while this request waited (limiter, rate limit, refresh, a
    free connection): nothing was sent."""
    return APIConnectionError("the connection pool is closed", maybe_processed=False)


def too_large(size: int | None, cap: int) -> ResponseTooLargeError:
    got = f"{size} bytes" if size is not None else "more"
    return ResponseTooLargeError(
        f"response body of {got} exceeds max_response_bytes={cap}", maybe_processed=True
    )


class HttpxSender:
    def __init__(self, client: httpx.AsyncClient, *, owned: bool, max_response_bytes: int) -> None:
        self.client = client
        self.owned = owned
        self._cap = max_response_bytes
        self._closing = False
        #: One cancel scope per request in flight, so that ``aclose`` can wind them up first.
        self._in_flight: set[Any] = set()  # anyio.CancelScope

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        if self._closing or self.client.is_closed:
            raise pool_closed()
        from anyio import CancelScope  # under trio too; imported here, like aiohttp below

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
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        request = self.client.build_request(method, url, headers=headers, content=content, timeout=timeout)
        try:
            response = await self.client.send(request, stream=True)
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


def _from_httpx(exc: httpx.TransportError) -> APIConnectionError:
    # Only failures before a byte of the request left prove it was not processed.
    not_sent = isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout)
    not_sent = not_sent or isinstance(exc, httpx.UnsupportedProtocol | httpx.ProxyError)
    cls = APITimeoutError if isinstance(exc, httpx.TimeoutException) else APIConnectionError
    return cls(
        f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__, maybe_processed=not not_sent
    )


class AiohttpSender:
    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: bool | ssl.SSLContext,
        max_response_bytes: int,
    ) -> None:
        import aiohttp  # imported here: `import tanx_async` must stay light

        self._aiohttp = aiohttp
        ssl_arg: bool | ssl.SSLContext = verify if isinstance(verify, ssl.SSLContext) else bool(verify)
        connector = aiohttp.TCPConnector(
            limit=limits.max_connections or 0,
            limit_per_host=0,
            keepalive_timeout=limits.keepalive_expiry
            if limits.keepalive_expiry is not None
            else C.KEEPALIVE_EXPIRY,
            ssl=ssl_arg,
            ttl_dns_cache=300,
        )
        self.session = aiohttp.ClientSession(
            connector=connector,
            cookie_jar=aiohttp.DummyCookieJar(),
            trust_env=False,
            auto_decompress=True,
            raise_for_status=False,
        )
        self._cap = max_response_bytes
        self._timeouts: dict[tuple[float | None, ...], aiohttp.ClientTimeout] = {}

    def _timeout(self, timeout: httpx.Timeout) -> aiohttp.ClientTimeout:
        """httpx's four timeouts as aiohttp's: ``pool + connect`` bounds getting a connection,
        ``connect`` the TCP/TLS set-up, and ``connect + read`` the whole attempt.

        A total per attempt rather than aiohttp's ``sock_read``: for answers of a few KiB it
        bounds the same thing, and it costs one timer per request instead of one re-armed on
        every chunk read (about 10% of the CPU of a cancel).
        """
        key = (timeout.connect, timeout.read, timeout.write, timeout.pool)
        cached = self._timeouts.get(key)
        if cached is None:
            pool, connect, read = timeout.pool, timeout.connect, timeout.read
            cached = self._aiohttp.ClientTimeout(
                total=None if read is None else read + (connect or 0),
                connect=None if pool is None and connect is None else (pool or 0) + (connect or 0),
                sock_connect=connect,
            )
            self._timeouts[key] = cached
        return cached

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        aiohttp = self._aiohttp
        if self.session.closed:
            raise pool_closed()
        try:
            async with self.session.request(
                method,
                url,
                headers=headers,
                data=content,
                timeout=self._timeout(timeout),
                allow_redirects=False,
            ) as response:
                length = response.content_length
                if length is not None and length > self._cap:
                    raise too_large(length, self._cap)
                if length is not None:
                    body = await response.read()
                else:
                    parts: list[bytes] = []
                    size = 0
                    async for chunk in response.content.iter_any():
                        size += len(chunk)
                        if size > self._cap:
                            raise too_large(None, self._cap)
                        parts.append(chunk)
                    body = b"".join(parts)
                return RawResponse(response.status, response.headers, body, method=method, url=url)
        except aiohttp.ClientError as exc:
            raise _from_aiohttp(aiohttp, exc) from exc
        except asyncio.TimeoutError as exc:
            raise APITimeoutError("timed out waiting for the response", maybe_processed=True) from exc

    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (a leak shows as a count that stays up)."""
        return len(getattr(self.session.connector, "_acquired", ()))

    async def aclose(self) -> None:
        await self.session.close()


def _from_aiohttp(aiohttp: Any, exc: Exception) -> APIConnectionError:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return APITimeoutError(text, maybe_processed=False)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return APITimeoutError(text, maybe_processed=True)
    if isinstance(exc, aiohttp.ClientConnectorError | aiohttp.InvalidURL):
        return APIConnectionError(text, maybe_processed=False)
    # ServerDisconnectedError, ClientPayloadError, ClientOSError (reset), a malformed answer:
    # the request may have been written and processed.
    return APIConnectionError(text, maybe_processed=True)


def _on_asyncio() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def make_sender(
    *,
    http_client: httpx.AsyncClient | None,
    transport: TransportName,
    limits: httpx.Limits,
    verify: bool | ssl.SSLContext,
    timeout: httpx.Timeout,
    max_response_bytes: int,
) -> Sender:
    """The one place that decides how this session talks to the exchange."""
    if http_client is not None:
        return HttpxSender(http_client, owned=False, max_response_bytes=max_response_bytes)
    if transport in ("native", "aiohttp") and not _on_asyncio():
        raise RuntimeError(f"transport={transport!r} needs asyncio; use transport='httpx' under trio")
    if transport == "native" or (transport == "auto" and _on_asyncio()):
        from ._http11 import Http11Sender  # imported here: it imports this module

        return Http11Sender(
            limits=limits,
            verify=verify,
            max_response_bytes=max_response_bytes,
        )
    if transport == "aiohttp":
        try:
            return AiohttpSender(limits=limits, verify=verify, max_response_bytes=max_response_bytes)
        except ImportError as exc:
            raise MissingDependencyError(
                "transport='aiohttp' needs aiohttp: pip install 'tanx-async[aiohttp]'"
            ) from exc
    client = httpx.AsyncClient(
        limits=limits,
        timeout=timeout,
        verify=verify,
        trust_env=False,
        follow_redirects=False,
    )
    return HttpxSender(client, owned=True, max_response_bytes=max_response_bytes)
