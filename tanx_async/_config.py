"""Settings derived from what the caller passes: where the exchange is, TLS, and pool sizing.

The defaults themselves live in ``_constants``; this module turns them and the caller's
arguments into the values the session and its transports use, in one place:

- ``resolve_base_url``: ``base_url`` or ``network`` into one URL (plain http only to loopback,
  unless the caller insists).
- ``pool_limits`` / ``concurrency_for``: the connection pool is sized a little above the
  in-flight limit (``POOL_HEADROOM``) so a refresh or a look-up always finds a connection.
- ``ssl_context``: the TLS context for the built-in transport (certifi's bundle, like httpx;
  ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` when ``trust_env``).
- ``env_proxy``: the proxy ``HTTP_PROXY`` / ``HTTPS_PROXY`` / ``ALL_PROXY`` / ``NO_PROXY`` give
  a URL, by httpx's own rules.
"""

from __future__ import annotations

import ipaddress
import os
import ssl
from urllib.parse import urlsplit

from . import _constants as C
from . import _validate as V
from ._httpx import httpx

__all__ = [
    "concurrency_for",
    "env_proxy",
    "is_loopback",
    "pool_limits",
    "resolve_base_url",
    "ssl_context",
]


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback name (``localhost``, ``*.localhost``) or address
    (``127.0.0.0/8``, ``::1``, with or without brackets)."""
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def resolve_base_url(base_url: str | None, network: str | None, allow_insecure_http: bool) -> str:
    """The exchange's base URL, without a trailing slash."""
    if base_url is not None and network is not None:
        raise ValueError("pass base_url or network, not both")
    if network is not None:
        if network not in C.NETWORKS:
            raise ValueError(f"network must be 'mainnet' or 'testnet', got {network!r}")
        return C.NETWORKS[network]
    if base_url is None:
        return C.MAINNET_URL
    if not isinstance(base_url, str):
        raise TypeError("base_url must be a string")
    parts = urlsplit(base_url.strip())
    if "@" in parts.netloc:
        # tanX authenticates with JWTs; a user:password part would not be sent by the built-in
        # transport and would show in reprs and logs. Refused, and never echoed.
        raise ValueError("base_url must not carry a user name or password (user:password@host)")
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"base_url must be an http(s) URL with a host, got {base_url!r}")
    if parts.query or parts.fragment:
        raise ValueError("base_url must not carry a query or fragment")
    try:
        port = parts.port
    except ValueError:  # not a number, or out of range
        port = 0
    if port == 0 or parts.netloc.endswith(":"):
        raise ValueError(f"base_url must have a port from 1 to 65535 if it has one, got {base_url!r}")
    if any(c.isspace() or not c.isprintable() for c in parts.netloc):
        raise ValueError(f"base_url must not have spaces or control characters in its host, got {base_url!r}")
    if parts.scheme == "http" and not is_loopback(parts.hostname) and not allow_insecure_http:
        raise ValueError(
            f"refusing to send credentials over plain http to {parts.hostname}: use https, or "
            "pass allow_insecure_http=True if you really mean it"
        )
    return base_url.strip().rstrip("/")


def pool_limits(concurrency: int | None = None) -> httpx.Limits:
    """The pool for ``concurrency`` requests in flight (default ``MAX_CONCURRENCY``), with
    ``POOL_HEADROOM`` connections more for token refresh and order look-ups."""
    connections = (C.MAX_CONCURRENCY if concurrency is None else concurrency) + C.POOL_HEADROOM
    return httpx.Limits(
        max_connections=connections,
        max_keepalive_connections=connections,
        keepalive_expiry=C.KEEPALIVE_EXPIRY,
    )


def concurrency_for(limits: httpx.Limits, requested: int | None) -> int:
    """The in-flight limit for a pool: ``requested`` if the pool can carry it, else the pool
    size less the headroom. A limit above the pool would make tasks queue inside the pool and
    die of pool timeouts, so it is refused."""
    pool = limits.max_connections
    if requested is None:
        ceiling = max(1, pool - C.POOL_HEADROOM) if pool else C.MAX_CONCURRENCY
        return min(C.MAX_CONCURRENCY, ceiling)
    if V.setting_int("max_concurrency", requested, minimum=1) > (pool or requested):
        raise ValueError(
            f"max_concurrency={requested} exceeds the pool's max_connections={pool}: "
            "tasks would queue inside the pool and die of pool timeouts"
        )
    return requested


def ssl_context(verify: bool | ssl.SSLContext, *, trust_env: bool = True) -> ssl.SSLContext:
    """The TLS context for ``verify``: ``True`` means ``SSL_CERT_FILE`` or ``SSL_CERT_DIR`` when
    ``trust_env`` and set, else certifi's CA bundle; the same choice httpx makes."""
    if isinstance(verify, ssl.SSLContext):
        return verify
    cafile = os.environ.get("SSL_CERT_FILE") if trust_env else None
    capath = os.environ.get("SSL_CERT_DIR") if trust_env else None
    if cafile:
        context = ssl.create_default_context(cafile=cafile)
    elif capath:
        context = ssl.create_default_context(capath=capath)
    else:
        try:
            import certifi  # httpx's own dependency: the same CA bundle as the httpx transport

            context = ssl.create_default_context(cafile=certifi.where())
        except ImportError:  # pragma: no cover - certifi comes with httpx
            context = ssl.create_default_context()
    if not verify:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    context.set_alpn_protocols(["http/1.1"])
    return context


def env_proxy(url: str) -> str | None:
    """The proxy URL the environment gives ``url`` (``HTTP_PROXY``, ``HTTPS_PROXY``,
    ``ALL_PROXY``, ``NO_PROXY``, lower case too), or None: what ``httpx.AsyncClient(
    trust_env=True)`` would use, computed with httpx's own helpers, in httpx's order."""
    helpers = httpx._utils  # private, but the very code httpx.AsyncClient(trust_env=True) runs
    target = httpx.URL(url)
    patterns = sorted(
        ((helpers.URLPattern(key), proxy) for key, proxy in helpers.get_environment_proxies().items()),
        key=lambda item: item[0],
    )
    for pattern, proxy in patterns:
        if pattern.matches(target):
            return proxy
    return None
