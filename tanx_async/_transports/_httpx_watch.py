"""Telling, on the httpx transport, an answer to the request from bytes that were waiting before it.

httpcore reads up to 64 KiB at a time, and h11 keeps whatever came past the end of an answer for
the next one: a stray second answer that arrives with the first (pipelined in the same segment,
or read in the same call) is parsed, after the connection went back to the pool, as the answer
to the next request sent on it. httpcore checks an idle connection's socket, not h11's buffer.

So the streams of a client the session owns are watched (``watch``): each remembers whether a
read brought bytes since the request was last written. An answer whose head was complete with
no read since the request was written was on the connection before the request: it cannot be
this request's answer (``HttpxSender`` refuses it and closes the connection).
"""

from __future__ import annotations

import ssl
from collections.abc import Iterable
from typing import Any

import httpcore

from .._httpx import httpx
from .._log import logger

__all__ = ["WatchedStream", "watch"]


class WatchedStream(httpcore.AsyncNetworkStream):
    """A network stream that knows whether anything was read since the last write."""

    def __init__(self, stream: httpcore.AsyncNetworkStream) -> None:
        self._stream = stream
        #: A read brought bytes since the last write (of the request).
        self.read_since_write = False
        self.closed = False

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        data = await self._stream.read(max_bytes, timeout)
        if data:
            self.read_since_write = True
        return data

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self.read_since_write = False
        await self._stream.write(buffer, timeout)

    async def aclose(self) -> None:
        self.closed = True
        await self._stream.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return WatchedStream(await self._stream.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        if info == "is_readable" and self.closed:
            return True  # closed by us: httpcore drops it as it drops one the server closed
        return self._stream.get_extra_info(info)


class _WatchingBackend(httpcore.AsyncNetworkBackend):
    def __init__(self, backend: httpcore.AsyncNetworkBackend) -> None:
        self._backend = backend

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._backend.connect_tcp(host, port, timeout, local_address, socket_options)
        return WatchedStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        return WatchedStream(await self._backend.connect_unix_socket(path, timeout, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._backend.sleep(seconds)


def watch(client: httpx.AsyncClient) -> bool:
    """Watch the streams of ``client``'s httpcore pools (its transport and proxy mounts). The
    pools are httpx's own attributes, looked up defensively: False (and a log line) where a
    version of httpx or httpcore keeps them elsewhere, and the client is used unwatched."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    watched = False
    for transport in transports:
        pool = getattr(transport, "_pool", None)
        backend = getattr(pool, "_network_backend", None)
        if isinstance(backend, httpcore.AsyncNetworkBackend):
            if not isinstance(backend, _WatchingBackend):
                pool._network_backend = _WatchingBackend(backend)  # type: ignore[union-attr]
            watched = True
    if not watched:
        logger.warning(
            "the httpx transport cannot watch its connections for stray answers (httpcore changed?)"
        )
    return watched
