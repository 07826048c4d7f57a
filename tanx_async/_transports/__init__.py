"""How bytes go over the wire: one small ``Sender`` interface (``base``), three implementations,
and ``make_sender``, the one place the choice is made.

- ``native`` (``Http11Sender``, ``transport="native"``, the default on asyncio): our own
  HTTP/1.1 keep-alive client on ``asyncio.Protocol`` (``_http11``, ``_connection``, ``_pool``,
  ``_channel``, ``_deadlines``).
- ``anyio_sender`` (``AnyioSender``): the built-in client's HTTP/1.1 (``_http11``) over anyio
  streams; the default (``"auto"``/``"native"``) under trio.
- ``httpx_sender`` (``HttpxSender``): an ``httpx.AsyncClient``; ``transport="httpx"`` and injected clients.

Each implementation is imported only when chosen: ``import tanx_async`` stays light.

With ``trust_env`` (the default), ``HTTP_PROXY``/``HTTPS_PROXY``/``ALL_PROXY``/``NO_PROXY`` and
``SSL_CERT_FILE``/``SSL_CERT_DIR`` are honoured by every transport, by httpx's rules. The native
transport speaks no proxy protocol: when a proxy applies to the exchange's URL, ``auto`` and
``native`` use the httpx transport instead (logged once per process).
"""

from __future__ import annotations

import asyncio
import logging
import ssl

from .._config import env_proxy
from .._errors import MissingDependencyError
from .._httpx import httpx
from .base import (
    WITHDRAWN_AIOHTTP,
    Channel,
    Headers,
    Immediate,
    RawResponse,
    Sender,
    TransportName,
    Warmable,
)

__all__ = [
    "WITHDRAWN_AIOHTTP",
    "Channel",
    "Headers",
    "Immediate",
    "RawResponse",
    "Sender",
    "TransportName",
    "Warmable",
    "check_transport",
    "make_sender",
]

logger = logging.getLogger("tanx_async")
#: Why the native transport was not used, each said once per process.
_said: set[str] = set()


def _say_once(why: str) -> None:
    if why not in _said:
        _said.add(why)
        logger.warning("%s", why)


def _httptools_missing() -> str | None:
    """Why the native transport's parser cannot be imported, or None when it can."""
    try:
        import httptools  # noqa: F401
    except ImportError as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def check_transport(transport: object) -> None:
    """Refuse a transport name we do not know, and the withdrawn ``"aiohttp"`` saying why."""
    if transport not in ("auto", "native", "httpx"):
        if transport == "aiohttp":
            raise ValueError(WITHDRAWN_AIOHTTP)
        raise ValueError(f"transport must be 'auto', 'native' or 'httpx', got {transport!r}")


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
    base_url: str,
    trust_env: bool = True,
    keep_warm: bool = False,
) -> Sender:
    """The one place that decides how this session talks to the exchange."""
    if http_client is not None:
        from .httpx_sender import HttpxSender

        return HttpxSender(http_client, owned=False, max_response_bytes=max_response_bytes)
    proxy = env_proxy(base_url) if trust_env else None
    if transport in ("auto", "native"):
        missing = _httptools_missing()
        if missing is not None and transport == "native":
            raise MissingDependencyError(
                f"transport='native' needs httptools ({missing}): pip install httptools"
            )
        if missing is not None:
            _say_once(f"the native transport needs httptools ({missing}); using the httpx transport")
        elif proxy is not None:
            _say_once(
                "a proxy applies to the exchange's URL (HTTP_PROXY/HTTPS_PROXY/ALL_PROXY); the native "
                "transport does not speak to proxies, so the httpx transport is used (trust_env=False "
                "goes direct)"
            )
        elif not _on_asyncio():
            # trio: the same HTTP/1.1 client over anyio streams
            from .anyio_sender import AnyioSender

            return AnyioSender(
                limits=limits, verify=verify, max_response_bytes=max_response_bytes, trust_env=trust_env
            )
        else:
            from .native import Http11Sender

            return Http11Sender(
                limits=limits,
                verify=verify,
                max_response_bytes=max_response_bytes,
                trust_env=trust_env,
                keep_warm=keep_warm,
            )
    client = httpx.AsyncClient(
        limits=limits,
        timeout=timeout,
        verify=verify,
        trust_env=trust_env,
        follow_redirects=False,
    )
    from .httpx_sender import HttpxSender

    return HttpxSender(client, owned=True, max_response_bytes=max_response_bytes)
