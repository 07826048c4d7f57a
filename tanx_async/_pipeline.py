"""The request pipeline: every HTTP request a session makes goes through ``Pipeline.send``.

One loop in one place, in three layers as httpx's client has them: ``send`` (the request loop:
decode or judge each answer, back off and retry, never past the deadline) ->
``_send_handling_auth`` (one attempt with the access token it needs, sent once more after a
refresh when the exchange says it expired) -> ``_send_single_request`` (one attempt on the wire:
deadline, flow control, concurrency slot, the transport, the answer told).

The pipeline owns what a session and all its ``with_options`` views share: the transport (built
lazily on the running event loop), the concurrency limiter, the rate limit and 429 pause, and the
tokens (``Auth``).

Authentication is driven from here: ``Auth`` holds the tokens and decides *what* a refresh or a
login needs (``Auth.renewal`` yields the requests), the pipeline sends them, once for all the
requests that noticed the expiry (single flight), shielded and bounded by its own timeout.

``send`` returns a ``Response``: the decoded envelope, the raw bytes and the ``Attempts`` record
(how many attempts, when the first left, whether one may have been processed; ``_attempts``). A
caller that must observe a request while it runs (the batch deadline) passes its own
``Attempts``; one whose first attempt an ``Express`` made (``_express``) passes it as ``first``.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncGenerator, Callable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode

import anyio

from ._attempts import Attempt, Attempts, Response
from ._auth import Auth, AuthRequest
from ._deadline import Deadline
from ._duration import duration
from ._envelope import decode_envelope, is_access_token_error
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    EventLoopMismatchError,
    NotAuthenticatedError,
    RateLimitError,
    ResponseValidationError,
    SessionClosedError,
    TanxError,
    brief,
)
from ._express import Express
from ._flow import FlowControl, Limiter
from ._header_sets import HeaderSets
from ._httpx import httpx
from ._instrument import Instrumentation, operation
from ._json import dumps
from ._log import logger
from ._owned import Owned
from ._renewal import Flight, renewing
from ._retry import RetryPolicy, is_ambiguous
from ._transports import Immediate, RawResponse, Sender, TransportName, Warmable, make_sender
from .events import EventCallback, EventKind, RequestEvent

if TYPE_CHECKING:
    from ._fleet import FleetLink

__all__ = ["Pipeline"]

_WRONG_LOOP = (
    "this AsyncTanxSession is bound to the event loop it was first used on (its connections and "
    "locks belong to that loop); create one session per event loop"
)


def _loop_probe() -> tuple[Callable[[], object], object]:
    """How to tell the running event loop (asyncio's loop, or trio's run) and which one runs now."""
    try:
        return asyncio.get_running_loop, asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio (anyio supports no other backend)
        import trio

        return trio.lowlevel.current_trio_token, trio.lowlevel.current_trio_token()


class Pipeline:
    """The state a session and all its ``with_options`` views share, and the request loop."""

    #: Batches may use ``express`` (False: every request goes through ``send``; tests run the
    #: batch engine both ways).
    immediate_enabled: bool = True
    #: The session's fleet (``_fleet.py``), set by the session; None: the session is alone.
    fleet: FleetLink | None = None

    def __init__(
        self,
        *,
        base_url: str,
        http_client: httpx.AsyncClient | None,
        transport: TransportName,
        limits: httpx.Limits,
        verify: Any,
        trust_env: bool = True,
        max_response_bytes: int,
        max_concurrency: int,
        flow: FlowControl,
        auth: Auth,
        on_event: EventCallback | None,
        timeout: httpx.Timeout,
        policy: RetryPolicy,
        keep_warm: bool = False,
    ) -> None:
        self.base_url = base_url
        self.keep_warm = keep_warm
        #: The session's own timeout and retry policy (its views may have others): auth uses them.
        self.timeout = timeout
        self.policy = policy
        self.http_client = http_client
        self.transport: TransportName = transport
        self.limits = limits
        self.verify = verify
        self.trust_env = trust_env
        self.max_response_bytes = max_response_bytes
        self.max_concurrency = max_concurrency
        self.flow = flow
        self.auth = auth
        self.on_event = on_event
        #: Spans and metrics (``tanx_async.telemetry``), or None (``_instrument``).
        self.instrumentation: Instrumentation | None = None
        self.sender: Sender | None = None
        #: The sender again where it can send from callbacks (``express``), else None.
        self.immediate_sender: Immediate | None = None
        self.limiter: Limiter | None = None

        self.closed = False
        self._flight: Flight | None = None
        #: The event loop the transport and limiter were built on, and how to read the current one.
        self._loop: object = None
        self._current_loop: Callable[[], object] = asyncio.get_running_loop
        #: The streams and ``cancel_iter`` batches running for the session (ended by ``aclose``).
        self.owned = Owned()
        #: The request headers per token (``_header_sets``).
        self.headers = HeaderSets()

    # -- lifecycle ------------------------------------------------------------------------

    def start(self, timeout: httpx.Timeout) -> tuple[Sender, Limiter]:
        """The transport and limiter, built on first use: the transport depends on the running
        event loop (asyncio or trio), and anyio primitives must be created inside it."""
        if self.closed:
            raise SessionClosedError("this AsyncTanxSession is closed")
        if self.sender is not None and self.limiter is not None:
            self.check_loop()
        else:
            self._current_loop, self._loop = _loop_probe()
            self.limiter = Limiter(self.max_concurrency)

            self.sender = make_sender(
                http_client=self.http_client,
                transport=self.transport,
                limits=self.limits,
                verify=self.verify,
                timeout=timeout,
                max_response_bytes=self.max_response_bytes,
                base_url=self.base_url,
                trust_env=self.trust_env,
                keep_warm=self.keep_warm,
            )
            self.immediate_sender = self.sender if isinstance(self.sender, Immediate) else None
            if self.keep_warm and not isinstance(self.sender, Warmable):
                logger.warning(
                    "keep_warm=True: the %s transport cannot keep connections warm",
                    type(self.sender).__name__,
                )
        return self.sender, self.limiter

    def check_loop(self) -> None:
        """``EventLoopMismatchError`` when the pipeline was started on another event loop."""
        if self.sender is not None and not self.on_bound_loop():
            raise EventLoopMismatchError(_WRONG_LOOP)

    def on_bound_loop(self) -> bool:
        """Whether the running event loop is the one this pipeline was first used on (one C call
        on asyncio: this runs before every request)."""
        try:
            return self._current_loop() is self._loop
        except RuntimeError:  # another kind of event loop than the bound one
            return False

    async def aclose(self) -> None:
        if self.closed:
            return
        self.closed = True
        if self._loop is None or self.on_bound_loop():  # (a stream alone binds no loop)
            await self.owned.aclose(SessionClosedError("this AsyncTanxSession was closed"))
        if self.fleet is not None:
            with anyio.CancelScope(shield=True):
                await self.fleet.aclose()
        sender, self.sender = self.sender, None
        self.immediate_sender = None
        if sender is not None:
            if not self.on_bound_loop():
                # Its connections belong to the other loop: closing them from here would fail
                # ("Event loop is closed") or race it. Hand the close to that loop, if it lives.
                loop = self._loop
                if isinstance(loop, asyncio.AbstractEventLoop) and not loop.is_closed():
                    asyncio.run_coroutine_threadsafe(sender.aclose(), loop)
                else:
                    logger.warning("AsyncTanxSession closed from another event loop: %s", _WRONG_LOOP)
                return
            with anyio.CancelScope(shield=True):
                await sender.aclose()

    async def warm_up(self, connections: int, timeout: httpx.Timeout) -> int:  # noqa: ASYNC109
        """Open up to ``connections`` connections to the exchange ahead of need (see
        ``AsyncTanxSession.warm_up``); 0 with a log line where the transport cannot."""
        sender, _ = self.start(timeout)
        if not isinstance(sender, Warmable):
            logger.info(
                "warm_up: the %s transport cannot open connections ahead of need; nothing done",
                type(sender).__name__,
            )
            return 0
        return await sender.warm_up(self.base_url + "/", connections, timeout)

    def is_closed(self) -> bool:
        return self.closed

    def emit(self, kind: EventKind, method: str, path: str, **fields: Any) -> None:
        """Tell the instrumentation and ``on_event``; what ``on_event`` raises is logged, never
        the request's (a broken metrics hook must not fail a cancel)."""
        if self.on_event is not None or self.instrumentation is not None:
            event = RequestEvent(kind=kind, method=method, path=path, **fields)
            if self.instrumentation is not None:
                self.instrumentation.event(event)
            if self.on_event is not None:
                try:
                    self.on_event(event)
                except Exception:
                    logger.exception("on_event raised (ignored) for a %s event", kind)

    # -- the request loop -----------------------------------------------------------------

    async def send(
        self,
        method: str,
        path: str,
        *,
        timeout: httpx.Timeout,  # noqa: ASYNC109 - the HTTP timeouts of each attempt, not a deadline
        policy: RetryPolicy,
        params: dict[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        private: bool = True,
        idempotent: bool,
        limited: bool = True,
        attempts: Attempts | None = None,
        deadline: Deadline | None = None,
        first: Attempt | None = None,
    ) -> Response:
        """Send one logical request (with its retries); return the answer or raise its error.

        This is the request loop: each answer is decoded or judged, and an error is retried
        (after its backoff, never past the deadline: ``_backoff``) or raised. One attempt, with
        the access token it needs, is ``_send_handling_auth``'s. (The request's parts travel
        down as arguments, not in an object: that would cost every cancel an allocation.)

        ``idempotent`` says whether a request that may have been processed can be sent again;
        ``limited=False`` skips the concurrency limiter (auth requests, which others wait on,
        must not queue behind them). ``deadline``: the operation's (``_deadline``), which no
        attempt, backoff or 429 pause may outlast; when it is reached, ``APITimeoutError``.

        The deadline costs no timer of its own: each attempt's transport timeouts are cut to
        what is left, and it is checked before each attempt. Not cut: a token renewal (shielded,
        other requests wait on it; bounded by its own timeout) and the wait for the session's
        concurrency limiter.

        ``json``: a body to encode; ``content``: one encoded already (the cancel's, which its
        fast path sends too: ``_cancel.cancel_body``). ``first``: the first attempt, already made
        and answered (``Express``, whose ``attempts`` this must be): the loop goes on from its
        answer as if it had made it itself."""
        sender, limiter = self.sender, self.limiter
        if first is None and (sender is None or limiter is None or self.closed or not self.on_bound_loop()):
            sender, limiter = self.start(timeout)  # builds them, or raises the right error
        if self.fleet is not None and not self.fleet.joined:
            await self.fleet.join()  # the fleet's tokens and clock before the first request
        url = self.base_url + path
        if params:
            url += "?" + urlencode(params)
        if json is not None:
            content = dumps(json)
        record = attempts if attempts is not None else Attempts()
        renewed = False
        attempt = 0
        while True:
            error: TanxError
            result, expired, renewed = await self._send_handling_auth(
                method, path, url, content, timeout, private, limited, sender, limiter, record,
                attempt, deadline, first, renewed,
            )  # fmt: skip
            first = None
            if isinstance(result, APIConnectionError):
                error = result
            else:
                try:
                    return Response(decode_envelope(result, method=method, path=path), result.content, record)
                except APIStatusError as exc:
                    error = exc
                    if expired and not self.auth.can_renew:
                        exc.message = f"{exc.message} (no refresh token or signer was given to renew it)"
                    if isinstance(exc, RateLimitError):
                        # The whole session waits, not just this request.
                        self.flow.pause(policy.delay(exc, attempt=attempt))
                        if self.fleet is not None:
                            await self.flow.share_pause()  # and the whole fleet, from now
            await anyio.sleep(
                self._backoff(method, path, record, error, attempt, policy, idempotent, deadline)
            )
            attempt += 1

    def _backoff(
        self,
        method: str,
        path: str,
        record: Attempts,
        error: TanxError,
        attempt: int,
        policy: RetryPolicy,
        idempotent: bool,
        deadline: Deadline | None,
    ) -> float:
        """Whether a failed attempt is retried: the delay before the next one (said in a log
        line and a ``retry`` event), or ``error`` raised (the request's last word, or the
        deadline's when the delay would outlast it)."""
        if is_ambiguous(error):
            record.ambiguous = True
        status = getattr(error, "status_code", None)
        if not policy.should_retry(error, attempt=attempt, idempotent=idempotent):
            if isinstance(error, APIConnectionError) and record.ambiguous and not error.maybe_processed:
                # The last attempt never left, but an earlier one may have been processed:
                # the error speaks of the request (a caller resends only when it is False).
                error.maybe_processed = True
                error.message = f"{error.message} (an earlier attempt may have been processed)"
            self.emit("error", method, path, status=status, attempt=attempt, error=type(error).__name__)
            raise error
        delay = policy.delay(error, attempt=attempt)
        if deadline is not None and delay >= deadline.remaining():
            # No time left for another attempt: say so now rather than sleep into it.
            raise deadline.expired(method, path, sent=record.ambiguous) from error
        logger.warning(
            "%s %s failed (%s); retry %d/%d in %s",
            method,
            path,
            brief(error),
            attempt + 1,
            policy.max_retries,
            duration(delay),
        )
        self.emit(
            "retry", method, path, status=status, attempt=attempt, delay=delay, error=type(error).__name__
        )
        return delay

    async def _send_handling_auth(
        self,
        method: str,
        path: str,
        url: str,
        content: bytes | None,
        timeout: httpx.Timeout,  # noqa: ASYNC109 - each attempt's transport timeouts
        private: bool,
        limited: bool,
        sender: Sender | None,
        limiter: Limiter | None,
        record: Attempts,
        attempt: int,
        deadline: Deadline | None,
        first: Attempt | None,
        renewed: bool,
    ) -> tuple[RawResponse | APIConnectionError, bool, bool]:
        """One attempt as the exchange will take it: with the access token it needs (``private``;
        obtained or renewed first when missing or due, single flight: ``token``), and sent once
        more with a fresh one when the exchange answers that it expired, unless the request
        ``renewed`` it already (once per request: ``renew``). ``first``: the attempt an
        ``Express`` made, gone on from as if made here; the others are
        ``_send_single_request``'s.

        Returns the answer (or connection error), told; whether it says the token expired (for
        ``send`` to judge); whether the request has renewed its token now."""
        while True:
            token: str | None
            result: RawResponse | APIConnectionError
            if first is not None:
                # Its first attempt was made by an ``Express`` and answered in a callback.
                token = first.token
                record.sending = False
                if isinstance(first.result, APIConnectionError):
                    result = self._failed(method, path, record, first.result, first.started, attempt)
                else:
                    result = first.result
                    if not first.told:
                        self._received(result, method, path, time.monotonic() - first.started, attempt)
                first = None
            else:
                if self.closed:
                    raise SessionClosedError("this AsyncTanxSession was closed during the request")
                token = None
                if private:
                    token = self.auth.usable()
                    if token is None:
                        with renewing(record, method, path):
                            token = await self.token()
                result = await self._send_single_request(
                    method,
                    path,
                    url,
                    content,
                    token,
                    timeout,
                    limited,
                    sender,
                    limiter,
                    record,
                    attempt,
                    deadline,
                )
            if isinstance(result, APIConnectionError):
                return result, False, renewed
            expired = token is not None and result.status == 401 and is_access_token_error(result)
            if expired and not renewed and self.auth.can_renew:
                # One refresh and one resend per request; the refresh itself is single-flight.
                renewed = True
                with renewing(record, method, path):
                    await self.renew(token)
                continue
            return result, expired, renewed

    async def _send_single_request(
        self,
        method: str,
        path: str,
        url: str,
        content: bytes | None,
        token: str | None,
        timeout: httpx.Timeout,  # noqa: ASYNC109 - the attempt's transport timeouts
        limited: bool,
        sender: Sender | None,
        limiter: Limiter | None,
        record: Attempts,
        attempt: int,
        deadline: Deadline | None,
    ) -> RawResponse | APIConnectionError:
        """One attempt on the wire: within the deadline (its transport timeouts cut to what is
        left), after the rate limit or 429 pause and a concurrency slot (``limited``), counted in
        the request's ``Attempts``; the answer told (``_received``) or the connection error
        (``_failed``)."""
        flow = self.flow
        if sender is None or limiter is None:  # pragma: no cover - built for the first attempt
            sender, limiter = self.start(timeout)
        headers = self.headers.get(token, content is not None)
        ready = flow.ready()
        if deadline is not None:
            left = deadline.remaining()
            if left <= 0:
                raise deadline.expired(method, path, sent=record.ambiguous)
            if not ready and (paused := flow.paused_for) >= left:
                why = f" (the exchange's 429 holds the session for {duration(paused)} more)"
                raise deadline.expired(method, path, sent=record.ambiguous, why=why)
            timeout = deadline.cut(timeout, left)
        if not ready:
            if self.instrumentation is None:
                await flow.acquire()
            else:
                waited = time.monotonic()
                await flow.acquire()
                self.instrumentation.waited("rate", time.monotonic() - waited)
        self.counted(record)
        started = time.monotonic()
        try:
            if limited:
                # The uncontended path costs no coroutine and no event-loop turn.
                if not limiter.try_acquire():
                    waited = time.monotonic()
                    await limiter.acquire()
                    if self.instrumentation is not None:
                        self.instrumentation.waited("concurrency", time.monotonic() - waited)
                try:
                    record.sending = True
                    raw = await sender.send(method, url, headers, content, timeout)
                finally:
                    limiter.release()
            else:
                record.sending = True
                raw = await sender.send(method, url, headers, content, timeout)
        except APIConnectionError as failed:
            record.sending = False
            return self._failed(method, path, record, failed, started, attempt)
        record.sending = False
        self._received(raw, method, path, time.monotonic() - started, attempt)
        return raw

    def slot_now(self) -> str | None:
        """The access token for an attempt that may leave at once, its concurrency slot taken
        (the caller releases it), or None when one of the gates an attempt passes would make it
        wait: the session closed, no token usable as it is (missing, or due for renewal), a rate
        limit or 429 pause, no free slot. ``send`` waits at each (``_send_handling_auth``: the
        token; ``_send_single_request``: the rate, the slot); an ``Express`` sends only when
        none would make it wait."""
        limiter = self.limiter
        if self.closed or limiter is None:
            return None
        token = self.auth.usable()
        if token is None or not self.flow.ready() or not limiter.try_acquire():
            return None
        return token

    def counted(self, record: Attempts) -> None:
        """An attempt leaves now: counted, and the first one's time kept (on the exchange's
        clock as far as known: a pushed update or a look-up is judged against it)."""
        record.count += 1
        if record.first_sent is None:
            record.first_sent = self.auth.clock.best_guess()

    def _failed(
        self, method: str, path: str, record: Attempts, exc: APIConnectionError, started: float, attempt: int
    ) -> APIConnectionError:
        """What an attempt that got no answer tells before it is judged: its log line and
        instrumentation, with the request named on the error; ``SessionClosedError`` instead
        when the session closed under it."""
        if self.is_closed():  # (a method: the check before the attempt was before an await)
            if exc.maybe_processed:
                # Closed under a request already written: it may have been processed.
                record.ambiguous = True
            raise SessionClosedError("this AsyncTanxSession was closed during the request") from exc
        exc.method, exc.path = method, path
        if self.instrumentation is not None:
            self.instrumentation.attempt(
                method, path, None, time.monotonic() - started, attempt, type(exc).__name__, None
            )
        if logger.isEnabledFor(logging.DEBUG):
            # One line per attempt, answered or not.
            logger.debug(
                "%s %s -> %s in %.1f ms (attempt %d)",
                method,
                path,
                type(exc).__name__,
                (time.monotonic() - started) * 1e3,
                attempt + 1,
            )
        return exc

    def _received(
        self,
        raw: RawResponse,
        method: str,
        path: str,
        elapsed: float,
        attempt: int,
        parent: object = None,
        *,
        deferred: bool = False,
    ) -> None:
        """What every answer tells before it is judged: the exchange's clock, the debug log line,
        the ``response`` event and the instrumentation's attempt (``parent``: its operation, when
        told from a callback). ``deferred``: called in a transport callback, where no caller's
        code may run: the event goes to ``on_event`` from the loop's next turn."""
        self.auth.clock.observe(raw.headers, elapsed)
        if logger.isEnabledFor(logging.DEBUG):
            # One line per attempt, answered or not.
            logger.debug(
                "%s %s -> %d in %.1f ms (attempt %d)", method, path, raw.status, elapsed * 1e3, attempt + 1
            )
        if self.instrumentation is not None:
            error = None if raw.status < 400 else str(raw.status)
            self.instrumentation.attempt(method, path, raw.status, elapsed, attempt, error, parent)
        if self.on_event is not None:
            fields = {"status": raw.status, "elapsed": elapsed, "attempt": attempt}
            if deferred:
                asyncio.get_running_loop().call_soon(
                    functools.partial(self.emit, "response", method, path, **fields)
                )
            else:
                self.emit("response", method, path, **fields)

    def express(
        self,
        method: str,
        path: str,
        timeout: httpx.Timeout,
        on_answer: Callable[[dict[str, Any] | None, RawResponse | APIConnectionError], None],
    ) -> Express | None:
        """An ``Express`` for requests to ``path`` within ``timeout``, where the transport can
        send from callbacks (the built-in asyncio one, started and open), else None."""
        sender = self.immediate_sender
        if sender is None or not self.immediate_enabled or self.closed:
            return None
        return Express(self, sender, method, path, timeout, on_answer)

    # -- authentication -------------------------------------------------------------------

    async def token(self) -> str:
        """The access token to send now, refreshed or obtained first when needed."""
        auth = self.auth
        access = auth.access
        if access is None:
            if (refused := auth.dead()) is not None:
                raise refused
            if not auth.can_renew:
                raise NotAuthenticatedError(
                    "this request needs credentials: pass access_token/refresh_token, "
                    "private_key/eth_address or a signer to AsyncTanxSession"
                )
            await self.renew(None)
        elif auth.expiring() and auth.can_renew:
            try:
                await self.renew(access)
            except (APIStatusError, ResponseValidationError):
                raise
            except TanxError as exc:
                if auth.expired():
                    raise
                # Early refresh failed for a transient reason; the token is still valid.
                logger.warning("early token refresh failed (%s); using the current token", type(exc).__name__)
        token = auth.access
        if token is None:  # pragma: no cover - renew either sets a token or raises
            raise NotAuthenticatedError("no access token after renewal")
        return token

    async def renew(self, stale: str | None, *, login: bool = False) -> bool:
        """Replace ``stale`` with a fresh access token, once for all concurrent callers.

        True for the one caller whose call made the refresh (or login), False for the others.
        ``login=True`` logs in with the signer instead of refreshing."""
        if self.auth.access != stale:
            return False  # someone else already renewed it
        flight = self._flight
        if flight is not None:
            await flight.event.wait()
            if flight.error is not None:
                raise flight.error
            return False
        flight = self._flight = Flight()
        timeout = self.auth.timeout
        try:
            with anyio.CancelScope(shield=True), operation(self, "renewal", login=login):
                try:
                    with anyio.fail_after(timeout):
                        if self.fleet is not None:
                            await self.fleet.renewal(
                                lambda: self._drive(self.auth.renewal(login=login)), stale, login
                            )
                        else:
                            await self._drive(self.auth.renewal(login=login))
                except TimeoutError:
                    raise APITimeoutError(
                        f"token renewal took longer than {duration(timeout)}", maybe_processed=True
                    ) from None
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.event.set()
        return True

    async def _drive(self, flow: AsyncGenerator[AuthRequest, Response | TanxError]) -> None:
        """Send the requests an auth flow yields and hand each answer (or error) back to it."""
        try:
            step = await flow.__anext__()
            while True:
                reply: Response | TanxError
                try:
                    reply = await self.send(
                        "POST",
                        step.path,
                        json=step.body,
                        private=False,
                        idempotent=step.idempotent,
                        limited=False,
                        timeout=self.timeout,
                        policy=self.policy,
                    )
                except TanxError as exc:
                    reply = exc
                step = await flow.asend(reply)
        except StopAsyncIteration:
            return
        finally:
            await flow.aclose()
