"""Paired rounds, shared by ``ab.py`` and scenario ``floor-pairs``: two runs back to back against
the same server per round, alternating which goes first (A B, B A, A B, ...), one ratio per round,
and the figure is the median of those ratios with their spread (never a ratio of medians)."""

from __future__ import annotations

import statistics
from typing import TypeVar

T = TypeVar("T")


def in_turn(round_index: int, a: T, b: T) -> tuple[T, T]:
    """The order of round ``round_index`` (from 0): ``a`` first in even rounds, ``b`` in odd ones."""
    return (a, b) if round_index % 2 == 0 else (b, a)


def quartiles(values: list[float]) -> tuple[float, float, float]:
    """(q1, median, q3) of ``values`` (inclusive method; one value is its own quartiles)."""
    ordered = sorted(values)
    if len(ordered) < 2:
        return ordered[0], ordered[0], ordered[0]
    q1, q2, q3 = statistics.quantiles(ordered, n=4, method="inclusive")
    return q1, q2, q3
