"""When to retry, and how long to wait first.

Retried: failures that prove the request was not processed (connection refused, connect or pool
timeout, 429, 503), and - only for idempotent requests - failures that leave it open (the
connection broke after the request was written, read timeout, 408, 500, 502, 504). Never retried:
400, 401 (the session's refresh handles that once), 403, 404 and other 4xx. A cancel is
idempotent in effect (a second cancel cannot cancel anything else); a token refresh is not (the
refresh token rotates), so it is only retried when it certainly never arrived.
"""

from __future__ import annotations

import email.utils
import math
import random
import time
from collections.abc import Mapping

import attrs

from . import _constants as C
from ._errors import APIConnectionError, APIStatusError, RateLimitError, TanxError

__all__ = ["RetryPolicy", "parse_retry_after"]

# 503 is what a proxy or an overloaded gateway says before the application sees the request.
_NOT_PROCESSED_STATUSES = frozenset({429, 503})
_AMBIGUOUS_STATUSES = frozenset({408, 500, 502, 504})


@attrs.frozen
class RetryPolicy:
    max_retries: int = C.MAX_RETRIES
    backoff_base: float = C.BACKOFF_BASE
    backoff_cap: float = C.BACKOFF_CAP
    retry_after_cap: float = C.RETRY_AFTER_CAP

    def should_retry(self, error: TanxError, *, attempt: int, idempotent: bool) -> bool:
        """``attempt`` counts retries already made (0 after the first try)."""
        if attempt >= self.max_retries:
            return False
        if isinstance(error, RateLimitError):
            return error.retry_after is None or error.retry_after <= self.retry_after_cap
        if isinstance(error, APIStatusError):
            if error.status_code in _NOT_PROCESSED_STATUSES:
                return True
            return idempotent and error.status_code in _AMBIGUOUS_STATUSES
        if isinstance(error, APIConnectionError):
            return idempotent or not error.maybe_processed
        return False

    def delay(self, error: TanxError, *, attempt: int, rng: random.Random | None = None) -> float:
        """Seconds to wait before retry number ``attempt + 1``."""
        if isinstance(error, RateLimitError) and error.retry_after is not None:
            return min(max(error.retry_after, 0.0), self.retry_after_cap)
        ceiling = min(self.backoff_cap, self.backoff_base * 2.0**attempt)
        # "Equal jitter": at least half the backoff, so retries never bunch up at zero.
        return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def is_ambiguous(error: TanxError) -> bool:
    """True when the failed request may nevertheless have been processed by the exchange."""
    if isinstance(error, APIConnectionError):
        return error.maybe_processed
    if isinstance(error, APIStatusError):
        return error.status_code in _AMBIGUOUS_STATUSES
    return False


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """``Retry-After`` as seconds: a number (``"2"``, ``"0.5"``) or an HTTP date; None if absent
    or unreadable. ``retry-after-ms`` (used by some gateways) wins when present.

    An HTTP date is counted from the answer's own ``Date`` (both on the exchange's clock, so a
    skewed local clock does not matter), else from ``now`` (default: this machine's clock)."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            ms = float(value)
        except ValueError:
            pass
        else:
            # "nan"/"inf" parse as floats but are no delay; fall back to Retry-After.
            if math.isfinite(ms):
                return max(ms / 1000.0, 0.0)
    value = headers.get("retry-after")
    if value is None:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        when = _http_date(value)
        if when is None:
            return None
        if now is None:
            sent = _http_date(headers.get("date"))
            now = sent if sent is not None else time.time()
        seconds = when - now
    if not math.isfinite(seconds):
        return None
    return max(seconds, 0.0)


def _http_date(value: str | None) -> float | None:
    """An HTTP date as unix seconds; None when absent or unreadable, a date outside what
    ``datetime`` holds included (``year 10000``, a 20-digit year: ``OverflowError``)."""
    if value is None:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
