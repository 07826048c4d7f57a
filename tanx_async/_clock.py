"""The exchange's clock as seen from here: this machine's clock plus a learned offset.

Token expiry (a JWT's ``exp``) and order timestamps are on the exchange's clock. A machine whose
clock is minutes off (no NTP, a container after suspend) would otherwise think every fresh token
expired and refresh before each request. The offset is learned from evidence:

- The ``Date`` header of answers (RFC 9110: whole seconds, stamped while the request was
  between leaving and its answer arriving). Each stamp bounds the offset to an interval
  ``[stamp - received, stamp + 1 - sent)``; intervals are intersected and the estimate is the
  middle: within about a second (plenty beside a 30 s refresh skew). A stamp that contradicts the interval (the clock stepped, the machine
  slept) starts a new one. The header is parsed only when its text changes (at most about once
  per second on a busy session, and at once after a jump), but every answer's stamp narrows the
  interval: the same ``Date`` seen later, or sooner after its request left, says more. A repeated
  text that contradicts the interval is a stale copy (a cache), never a clock step: ignored.
- Without any ``Date`` header, a freshly issued token's ``iat`` gives the same kind of stamp.

Until there is evidence the offset is unknown (``offset is None``): callers then must not
judge expiry ahead of time (the token is sent, and a 401 renews it).
"""

from __future__ import annotations

import calendar
import time
from collections.abc import Callable, Mapping
from email.utils import parsedate_tz

from . import _constants as C
from ._log import logger

__all__ = ["ExchangeClock"]


class ExchangeClock:
    """This machine's clock (``local``) and its offset from the exchange's, once known."""

    __slots__ = ("_high", "_last_date", "_last_stamp", "_low", "_warned", "local", "offset")

    def __init__(self, local: Callable[[], float] = time.time) -> None:
        #: This machine's wall clock (unix seconds); replaceable for tests.
        self.local = local
        #: Exchange time minus local time, in seconds; None until learned.
        self.offset: float | None = None
        self._low = self._high = 0.0
        #: The last ``Date`` text seen and its time (None: unreadable), parsed once per text.
        self._last_date: str | None = None
        self._last_stamp: float | None = None
        self._warned = False

    def __repr__(self) -> str:
        known = "unknown" if self.offset is None else f"{self.offset:+.3f} s"
        return f"<ExchangeClock offset={known}>"

    def now(self) -> float | None:
        """The exchange's time now, or None while the offset is unknown."""
        offset = self.offset
        return None if offset is None else self.local() + offset

    def best_guess(self) -> float:
        """The exchange's time now, taking this machine's clock as right while nothing is known."""
        return self.local() + (self.offset or 0.0)

    def assume(self, offset: float) -> None:
        """Start from an offset another process learned (a fleet's): a second either side,
        narrowed or replaced by this process's own evidence."""
        self._low, self._high = offset - 1.0, offset + 1.0
        self.offset = offset

    def observe(self, headers: Mapping[str, str], elapsed: float) -> None:
        """Learn from an answer's ``Date`` header; ``elapsed``: seconds since the request left.

        Cheap when the header is the one seen last: it is not parsed again, but its stamp still
        narrows the interval (the same second, seen at another moment) if it agrees with it."""
        value = headers.get("date")
        if value is None:
            return
        fresh = value != self._last_date
        if fresh:
            # Both together, once the parse is over: a text that fails to parse is remembered
            # as unreadable, never paired with the previous text's stamp.
            self._last_stamp = _http_date(value)
            self._last_date = value
        stamp = self._last_stamp
        if stamp is None:
            return
        received = self.local()
        sent = received - max(elapsed, 0.0)
        if fresh:
            self.stamp(stamp, sent, received)
            return
        low, high = stamp - received, stamp + 1.0 - sent
        if self._agrees(low, high):
            self._narrow(low, high)

    def stamp(self, stamp: float, sent: float, received: float) -> None:
        """Learn from a whole-second exchange time ``stamp`` taken between local ``sent`` and
        ``received`` (a ``Date`` header, a fresh token's ``iat``)."""
        low, high = stamp - received, stamp + 1.0 - sent
        if self._agrees(low, high):
            self._narrow(low, high)
        else:
            previous = self.offset
            self._low, self._high = low, high
            self.offset = (low + high) / 2
            self._report(previous)

    def _agrees(self, low: float, high: float) -> bool:
        """The offset is known and lies in ``[low, high)`` as far as the interval can tell."""
        return self.offset is not None and low < self._high and high > self._low

    def _narrow(self, low: float, high: float) -> None:
        self._low, self._high = max(self._low, low), min(self._high, high)
        self.offset = (self._low + self._high) / 2

    def _report(self, previous: float | None) -> None:
        offset = self.offset
        assert offset is not None
        if not self._warned:
            if abs(offset) < C.CLOCK_SKEW_WARNING:
                return
            self._warned = True
            logger.warning(
                "the exchange's clock is %.0f s %s this machine's; token expiry is judged on the "
                "exchange's clock",
                abs(offset),
                "ahead of" if offset > 0 else "behind",
            )
        elif previous is not None and abs(offset - previous) >= C.CLOCK_SKEW_WARNING:
            logger.info("the exchange's clock is now %+.0f s off this machine's", offset)


def _http_date(value: str) -> float | None:
    """An HTTP ``Date`` as unix seconds, or None (logged) when it cannot be read: no known
    format, or a date outside what Python's calendar holds (``year 10000``, a 20-digit year).
    An unreadable ``Date`` is ignored, as an absent one is."""
    try:
        parts = parsedate_tz(value)
        if parts is not None:
            return float(calendar.timegm(parts[:9]) - (parts[9] or 0))
    except (ValueError, OverflowError, TypeError, IndexError):
        pass
    logger.debug("ignoring an unreadable Date header %r", value[:40])
    return None
