"""How bytes go over the wire: one small ``Sender`` interface (``base``), three implementations,
and ``make_sender``, the one place the choice is made.

- ``native`` (``Http11Sender``, ``transport="native"``, the default on asyncio): our own
  HTTP/1.1 keep-alive client on ``asyncio.Protocol``.
- ``aiohttp_sender`` (``AiohttpSender``, the ``aiohttp`` extra): aiohttp's connection pool.
- ``anyio_sender`` (``AnyioSender``): the built-in client's HTTP/1.1 over anyio streams; the
  default (``"auto"``/``"native"``) under trio.
- ``httpx_sender`` (``HttpxSender``): an ``httpx.AsyncClient``; ``transport="httpx"`` and injected clients.

Each implementation is imported only when chosen: ``import tanx_async`` stays light.
"""

from __future__ import annotations

import asyncio
import ssl

from .._errors import MissingDependencyError
from .._httpx import httpx
from .base import RawResponse, Sender, TransportName, Warmable

__all__ = ["RawResponse", "Sender", "TransportName", "Warmable", "make_sender"]


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
    keep_warm: bool = False,
) -> Sender:
    """The one place that decides how this session talks to the exchange."""
    if http_client is not None:
        from .httpx_sender import HttpxSender

        return HttpxSender(http_client, owned=False, max_response_bytes=max_response_bytes)
    if transport == "aiohttp" and not _on_asyncio():
        raise RuntimeError("transport='aiohttp' needs asyncio; use 'auto' (or 'httpx') under trio")
    if transport in ("auto", "native") and not _on_asyncio():
        from .anyio_sender import AnyioSender

        return AnyioSender(limits=limits, verify=verify, max_response_bytes=max_response_bytes)
    if transport in ("auto", "native"):
        from .native import Http11Sender

        return Http11Sender(
            limits=limits,
            verify=verify,
            max_response_bytes=max_response_bytes,
            keep_warm=keep_warm,
        )
    if transport == "aiohttp":
        try:
            from .aiohttp_sender import AiohttpSender

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
    from .httpx_sender import HttpxSender

    return HttpxSender(client, owned=True, max_response_bytes=max_response_bytes)
