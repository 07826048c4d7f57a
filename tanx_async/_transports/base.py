"""What every transport shares: the ``Sender`` interface, the answer it returns, its errors.

A sender reads the whole body (refusing more than ``max_response_bytes``) and raises the
library's own connection errors with ``maybe_processed`` set honestly: only a failure before a
byte of the request left says False.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import Literal, Protocol, runtime_checkable

from .. import _constants as C
from .._errors import APIConnectionError, ResponseTooLargeError
from .._httpx import httpx

__all__ = [
    "WITHDRAWN_AIOHTTP",
    "Channel",
    "Headers",
    "Immediate",
    "RawResponse",
    "Sender",
    "TransportName",
    "Warmable",
    "idle_life",
    "pool_closed",
    "pool_sizes",
    "too_large",
]

TransportName = Literal["auto", "native", "httpx"]

#: Why ``transport="aiohttp"`` is refused.
WITHDRAWN_AIOHTTP = (
    "transport='aiohttp' was withdrawn: aiohttp keeps bytes that arrive on an idle pooled connection "
    "and reads them as the answer to the next request sent on it, so a stray answer could report a "
    "cancel the exchange refused as accepted; use 'auto' (the built-in client) or 'httpx'"
)


class Headers(Mapping[str, str]):
    """Request headers that never change once built (the pipeline builds one set per token and
    shares it between requests). Being immutable, they carry what a transport prepares from them
    once: ``prepared``, the built-in client's request heads by method and URL."""

    __slots__ = ("_fields", "prepared")

    def __init__(self, fields: Mapping[str, str]) -> None:
        self._fields = dict(fields)
        #: (method, URL) -> the request head (``_http11.request_head``); bounded by its user.
        self.prepared: dict[tuple[str, str], bytes] = {}

    def __getitem__(self, name: str) -> str:
        return self._fields[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._fields)

    def __len__(self) -> int:
        return len(self._fields)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._fields)})"  # the names only: a value may be a token


class RawResponse:
    """Status, headers and the whole body of one answer; an ``httpx.Response`` on demand."""

    __slots__ = ("_response", "content", "headers", "method", "status", "url")

    def __init__(
        self,
        status: int,
        headers: Mapping[str, str],
        content: bytes,
        method: str,
        url: str,
        response: httpx.Response | None = None,
    ) -> None:
        # (Positional where every answer makes one: calling a class with keywords costs a dict.)
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
                # As bytes: our parser hands over UTF-8 (surrogate-escaped) text, which httpx would
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
        headers: Mapping[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse: ...

    def connections_in_use(self) -> int: ...

    async def aclose(self) -> None: ...


@runtime_checkable
class Warmable(Protocol):
    """A sender that can open connections ahead of need (the built-in one)."""

    async def warm_up(self, url: str, connections: int, timeout: httpx.Timeout) -> int: ...


class Channel(Protocol):
    """Requests of one caller written at once and answered in a callback (``Immediate``)."""

    def head(self, method: str, url: str, headers: Mapping[str, str]) -> bytes:
        """The head of requests with these ``headers``, built and checked once (raises for a
        header that cannot be sent)."""

    def send(self, method: str, url: str, head: bytes, content: bytes, timeout: httpx.Timeout) -> bool:
        """Write the request (``head`` from ``head()``, then ``content``) now; False, with nothing
        written, when no warm connection is free."""

    def release(self) -> None:
        """Give the connection it holds back to the pool (between requests)."""

    def abort(self) -> None:
        """Give up on the request in flight (its connection is closed, no callback) and release."""

    def close(self) -> None:
        """Done for good: ``abort``, and let go of the callback (which may hold its caller)."""


@runtime_checkable
class Immediate(Protocol):
    """A sender whose requests can be written at once and answered in a callback, without a
    task (the built-in asyncio one; see ``Http11Sender.channel``)."""

    def channel(self, url: str, on_answer: Callable[[RawResponse | APIConnectionError], None]) -> Channel: ...


def pool_closed() -> APIConnectionError:
    """The session closed its pool while this request waited (limiter, rate limit, refresh, a
    free connection): nothing was sent."""
    return APIConnectionError("the connection pool is closed", maybe_processed=False)


def too_large(size: int | None, cap: int) -> ResponseTooLargeError:
    """``size``: the length the answer announced, or None when it announced none (chunked, or
    read to the close) and more than ``cap`` bytes arrived."""
    got = f" of {size} bytes" if size is not None else ""
    return ResponseTooLargeError(f"response body{got} exceeds max_response_bytes={cap}", maybe_processed=True)


def pool_sizes(limits: httpx.Limits) -> tuple[int | None, int | None, float]:
    """What a pool of ours reads from ``limits``: the most connections open, the most kept idle
    (default: as many as may be open) and the idle expiry in seconds (default
    ``KEEPALIVE_EXPIRY``)."""
    keepalive, expiry = limits.max_keepalive_connections, limits.keepalive_expiry
    return (
        limits.max_connections,
        keepalive if keepalive is not None else limits.max_connections,
        expiry if expiry is not None else C.KEEPALIVE_EXPIRY,
    )


def idle_life(expiry: float, server_idle: float | None) -> float:
    """How long a connection may sit idle and still be reused: our ``expiry``, and a margin
    under what the server said it keeps idle connections (``Keep-Alive: timeout=N``)."""
    if server_idle is None:
        return expiry
    return min(expiry, server_idle - C.SERVER_IDLE_MARGIN)
