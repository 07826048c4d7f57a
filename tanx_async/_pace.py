"""Bounding how many answers one event-loop iteration hands to their tasks (asyncio).

A burst on a shared event loop answers in waves: 64 responses arrive together and, handed over
at once, 64 tasks run in the next iteration, each decoding its answer, settling its outcome and
sending the next cancel. Back to back that is several milliseconds in which nothing else on the
loop (a strategy's tasks, a market-data handler) gets a turn. The built-in transport hands each
complete answer to ``Pacer.deliver``: at most ``per_turn`` answers are handed over per iteration,
the rest are held, first come first served, and handed over in the following iterations.

Holding an answer costs a deque entry, not an extra task wake-up (the task is woken once, when
its answer is handed over), so pacing costs next to nothing when answers arrive one by one. The
futures are the loop's own (``loop.create_future()``): a held answer is simply not set yet, and
the connection remembers that its answer is complete (nothing may fail it any more).
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any, Protocol

__all__ = ["Pacer"]


class Settable(Protocol):
    """What the pacer hands an answer to: a future, or anything that behaves as one here (the
    built-in transport's ``Channel``)."""

    def done(self) -> bool: ...

    def set_result(self, result: Any, /) -> None: ...


class Pacer:
    def __init__(self, loop: asyncio.AbstractEventLoop, per_turn: int) -> None:
        self._loop = loop
        self.per_turn = per_turn
        self._used = 0  # answers handed over for the current iteration
        self._armed = False  # ``_next_turn`` is scheduled
        self._held: deque[tuple[Settable, Any]] = deque()

    def __len__(self) -> int:
        """Answers held now."""
        return len(self._held)

    def deliver(self, future: Settable, result: Any) -> None:
        """Hand ``result`` to ``future`` now, or hold it for a later iteration. A future that is
        done (cancelled) by the time its turn comes is skipped: its answer is dropped, as if the
        cancellation had come a moment earlier."""
        if not self._armed:
            self._armed = True
            self._loop.call_soon(self._next_turn)
        if self._used < self.per_turn and not self._held:
            self._used += 1
            if not future.done():
                future.set_result(result)
            return
        self._held.append((future, result))

    def _next_turn(self) -> None:
        """Once per iteration while answers flow: a new budget, spent on the held ones first."""
        held = self._held
        granted = 0
        try:
            while held and granted < self.per_turn:
                future, result = held.popleft()
                if not future.done():
                    granted += 1
                    future.set_result(result)
        finally:  # even if a hand-over raised: the answers still held get their turns
            self._used = granted
            if granted or held:
                self._loop.call_soon(self._next_turn)
            else:
                self._armed = False
