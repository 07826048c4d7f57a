"""The overall deadline of one operation: no request it makes may outlast what is left of it.

An operation is one thing the caller asked for: a cancel together with the look-up that settles
it, a ``get``, one page of ``list``, one order of a batch. Per-request timeouts and retries alone
can add up to far more than a trader can wait to learn nothing (4 attempts x 5 s, then a look-up
with its own retries), so the operation opens a ``Deadline`` (``within``, or ``begin`` in a
worker's loop) and ``Pipeline.send`` keeps every attempt inside it: each attempt's transport
timeouts are cut to what is left, no backoff or 429 pause starts that would end past it, and
once it has passed nothing more is sent. That costs no timer or cancel scope per request, which
a burst of hundreds of requests would otherwise pay for every one of them.

The deadline travels in a context variable, so the code between the operation and the pipeline
does not pass it along; tasks started inside an operation inherit it. When it is reached, the
request fails with ``APITimeoutError`` (``maybe_processed`` when an attempt may have arrived),
which the cancel engine settles like any other lost answer: never ok without evidence.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import math
import time
from collections.abc import Callable, Iterator

import anyio

from ._duration import duration
from ._errors import APITimeoutError
from ._httpx import httpx

__all__ = ["Deadline", "begin", "clock", "current", "enter", "within"]

#: Cut timeouts are rounded up to this step: a bounded number of distinct timeouts, whatever the
#: clock reads.
_STEP = 0.05


def clock() -> Callable[[], float]:
    """anyio's clock, cheaply: asyncio's loop time directly (``anyio.current_time`` first asks
    which library is running, which costs more than the rest of this module's work). A task that
    begins many deadlines (a batch worker) asks once and passes it to ``begin``: finding the
    running loop costs a system call (CPython checks for a fork)."""
    try:
        return asyncio.get_running_loop().time
    except RuntimeError:  # trio
        return anyio.current_time


class Deadline:
    """An absolute deadline on anyio's clock, and the number of seconds it was set for."""

    __slots__ = ("_now", "at", "seconds")

    def __init__(self, seconds: float, now: Callable[[], float] | None = None) -> None:
        self.seconds = seconds
        self._now = now or clock()  # kept: ``remaining`` then asks no one which loop runs
        self.at = self._now() + seconds

    @classmethod
    def since(cls, seconds: float, started: float) -> Deadline:
        """A deadline of ``seconds`` that began at ``started`` (``time.monotonic``), on the
        running loop's clock."""
        deadline = cls(seconds)
        deadline.at -= time.monotonic() - started
        return deadline

    def remaining(self) -> float:
        return self.at - self._now()

    @staticmethod
    def cut(timeout: httpx.Timeout, left: float) -> httpx.Timeout:
        """``timeout`` with each phase cut to ``left`` seconds, or ``timeout`` itself while the
        connect, write and read phases fit (the usual case: no object is built). The pool wait is
        cut only along with them: the session's limiter keeps requests below the pool size."""
        c, r, w = timeout.connect, timeout.read, timeout.write
        if c is not None and r is not None and w is not None and c <= left and r <= left and w <= left:
            return timeout
        left = math.ceil(left / _STEP) * _STEP
        c, r, w, p = (left if t is None else min(t, left) for t in (c, r, w, timeout.pool))
        return httpx.Timeout(connect=c, read=r, write=w, pool=p)

    def expired(self, method: str, path: str, *, sent: bool, why: str = "") -> APITimeoutError:
        may = "; the request may have reached the exchange" if sent else "; it did not reach the exchange"
        return APITimeoutError(
            f"no answer within the operation's deadline of {duration(self.seconds)}{why}{may}",
            maybe_processed=sent,
            method=method,
            path=path,
        )


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "tanx_async_deadline", default=None
)


#: The deadline of the operation running now, or None (the context variable's own ``get``).
current: Callable[[], Deadline | None] = _CURRENT.get


def _tighter(seconds: float) -> Deadline:
    new, outer = Deadline(seconds), _CURRENT.get()
    return outer if outer is not None and outer.at <= new.at else new


@contextlib.contextmanager
def within(seconds: float | None) -> Iterator[None]:
    """Run the body as one operation of at most ``seconds`` (None: no deadline of its own). An
    enclosing operation's deadline still applies when it is sooner."""
    if seconds is None:
        yield
        return
    token = _CURRENT.set(_tighter(seconds))
    try:
        yield
    finally:
        _CURRENT.reset(token)


def begin(seconds: float | None, *, extra: float = 0.0, now: Callable[[], float] | None = None) -> None:
    """Start the next operation of a task that runs one after another (a batch worker): replaces
    the task's previous one and lasts until the next ``begin`` or the end of the task. ``extra``
    seconds are added (the wait for a confirmation the caller asked for); ``now``: the task's
    ``clock()``, if it has it."""
    _CURRENT.set(None if seconds is None else Deadline(seconds + extra, now))


def enter(deadline: Deadline | None) -> None:
    """Make ``deadline``, begun earlier outside this task (by the batch's fast path, in a
    transport callback), the operation of the running task, as ``begin`` does."""
    _CURRENT.set(deadline)
