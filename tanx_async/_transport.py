"""How bytes go over the wire: one small ``Sender`` interface, two implementations, one choice.

- ``AiohttpSender`` (the default on asyncio): aiohttp's connection pool driven directly. httpx's
  own pool costs 15-30x more CPU per request at the concurrency a cancel burst runs at, and the
  ``httpx-aiohttp`` adapter maps a connection dropped *after* the request was written to
  ``ConnectTimeout``, which would make a possibly-processed cancel look safely unsent.
- ``HttpxSender``: an ``httpx.AsyncClient``; used under trio, when asked for, and always for a
  client the caller injects (we never close that one).

Both read the whole body (refusing more than ``max_response_bytes``) and raise the library's own
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
from ._log import logger

if TYPE_CHECKING:
    import aiohttp

__all__ = ["RawResponse", "Sender", "TransportName", "make_sender"]

TransportName = Literal["auto", "aiohttp", "httpx"]


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
                headers=list(self.headers.items()),
                content=self.content,
                request=httpx.Request(self.method, self.url),
            )
        return self._response


class Sender(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse: ...

    async def aclose(self) -> None: ...


def _too_large(size: int | None, cap: int) -> ResponseTooLargeError:
    got = f"{size} bytes" if size is not None else "more"
    return ResponseTooLargeError(
        f"response body of {got} exceeds max_response_bytes={cap}", maybe_processed=True
    )


class HttpxSender:
    def __init__(self, client: httpx.AsyncClient, *, owned: bool, max_response_bytes: int) -> None:
        self.client = client
        self.owned = owned
        self._cap = max_response_bytes

    async def send(
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
                    raise _too_large(int(declared), self._cap)
                chunks: list[bytes] = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > self._cap:
                        raise _too_large(None, self._cap)
                    chunks.append(chunk)
            finally:
                await response.aclose()
        except httpx.TransportError as exc:
            raise _from_httpx(exc) from exc
        return RawResponse(
            response.status_code,
            response.headers,
            b"".join(chunks),
            method=method,
            url=url,
            response=response,
        )

    async def aclose(self) -> None:
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
        key = (timeout.connect, timeout.read, timeout.write, timeout.pool)
        cached = self._timeouts.get(key)
        if cached is None:
            pool = timeout.pool
            connect = timeout.connect
            cached = self._aiohttp.ClientTimeout(
                total=None,
                connect=(pool or 0) + (connect or 0) if pool is not None or connect is not None else None,
                sock_connect=connect,
                sock_read=timeout.read,
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
                    raise _too_large(length, self._cap)
                if length is not None:
                    body = await response.read()
                else:
                    parts: list[bytes] = []
                    size = 0
                    async for chunk in response.content.iter_any():
                        size += len(chunk)
                        if size > self._cap:
                            raise _too_large(None, self._cap)
                        parts.append(chunk)
                    body = b"".join(parts)
                return RawResponse(response.status, response.headers, body, method=method, url=url)
        except aiohttp.ClientError as exc:
            raise _from_aiohttp(aiohttp, exc) from exc
        except asyncio.TimeoutError as exc:
            raise APITimeoutError("timed out waiting for the response", maybe_processed=True) from exc

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
    if transport == "aiohttp" or (transport == "auto" and _on_asyncio()):
        if not _on_asyncio():
            raise RuntimeError("transport='aiohttp' needs asyncio; use transport='httpx' under trio")
        try:
            return AiohttpSender(limits=limits, verify=verify, max_response_bytes=max_response_bytes)
        except ImportError as exc:
            if transport == "aiohttp":
                raise MissingDependencyError(
                    "transport='aiohttp' needs aiohttp: pip install aiohttp"
                ) from exc
            logger.debug("aiohttp is not importable; using httpx's own transport")
    client = httpx.AsyncClient(
        limits=limits,
        timeout=timeout,
        verify=verify,
        trust_env=False,
        follow_redirects=False,
    )
    return HttpxSender(client, owned=True, max_response_bytes=max_response_bytes)
