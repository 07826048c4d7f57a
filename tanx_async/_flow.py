"""Session-wide flow control: a request-rate limit and the pause a 429 imposes.

Both are shared by every task of a session. The rate limit is a token bucket in its GCRA form
(each caller reserves the next slot before sleeping, so no lock is needed on one event loop).
A 429 pauses the whole session until its ``Retry-After``: a burst of 64 tasks must not hammer a
rate-limited exchange 64 times.
"""

from __future__ import annotations

import time

import anyio

__all__ = ["FlowControl"]


class FlowControl:
    def __init__(self, rate: float | None = None, burst: int = 1) -> None:
        if rate is not None and rate <= 0:
            raise ValueError("rate_limit must be a positive number of requests per second")
        if burst < 1:
            raise ValueError("rate_limit_burst must be at least 1")
        self._interval = 1.0 / rate if rate else 0.0
        self._tolerance = (burst - 1) * self._interval
        self._tat = 0.0  # theoretical arrival time of the next request
        self._paused_until = 0.0

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        """Hold every request of the session for ``seconds`` (the longest pause wins)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def acquire(self) -> None:
        """Wait until this request may be sent."""
        # A loop, not an Event: another 429 may extend the pause while we sleep.
        while (wait := self._paused_until - time.monotonic()) > 0:  # noqa: ASYNC110
            await anyio.sleep(wait)
        if not self._interval:
            return
        now = time.monotonic()
        tat = max(self._tat, now)
        self._tat = tat + self._interval
        wait = tat - self._tolerance - now
        if wait > 0:
            await anyio.sleep(wait)
