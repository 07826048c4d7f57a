"""``AiohttpSender`` (``transport="aiohttp"``, the ``aiohttp`` extra): aiohttp's pool driven directly.

Not through the ``httpx-aiohttp`` adapter: it maps a connection dropped *after* the request was
written to ``ConnectTimeout``, which would make a possibly-processed cancel look safely unsent.
"""

from __future__ import annotations

import asyncio
import os
import ssl
from typing import TYPE_CHECKING, Any

from .. import _constants as C
from .._config import ssl_context
from .._errors import APIConnectionError, APITimeoutError
from .base import RawResponse, pool_closed, too_large

if TYPE_CHECKING:
    import aiohttp

    from .._httpx import httpx

__all__ = ["AiohttpSender"]


class AiohttpSender:
    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: bool | ssl.SSLContext,
        max_response_bytes: int,
        trust_env: bool = True,
        proxy: str | None = None,
    ) -> None:
        import aiohttp  # imported here: `import tanx_async` must stay light

        self._aiohttp = aiohttp
        ssl_arg: bool | ssl.SSLContext = verify if isinstance(verify, ssl.SSLContext) else bool(verify)
        if (
            verify is True
            and trust_env
            and (os.environ.get("SSL_CERT_FILE") or os.environ.get("SSL_CERT_DIR"))
        ):
            ssl_arg = ssl_context(True, trust_env=True)
        #: The proxy for the exchange (``env_proxy``, chosen by ``make_sender``), or None.
        self._proxy = proxy
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
                proxy=self._proxy,
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
