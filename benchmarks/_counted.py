"""The process being counted: warm up, then cancel N orders on warm connections against the fake
server (latency 0, plain HTTP, concurrency 64); prints one JSON line.

Run by ``_counting.py`` under valgrind's callgrind (instructions) or with ``--trace`` (Python
bytecodes by function, ``sys.settrace`` with opcode events, counted only while the measured
cancels run). Clients: ``tanx-async`` (``cancel_many``: its callback-driven fast path),
``tanx-async-tasks`` (the same with the fast path off: a task per cancel), ``floor``
(``_floor.py``, the least an asyncio client can do), and ``tanx-async-otel`` /
``tanx-async-otel-metrics`` (``cancel_many`` with OpenTelemetry recording: scenario ``telemetry``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import sys
from pathlib import Path
from typing import Any

from _common import loopback_only, make_access_token

REPO = Path(__file__).resolve().parents[1]
CLIENTS = ("tanx-async", "tanx-async-tasks", "floor", "tanx-async-otel", "tanx-async-otel-metrics")
WARM = 300  # warm-up cancels before the counted ones (ids far from the counted range)
STDLIB = os.path.dirname(os.__file__)


async def _cancel(url: str, n: int, client: str, on: list[bool]) -> None:
    """Warm up, then cancel ``n`` orders (``on[0]`` is True while they run)."""
    if client == "floor":
        import _floor

        on[0] = True  # (floor counts its own warm-up and connects: the N-difference removes them)
        await _floor.bench_floor(url, n, 64, WARM, make_access_token(), None)
        return
    from tanx_async import AsyncTanxSession

    instrumented = client.startswith("tanx-async-otel")
    if client == "tanx-async-tasks":
        from tanx_async._pipeline import Pipeline

        Pipeline.immediate_enabled = False
    async with AsyncTanxSession(base_url=url, access_token=make_access_token()) as session:
        if instrumented:
            _instrument(session, spans=client == "tanx-async-otel")
        await session.orders.cancel_many(range(10**9, 10**9 + WARM), concurrency=64)
        on[0] = True
        outcomes = await session.orders.cancel_many(range(1, n + 1), concurrency=64)
        on[0] = False
        if sum(o.ok for o in outcomes) != n:
            raise SystemExit(f"{client}: not every cancel was ok")


def _instrument(session: Any, spans: bool) -> None:
    """``tanx-async-otel``: OpenTelemetry's SDK behind ``tanx_async.telemetry``, spans batched
    to an exporter that drops them, metrics aggregated in memory (what a desk's process pays
    before its exporter's own cost); ``tanx-async-otel-metrics``: the same metrics, no spans
    (OpenTelemetry's no-op tracer provider)."""
    from collections.abc import Sequence

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult

    from tanx_async.telemetry import instrument

    class Drop(SpanExporter):
        def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
            return SpanExportResult.SUCCESS

    from opentelemetry.trace import NoOpTracerProvider

    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(BatchSpanProcessor(Drop()))
    meter_provider = MeterProvider(metric_readers=[InMemoryMetricReader()])
    instrument(
        session,
        tracer_provider=tracer_provider if spans else NoOpTracerProvider(),
        meter_provider=meter_provider,
    )


def _child(url: str, n: int, client: str, trace: bool) -> None:
    on = [False]
    counts: collections.Counter[tuple[str, str]] = collections.Counter()
    if trace:

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode" and on[0]:
                code = frame.f_code
                counts[(code.co_filename, code.co_name)] += 1
            return local

        def enter(frame: Any, event: str, arg: Any) -> Any:
            frame.f_trace_opcodes = True
            return local

        sys.settrace(enter)
    asyncio.run(_cancel(url, n, client, on))
    sys.settrace(None)
    print(json.dumps({"bytecodes": [[_where(f), name, c] for (f, name), c in counts.items()]}))


def _where(filename: str) -> str:
    """A short name for a source file: the package path, or ``stdlib/...``."""
    for root, label in ((str(REPO) + os.sep, ""), (STDLIB + os.sep, "stdlib/")):
        if filename.startswith(root):
            return label + filename[len(root) :]
    return filename.rsplit("site-packages" + os.sep, 1)[-1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--url", required=True)
    p.add_argument("--n", type=int, required=True)
    p.add_argument("--client", default="tanx-async", choices=CLIENTS)
    p.add_argument("--trace", action="store_true", help="count bytecodes by function")
    args = p.parse_args(argv)
    loopback_only(args.url)
    _child(args.url, args.n, args.client, args.trace)
    return 0
