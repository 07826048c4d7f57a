"""What OpenTelemetry recording costs per cancel, and what its hooks cost when it is off.

    .venv/bin/python benchmarks/telemetry_overhead.py [--base DIR] [--write]

Counted with ``instructions.py``'s method (callgrind, user-space instructions per cancel: the
difference between 2,500 and 500 cancels on warm connections, divided by 2,000; bytecodes
where valgrind is missing), for: ``cancel_many`` uninstrumented, and instrumented
(``tanx_async.telemetry`` with OpenTelemetry's SDK: spans batched to an exporter that drops
them, metrics aggregated in memory). ``--base DIR``: also the uninstrumented run of another
checkout (e.g. ``git archive <commit> | tar -x -C DIR``, the tree before the hooks), which
says what the hooks cost when nothing is instrumented. ``--write`` replaces this script's
section of ``RESULTS.md``.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

from _common import write_section  # noqa: E402
from _harness import REPO, child_env, fake_server, last_json_line  # noqa: E402

RESULTS = BENCH / "RESULTS.md"
BEGIN, END = "<!-- telemetry:begin -->", "<!-- telemetry:end -->"
SMALL, LARGE = 500, 2500


def _count(tree: Path, url: str, n: int, client: str, instructions: bool) -> float:
    """Instructions (or bytecodes) of one child of ``tree``'s ``instructions.py``."""
    env = child_env()
    env["PYTHONPATH"] = str(tree)
    cmd = [sys.executable, str(tree / "benchmarks" / "instructions.py"), "--child", url, "--n", str(n)]
    cmd += ["--client", client]
    if not instructions:
        proc = subprocess.run(
            [*cmd, "--trace"], capture_output=True, text=True, env=env, cwd=tree, timeout=600, check=False
        )
        data = last_json_line(proc.stdout)
        if proc.returncode or data is None:
            raise SystemExit(f"{client} n={n}: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return float(sum(c for _, _, c in data["bytecodes"]))
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
            capture_output=True,
            text=True,
            env=env,
            cwd=tree,
            timeout=1200,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or found is None:
        raise SystemExit(f"{client} n={n} under callgrind: {proc.stderr.strip()[-500:]}")
    return float(found.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", type=Path, default=None, help="another checkout, measured uninstrumented")
    parser.add_argument("--base-label", default="before the hooks", help="its name in the table")
    parser.add_argument("--write", action="store_true", help="replace the section in RESULTS.md")
    parser.add_argument(
        "--skip-plain", action="store_true", help="measure the instrumented runs only (no comparison)"
    )
    args = parser.parse_args()
    instructions = shutil.which("valgrind") is not None
    unit = "instructions" if instructions else "bytecodes"
    runs: list[tuple[str, Path, str]] = []
    if args.base is not None:
        runs.append((f"`cancel_many`, {args.base_label}", args.base.resolve(), "tanx-async"))
    if not args.skip_plain:
        runs.append(("`cancel_many`, not instrumented", REPO, "tanx-async"))
    runs.append(("`cancel_many`, `telemetry.instrument` (SDK)", REPO, "tanx-async-otel"))
    runs.append(("`cancel_many`, metrics only (no-op tracer provider)", REPO, "tanx-async-otel-metrics"))
    rows: list[tuple[str, float]] = []
    with fake_server(0.0) as server:
        for label, tree, client in runs:
            small, large = (_count(tree, server.url, n, client, instructions) for n in (SMALL, LARGE))
            per = (large - small) / (LARGE - SMALL)
            rows.append((label, per))
            print(f"  {label}: {per:,.0f} {unit} / cancel", flush=True)
    plain = rows[-3][1] if not args.skip_plain else float("nan")
    lines = [
        BEGIN,
        "## What OpenTelemetry costs per cancel (`benchmarks/telemetry_overhead.py`)",
        "",
        f"User-space {unit} per cancel ({LARGE:,} minus {SMALL:,} cancels on warm connections, latency 0, "
        "plain HTTP, concurrency 64, divided by the difference; counted, so repeatable). Instrumented: "
        "OpenTelemetry's SDK, one client span per attempt and one operation span per batch, spans "
        "batched to an exporter that drops them, metrics aggregated in memory.",
        "",
        f"| run | {unit} / cancel | vs not instrumented |",
        "|---|---|---|",
        *[f"| {label} | {per:,.0f} | {per / plain - 1:+.1%} |" for label, per in rows],
        END,
    ]
    section = "\n".join(lines)
    print(section)
    if args.write:
        write_section(RESULTS, section, BEGIN, END)


if __name__ == "__main__":
    main()
