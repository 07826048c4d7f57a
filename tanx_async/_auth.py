"""Tokens: holding them, refreshing them once for everyone, logging in again when they die.

- Proactive: when the access token's JWT ``exp`` (read without verification) is within the skew
  (at most half the token's lifetime) *on the exchange's clock*, it is refreshed before the
  request is sent. The exchange's clock is this machine's plus an offset learned from answers
  (``_clock.py``); while the offset is unknown nothing is refreshed ahead of time, but for one
  case: a token given to the session that this machine's clock already sees expired is renewed
  once, before the first request (``Auth._suspected``). A freshly issued token that already
  looks due proves the clocks disagree: it is never refreshed ahead of time (no refresh
  storm); a 401 renews it.
- Reactive: the pipeline renews on a 401 for an access token.
- ``Auth`` never sends anything itself: ``renewal()`` is a flow that *yields* the requests a
  refresh or a login needs and receives their answers. The pipeline (``_pipeline.py``) drives it,
  once for all the requests that noticed the expiry (single flight), shielded, bounded by its
  own timeout and outside the session's concurrency limiter.
- A refresh is never replayed when it may have reached the server (the refresh token rotates).
- When the refresh token is rejected and a signer is configured, the flow logs in again.
"""

from __future__ import annotations

import base64
import inspect
import re
from collections.abc import AsyncGenerator, Awaitable, Callable
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, Protocol, Union, runtime_checkable

import attrs

from . import _constants as C
from ._clock import ExchangeClock
from ._errors import (
    APIStatusError,
    AuthenticationError,
    NotAuthenticatedError,
    ResponseValidationError,
    TanxError,
    brief,
)
from ._json import dumps, loads
from ._log import logger
from .events import EventCallback, RequestEvent
from .models import TokenPair

if TYPE_CHECKING:
    from ._attempts import Response

__all__ = ["Auth", "AuthPaths", "AuthRequest", "Signer", "TokensCallback", "jwt_expiry"]

TokensCallback = Callable[[TokenPair], Awaitable[None] | None]


@runtime_checkable
class Signer(Protocol):
    """Signs the login challenge with a wallet (EIP-191 ``personal_sign``).

    ``address`` is the wallet's 0x address; ``sign`` returns the 65-byte signature as 0x-hex.
    Implement it for a hardware wallet or a remote signer; ``PrivateKeySigner`` is the local one.
    """

    @property
    def address(self) -> str:
        """The wallet's 0x address (as the exchange knows it)."""
        ...

    async def sign(self, message: str) -> str:
        """The EIP-191 ``personal_sign`` signature of ``message``, as 0x-hex (65 bytes)."""
        ...


