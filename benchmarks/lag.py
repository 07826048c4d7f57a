"""The event-loop lag a strategy sharing the loop with a cancel burst sees.

``Ticker`` is a task that asks to wake every 1 ms (``asyncio.sleep(0.001)``) and records by how
much each wake-up came late; ``driver.py --ticker`` runs it beside the measured burst of any
asyncio client (the harness's scenario ``lag``). The lag of one wake-up is the time the loop
spent on other callbacks past the moment the ticker was due: with a burst that does 5 ms of work
in one loop iteration, the ticker is up to 5 ms late. Samples are bounded (``MAX_SAMPLES``).
"""

from __future__ import annotations

import asyncio
import math
import time
from array import array
from typing import Any

PERIOD = 0.001
MAX_SAMPLES = 200_000  # 200 s of ticks; a burst takes well under that


def quantile(ordered: list[float], q: float) -> float:
    """Nearest-rank quantile of an ascending list (``q`` in 0..1)."""
    if not ordered:
        return float("nan")
    rank = max(0, min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1))
    return ordered[rank]


class Ticker:
    """A 1 ms ticker task; ``result()`` gives the lag's p50, p99 and max in ms, and the count."""

    def __init__(self, period: float = PERIOD) -> None:
        self.period = period
        self.lags = array("d")
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.lags = array("d")
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        clock = time.perf_counter
        lags = self.lags
        while len(lags) < MAX_SAMPLES:
            due = clock() + self.period
            await asyncio.sleep(self.period)
            lags.append(max(0.0, clock() - due))

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def result(self) -> dict[str, Any]:
        ordered = sorted(self.lags)
        ms = [x * 1e3 for x in ordered]
        return {
            "lag_ticks": len(ms),
            "lag_p50_ms": round(quantile(ms, 0.50), 3) if ms else None,
            "lag_p99_ms": round(quantile(ms, 0.99), 3) if ms else None,
            "lag_max_ms": round(ms[-1], 3) if ms else None,
        }


async def idle_baseline(seconds: float = 0.5) -> dict[str, Any]:
    """The ticker's lag on an otherwise idle loop (the timer's own granularity)."""
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(seconds)
    ticker.stop()
    return ticker.result()
