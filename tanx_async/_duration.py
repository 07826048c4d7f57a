"""Durations in messages, rounded for people: ``duration(0.999997) == "1 s"``.

Every error, warning and status line that states a deadline, timeout, pause or age goes through
``duration``, so a deadline of 1 s that a clock cut to 0.999997 s reads "1 s", and
0.15000000000000002 reads "0.15 s". Two significant figures below 10 s (in milliseconds below
10 ms), whole seconds up to 2 minutes, then whole minutes, then hours with one decimal.
(Measured latencies, in the debug log and the demo's report, keep their own fixed units.)
"""

from __future__ import annotations

import math

__all__ = ["duration", "within"]


def duration(seconds: float) -> str:
    """``seconds`` as people read it: "3.2 ms", "0.25 s", "1 s", "1.5 s", "12 s", "5 min", "2.5 h"."""
    if not math.isfinite(seconds):
        return f"{seconds} s"
    if seconds < 0:
        return "-" + duration(-seconds)
    if seconds < 0.00995:  # (what rounds to 10 ms reads "0.01 s", below)
        return "0 s" if seconds < 0.0000005 else f"{seconds * 1e3:.2g} ms"
    if seconds < 9.95:  # (what rounds to 10 reads "10 s", below)
        return f"{seconds:.2g} s"
    if seconds < 120:
        return f"{round(seconds)} s"
    if seconds < 7200:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def within(seconds: float | None) -> str:
    """``" within 1 s"`` for a timeout that struck, or ``""`` where there was none of ours (a
    ``None`` timeout: the operating system's own gave up)."""
    return "" if seconds is None else f" within {duration(seconds)}"
