"""Scenario ``telemetry``: what OpenTelemetry recording costs per cancel.

Counted with ``_counting.py`` (callgrind, user-space instructions per cancel: the difference
between 2,500 and 500 cancels on warm connections, divided by 2,000; bytecodes where valgrind is
missing), for ``cancel_many`` uninstrumented, instrumented (``tanx_async.telemetry`` with
OpenTelemetry's SDK: spans batched to an exporter that drops them, metrics aggregated in memory)
and with metrics only. Opt-in (valgrind, minutes; the SDK comes with the ``dev`` extra). What the
hooks cost when nothing is instrumented is an A/B against the tree before them:
``ab.py --instructions REV_BEFORE REV_AFTER``.
"""

from __future__ import annotations

from _counting import LARGE, SMALL, per_cancel
from _harness import fake_server

from scenarios._base import Context, Measured, section, stamp

RUNS = (
    ("`cancel_many`, not instrumented", "tanx-async"),
    ("`cancel_many`, `telemetry.instrument` (SDK)", "tanx-async-otel"),
    ("`cancel_many`, metrics only (no-op tracer provider)", "tanx-async-otel-metrics"),
)


def measure(ctx: Context) -> Measured:
    rows: list[tuple[str, float]] = []
    unit = "instructions"
    with fake_server(0.0) as server:
        for label, client in RUNS:
            per, unit = per_cancel(server.url, client)
            rows.append((label, per))
            ctx.log(f"  telemetry {label}: {per:,.0f} {unit} / cancel")
    plain = rows[0][1]
    lines = [
        "## What OpenTelemetry costs per cancel (`run.py --scenarios telemetry`)",
        "",
        f"{stamp()}. User-space {unit} per cancel ({LARGE:,} minus {SMALL:,} cancels on warm connections, "
        "latency 0, plain HTTP, concurrency 64, divided by the difference; counted, so repeatable). "
        "Instrumented: OpenTelemetry's SDK, one client span per attempt and one operation span per batch, "
        "spans batched to an exporter that drops them, metrics aggregated in memory.",
        "",
        f"| run | {unit} / cancel | vs not instrumented |",
        "|---|---|---|",
        *[f"| {label} | {per:,.0f} | {per / plain - 1:+.1%} |" for label, per in rows],
    ]
    return Measured(section("telemetry", lines), raw=rows)
