"""Session-wide flow control: the concurrency limit, a request-rate limit and the pause a 429
imposes.

Both are shared by every task of a session. The rate limit is a token bucket in its GCRA form
(each caller reserves the next slot before sleeping, so no lock is needed on one event loop).
A 429 pauses the whole session until its ``Retry-After``: a burst of 64 tasks must not hammer a
rate-limited exchange 64 times.
"""

from __future__ import annotations

import time
from collections import deque

import anyio

__all__ = ["FlowControl", "Limiter"]


class Limiter:
    """At most ``limit`` requests in flight; the others wait their turn, first come first served.

    ``anyio.CapacityLimiter`` without its per-task bookkeeping (it asks for the current task on
    every acquire and release, a fair share of a cancel's CPU): a slot is a count, and a request
    that must wait waits on an ``anyio.Event`` of its own, handed the slot of the request that
    releases it. A waiter cancelled after being handed a slot passes it on."""

    __slots__ = ("_waiters", "limit", "used")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self._waiters: deque[anyio.Event] = deque()

    def try_acquire(self) -> bool:
        """Take a slot if one is free and nobody waits for one (no event-loop turn)."""
        if self.used < self.limit and not self._waiters:
            self.used += 1
            return True
        return False

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        event = anyio.Event()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event.is_set():
                self.release()  # handed a slot, then cancelled: the next waiter gets it
            else:
                self._waiters.remove(event)
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.popleft().set()  # the slot passes straight to the longest waiter
        else:
            self.used -= 1


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

    def ready(self) -> bool:
        """True when a request may go now without asking ``acquire`` (no rate limit, no pause):
        the common case, checked without a coroutine."""
        return not self._interval and self._paused_until <= time.monotonic()

    @property
    def paused_for(self) -> float:
        return max(0.0, self._paused_until - time.monotonic())

    def pause(self, seconds: float) -> None:
        """Hold every request of the session for ``seconds`` (the longest pause wins)."""
        self._paused_until = max(self._paused_until, time.monotonic() + seconds)

    async def share_pause(self) -> None:
        """Tell the processes sharing the budget about the pause just taken (a fleet's
        ``FleetFlow``); nothing for a session alone."""

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
