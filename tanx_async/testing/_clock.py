"""The sandbox exchange's clock: real time plus an offset a test can set or move.

Token issuing and expiry, the ``Date`` header, order timestamps and queued cancellations all
read it. ``offset`` is the knob for a skewed exchange (``-600``: its clock runs ten minutes
behind this machine's); ``advance(seconds)`` moves it forward without waiting, so a test can
live through hours of token expiries in a moment.
"""

from __future__ import annotations

import time

__all__ = ["SandboxClock"]


class SandboxClock:
    """``now()`` is ``time.time() + offset`` (unix seconds)."""

    __slots__ = ("offset",)

    def __init__(self, offset: float = 0.0) -> None:
        self.offset = float(offset)
        """Seconds the exchange's clock is ahead of this machine's (negative: behind)."""

    def __repr__(self) -> str:
        return f"SandboxClock(offset={self.offset:+.3f})"

    def now(self) -> float:
        """The exchange's time now, unix seconds (this machine's clock plus ``offset``)."""
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        """Move the clock forward (tokens expire, queued cancels take effect); no waiting.

        One writer at a time: the server thread only reads."""
        if not seconds >= 0:
            raise ValueError(f"a clock only moves forward; got {seconds!r}")
        self.offset += seconds
