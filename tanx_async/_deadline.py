"""The overall deadline of one operation: every request it makes is bounded by what is left.

An operation is one thing the caller asked for: a cancel together with the look-up that settles
it, a ``get``, one page of ``list``. Per-request timeouts and retries alone can add up to far
more than a trader can wait to learn nothing (4 attempts x 5 s, then a look-up with its own
retries), so the operation opens a ``Deadline`` (``within`` or, in a worker's loop, ``begin``)
and ``AsyncTanxSession._send`` runs each request inside what is left of it (``bounded``).

The deadline travels in a context variable, so the request code below an operation does not
pass it along; tasks started inside an operation inherit it. When it strikes, the request fails
with ``APITimeoutError`` (``maybe_processed`` when an attempt had been sent), which the cancel
engine settles like any other lost answer: never ok without evidence.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Awaitable, Callable, Iterator
from typing import TypeVar

import anyio

from ._errors import APITimeoutError
from ._pipeline import Attempts

__all__ = ["Deadline", "begin", "bounded", "current", "within"]

T = TypeVar("T")


class Deadline:
    """An absolute deadline on anyio's clock, and the number of seconds it was set for."""

    __slots__ = ("at", "seconds")

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.at = anyio.current_time() + seconds

    def expired(self, method: str, path: str, *, sent: bool) -> APITimeoutError:
        may = "; the request may have reached the exchange" if sent else "; nothing was sent"
        return APITimeoutError(
            f"no answer within the operation's deadline of {self.seconds:g} s{may}",
            maybe_processed=sent,
            method=method,
            path=path,
        )


_CURRENT: contextvars.ContextVar[Deadline | None] = contextvars.ContextVar(
    "tanx_async_deadline", default=None
)


def current() -> Deadline | None:
    return _CURRENT.get()


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


def begin(seconds: float | None, *, extra: float = 0.0) -> None:
    """Start the next operation of a task that runs one after another (a batch worker): replaces
    the task's previous one and lasts until the next ``begin`` or the end of the task. ``extra``
    seconds are added (the wait for a confirmation the caller asked for)."""
    _CURRENT.set(None if seconds is None else Deadline(seconds + extra))


async def bounded(
    deadline: Deadline, send: Callable[[], Awaitable[T]], method: str, path: str, record: Attempts
) -> T:
    """``await send()`` (which records its attempts in ``record``) within ``deadline``. When it
    strikes after an attempt left, the request may have been processed: ``record`` says so."""
    if anyio.current_time() < deadline.at:
        with anyio.CancelScope(deadline=deadline.at):
            return await send()
    if record.count:
        record.ambiguous = True
    raise deadline.expired(method, path, sent=record.count > 0)
