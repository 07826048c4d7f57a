"""Reading tanX's envelope: ``{"status": "success"|"error", "message": str, "payload": ...}``.

Failure is any status outside 2xx (we never follow redirects: a 3xx is an error too) *or*
``"status": "error"`` in any body. ``payload`` may be ``""``,
an object or missing, and the body may not be JSON at all (a proxy's HTML 502 page): every shape
becomes the right ``APIStatusError`` (or ``ResponseValidationError`` for a 2xx we cannot read),
never a ``JSONDecodeError`` or ``AttributeError``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from ._errors import (
    APIStatusError,
    RateLimitError,
    ResponseValidationError,
    describe,
    status_error_class,
)
from ._json import loads
from ._retry import parse_retry_after

if TYPE_CHECKING:
    from ._transports import RawResponse

__all__ = ["decode_envelope", "is_access_token_error"]

_TITLE = re.compile(rb"<title[^>]*>(.*?)</title>", re.IGNORECASE | re.DOTALL)


def decode_envelope(raw: RawResponse, *, method: str, path: str) -> dict[str, Any]:
    """The decoded body of a successful answer, or raise the error it describes."""
    status = raw.status
    failed = not 200 <= status < 300
    try:
        body: Any = loads(raw.content)
    except ValueError:
        if failed:
            raise _status_error(raw, _text_summary(raw), None, method, path) from None
        raise _unreadable(
            raw,
            f"HTTP {status} with a body that is not JSON: {_text_summary(raw)}",
            "expected a JSON object @ $",
            method,
            path,
        ) from None
    if not isinstance(body, dict):
        if failed:
            # A JSON "" or "   " says nothing: fall back to the status.
            raise _status_error(raw, describe(body) or f"HTTP {status} error", body, method, path)
        kind = type(body).__name__
        raise _unreadable(
            raw,
            f"HTTP {status} with a JSON {kind} instead of an envelope",
            f"expected an object, got {kind} @ $",
            method,
            path,
        )
    said = body.get("status")
    if failed or said == "error":
        raise _status_error(raw, _message(body, status), body, method, path)
    if said != "success":
        # Every documented answer says "success" or "error": anything else (no status, a
        # number, "fail") is a shape we do not know, never a success.
        shown = repr(said)[:40]
        raise _unreadable(
            raw,
            f'HTTP {status} with status {shown} instead of "success"',
            f'expected "success" @ $.status, got {shown}',
            method,
            path,
        )
    return body


def _unreadable(
    raw: RawResponse, message: str, error: str, method: str, path: str
) -> ResponseValidationError:
    """A 2xx answer that is not an envelope we know (``error``: what was wrong, at its JSON path)."""
    return ResponseValidationError(message, body=raw.content, errors=(error,), method=method, path=path)


def is_access_token_error(raw: RawResponse) -> bool:
    """A 401 saying the *access* token is invalid or expired (so a refresh may cure it)."""
    if raw.status != 401:
        return False
    try:
        body = loads(raw.content)
    except ValueError:
        return False
    payload = body.get("payload") if isinstance(body, dict) else None
    return isinstance(payload, dict) and payload.get("token_type") == "access"


def _message(body: dict[str, Any], status: int) -> str:
    for key in ("message", "detail", "error"):
        value = body.get(key)
        if isinstance(value, str) and value.strip():
            return value.strip()
    payload = body.get("payload")
    if isinstance(payload, dict):
        for key in ("message", "detail"):
            value = payload.get(key)
            if isinstance(value, str) and value.strip():
                return value.strip()
    return f"HTTP {status} error" if status >= 400 else "the exchange reported an error"


def _text_summary(raw: RawResponse) -> str:
    match = _TITLE.search(raw.content[:65536])
    title = describe(match.group(1).decode("utf-8", "replace")) if match else ""
    if title:
        return title
    text = raw.content[:1000].decode("utf-8", "replace")
    return describe(text) if text.strip() else f"empty body (HTTP {raw.status})"


def _status_error(raw: RawResponse, message: str, body: object, method: str, path: str) -> APIStatusError:
    cls = status_error_class(raw.status)
    error = cls(
        message,
        status_code=raw.status,
        body=body if body is not None else raw.content.decode("utf-8", "replace"),
        response=raw.to_httpx(),
        method=method,
        path=path,
    )
    if isinstance(error, RateLimitError):
        error.retry_after = parse_retry_after(raw.headers)
    return error
