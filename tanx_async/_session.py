"""``AsyncTanxSession``: what the caller configures, checked once, and the public surface.

The session validates its arguments, builds the shared ``Pipeline`` (``_pipeline.py``: the
transport, tokens, limiter and the request loop) and hands requests to it with its own timeout
and retry policy. ``with_options`` views are copies with their own timeout, retries and deadline
(checked by the same functions as the constructor's), sharing the pipeline.
"""

from __future__ import annotations

import copy
import ssl
from collections.abc import Collection, Coroutine
from typing import TYPE_CHECKING, Any, Literal

from . import _constants as C
from . import _deadline, _stream
from . import _validate as V
from ._attempts import Response
from ._auth import Auth, AuthPaths, Signer, TokensCallback
from ._config import concurrency_for, pool_limits, resolve_base_url
from ._errors import APIStatusError, NotAuthenticatedError, ResponseValidationError, SessionClosedError
from ._fleet import FleetFlow, FleetLink
from ._flow import FlowControl
from ._httpx import httpx
from ._pipeline import Pipeline
from ._retry import RetryPolicy
from ._transports import TransportName, check_transport
from ._types import NOT_GIVEN, NotGiven
from ._unclosed import Origin, warn_unclosed
from .events import EventCallback
from .fleet import Fleet, identity_key
from .orders import Orders

if TYPE_CHECKING:
    from types import TracebackType

    from .models import TokenPair

__all__ = ["AsyncTanxSession"]

Network = Literal["mainnet", "testnet"]
_DEFAULT_TIMEOUT = httpx.Timeout(
    C.READ_TIMEOUT, connect=C.CONNECT_TIMEOUT, write=C.WRITE_TIMEOUT, pool=C.POOL_TIMEOUT
)


def _normalise_timeout(timeout: float | httpx.Timeout) -> httpx.Timeout:
    if isinstance(timeout, httpx.Timeout):
        return timeout
    return httpx.Timeout(V.seconds("timeout", timeout, also=" or an httpx.Timeout"))


def _checked_deadline(deadline: float | None) -> float | None:
    return None if deadline is None else V.seconds("deadline", deadline, also=" or None")


def _retry_policy(max_retries: int) -> RetryPolicy:
    V.setting_int("max_retries", max_retries, minimum=0)
    return RetryPolicy(max_retries=max_retries)


def _signer_of(private_key: str | None, eth_address: str | None, signer: Signer | None) -> Signer | None:
    """The signer the login arguments make: ``signer``, or a ``PrivateKeySigner`` of
    ``private_key`` (checked against ``eth_address`` when given), or None."""
    if private_key is not None:
        if signer is not None:
            raise ValueError("pass either private_key or signer, not both")
        from ._signer import PrivateKeySigner

        signer = PrivateKeySigner(private_key, eth_address=eth_address)
    elif eth_address is not None and signer is None:
        raise ValueError("eth_address needs private_key (or pass a signer)")
    if signer is not None and not isinstance(signer, Signer):
        raise TypeError("signer must have an `address` and an async `sign(message) -> str`")
    return signer


