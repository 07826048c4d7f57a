"""The event-loop lag a strategy sharing the loop with a cancel burst sees.

``Ticker`` is a task that asks to wake every 1 ms (``asyncio.sleep(0.001)``) and records by how
much each wake-up came late; ``_driver.py --ticker`` runs it beside the measured burst of any
asyncio client (the harness's scenario ``lag``). The lag of one wake-up is the time the loop
spent on other callbacks past the moment the ticker was due: with a burst that does 5 ms of work
in one loop iteration, the ticker is up to 5 ms late. Samples are bounded (``MAX_SAMPLES``).

On a shared machine the wall-clock lag also holds the time the OS kept the whole process off the
CPU, which no client can help. So the ticker also measures what the client controls: the CPU time
(``time.thread_time``) of every event-loop iteration, from one return of the selector's
``select()`` to the next call (all the callbacks and task steps the loop ran in between). A
timer due during an iteration waits for the rest of it and the next one's ready callbacks, so on
a quiet machine the lag stays within about two iterations' CPU. asyncio's own loop only (the
selector is wrapped through a private attribute; uvloop reports the wall-clock lag alone).
"""

from __future__ import annotations

import asyncio
import gc
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
        self.turns = array("d")  # CPU seconds of each loop iteration
        self._task: asyncio.Task[None] | None = None
        self._unwrap: Any = None
        #: Garbage-collector passes during the run: count and longest pause (s) per generation.
        self.gc_count = [0, 0, 0]
        self.gc_max = [0.0, 0.0, 0.0]
        self._gc_start = 0.0

    def _on_gc(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._gc_start = time.perf_counter()
            return
        generation = info["generation"]
        self.gc_count[generation] += 1
        self.gc_max[generation] = max(self.gc_max[generation], time.perf_counter() - self._gc_start)

    def start(self) -> None:
        self.lags = array("d")
        self.turns = array("d")
        loop = asyncio.get_running_loop()
        self._wrap_selector(loop)
        self.gc_count, self.gc_max = [0, 0, 0], [0.0, 0.0, 0.0]
        gc.callbacks.append(self._on_gc)
        self._task = loop.create_task(self._run())

    def _wrap_selector(self, loop: asyncio.AbstractEventLoop) -> None:
        selector = getattr(loop, "_selector", None)
        if selector is None:  # uvloop
            return
        select, cpu, turns = selector.select, time.thread_time, self.turns
        last = [cpu()]

        def timed_select(timeout: float | None = None) -> Any:
            now = cpu()
            if len(turns) < MAX_SAMPLES * 20:
                turns.append(now - last[0])
            try:
                return select(timeout)
            finally:
                last[0] = cpu()

        selector.select = timed_select
        self._unwrap = lambda: setattr(selector, "select", select)

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
        if self._unwrap is not None:
            self._unwrap()
            self._unwrap = None
        if self._on_gc in gc.callbacks:
            gc.callbacks.remove(self._on_gc)

    def result(self) -> dict[str, Any]:
        out: dict[str, Any] = {"lag_ticks": len(self.lags), "loop_turns": len(self.turns)}
        for prefix, samples in (("lag", self.lags), ("turn_cpu", self.turns)):
            ms = sorted(x * 1e3 for x in samples)
            out[f"{prefix}_p50_ms"] = round(quantile(ms, 0.50), 3) if ms else None
            out[f"{prefix}_p99_ms"] = round(quantile(ms, 0.99), 3) if ms else None
            out[f"{prefix}_max_ms"] = round(ms[-1], 3) if ms else None
        out["gc_passes"] = list(self.gc_count)  # per generation 0, 1, 2
        out["gc_max_ms"] = [round(x * 1e3, 3) for x in self.gc_max]
        return out


async def idle_baseline(seconds: float = 0.5) -> dict[str, Any]:
    """The ticker's lag on an otherwise idle loop (the timer's own granularity)."""
    ticker = Ticker()
    ticker.start()
    await asyncio.sleep(seconds)
    ticker.stop()
    return ticker.result()


def main() -> int:
    """The idle baseline as one JSON line (a child process of scenario ``lag``)."""
    import json

    print(json.dumps({"client": "idle loop", **asyncio.run(idle_baseline())}))
    return 0
