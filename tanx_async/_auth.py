"""Tokens: holding them, refreshing them once for everyone, logging in again when they die.

- Proactive: when the access token's JWT ``exp`` (read without verification) is within the skew,
  it is refreshed before the request is sent.
- Reactive: the pipeline calls ``renew(stale)`` on a 401 for an access token.
- Single flight: however many tasks notice the same stale token, one refresh (or login) request
  is made; the others wait on an event for its result. The refresh runs shielded and bounded by
  its own timeout, so a cancelled caller cannot strand the waiters, and it bypasses the session's
  concurrency limiter so it never queues behind the batch that is waiting for it.
- A refresh is never replayed when it may have reached the server (the refresh token rotates).
- When the refresh token is rejected and a signer is configured, the session logs in again.
"""

from __future__ import annotations

import base64
import inspect
import time
from collections.abc import Awaitable, Callable
from datetime import datetime, timezone
from typing import Any, Protocol, runtime_checkable

import anyio
import attrs

from . import _constants as C
from ._errors import (
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    NotAuthenticatedError,
    ResponseValidationError,
    TanxError,
)
from ._json import loads
from ._log import logger
from .events import EventCallback, RequestEvent
from .models import TokenPair

__all__ = ["Auth", "AuthPaths", "Signer", "TokensCallback", "jwt_expiry"]

TokensCallback = Callable[[TokenPair], Awaitable[None] | None]
PostJSON = Callable[[str, dict[str, Any], bool], Awaitable[dict[str, Any]]]


@runtime_checkable
class Signer(Protocol):
    """Signs the login challenge with a wallet (EIP-191 ``personal_sign``).

    ``address`` is the wallet's 0x address; ``sign`` returns the 65-byte signature as 0x-hex.
    Implement it for a hardware wallet or a remote signer; ``PrivateKeySigner`` is the local one.
    """

    @property
    def address(self) -> str: ...

    async def sign(self, message: str) -> str: ...


@attrs.frozen
class AuthPaths:
    """Where login and refresh live. Three nonce/login variants exist in the wild: the default is
    the current docs' ``/sapi/v2/auth/...``; the Python connector 2.1 uses ``/sapi/v1/auth/v2/...``
    and older READMEs ``/sapi/v1/auth/...``."""

    nonce: str = C.NONCE_PATH
    login: str = C.LOGIN_PATH
    refresh: str = C.REFRESH_PATH


def jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT as unix seconds, read without verifying the signature."""
    try:
        claims_b64 = token.split(".")[1]
        claims = loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
        exp = claims.get("exp") if isinstance(claims, dict) else None
    except (IndexError, ValueError, TypeError):
        return None
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    return float(exp)


def _as_authentication_error(exc: APIStatusError) -> AuthenticationError:
    """A refused refresh or login (tanX may say so with a 400 or 403) as the 401 class."""
    return AuthenticationError(
        exc.message,
        status_code=exc.status_code,
        body=exc.body,
        response=exc.response,
        method=exc.method,
        path=exc.path,
    )


class _Flight:
    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: BaseException | None = None


class Auth:
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
    ) -> None:
        self._on_event = on_event
        self._access = access_token
        self._refresh = refresh_token
        self._exp = jwt_expiry(access_token) if access_token else None
        self._signer = signer
        self._on_tokens = on_tokens
        self.paths = paths
        self._skew = skew
        self._timeout = timeout
        self._flight: _Flight | None = None
        self._post: PostJSON | None = None
        self.uid: str | None = None
        self.refresh_count = 0
        self.login_count = 0

    def __repr__(self) -> str:
        return f"<Auth access={'set' if self._access else 'unset'} signer={self._signer is not None}>"

    def bind(self, post: PostJSON) -> None:
        """Give the auth layer the session's unauthenticated, unlimited JSON POST."""
        self._post = post

    @property
    def has_credentials(self) -> bool:
        return self._access is not None or self._refresh is not None or self._signer is not None

    @property
    def expires_at(self) -> datetime | None:
        return datetime.fromtimestamp(self._exp, tz=timezone.utc) if self._exp is not None else None

    @property
    def tokens(self) -> TokenPair | None:
        if self._access is None:
            return None
        return TokenPair(self._access, self._refresh, self.expires_at)

    def forget(self) -> None:
        """Drop both tokens (tanX has no logout endpoint)."""
        self._access = self._refresh = None
        self._exp = None

    async def token(self) -> str:
        """The access token to send now, refreshed or obtained first when needed."""
        access = self._access
        if access is None:
            if self._signer is None and self._refresh is None:
                raise NotAuthenticatedError(
                    "this request needs credentials: pass access_token/refresh_token, "
                    "private_key/eth_address or a signer to AsyncTanxSession"
                )
            await self.renew(None)
        elif (
            self._exp is not None
            and self._exp - self._skew <= time.time()
            and (self._refresh is not None or self._signer is not None)
        ):
            try:
                await self.renew(access)
            except (APIStatusError, ResponseValidationError):
                raise
            except TanxError as exc:
                if self._exp is None or self._exp <= time.time():
                    raise
                # Early refresh failed for a transient reason; the token is still valid.
                logger.warning("early token refresh failed (%s); using the current token", type(exc).__name__)
        token = self._access
        if token is None:  # pragma: no cover - renew either sets a token or raises
            raise NotAuthenticatedError("no access token after renewal")
        return token

    async def renew(self, stale: str | None) -> bool:
        """Replace ``stale`` with a fresh access token, once for all concurrent callers.

        True for the one caller whose call made the refresh (or login), False for the others."""
        if self._access != stale:
            return False  # someone else already renewed it
        flight = self._flight
        if flight is not None:
            await flight.event.wait()
            if flight.error is not None:
                raise flight.error
            return False
        flight = self._flight = _Flight()
        try:
            with anyio.CancelScope(shield=True):
                try:
                    with anyio.fail_after(self._timeout):
                        await self._renew()
                except TimeoutError:
                    raise APITimeoutError(
                        f"token renewal took longer than {self._timeout} s", maybe_processed=True
                    ) from None
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            self._flight = None
            flight.event.set()
        return True

    async def _renew(self) -> None:
        if self._refresh is not None:
            try:
                await self._refresh_tokens(self._refresh)
                return
            except (AuthenticationError, APIStatusError) as exc:
                if isinstance(exc, APIStatusError) and exc.status_code not in (400, 401, 403):
                    raise
                if self._signer is None:
                    self.forget()
                    if isinstance(exc, AuthenticationError):
                        raise
                    raise _as_authentication_error(exc) from exc
                logger.warning("refresh token rejected (%s); logging in again", exc.message)
        if self._signer is None:
            raise NotAuthenticatedError("the access token expired and there is no refresh token or signer")
        await self._login(self._signer)

    async def _refresh_tokens(self, refresh: str) -> None:
        post = self._require_post()
        body = await post(self.paths.refresh, {"refresh": refresh}, False)
        payload = body.get("payload")
        access = payload.get("access") if isinstance(payload, dict) else None
        new_refresh = payload.get("refresh", refresh) if isinstance(payload, dict) else None
        if not isinstance(access, str) or not isinstance(new_refresh, str) or not access:
            raise ResponseValidationError(
                "refresh answer has no tokens under payload.access/payload.refresh",
                body=b"",
                errors=("expected a string @ $.payload.access",),
                method="POST",
                path=self.paths.refresh,
            )
        self.refresh_count += 1
        if self._on_event is not None:
            self._on_event(RequestEvent(kind="token_refreshed", method="POST", path=self.paths.refresh))
        logger.warning("access token refreshed")
        await self._store(access, new_refresh)

    async def _login(self, signer: Signer) -> None:
        post = self._require_post()
        address = signer.address
        body = await post(self.paths.nonce, {"eth_address": address}, True)
        message = body.get("payload")
        if not isinstance(message, str) or not message:
            raise ResponseValidationError(
                "nonce answer has no message to sign under payload",
                body=b"",
                errors=("expected a string @ $.payload",),
                method="POST",
                path=self.paths.nonce,
            )
        signature = await signer.sign(message)
        try:
            body = await post(self.paths.login, {"eth_address": address, "user_signature": signature}, False)
        except APIStatusError as exc:
            # tanX refuses a login with HTTP 400 "Invalid Credentials ..."; that is an
            # authentication failure, not a malformed request.
            if exc.status_code not in (400, 401, 403) or isinstance(exc, AuthenticationError):
                raise
            raise _as_authentication_error(exc) from exc
        token = body.get("token")
        access = token.get("access") if isinstance(token, dict) else None
        refresh = token.get("refresh") if isinstance(token, dict) else None
        if not isinstance(access, str) or not access or not isinstance(refresh, str):
            raise AuthenticationError(
                "Invalid Credentials (the login answer carried no tokens)",
                status_code=200,
                body=None,
                response=None,
                method="POST",
                path=self.paths.login,
            )
        payload = body.get("payload")
        uid = payload.get("uid") if isinstance(payload, dict) else None
        self.uid = uid if isinstance(uid, str) else None
        self.login_count += 1
        if self._on_event is not None:
            self._on_event(RequestEvent(kind="login", method="POST", path=self.paths.login))
        logger.info("logged in as %s", address)
        await self._store(access, refresh)

    async def _store(self, access: str, refresh: str) -> None:
        self._access, self._refresh, self._exp = access, refresh, jwt_expiry(access)
        if self._on_tokens is None:
            return
        try:
            result = self._on_tokens(TokenPair(access, refresh, self.expires_at))
            if inspect.isawaitable(result):
                await result
        except Exception as exc:  # a persistence hook must not break trading
            logger.warning("on_tokens callback raised %s; tokens are in use anyway", type(exc).__name__)

    def _require_post(self) -> PostJSON:
        if self._post is None:  # pragma: no cover - the session binds it at construction
            raise RuntimeError("Auth is not bound to a session")
        return self._post
