"""``AsyncTanxSession`` and its request pipeline.

The pipeline is one loop in one place (``_Core.request``): flow control -> authenticate ->
send -> classify -> refresh once on an expired access token -> maybe retry -> decode. Everything
a session owns (the connection pool, tokens, limiter, rate limit) lives in ``_Core`` so that
``with_options`` clones share it.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlencode

import anyio

from . import _constants as C
from . import _validate as V
from ._auth import Auth, AuthPaths, Signer, TokensCallback
from ._config import concurrency_for, pool_limits, resolve_base_url
from ._envelope import decode_envelope, is_access_token_error
from ._errors import (
    APIConnectionError,
    APIStatusError,
    RateLimitError,
    SessionClosedError,
    TanxError,
    brief,
)
from ._flow import FlowControl
from ._httpx import httpx
from ._json import dumps
from ._log import logger
from ._retry import RetryPolicy, is_ambiguous
from ._transport import Sender, TransportName, make_sender
from .events import EventCallback, RequestEvent

if TYPE_CHECKING:
    from types import TracebackType

    from .models import TokenPair
    from .orders import Orders

__all__ = ["AsyncTanxSession", "Trace"]

Network = Literal["mainnet", "testnet"]
_DEFAULT_TIMEOUT = httpx.Timeout(
    C.READ_TIMEOUT, connect=C.CONNECT_TIMEOUT, write=C.WRITE_TIMEOUT, pool=C.POOL_TIMEOUT
)
_STATIC_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "User-Agent": C.USER_AGENT,
}


class Trace:
    """What happened across the attempts of one logical request (used to classify cancels)."""

    __slots__ = ("ambiguous", "attempts", "content", "first_sent")

    def __init__(self) -> None:
        self.attempts = 0
        #: The raw body of the successful answer (kept for ``ResponseValidationError.body``).
        self.content = b""
        #: Wall-clock time of the first attempt (to compare with the exchange's ``updated_at``).
        self.first_sent: float | None = None
        #: True once an attempt failed in a way that may have left it processed.
        self.ambiguous = False


def _normalise_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(V.seconds("timeout", timeout, also=" or an httpx.Timeout"))


class _Core:
    """The state a session and all its ``with_options`` clones share."""

    def __init__(
        self,
        *,
        http_client: httpx.AsyncClient | None,
        transport: TransportName,
        limits: httpx.Limits,
        verify: bool | ssl.SSLContext,
        max_response_bytes: int,
        max_concurrency: int,
        flow: FlowControl,
        auth: Auth,
        on_event: EventCallback | None,
    ) -> None:
        self.http_client = http_client
        self.transport: TransportName = transport
        self.limits = limits
        self.verify = verify
        self.max_response_bytes = max_response_bytes
        self.max_concurrency = max_concurrency
        self.flow = flow
        self.auth = auth
        self.on_event = on_event
        self.sender: Sender | None = None
        self.limiter: anyio.CapacityLimiter | None = None
        self.closed = False

    def start(self, timeout: httpx.Timeout) -> tuple[Sender, anyio.CapacityLimiter]:
        # Built lazily: the transport depends on the running event loop (asyncio or trio), and
        # anyio primitives must be created inside it.
        if self.closed:
            raise SessionClosedError("this AsyncTanxSession is closed")
        if self.sender is None or self.limiter is None:
            self.limiter = anyio.CapacityLimiter(self.max_concurrency)
            self.sender = make_sender(
                http_client=self.http_client,
                transport=self.transport,
                limits=self.limits,
                verify=self.verify,
                timeout=timeout,
                max_response_bytes=self.max_response_bytes,
            )
        return self.sender, self.limiter

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        sender, self.sender = self.sender, None
        if sender is not None:
            with anyio.CancelScope(shield=True):
                await sender.aclose()


class AsyncTanxSession:
    """An async session with the tanX exchange.

    One session owns one connection pool, the JWT tokens and their refresh, retries, the
    client-side rate limit and timeouts. Use it as ``async with AsyncTanxSession(...) as s`` or
    call ``aclose()``. All arguments are keyword-only:

    - ``base_url`` (default mainnet ``https://api.tanx.fi``) or ``network="mainnet"|"testnet"``.
    - ``access_token``/``refresh_token``; or ``private_key`` + ``eth_address`` (needs the
      ``login`` extra) or any ``signer`` to log in (and log in again when the refresh token dies).
    - ``on_tokens``: called (sync or async) with every new ``TokenPair``, to persist them.
    - ``timeout``: seconds or an ``httpx.Timeout`` (default connect 3 s, read 5 s, pool 10 s).
    - ``max_retries`` (default 3), ``limits`` (an ``httpx.Limits``, default 68 connections),
      ``max_concurrency`` (requests in flight, default 64, at most the pool size),
      ``rate_limit`` (requests/s, with ``rate_limit_burst``) shared by every task.
    - ``http_client``: an ``httpx.AsyncClient`` you own (never closed by the session);
      ``transport``: ``"auto"`` (``"native"`` on asyncio, ``"httpx"`` under trio),
      ``"native"`` (our HTTP/1.1 client, asyncio only), ``"aiohttp"`` (the ``aiohttp`` extra),
      ``"httpx"``.
    - ``verify``: TLS verification, on unless you pass ``False`` or your own ``ssl.SSLContext``.
      Plain ``http://`` is refused for non-loopback hosts unless ``allow_insecure_http=True``.
    - ``auth_paths``, ``max_response_bytes`` (default 8 MiB), ``on_event`` (see ``events``).
    """

    def __init__(
        self,
        *,
        base_url: str | None = None,
        network: Network | None = None,
        access_token: str | None = None,
        refresh_token: str | None = None,
        private_key: str | None = None,
        eth_address: str | None = None,
        signer: Signer | None = None,
        on_tokens: TokensCallback | None = None,
        timeout: float | httpx.Timeout = _DEFAULT_TIMEOUT,
        max_retries: int = C.MAX_RETRIES,
        limits: httpx.Limits | None = None,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        rate_limit_burst: int = 1,
        http_client: httpx.AsyncClient | None = None,
        transport: TransportName = "auto",
        verify: bool | ssl.SSLContext = True,
        allow_insecure_http: bool = False,
        auth_paths: AuthPaths | None = None,
        max_response_bytes: int = C.MAX_RESPONSE_BYTES,
        refresh_skew: float = C.REFRESH_SKEW,
        on_event: EventCallback | None = None,
    ) -> None:
        self._base_url = resolve_base_url(base_url, network, allow_insecure_http)
        for name, value in (("access_token", access_token), ("refresh_token", refresh_token)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TypeError(f"{name} must be a non-empty string")
        if private_key is not None:
            if signer is not None:
                raise ValueError("pass either private_key or signer, not both")
            from ._signer import PrivateKeySigner

            signer = PrivateKeySigner(private_key, eth_address=eth_address)
        elif eth_address is not None and signer is None:
            raise ValueError("eth_address needs private_key (or pass a signer)")
        if signer is not None and not isinstance(signer, Signer):
            raise TypeError("signer must have an `address` and an async `sign(message) -> str`")
        V.setting_int("max_retries", max_retries, minimum=0)
        if transport not in ("auto", "native", "aiohttp", "httpx"):
            raise ValueError(f"transport must be 'auto', 'native', 'aiohttp' or 'httpx', got {transport!r}")
        if verify is not True and not isinstance(verify, ssl.SSLContext | bool):
            raise TypeError("verify must be True, False or an ssl.SSLContext")
        limits = limits or pool_limits()
        max_concurrency = concurrency_for(limits, max_concurrency)
        if max_response_bytes < 1024:
            raise ValueError("max_response_bytes must be at least 1024")
        self._timeout = _normalise_timeout(timeout)
        self._retry = RetryPolicy(max_retries=max_retries)
        auth = Auth(
            access_token=access_token,
            refresh_token=refresh_token,
            signer=signer,
            on_tokens=on_tokens,
            paths=auth_paths or AuthPaths(),
            skew=refresh_skew,
            on_event=on_event,
        )
        self._core = _Core(
            http_client=http_client,
            transport=transport,
            limits=limits,
            verify=verify,
            max_response_bytes=max_response_bytes,
            max_concurrency=max_concurrency,
            flow=FlowControl(rate_limit, rate_limit_burst),
            auth=auth,
            on_event=on_event,
        )
        auth.bind(self._auth_post)
        self._init_namespaces()

    def _init_namespaces(self) -> None:
        from .orders import Orders

        self.orders: Orders = Orders(self)

    # -- public surface -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        return self._base_url

    @property
    def max_concurrency(self) -> int:
        return self._core.max_concurrency

    @property
    def tokens(self) -> TokenPair | None:
        """The current token pair (its repr hides the tokens), or None before login."""
        return self._core.auth.tokens

    @property
    def uid(self) -> str | None:
        """The exchange's user id, known after a wallet login."""
        return self._core.auth.uid

    @property
    def closed(self) -> bool:
        return self._core.closed

    def with_options(
        self, *, timeout: float | httpx.Timeout | None = None, max_retries: int | None = None
    ) -> AsyncTanxSession:
        """A view of this session with other timeouts or retries, sharing its pool and tokens
        (an aggressive cancel path next to a patient listing path). Closing either closes both."""
        clone = object.__new__(AsyncTanxSession)
        clone._base_url = self._base_url
        clone._core = self._core
        clone._timeout = self._timeout if timeout is None else _normalise_timeout(timeout)
        if max_retries is None:
            clone._retry = self._retry
        else:
            clone._retry = RetryPolicy(max_retries=V.setting_int("max_retries", max_retries, minimum=0))
        clone._init_namespaces()
        return clone

    async def login(self) -> TokenPair:
        """Log in now with the configured signer (otherwise done on first use)."""
        auth = self._core.auth
        await auth.renew(auth.tokens.access if auth.tokens else None)
        tokens = auth.tokens
        assert tokens is not None
        return tokens

    async def refresh(self) -> TokenPair:
        """Refresh the access token now (single flight with any refresh already running)."""
        auth = self._core.auth
        await auth.renew(auth.tokens.access if auth.tokens else None)
        tokens = auth.tokens
        assert tokens is not None
        return tokens

    async def health(self) -> bool:
        """``GET /sapi/v1/health/``: True when the exchange says it is working."""
        body = await self.request("GET", "/sapi/v1/health/", private=False, idempotent=True)
        return body.get("status") == "success"

    async def aclose(self) -> None:
        """Close the connection pool (never an ``http_client`` you passed in). Idempotent."""
        await self._core.aclose()

    async def __aenter__(self) -> AsyncTanxSession:
        # Build the transport now (on the running loop), not inside the first request.
        self._core.start(self._timeout)
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        return f"<AsyncTanxSession {self._base_url}{' closed' if self.closed else ''}>"

    # -- the pipeline ---------------------------------------------------------------------

    async def _auth_post(self, path: str, body: dict[str, Any], idempotent: bool) -> dict[str, Any]:
        return await self.request(
            "POST", path, json=body, private=False, idempotent=idempotent, limited=False
        )

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        private: bool = True,
        idempotent: bool,
        trace: Trace | None = None,
        limited: bool = True,
    ) -> dict[str, Any]:
        """Send one logical request (with its retries) and return the decoded envelope.

        Low-level: prefer the namespaces (``session.orders``). ``idempotent`` says whether a
        request that may have been processed can be sent again; ``limited=False`` skips the
        concurrency limiter (auth requests, which others wait on, must not queue behind them).
        """
        core = self._core
        timeout = self._timeout
        sender, limiter = core.start(timeout)
        policy = self._retry
        auth = core.auth
        url = self._base_url + path
        if params:
            url += "?" + urlencode(params)
        content = dumps(json) if json is not None else None
        headers = dict(_STATIC_HEADERS)
        if content is None:
            del headers["Content-Type"]
        on_event = core.on_event
        debug = logger.isEnabledFor(logging.DEBUG)
        attempt = 0
        renewed = False
        while True:
            if core.closed:
                raise SessionClosedError("this AsyncTanxSession was closed during the request")
            token = None
            if private:
                token = await auth.token()
                headers["Authorization"] = "JWT " + token
            await core.flow.acquire()
            if trace is not None:
                trace.attempts += 1
                if trace.first_sent is None:
                    trace.first_sent = time.time()
            started = time.monotonic()
            error: TanxError
            try:
                if limited:
                    # acquire_nowait first: the uncontended path then costs no event-loop turn.
                    try:
                        limiter.acquire_nowait()
                    except anyio.WouldBlock:
                        await limiter.acquire()
                    try:
                        raw = await sender.send(method, url, headers, content, timeout)
                    finally:
                        limiter.release()
                else:
                    raw = await sender.send(method, url, headers, content, timeout)
            except APIConnectionError as exc:
                if core.closed:
                    raise _closed_during(exc, trace) from exc
                exc.method, exc.path = method, path
                error = exc
                if debug:
                    # One line per attempt, answered or not.
                    logger.debug(
                        "%s %s -> %s in %.1f ms (attempt %d)",
                        method,
                        path,
                        type(exc).__name__,
                        (time.monotonic() - started) * 1e3,
                        attempt + 1,
                    )
            else:
                elapsed = time.monotonic() - started
                if debug:
                    logger.debug(
                        "%s %s -> %d in %.1f ms (attempt %d)",
                        method,
                        path,
                        raw.status,
                        elapsed * 1e3,
                        attempt + 1,
                    )
                if on_event is not None:
                    on_event(
                        RequestEvent(
                            kind="response",
                            method=method,
                            path=path,
                            status=raw.status,
                            elapsed=elapsed,
                            attempt=attempt,
                        )
                    )
                if token is not None and not renewed and raw.status == 401 and is_access_token_error(raw):
                    # One refresh and one resend per request; the refresh itself is single-flight.
                    renewed = True
                    await auth.renew(token)
                    continue
                try:
                    decoded = decode_envelope(raw, method=method, path=path)
                    if trace is not None:
                        trace.content = raw.content
                    return decoded
                except APIStatusError as exc:
                    error = exc
                    if isinstance(exc, RateLimitError):
                        # The whole session waits, not just this request.
                        core.flow.pause(policy.delay(exc, attempt=attempt))
            if trace is not None and is_ambiguous(error):
                trace.ambiguous = True
            if not policy.should_retry(error, attempt=attempt, idempotent=idempotent):
                if on_event is not None:
                    on_event(
                        RequestEvent(
                            kind="error",
                            method=method,
                            path=path,
                            status=getattr(error, "status_code", None),
                            attempt=attempt,
                            error=type(error).__name__,
                        )
                    )
                raise error
            delay = policy.delay(error, attempt=attempt)
            logger.warning(
                "%s %s failed (%s); retry %d/%d in %.2f s",
                method,
                path,
                brief(error),
                attempt + 1,
                policy.max_retries,
                delay,
            )
            if on_event is not None:
                on_event(
                    RequestEvent(
                        kind="retry",
                        method=method,
                        path=path,
                        status=getattr(error, "status_code", None),
                        attempt=attempt,
                        delay=delay,
                        error=type(error).__name__,
                    )
                )
            await anyio.sleep(delay)
            attempt += 1


def _closed_during(exc: APIConnectionError, trace: Trace | None) -> SessionClosedError:
    if trace is not None and exc.maybe_processed:
        # Closed under a request already written: it may have been processed.
        trace.ambiguous = True
    return SessionClosedError("this AsyncTanxSession was closed during the request")