@attrs.frozen
class AuthPaths:
    """Where login and refresh live. Three nonce/login variants exist in the wild: the default is
    the current docs' ``/sapi/v2/auth/...``; the Python connector 2.1 uses ``/sapi/v1/auth/v2/...``
    and older READMEs ``/sapi/v1/auth/...``."""

    nonce: str = C.NONCE_PATH
    """Where the login nonce is asked for (step 1 of a wallet login)."""
    login: str = C.LOGIN_PATH
    """Where the signed nonce is sent to log in (step 3)."""
    refresh: str = C.REFRESH_PATH
    """Where a refresh token is exchanged for a new token pair."""


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT as unix seconds, read without verifying the signature; None
    when absent or unreadable (see ``_jwt_time``)."""
    return _jwt_time(token, "exp")


def _jwt_time(token: str, claim: str) -> float | None:
    """A time claim (``exp``, ``iat``) of a JWT as unix seconds, unverified; None if absent.

    A claim that is no time we can hold is unreadable, and unreadable is absent: not a number
    (a string, a bool), NaN, infinite, or outside ``datetime``'s years 1-9999 (``1e300``,
    ``-1e300``). An ``exp`` read that way is an *unknown* expiry, as for a token that is not a
    JWT: nothing is judged ahead of time, the token is sent, and a 401 renews it (the
    exchange, which issued it, is the one judge of it). Never a made-up date: an absurd
    ``exp`` taken as "far away" would hide a dead token, taken as "long past" it would
    refresh on every request."""
    try:
        claims_b64 = token.split(".")[1]
        claims = loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
        value = claims.get(claim) if isinstance(claims, dict) else None
    except (IndexError, ValueError, TypeError):
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        seconds = float(value)
        datetime.fromtimestamp(seconds, tz=timezone.utc)  # (raises outside years 1-9999, NaN)
    except (OverflowError, ValueError, OSError):
        return None
    return seconds


def _as_authentication_error(exc: APIStatusError, secrets: tuple[str | None, ...]) -> AuthenticationError:
    """A refused refresh or login (tanX may say so with a 400 or 403) as the 401 class, with
    every token (and each of ``secrets``: the refresh token sent, the login's signature)
    cut out of its message and body, wherever the server echoed them. It keeps no
    ``response`` (whose bytes are the raw answer) and no link to ``exc``: raise it outside the
    ``except`` block that caught ``exc``, so that neither ``__cause__`` nor ``__context__``
    holds the original."""
    known = tuple(secret for secret in secrets if secret)
    message = _scrubbed(exc.message, known)
    return AuthenticationError(
        message if isinstance(message, str) else REDACTED,
        status_code=exc.status_code,
        body=_scrubbed(redacted(exc.body), known),
        response=None,
        method=exc.method,
        path=exc.path,
    )


def _scrubbed(value: Any, secrets: tuple[str, ...]) -> Any:
    """``value`` (a decoded body, or a text) with each of ``secrets`` replaced wherever it
    appears in a string, and every JWT (``redacted``)."""
    if isinstance(value, str):
        for secret in secrets:
            value = value.replace(secret, REDACTED)
        return _JWT_TEXT.sub(REDACTED, value)
    if isinstance(value, dict):
        return {_scrubbed(key, secrets): _scrubbed(item, secrets) for key, item in value.items()}
    if isinstance(value, list):
        return [_scrubbed(item, secrets) for item in value]
    return value


def _is_refusal(exc: APIStatusError) -> bool:
    """A refresh or login refused: HTTP 400/401/403, or ``"status": "error"`` in a 2xx answer
    (one official connector's mock answers "Invalid Credentials or Token Expired" that way)."""
    return exc.status_code in (400, 401, 403) or 200 <= exc.status_code < 300


@attrs.frozen
class AuthRequest:
    """A request an auth flow needs sent: always an unauthenticated JSON POST."""

    path: str
    body: dict[str, Any]
    #: False for a refresh and a login: the refresh token rotates, so a replay could fail.
    idempotent: bool


#: What an auth flow is sent back for each request: the answer, or the error it raised.
Reply = Union["Response", TanxError]
Flow = AsyncGenerator[AuthRequest, Reply]


def _body(reply: Reply) -> dict[str, Any]:
    if isinstance(reply, TanxError):
        raise reply
    return reply.body


def _shape_error(message: str, error: str, path: str, reply: Reply) -> ResponseValidationError:
    """An auth answer of the wrong shape, with its raw bytes kept, tokens redacted."""
    content = reply.content if not isinstance(reply, TanxError) else b""
    return ResponseValidationError(message, body=redacted(content), errors=(error,), method="POST", path=path)


#: Keys whose string values are tokens wherever they sit in an auth answer, and what a JWT looks
#: like anywhere else (a token under a key nobody documented).
_TOKEN_KEYS = frozenset({"access", "refresh", "token", "access_token", "refresh_token", "jwt"})
_JWT = re.compile(rb"eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
_JWT_TEXT = re.compile(_JWT.pattern.decode())
REDACTED = "<redacted>"


def redacted(value: Any) -> Any:
    """``value`` (an answer's bytes, or its decoded JSON) with every token replaced by
    ``REDACTED``: what an auth error keeps in ``body`` must never carry one. Bytes that are
    not JSON keep their shape, JWTs cut out."""
    if isinstance(value, bytes):
        try:
            decoded = loads(value)
        except ValueError:
            return _JWT.sub(REDACTED.encode(), value)
        clean = redacted(decoded)
        return value if clean == decoded else dumps(clean)  # (the bytes as sent, when clean)
    if isinstance(value, dict):
        return {
            key: REDACTED if key in _TOKEN_KEYS and isinstance(item, str) else redacted(item)
            for key, item in value.items()
        }
    if isinstance(value, list):
        return [redacted(item) for item in value]
    if isinstance(value, str) and _JWT.search(value.encode("utf-8", "surrogatepass")):
        return REDACTED
    return value


class Auth:
    """The tokens, and the flows that renew them (see the module docstring)."""

    def __init__(
        self,
        *,
        access_token: str | None,
        refresh_token: str | None,
        signer: Signer | None,
        on_tokens: TokensCallback | None,
        paths: AuthPaths,
        skew: float,
        timeout: float = C.AUTH_TIMEOUT,
        on_event: EventCallback | None = None,
        clock: ExchangeClock | None = None,
    ) -> None:
        self._on_event = on_event
        #: The exchange's clock as learned from its answers (the pipeline feeds it).
        self.clock = clock if clock is not None else ExchangeClock()
        self._access = access_token
        self._refresh = refresh_token
        self._skew = skew
        #: When the access token is due for an early refresh, on the exchange's clock (None: never).
        self._due: float | None = None
        self._exp: float | None = None
        self._refresh_exp: float | None = None
        #: Local time a renewal flow started (a fresh token's ``iat`` was stamped after it).
        self._asked = 0.0
        self._skew_reported = False
        #: The access token was given to the session (not issued to it) and no renewal has
        #: been tried since: its expiry may be judged on this machine's clock (``_suspected``).
        self._suspect = access_token is not None
        self._judge(fresh=False)
        self._signer = signer
        self._on_tokens = on_tokens
        self.paths = paths
        #: The bound on one whole renewal (refresh, or nonce + sign + login).
        self.timeout = timeout
        self.uid: str | None = None
        #: The refusal that killed the tokens given (a refused refresh, no signer to log in):
        #: what every later request is told (``dead``).
        self.refused: AuthenticationError | None = None
        #: Internal listeners, called (synchronously) with every new pair before ``on_tokens``
        #: is: the dead man's switch hands each pair to its watchdog. They must not raise.
        self.listeners: list[Callable[[TokenPair], None]] = []

    def __repr__(self) -> str:
        return f"<Auth access={'set' if self._access else 'unset'} signer={self._signer is not None}>"

    @property
    def access(self) -> str | None:
        return self._access

    @property
    def signer(self) -> Signer | None:
        return self._signer

    @property
    def can_renew(self) -> bool:
        """A refresh token or a signer is there to get a new access token."""
        return self._refresh is not None or self._signer is not None

    def usable(self) -> str | None:
        """The access token when it may be sent as it is (present, not due for an early
        refresh), else None: the caller goes through ``Pipeline.token``. No coroutine."""
        return None if self.expiring() else self._access

    def expiring(self) -> bool:
        """The access token is due for an early refresh on the exchange's clock; while that
        clock is unknown, only a token given to the session that this machine's clock sees
        expired already, and only until its one renewal is tried (``_suspected``)."""
        due = self._due
        if due is None:
            return False
        now = self.clock.now()
        if now is None:
            return self._suspect and self._suspected()
        return due <= now

    def _suspected(self) -> bool:
        """The access token given to the session has expired by this machine's clock, the
        exchange's being unknown yet. It is renewed once, before the first request goes out
        (a burst would otherwise send it dozens of times to collect 401s): if this machine's
        clock is wrong instead (the exchange's runs behind), that cost one harmless refresh,
        and the fresh token's ``iat`` and the answer's ``Date`` then teach the offset. Only
        once (``renewal`` clears ``_suspect``): never a refresh storm on a skewed clock."""
        exp = self._exp
        return exp is not None and exp <= self.clock.local()

    def expired(self) -> bool:
        """The access token's ``exp`` has passed on the exchange's clock (False while unknown)."""
        return _past(self._exp, self.clock.now())

    def _judge(self, *, fresh: bool) -> None:
        """Read the tokens' ``exp`` and decide when the access token is due for an early refresh.

        The window is the refresh skew, but at most half the token's lifetime (``exp - iat``,
        or ``exp`` minus now for a fresh token without ``iat``): a short-lived token is not
        refreshed before every request. A fresh token with no lifetime left by our reckoning
        proves the clocks disagree; it is left to the reactive refresh."""
        access, clock = self._access, self.clock
        self._refresh_exp = jwt_expiry(self._refresh) if self._refresh else None
        exp = self._exp = jwt_expiry(access) if access else None
        self._due = None
        if access is None or exp is None:
            return
        iat = _jwt_time(access, "iat")
        if fresh and iat is not None and clock.offset is None:
            clock.stamp(iat, self._asked, clock.local())  # no Date header seen: the token's own
        now = clock.now() if fresh else None
        start = iat if iat is not None else now
        window = self._skew
        if start is not None:
            window = min(window, (exp - start) / 2)
        if fresh and not exp - window > (now if now is not None else clock.local()):
            self._report_fresh_token(exp, known=now is not None)
            return
        self._due = exp - window

    def _report_fresh_token(self, exp: float, *, known: bool) -> None:
        if self._skew_reported:
            return
        self._skew_reported = True
        if known:
            logger.warning(
                "a freshly issued access token already looks due for refresh on the exchange's "
                "clock as estimated here (%.0f s to its exp); it is renewed when a 401 says so",
                exp - self.clock.best_guess(),
            )
        else:
            logger.warning(
                "a freshly issued access token already looks due for refresh by this machine's clock "
                "(%.0f s to its exp): the clocks disagree; tokens are renewed when a 401 says so until "
                "the exchange's clock is known",
                exp - self.clock.local(),
            )

    def _emit(self, event: RequestEvent) -> None:
        if self._on_event is not None:
            try:
                self._on_event(event)
            except Exception:  # a broken metrics hook must not fail a renewal
                logger.exception("on_event raised (ignored) for a %s event", event.kind)

    @property
    def expires_at(self) -> datetime | None:
        return datetime.fromtimestamp(self._exp, tz=timezone.utc) if self._exp is not None else None

    @property
    def tokens(self) -> TokenPair | None:
        if self._access is None:
            return None
        return TokenPair(self._access, self._refresh, self.expires_at)

    def dead(self) -> AuthenticationError | None:
        """When the exchange refused this session's refresh token and nothing can log in
        again: the error for a request that would need a token now (a new one each time,
        carrying the refusal's status and scrubbed body), else None."""
        refused = self.refused
        if refused is None or self.can_renew or self._access is not None:
            return None
        return AuthenticationError(
            f"the exchange refused this session's refresh token earlier ({brief(refused)}), so "
            "both tokens are dead: log in again for a new token pair (or give the session "
            "private_key/eth_address or a signer, which log in on their own)",
            status_code=refused.status_code,
            body=refused.body,
            response=None,
            method=refused.method,
            path=refused.path,
        )

    def adopt(self, access: str, refresh: str | None) -> None:
        """Use this pair from now on, handed over by another holder of the account's tokens (a
        member of the session's fleet, ``_fleet.py``; the dead man's switch's parent, for its
        watchdog); no listener or ``on_tokens`` is called (the pair is not new)."""
        self._access, self._refresh = access, refresh
        self._judge(fresh=False)

    def forget(self) -> None:
        """Drop both tokens (tanX has no logout endpoint)."""
        self._access = self._refresh = None
        self._exp = self._due = self._refresh_exp = None
        self._suspect = False

    async def renewal(self, *, login: bool = False) -> Flow:
        """The flow that gets a fresh access token: refresh, or log in with the signer when
        there is no refresh token, it is refused, or ``login`` asks for a login."""
        flow = self._renewal(login)
        try:
            step = await flow.__anext__()
            while True:
                step = await flow.asend((yield step))
        except StopAsyncIteration:
            return
        finally:
            # Tried once, whatever came of it: from now on only the exchange's clock or a 401
            # says the token is dead (``_suspected``). Not before the renewal is over: the
            # requests that meanwhile find the token suspect wait for it.
            self._suspect = False
            await flow.aclose()

    async def _renewal(self, login: bool) -> Flow:
        self._asked = self.clock.local()
        if self._signer is not None and not login and _past(self._refresh_exp, self.clock.now()):
            logger.info("the refresh token expired; logging in again")
            login = True
        if self._refresh is not None and not login:
            refusal: AuthenticationError | None = None
            try:
                await self._refresh_tokens(
                    (yield AuthRequest(self.paths.refresh, {"refresh": self._refresh}, False))
                )
                return
            except APIStatusError as exc:
                if not _is_refusal(exc):
                    raise
                # Refused: both tokens are dead, whatever happens next (a login may replace them).
                refusal = _as_authentication_error(exc, (self._refresh, self._access))
                self.forget()
                if self._signer is None:
                    self.refused = refusal
                else:
                    logger.warning("refresh token rejected (%s); logging in again", refusal.message)
            if self._signer is None and refusal is not None:
                raise refusal  # (outside the except: the original, echoing the token, is not chained)
        if self._signer is None:
            if login:
                raise NotAuthenticatedError("login() needs a signer: pass private_key/eth_address or signer")
            raise NotAuthenticatedError("the access token expired and there is no refresh token or signer")
        signer = self._signer
        address = signer.address
        message = self._nonce((yield AuthRequest(self.paths.nonce, {"eth_address": address}, True)))
        signature = await signer.sign(message)
        reply = yield AuthRequest(
            self.paths.login, {"eth_address": address, "user_signature": signature}, False
        )
        await self._logged_in(reply, address, signature)

    async def _refresh_tokens(self, reply: Reply) -> None:
        refresh = self._refresh
        payload = _body(reply).get("payload")
        access = payload.get("access") if isinstance(payload, dict) else None
        new_refresh = payload.get("refresh", refresh) if isinstance(payload, dict) else None
        if not isinstance(access, str) or not isinstance(new_refresh, str) or not access:
            raise _shape_error(
                "refresh answer has no tokens under payload.access/payload.refresh",
                "expected a string @ $.payload.access",
                self.paths.refresh,
                reply,
            )
        self._emit(RequestEvent(kind="token_refreshed", method="POST", path=self.paths.refresh))
        logger.info("access token refreshed")
        await self._store(access, new_refresh)

    def _nonce(self, reply: Reply) -> str:
        message = _body(reply).get("payload")
        if not isinstance(message, str) or not message:
            raise _shape_error(
                "nonce answer has no message to sign under payload",
                "expected a string @ $.payload",
                self.paths.nonce,
                reply,
            )
        return message

    async def _logged_in(self, reply: Reply, address: str, signature: str) -> None:
        refusal: AuthenticationError | None = None
        try:
            body = _body(reply)
        except APIStatusError as exc:
            # tanX refuses a login with HTTP 400 "Invalid Credentials ..."; that is an
            # authentication failure, not a malformed request.
            if not _is_refusal(exc):
                raise
            refusal = _as_authentication_error(exc, (signature,))
        if refusal is not None:
            raise refusal  # (outside the except: the original is not chained)
        token = body.get("token")
        access = token.get("access") if isinstance(token, dict) else None
        refresh = token.get("refresh") if isinstance(token, dict) else None
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            raise AuthenticationError(
                "Invalid Credentials (the login answer carried no tokens)",
                status_code=200,
                body=redacted(body),
                response=None,
                method="POST",
                path=self.paths.login,
            )
        payload = body.get("payload")
        uid = payload.get("uid") if isinstance(payload, dict) else None
        self.uid = uid if isinstance(uid, str) else None
        self._emit(RequestEvent(kind="login", method="POST", path=self.paths.login))
        logger.info("logged in as %s", address)
        await self._store(access, refresh)

    async def _store(self, access: str, refresh: str) -> None:
        self._access, self._refresh = access, refresh
        self.refused = None
        self._judge(fresh=True)
        for listener in tuple(self.listeners):
            listener(TokenPair(access, refresh, self.expires_at))
        if self._on_tokens is None:
            return
        try:
            result = self._on_tokens(TokenPair(access, refresh, self.expires_at))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a persistence hook must not break trading
            logger.warning("on_tokens callback raised %s; tokens are in use anyway", type(exc).__name__)


def _past(when: float | None, now: float | None) -> bool:
    """``when`` has passed at ``now``; False when either is unknown."""
    return when is not None and now is not None and when <= now
