"""Bounded memories of the cancel engine: what this session was told, and which ids it has seen.

``CancelMemory`` is evidence: the orders this session received a 2xx cancel answer for, kept for
a time window and up to a count. tanX refuses a second cancel while the first is still queued;
when two tasks of one session cancel the same order, the second one's refusal is explained by the
first one's 2xx, and the outcome may say ``queued`` on that evidence (never on the refusal's
words).

``RecentIds`` is the deduplication window of a lazy id stream: the last ``size`` ids, in order.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque

from . import _constants as C

__all__ = ["CancelMemory", "RecentIds"]


class CancelMemory:
    """Order ids this session got a 2xx cancel answer for, with when (monotonic seconds)."""

    __slots__ = ("_accepted", "size", "window")

    def __init__(self, size: int = C.CANCEL_MEMORY_SIZE, window: float = C.CANCEL_MEMORY_WINDOW) -> None:
        self.size = size
        self.window = window
        self._accepted: OrderedDict[int, float] = OrderedDict()

    def __len__(self) -> int:
        return len(self._accepted)

    def accepted(self, oid: int) -> None:
        """The exchange answered 2xx to a cancel of ``oid`` just now."""
        accepted = self._accepted
        accepted[oid] = time.monotonic()
        accepted.move_to_end(oid)
        while len(accepted) > self.size:
            accepted.popitem(last=False)

    def age(self, oid: int) -> float | None:
        """Seconds since this session's last 2xx cancel of ``oid``, or None (never, or too long
        ago to count as evidence)."""
        when = self._accepted.get(oid)
        if when is None:
            return None
        age = time.monotonic() - when
        if age > self.window:
            del self._accepted[oid]
            return None
        return age


class RecentIds:
    """The last ``size`` distinct ids added (a set for look-ups, a queue for their order)."""

    __slots__ = ("_ids", "_order", "size")

    def __init__(self, size: int) -> None:
        self.size = size
        self._ids: set[int] = set()
        self._order: deque[int] = deque()

    def __contains__(self, oid: object) -> bool:
        return oid in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, oid: int) -> None:
        if oid in self._ids or self.size <= 0:
            return
        self._ids.add(oid)
        self._order.append(oid)
        if len(self._order) > self.size:
            self._ids.discard(self._order.popleft())
