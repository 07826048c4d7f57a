"""The scenarios ``run.py`` runs beside its suite (a-tls, b-tls, a, b, c, d), one module each.

Each module has ``measure(ctx: Context) -> Measured``: it runs its measurement and returns its
section of RESULTS.md between ``<!-- NAME:begin -->`` and ``<!-- NAME:end -->`` markers, which
``run.py`` puts in place of the old one (the sections of scenarios that did not run are kept).
A module is imported only when its scenario runs (some import tanx_async or tests/ helpers).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from scenarios._base import Context, Measured


@dataclass(frozen=True)
class Entry:
    name: str  # --scenarios NAME, and its section's markers
    module: str  # scenarios.<module>
    default: bool  # run by a full run (no --scenarios)
    about: str
    needs_tanx: bool = True  # skipped when --only leaves tanx-async out

    def measure(self, ctx: Context) -> Measured:
        found: Measured = importlib.import_module(f"scenarios.{self.module}").measure(ctx)
        return found


SCENARIOS: tuple[Entry, ...] = (
    Entry("burst", "burst", True, "500 cancels over TLS from a hot, cold, warmed or idle pool"),
    Entry("lag", "lag", True, "a 1 ms ticker's lag beside a 5,000-cancel burst", needs_tanx=False),
    Entry("repeated", "repeated", True, "40 bursts on one session: what each leaves behind"),
    Entry("panic", "panic", True, "issue 28: confirm=True against not, and a slow consumer (sandbox)"),
    Entry("stream-confirm", "stream_confirm", True, "confirm=True by push against polling (sandbox)"),
    Entry("deadman", "deadman", True, "the dead man's switch: the event to the last order cancelled"),
    Entry("fleet", "fleet", True, "four processes on one account, with and without a fleet"),
    Entry("floor-pairs", "floor_pairs", False, "tanx-async / the floor in many paired rounds (~5 min)"),
    Entry("instructions", "instructions", False, "instructions and bytecodes per cancel (valgrind)"),
    Entry("telemetry", "telemetry", False, "what OpenTelemetry recording costs per cancel (valgrind)"),
)
BY_NAME = {entry.name: entry for entry in SCENARIOS}

__all__ = ["BY_NAME", "SCENARIOS", "Context", "Entry", "Measured"]
