"""``Deadlines``: the read timeouts of a pool's requests in flight, kept by one timer instead of
one timer per request (a timer costs a heap push, a cancel and a heap pop per request).

The timer is armed for the earliest deadline; when it fires it fails the requests whose deadline
passed and re-arms for the earliest one left, so every timeout fires on time.
"""

from __future__ import annotations

import asyncio
from typing import Protocol

__all__ = ["Deadlines", "Timed"]


class Timed(Protocol):
    """What has a read timeout (a ``Connection``): when it is due, and what to call then."""

    deadline: float
    read_timeout: float

    def on_timeout(self, seconds: float) -> None: ...


class Deadlines:
    __slots__ = ("_at", "_conns", "_handle", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._conns: set[Timed] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._at = float("inf")

    def add(self, conn: Timed, deadline: float, seconds: float) -> None:
        conn.deadline, conn.read_timeout = deadline, seconds
        self._conns.add(conn)
        if deadline < self._at:
            self._arm(deadline)

    def discard(self, conn: Timed) -> None:
        """Forget a connection's deadline (answered or given up): the timer re-arms itself from
        what is left when it fires."""
        self._conns.discard(conn)

    def _arm(self, at: float) -> None:
        # The new timer first: if scheduling it raised, the old one would still run (and
        # re-arm from what is left), never a cancelled handle with no timer behind it.
        handle = self._loop.call_at(at, self._fire)
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = handle, at

    def _fire(self) -> None:
        self._handle, self._at = None, float("inf")
        now = self._loop.time()
        due = [conn for conn in self._conns if conn.deadline <= now]
        for conn in due:
            self._conns.discard(conn)
            conn.on_timeout(conn.read_timeout)
        if self._conns:
            self._arm(min(conn.deadline for conn in self._conns))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle, self._at = None, float("inf")
