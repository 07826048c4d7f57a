"""The exception tree, named like the SDKs traders already know (drawn as httpx draws its own)::

    TanxError
    ├── SessionClosedError            the session was used after aclose()
    ├── EventLoopMismatchError        the session was used on another event loop (also a RuntimeError)
    ├── NotAuthenticatedError         no token, refresh token or signer to authenticate with
    ├── MissingDependencyError        an optional extra is needed (also an ImportError)
    ├── InvalidOrderIdError           an order id that cannot be sent (also a ValueError)
    ├── CancelNotConfirmedError       queued, but not seen "cancel" in time (confirm=True)
    ├── BatchInterruptedError         the batch's caller was cancelled (or stopped it) first
    ├── BatchTimeoutError             the batch deadline struck before this order settled
    ├── StreamError                   the private order stream is lost for good (reconnects spent)
    │   └── StreamRefusedError            the server refused the token or the subscription
    └── APIError                      talking to the exchange went wrong (.method, .path)
        ├── APIStatusError            an error answer (.status_code, .message, .body, .response)
        │   ├── BadRequestError           400
        │   ├── AuthenticationError       401 (and a refused refresh or login)
        │   ├── PermissionDeniedError     403
        │   ├── NotFoundError             404
        │   ├── RateLimitError            429 (.retry_after)
        │   └── InternalServerError       5xx
        ├── APIConnectionError        no usable answer (.maybe_processed: may it have arrived?)
        │   ├── APITimeoutError
        │   └── ResponseTooLargeError
        ├── ResponseValidationError   a 2xx answer we could not decode (.body, .errors)
        └── CancelOutcomeUnknownError a cancel nothing could settle (.order_id, .order, .cause)

Everything that comes from talking to the exchange is an ``APIError``. ``maybe_processed`` on a
connection error is what decides whether a cancel is retried or looked up. No message built here
ever includes a token or a signature.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from . import _constants as C

if TYPE_CHECKING:
    from ._httpx import httpx
    from .models import Order

__all__ = [
    "APIConnectionError",
    "APIError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "BatchTimeoutError",
    "CancelNotConfirmedError",
    "CancelOutcomeUnknownError",
    "EventLoopMismatchError",
    "InternalServerError",
    "InvalidOrderIdError",
    "MissingDependencyError",
    "NotAuthenticatedError",
    "NotFoundError",
    "PermissionDeniedError",
    "RateLimitError",
    "ResponseTooLargeError",
    "ResponseValidationError",
    "SessionClosedError",
    "StreamError",
    "StreamRefusedError",
    "TanxError",
]


class TanxError(Exception):
    """Root of every error raised by tanx_async."""


class SessionClosedError(TanxError):
    """The session was used after ``aclose()``."""


class EventLoopMismatchError(TanxError, RuntimeError):
    """The session was used on an event loop other than the one it was first used on (a second
    ``asyncio.run``, another thread's loop): its connections belong to the first. Raised before
    anything is sent; create one session per event loop."""


class NotAuthenticatedError(TanxError):
    """A private endpoint was called but the session has no way to get an access token."""


class MissingDependencyError(TanxError, ImportError):
    """An optional extra is needed for this feature (the message names the extra)."""


class InvalidOrderIdError(TanxError, ValueError):
    """An order id that cannot be sent (not an int from 1 to 2**63-1); nothing was sent for it."""


class APIError(TanxError):
    """Any failure talking to the exchange.

    ``method`` and ``path`` name the request (never its headers or body).
    """

    def __init__(self, message: str, *, method: str | None = None, path: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.method = method
        self.path = path

    def __str__(self) -> str:
        where = f" ({self.method} {self.path})" if self.method and self.path else ""
        return f"{self.message}{where}"


class APIStatusError(APIError):
    """The exchange answered with an HTTP error status or ``"status": "error"``.

    ``message`` is the server's own ``message`` (or a summary of a non-JSON body), ``body`` the
    decoded JSON body (or the text when it was not JSON), ``payload`` the envelope's payload.
    """

    status_code: int

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        body: object,
        response: httpx.Response | None,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.status_code = status_code
        self.body = body
        self.response = response

    @property
    def payload(self) -> object:
        """The envelope's ``payload`` (tanX puts error details there), or None."""
        return self.body.get("payload") if isinstance(self.body, dict) else None

    def __str__(self) -> str:
        return f"HTTP {self.status_code}: {super().__str__()}"


class BadRequestError(APIStatusError):
    """HTTP 400, or a 2xx whose body says ``"status": "error"``."""


class AuthenticationError(APIStatusError):
    """HTTP 401 that a refresh (or re-login) could not cure, or a rejected login."""


class PermissionDeniedError(APIStatusError):
    """HTTP 403."""


class NotFoundError(APIStatusError):
    """HTTP 404."""


class RateLimitError(APIStatusError):
    """HTTP 429. ``retry_after`` is the server's ``Retry-After`` in seconds, when it sent one."""

    retry_after: float | None = None


class InternalServerError(APIStatusError):
    """HTTP 5xx."""


class APIConnectionError(APIError):
    """No usable answer came back.

    ``maybe_processed`` is True when the request may have reached the exchange (the connection
    broke after it was written, or the read timed out): the action may have happened.
    """

    def __init__(
        self,
        message: str,
        *,
        maybe_processed: bool,
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.maybe_processed = maybe_processed


class APITimeoutError(APIConnectionError):
    """A connect, write, read or pool timeout."""


class ResponseTooLargeError(APIConnectionError):
    """The answer was larger than ``max_response_bytes`` and was not read.

    The exchange did answer, so the request was processed: ``maybe_processed`` is always True.
    """


class ResponseValidationError(APIError):
    """A 2xx answer whose body is not what the API documents.

    ``body`` keeps the raw bytes; ``errors`` lists what was wrong with JSON paths such as
    ``expected int @ $.payload.id``.
    """

    def __init__(
        self,
        message: str,
        *,
        body: bytes,
        errors: Sequence[str] = (),
        method: str | None = None,
        path: str | None = None,
    ) -> None:
        super().__init__(message, method=method, path=path)
        self.body = body
        self.errors: tuple[str, ...] = tuple(errors)


class CancelOutcomeUnknownError(APIError):
    """A cancel may or may not have been processed, and a look-up could not settle it.

    ``cause`` is what left it open: a connection error or timeout after the request may have
    left (an ``APIConnectionError``), or an error answer that may hide a processed cancel (an
    ``APIStatusError`` such as a 500), so this error is neither of those. ``order`` is the order
    as last seen by the look-up (still open), or None when the look-up failed too;
    ``maybe_processed`` is always True. Retrying the cancel is safe: cancelling twice cannot
    cancel anything else.
    """

    maybe_processed = True

    def __init__(self, message: str, *, order_id: int, order: Order | None, cause: TanxError) -> None:
        super().__init__(message, method="POST", path=C.CANCEL_PATH)
        self.order_id = order_id
        self.order = order
        self.cause = cause


class CancelNotConfirmedError(TanxError):
    """The cancel was queued but the exchange did not report ``state == "cancel"`` in time."""

    def __init__(self, message: str, *, order_id: int, order: Order | None) -> None:
        super().__init__(message)
        self.order_id = order_id
        self.order = order


class BatchTimeoutError(TanxError):
    """The batch deadline expired before this order's cancel finished (or started).

    ``sent`` is True when the cancel may have reached the exchange (an attempt was under way or
    one may have been processed): the outcome is then ``unknown``."""

    def __init__(self, message: str, *, order_id: int, sent: bool) -> None:
        super().__init__(message)
        self.order_id = order_id
        self.sent = sent


class BatchInterruptedError(TanxError):
    """The batch was interrupted before this order's cancel finished (or started): the task
    awaiting it was cancelled (Ctrl-C, SIGTERM, a timeout around the call) or the caller
    stopped it (``CancelIterator.stop``). The cancels already sent may still take effect.

    ``sent`` is True when the cancel may have reached the exchange (an attempt was under way or
    one may have been processed): the outcome is then ``unknown``; False: ``skipped``, never
    sent (or ``failed``, when every attempt was refused before it could arrive)."""

    def __init__(self, message: str, *, order_id: int, sent: bool) -> None:
        super().__init__(message)
        self.order_id = order_id
        self.sent = sent


class StreamError(TanxError):
    """The private order stream could not be opened, or was lost and its reconnects ran out.
    The message never holds the stream URL (it carries the access token)."""


class StreamRefusedError(StreamError):
    """The server refused the stream: the token (HTTP status on the handshake, ``.status_code``)
    or the subscription (its ``error`` text in ``.message``)."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.status_code = status_code


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    429: RateLimitError,
}


def status_error_class(status_code: int) -> type[APIStatusError]:
    """The exception class for an HTTP status (a 2xx here means a ``status: error`` body; a 1xx
    or 3xx, which the API never documents, is a plain ``APIStatusError``)."""
    if status_code >= 500:
        return InternalServerError
    if 200 <= status_code < 300:
        return BadRequestError
    return _STATUS_ERRORS.get(status_code, APIStatusError)


def describe(value: Any, limit: int = 200) -> str:
    """A short, single-line preview of a non-JSON body for an error message."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def brief(error: BaseException) -> str:
    """One line for an error in a log line or a table cell (full texts live on the error)."""
    if isinstance(error, APIStatusError):
        return f"HTTP {error.status_code}: {error.message}"
    message = getattr(error, "message", None) or str(error)
    return f"{type(error).__name__}: {message}" if message else type(error).__name__
