"""What one cancel costs, counted instead of timed: CPU instructions and Python bytecodes.

    .venv/bin/python benchmarks/instructions.py [--clients tanx-async,tanx-async-tasks,floor] [--top 25] [--write]

Timings on this 2-core machine move by 20-30 % between runs; counts do not. For each client the
child process cancels N orders on warm connections against ``fakeserver.py`` (latency 0, plain
HTTP, concurrency 64), once with N=500 and once with N=2,500; the difference divided by 2,000
is the cost of one cancel, start-up, imports and warm-up cancelled out:

- *instructions*: user-space instructions under valgrind's callgrind (the kernel's share, the
  system calls, is not counted; it is the same few calls per cancel for every client here);
- *bytecodes*: Python bytecodes executed (``sys.settrace`` with opcode events), by function,
  which says where in the Python code the instructions go.

Clients: ``tanx-async`` (``cancel_many``: its callback-driven fast path), ``tanx-async-tasks``
(the same with the fast path off: a task per cancel) and ``floor`` (``floor.py``, the least an
asyncio client can do). Needs valgrind for instructions (``apt-get install valgrind``; without
it only bytecodes are counted). ``--write`` replaces this script's section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import make_access_token, write_section  # noqa: E402
from _harness import REPO, child_env, fake_server, last_json_line  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
BEGIN, END = "<!-- instructions:begin -->", "<!-- instructions:end -->"
CLIENTS = ("tanx-async", "tanx-async-tasks", "floor")
#: Also accepted: ``cancel_many`` with OpenTelemetry recording (``telemetry_overhead.py``).
EXTRA_CLIENTS = ("tanx-async-otel", "tanx-async-otel-metrics")
SMALL, LARGE = 500, 2500
WARM = 300  # warm-up cancels before the counted ones (ids far from the counted range)
STDLIB = os.path.dirname(os.__file__)


async def _cancel(url: str, n: int, client: str, on: list[bool]) -> None:
    """Warm up, then cancel ``n`` orders (``on[0]`` is True while they run)."""
    if client == "floor":
        import floor

        on[0] = True  # (floor counts its own warm-up and connects: the N-difference removes them)
        await floor.bench_floor(url, n, 64, WARM, make_access_token(), None)
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


def _run(url: str, n: int, client: str, how: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, "--child", url, "--n", str(n), "--client", client]
    if how == "bytecodes":
        cmd.append("--trace")
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=child_env(), cwd=REPO, timeout=600, check=False
        )
        data = last_json_line(proc.stdout)
        if proc.returncode or data is None:
            raise SystemExit(f"{client} n={n}: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return data
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
            capture_output=True,
            text=True,
            env=child_env(),
            cwd=REPO,
            timeout=1200,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or found is None:
        raise SystemExit(f"{client} n={n} under callgrind: {proc.stderr.strip()[-500:]}")
    return {"instructions": int(found.group(1))}


def measure(clients: list[str], instructions: bool) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    with fake_server(0.0) as server:
        for client in clients:
            res: dict[str, Any] = {}
            if instructions:
                small, large = (
                    _run(server.url, n, client, "instructions")["instructions"] for n in (SMALL, LARGE)
                )
                res["instructions"] = (large - small) / (LARGE - SMALL)
            small_b, large_b = (
                {(f, fn): c for f, fn, c in _run(server.url, n, client, "bytecodes")["bytecodes"]}
                for n in (SMALL, LARGE)
            )
            per = {
                k: (large_b.get(k, 0) - small_b.get(k, 0)) / (LARGE - SMALL)
                for k in set(small_b) | set(large_b)
            }
            res["bytecodes"] = sum(per.values())
            res["by_function"] = sorted(
                ((v, f"{fn} ({f})") for (f, fn), v in per.items() if v >= 0.5), reverse=True
            )
            results[client] = res
            print(
                f"  {client}: " + ", ".join(f"{k} {v:,.0f}" for k, v in res.items() if k != "by_function"),
                flush=True,
            )
    return results


def render(results: dict[str, dict[str, Any]], top: int) -> str:
    floor = results.get("floor", {})
    rows = []
    for client, res in results.items():
        ins = res.get("instructions")
        ratio = f"{ins / floor['instructions']:.2f}x" if ins and floor.get("instructions") else "—"
        bc_ratio = f"{res['bytecodes'] / floor['bytecodes']:.2f}x" if floor.get("bytecodes") else "—"
        rows.append(
            f"| {client} | {f'{ins:,.0f}' if ins else '—'} | {ratio} | {res['bytecodes']:,.0f} | {bc_ratio} |"
        )
    detail = []
    for client, res in results.items():
        detail += ["", f"Bytecodes per cancel by function, `{client}` (the top {top}):", ""]
        detail += ["| bytecodes | function (file) |", "|---|---|"]
        detail += [f"| {v:,.1f} | `{name}` |" for v, name in res["by_function"][:top]]
    return "\n".join(
        [
            BEGIN,
            "## What one cancel costs, counted (`benchmarks/instructions.py`)",
            "",
            f"Counts per cancel: the difference between {LARGE:,} and {SMALL:,} cancels on warm connections "
            "(latency 0, plain HTTP, concurrency 64), divided by the difference. *instructions*: user-space, "
            "under callgrind (system calls not counted); *bytecodes*: Python bytecodes executed. Unlike "
            "timings, these do not move between runs.",
            "",
            "| client | instructions / cancel | vs floor | bytecodes / cancel | vs floor |",
            "|---|---|---|---|---|",
            *rows,
            *detail,
            END,
        ]
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--clients", default=",".join(CLIENTS), help="comma-separated, of " + ", ".join(CLIENTS)
    )
    parser.add_argument("--top", type=int, default=25, help="functions listed per client")
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    parser.add_argument("--child", metavar="URL", help=argparse.SUPPRESS)
    parser.add_argument("--n", type=int, default=SMALL, help=argparse.SUPPRESS)
    parser.add_argument("--client", default="tanx-async", help=argparse.SUPPRESS)
    parser.add_argument("--trace", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        _child(args.child, args.n, args.client, args.trace)
        return
    clients = [c for c in args.clients.split(",") if c]
    unknown = [c for c in clients if c not in CLIENTS + EXTRA_CLIENTS]
    if unknown or not clients or args.top < 1:
        parser.error(f"unknown client {unknown[0]!r}" if unknown else "--clients and --top must not be empty")
    instructions = shutil.which("valgrind") is not None
    if not instructions:
        print("valgrind not found (apt-get install valgrind): counting bytecodes only", flush=True)
    section = render(measure(clients, instructions), args.top)
    print(section)
    if args.write:
        write_section(RESULTS, section, BEGIN, END)


if __name__ == "__main__":
    main()
