"""``Pacer``: bounds how many answers one event-loop iteration processes.

A burst on a shared event loop answers in waves: 64 responses arrive together and 64 tasks wake
in the same iteration, each decoding its answer, settling its outcome and sending the next
cancel. Run back to back that is several milliseconds in which nothing else on the loop (a
strategy's own tasks, a market-data handler) gets a turn. The pipeline passes every answer
through ``Pacer.turn()``: at most ``per_turn`` go on per iteration, the rest wait, first come
first served, for the following iterations. A parked answer costs one more wake-up; none is
parked while fewer than ``per_turn`` arrive together. asyncio only (trio schedules its own way).
"""

from __future__ import annotations

import asyncio
from collections import deque

__all__ = ["Pacer"]


class Pacer:
    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int) -> None:
        self._loop = loop
        self.per_turn = per_turn
        self._used = 0  # passes granted for the current iteration
        self._armed = False  # ``_next_turn`` is scheduled
        self._parked: deque[asyncio.Future[None]] = deque()

    async def turn(self) -> None:
        """Go on now if this iteration's budget allows, else wait (in order) for a later one."""
        if self._used < self.per_turn and not self._parked:
            self._used += 1
            if not self._armed:
                self._armed = True
                self._loop.call_soon(self._next_turn)
            return
        waiter = self._loop.create_future()
        self._parked.append(waiter)
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._next_turn)
        await waiter  # cancelled: the future is cancelled and skipped by ``_next_turn``

    def _next_turn(self) -> None:
        """Once per iteration while answers flow: a new budget, spent on the parked first."""
        parked = self._parked
        granted = 0
        while parked and granted < self.per_turn:
            waiter = parked.popleft()
            if not waiter.done():
                waiter.set_result(None)
                granted += 1
        self._used = granted  # the released tasks run in the next iteration, on its budget
        if granted or parked:
            self._loop.call_soon(self._next_turn)
        else:
            self._armed = False
