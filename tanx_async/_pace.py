"""Bounding how many answers one event-loop iteration hands to their tasks (asyncio).

A burst on a shared event loop answers in waves: 64 responses arrive together and, handed over
at once, 64 tasks run in the next iteration, each decoding its answer, settling its outcome and
sending the next cancel. Back to back that is several milliseconds in which nothing else on the
loop (a strategy's tasks, a market-data handler) gets a turn. The built-in transport completes
each answer through ``Pacer.admit``: at most ``per_turn`` answers are handed over per iteration,
the rest are held, first come first served, and handed over in the following iterations.

Holding an answer costs a deque entry, not an extra task wake-up (the task is woken once, when
its answer is handed over), so pacing costs next to nothing when answers arrive one by one.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

__all__ = ["PacedFuture", "Pacer"]


class Pacer:
    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int) -> None:
        self._loop = loop
        self.per_turn = per_turn
        self._used = 0  # answers handed over for the current iteration
        self._armed = False  # ``_next_turn`` is scheduled
        self._held: deque[PacedFuture] = deque()
        #: The futures to create (``future_type(loop=loop)``) for answers paced by this pacer.
        self.future_type: type[PacedFuture] = type("PacedFuture", (PacedFuture,), {"_pacer": self})

    def admit(self, future: PacedFuture) -> bool:
        """True: hand the answer over now. False: it is held and handed over later."""
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._next_turn)
        if self._used < self.per_turn and not self._held:
            self._used += 1
            return True
        self._held.append(future)
        return False

    def _next_turn(self) -> None:
        """Once per iteration while answers flow: a new budget, spent on the held ones first."""
        held = self._held
        granted = 0
        while held and granted < self.per_turn:
            if held.popleft().release():
                granted += 1
        self._used = granted
        if granted or held:
            self._loop.call_soon(self._next_turn)
        else:
            self._armed = False


class PacedFuture(asyncio.Future[Any]):
    """A future whose result goes through a ``Pacer``: it may be held for a later iteration.

    While held it reports ``done()`` (the answer is complete: nothing may fail it any more), but
    its awaiting task is only woken when the pacer releases it. Cancelled while held, the answer
    is dropped (as if the cancellation had come a moment earlier). ``Pacer.future_type`` makes
    the class for one pacer: the pacer is a class attribute, so making a future costs no Python
    ``__init__`` (one per request)."""

    _pacer: Pacer
    _held = False
    _held_result: Any = None

    def set_result(self, result: Any) -> None:
        if self._pacer.admit(self):
            super().set_result(result)
        else:
            self._held, self._held_result = True, result

    def release(self) -> bool:
        """Hand the held result over; False when it was cancelled meanwhile."""
        if super().done():
            return False
        super().set_result(self._held_result)
        return True

    def done(self) -> bool:
        return self._held or super().done()