class AsyncTanxSession:
    """An async session with the tanX exchange.

    One session owns one connection pool, the JWT tokens and their refresh, retries, the
    client-side rate limit and timeouts. Use it as ``async with AsyncTanxSession(...) as s`` or
    call ``aclose()``. All arguments are keyword-only:

    - ``base_url`` (default mainnet ``https://api.tanx.fi``) or ``network="mainnet"|"testnet"``.
    - ``access_token``/``refresh_token``; or ``private_key`` + ``eth_address`` (needs the
      ``login`` extra) or any ``signer`` to log in (and log in again when the refresh token dies).
    - ``on_tokens``: called (sync or async) with every new ``TokenPair``, to persist them.
    - ``timeout``: seconds or an ``httpx.Timeout`` (default connect 3 s, read 5 s, pool 10 s),
      for each HTTP attempt.
    - ``deadline``: seconds one operation may take in all, retries and the look-up that
      settles a cancel included (default 10 s; ``None``: no overall bound). ``orders.cancel``,
      ``get`` and ``list`` take ``deadline=`` per call; in a batch it bounds each order. Not
      cut by it: a token renewal under way (bounded by its own 10 s) and the wait for a
      request slot (``max_concurrency``).
    - ``max_retries`` (default 3), ``limits`` (an ``httpx.Limits``, default 68 connections),
      ``max_concurrency`` (requests in flight, default 64, at most the pool size),
      ``rate_limit`` (requests/s, with ``rate_limit_burst``) shared by every task.
    - ``http_client``: an ``httpx.AsyncClient`` you own (never closed by the session);
      ``transport``: ``"auto"``/``"native"`` (our HTTP/1.1 client: on ``asyncio.Protocol``
      under asyncio, over anyio streams under trio), ``"httpx"``. (``"aiohttp"`` was withdrawn:
      it could take a stray answer on an idle connection for the next request's.)
    - ``verify``: TLS verification, on unless you pass ``False`` or your own ``ssl.SSLContext``.
      Plain ``http://`` is refused for non-loopback hosts unless ``allow_insecure_http=True``.
    - ``trust_env`` (default True, as in httpx): honour ``HTTP_PROXY``, ``HTTPS_PROXY``,
      ``ALL_PROXY``, ``NO_PROXY``, ``SSL_CERT_FILE`` and ``SSL_CERT_DIR`` (the native transport
      hands a proxied exchange to the httpx transport); False ignores them all.
    - ``auth_paths``, ``max_response_bytes`` (default 8 MiB), ``on_event`` (see ``events``).
    - ``stream_url``: the private stream's URL (default: ``base_url`` with ``https`` -> ``wss``,
      ``http`` -> ``ws`` and the path ``/private``); see ``stream()``.
    - ``fleet``: a ``tanx_async.Fleet`` shared with the desk's other processes (and machines):
      their sessions share one token pair (one renewal per expiry for all of them), one rate
      budget (``rate_limit``/``rate_limit_burst`` are the fleet's, and a 429 pauses them all) and
      the exchange clock's offset. See ``tanx_async.fleet`` and docs/fleet.md.
    - ``keep_warm``: the built-in transport replaces idle connections before the server's
      ``Keep-Alive`` timeout or the pool's expiry lets them lapse (or right after the server
      closed them), so a burst after minutes of quiet finds its connections open. Reconnecting
      only: no request is sent. Off by default; see ``warm_up()``.
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
        deadline: float | None = C.OPERATION_DEADLINE,
        max_retries: int = C.MAX_RETRIES,
        limits: httpx.Limits | None = None,
        max_concurrency: int | None = None,
        rate_limit: float | None = None,
        rate_limit_burst: int = 1,
        http_client: httpx.AsyncClient | None = None,
        transport: TransportName = "auto",
        verify: bool | ssl.SSLContext = True,
        trust_env: bool = True,
        allow_insecure_http: bool = False,
        auth_paths: AuthPaths | None = None,
        max_response_bytes: int = C.MAX_RESPONSE_BYTES,
        refresh_skew: float = C.REFRESH_SKEW,
        on_event: EventCallback | None = None,
        stream_url: str | None = None,
        keep_warm: bool = False,
        fleet: Fleet | None = None,
    ) -> None:
        self._base_url = resolve_base_url(base_url, network, allow_insecure_http)
        self._stream_url = _stream.stream_url(self._base_url, stream_url, allow_insecure_http)
        for name, value in (("access_token", access_token), ("refresh_token", refresh_token)):
            if value is not None and (not isinstance(value, str) or not value.strip()):
                raise TypeError(f"{name} must be a non-empty string")
        signer = _signer_of(private_key, eth_address, signer)
        self._retry = _retry_policy(max_retries)
        check_transport(transport)
        if not isinstance(keep_warm, bool):
            raise TypeError(f"keep_warm must be True or False, got {type(keep_warm).__name__}")
        if keep_warm and (http_client is not None or transport == "httpx"):
            raise ValueError(
                "keep_warm=True needs the built-in transport (transport='native' or 'auto' on asyncio)"
            )
        if verify is not True and not isinstance(verify, ssl.SSLContext | bool):
            raise TypeError("verify must be True, False or an ssl.SSLContext")
        if not isinstance(trust_env, bool):
            raise TypeError("trust_env must be True or False")
        limits = limits or pool_limits()
        max_concurrency = concurrency_for(limits, max_concurrency)
        if max_response_bytes < 1024:
            raise ValueError("max_response_bytes must be at least 1024")
        self._timeout = _normalise_timeout(timeout)
        self._deadline = _checked_deadline(deadline)
        if fleet is not None and not isinstance(fleet, Fleet):
            raise TypeError(f"fleet must be a tanx_async.Fleet, got {type(fleet).__name__}")
        flow = FlowControl(rate_limit, rate_limit_burst)  # (checks them, with or without a fleet)
        # The session keeps no secret: tokens and signer live in the pipeline's ``Auth``.
        auth = Auth(
            access_token=access_token,
            refresh_token=refresh_token,
            signer=signer,
            on_tokens=on_tokens,
            paths=auth_paths or AuthPaths(),
            skew=refresh_skew,
            on_event=on_event,
        )
        link = None
        if fleet is not None:
            key = identity_key(
                self._base_url,
                refresh_token=refresh_token,
                eth_address=signer.address if signer is not None else None,
            )
            link = FleetLink(fleet, base_url=self._base_url, key=key, auth=auth, on_event=on_event)
            flow = FleetFlow(link, rate_limit, rate_limit_burst)
        self._pipeline = Pipeline(
            base_url=self._base_url,
            http_client=http_client,
            transport=transport,
            limits=limits,
            verify=verify,
            trust_env=trust_env,
            max_response_bytes=max_response_bytes,
            max_concurrency=max_concurrency,
            flow=flow,
            auth=auth,
            on_event=on_event,
            timeout=self._timeout,
            policy=self._retry,
            keep_warm=keep_warm,
        )
        self._pipeline.fleet = link
        self.orders = Orders(self)
        #: Where the session that built the pipeline was created (its views: None), for the
        #: warning when it was used and never closed (``__del__``); a view keeps that session
        #: alive (``_owner``), so the warning comes only once every view is gone too.
        self._origin: Origin | None = Origin(1)
        self._owner: AsyncTanxSession | None = None

    # -- public surface -------------------------------------------------------------------

    @property
    def base_url(self) -> str:
        """The exchange's base URL (no trailing slash)."""
        return self._base_url

    @property
    def max_concurrency(self) -> int:
        """The most requests this session has in flight at once (its limiter's size)."""
        return self._pipeline.max_concurrency

    @property
    def tokens(self) -> TokenPair | None:
        """The current token pair (its repr hides the tokens), or None before login."""
        return self._pipeline.auth.tokens

    @property
    def uid(self) -> str | None:
        """The exchange's user id, known after a wallet login."""
        return self._pipeline.auth.uid

    @property
    def eth_address(self) -> str | None:
        """The wallet address of the signer (``private_key``/``eth_address`` or ``signer``)."""
        signer = self._pipeline.auth.signer
        return signer.address if signer is not None else None

    @property
    def deadline(self) -> float | None:
        """Seconds one operation may take in all (None: no overall bound)."""
        return self._deadline

    def _operation(self, deadline: float | None) -> float | None:
        """The deadline of one operation: the per-call ``deadline`` (checked) or the session's."""
        return self._deadline if deadline is None else V.seconds("deadline", deadline)

    @property
    def closed(self) -> bool:
        """True after ``aclose()`` (or leaving ``async with``)."""
        return self._pipeline.closed

    def with_options(
        self,
        *,
        timeout: float | httpx.Timeout | NotGiven = NOT_GIVEN,
        max_retries: int | NotGiven = NOT_GIVEN,
        deadline: float | NotGiven | None = NOT_GIVEN,
    ) -> AsyncTanxSession:
        """A view of this session with other timeouts, retries or deadline, sharing its pool,
        tokens and every other setting (an aggressive cancel path next to a patient listing
        path). Closing either closes both.

        An argument left out keeps this session's value; ``deadline=None`` removes the overall
        bound. New values are checked as the constructor checks them."""
        view = copy.copy(self)
        if not isinstance(timeout, NotGiven):
            view._timeout = _normalise_timeout(timeout)
        if not isinstance(max_retries, NotGiven):
            view._retry = _retry_policy(max_retries)
        if not isinstance(deadline, NotGiven):
            view._deadline = _checked_deadline(deadline)
        view.orders = Orders(view, self.orders._cancels)
        # The warning for a session never closed is its creator's alone (a view keeps it alive).
        view._origin = None
        view._owner = self._owner or self
        return view

    async def login(self) -> TokenPair:
        """Log in now with the configured signer (otherwise done on first use), even when the
        current tokens are still valid. Without a signer, raises ``NotAuthenticatedError``
        (use ``refresh()`` to renew with a refresh token)."""
        pipeline = self._pipeline
        if pipeline.auth.signer is None:
            raise NotAuthenticatedError(
                "login() needs a signer: pass private_key/eth_address or signer (refresh() renews tokens)"
            )
        await pipeline.renew(pipeline.auth.access, login=True)
        return self._current_tokens()

    async def refresh(self) -> TokenPair:
        """Refresh the access token now (single flight with any refresh already running); with no
        refresh token, a signer logs in instead."""
        pipeline = self._pipeline
        await pipeline.renew(pipeline.auth.access)
        return self._current_tokens()

    def _current_tokens(self) -> TokenPair:
        tokens = self._pipeline.auth.tokens
        if tokens is None:  # pragma: no cover - a renewal either stores tokens or raises
            raise NotAuthenticatedError("no tokens after renewal")
        return tokens

    def stream(
        self,
        streams: Collection[str] = _stream.STREAMS,
        *,
        buffer: int = C.STREAM_BUFFER,
        heartbeat: float = C.STREAM_HEARTBEAT,
        max_reconnects: int = C.STREAM_MAX_RECONNECTS,
    ) -> _stream.OrderStream:
        """The private order stream: ``async with session.stream() as events: async for e in
        events``, yielding ``OrderUpdate``, ``TradeUpdate`` and ``StreamGap``.

        ``streams``: ``"order"`` and/or ``"trade"``. ``buffer``: events kept for a slow consumer
        (beyond it they are dropped and a ``StreamGap`` says how many). ``heartbeat``: seconds of
        silence before a ping; twice that and the stream counts as stalled and reconnects.
        ``max_reconnects``: consecutive failed attempts before ``StreamError`` (a connection that
        dies within 10 s of subscribing counts as a failed one). Reconnects use
        the current access token (renewed when expiring or refused); each is followed by a
        ``StreamGap``. Entering the block connects and subscribes (or raises ``StreamError``),
        within the session's ``deadline`` when it has one (attempts and backoff included)."""
        pipeline = self._pipeline
        if pipeline.closed:
            raise SessionClosedError("this AsyncTanxSession is closed")
        return _stream.OrderStream(
            pipeline,
            self._stream_url,
            streams=_stream.checked_streams(streams),
            buffer=V.setting_int("buffer", buffer, minimum=2),
            heartbeat=V.seconds("heartbeat", heartbeat),
            max_reconnects=V.setting_int("max_reconnects", max_reconnects, minimum=0),
            connect_timeout=self._timeout.connect or C.CONNECT_TIMEOUT,
            open_within=self._deadline,
        )

    def _push_stream(self, open_within: float | None) -> _stream.OrderStream:
        """The ``order`` stream a ``confirm=True`` batch opens (few tries: polling is the plan B),
        within ``open_within`` seconds and the session's ``deadline``."""
        if self._deadline is not None:
            open_within = self._deadline if open_within is None else min(open_within, self._deadline)
        return _stream.OrderStream(
            self._pipeline,
            self._stream_url,
            streams=("order",),
            buffer=C.STREAM_BUFFER,
            heartbeat=C.STREAM_HEARTBEAT,
            max_reconnects=C.STREAM_MAX_RECONNECTS,
            connect_timeout=self._timeout.connect or C.CONNECT_TIMEOUT,
            open_attempts=C.CONFIRM_STREAM_ATTEMPTS,
            open_within=open_within,
        )

    async def health(self) -> bool:
        """``GET /sapi/v1/health/``: True when the exchange says it is working (``"status":
        "success"``), False when its answer says anything else (``"error"``, ``"maintenance"``);
        an answer that is not a JSON envelope raises."""
        try:
            await self.request("GET", C.HEALTH_PATH, private=False, idempotent=True)
        except APIStatusError as exc:
            if exc.status_code // 100 == 2:  # 2xx with "status": "error"
                return False
            raise
        except ResponseValidationError as exc:
            if any("$.status" in error for error in exc.errors):
                return False
            raise
        return True

    async def warm_up(self, connections: int | None = None) -> int:
        """Open connections ahead of need, so a burst does not pay for the TCP and TLS
        handshakes: until ``connections`` (default ``max_concurrency``; at most the pool size)
        are idle and ready, each one connected and its TLS certificate verified. Sends no
        request. Returns how many connections are ready.

        Only the built-in transport can do this; with ``transport="httpx"``, an
        ``http_client`` or under trio it does nothing, logs why and returns 0. Connections
        still lapse when idle (the server's ``Keep-Alive`` timeout, the pool's expiry): call
        it shortly before a burst, or pass ``keep_warm=True``. Raises the connect error when
        not a single connection could be opened."""
        wanted = (
            self.max_concurrency
            if connections is None
            else V.setting_int("connections", connections, minimum=1)
        )
        return await self._pipeline.warm_up(wanted, self._timeout)

    async def aclose(self) -> None:
        """Close the connection pool (never an ``http_client`` you passed in). Idempotent."""
        await self._pipeline.aclose()

    async def __aenter__(self) -> AsyncTanxSession:
        # Build the transport now (on the running loop), not inside the first request.
        self._pipeline.start(self._timeout)
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

    def __del__(self) -> None:
        # A ``ResourceWarning`` (``_unclosed``) when this session built its transport (a request,
        # ``warm_up`` or ``async with``) and was never closed; not for an ``http_client`` the
        # caller owns, nor for a session whose constructor raised.
        origin = getattr(self, "_origin", None)
        if origin is None:
            return
        pipeline = self._pipeline
        if not pipeline.closed and pipeline.sender is not None and pipeline.http_client is None:
            warn_unclosed(self, origin)

    # -- requests ---------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        private: bool = True,
        idempotent: bool,
    ) -> dict[str, Any]:
        """Send one logical request (with its retries) and return the decoded envelope.

        Low-level: prefer the namespaces (``session.orders``). ``idempotent`` says whether a
        request that may have been processed can be sent again. Bounded, retries included, by
        the session's ``deadline``.
        """
        with _deadline.within(self._deadline):
            response = await self._send(
                method, path, params=params, json=json, private=private, idempotent=idempotent
            )
        return response.body

    def _send(self, method: str, path: str, **options: Any) -> Coroutine[Any, Any, Response]:
        """``request`` with the whole answer (raw bytes and attempt history too), for the
        namespaces; ``options`` are ``Pipeline.send``'s (``attempts=`` among them). Bounded by
        the deadline of the operation it belongs to, if any (``_deadline.within``). The
        pipeline's coroutine itself, to await (no coroutine of its own: one per request less)."""
        return self._pipeline.send(
            method, path, timeout=self._timeout, policy=self._retry, deadline=_deadline.current(), **options
        )
