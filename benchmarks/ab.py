"""Paired A/B of tanx-async's own cost between two git revisions (or a revision and the work tree).

    python benchmarks/ab.py BASE [HEAD] [-r 7] [-n 5000] [--latency 0] [--client tanx-async]
    python benchmarks/ab.py --instructions BASE [HEAD] [-r 2] [--client tanx-async]

Each revision's ``tanx_async/`` is exported with ``git archive`` into a temporary folder; one
fake exchange serves both, and this tree's measuring process runs the revisions in alternating
paired rounds (A B, B A, ..., ``_paired.py``) with ``PYTHONPATH`` pointing at each tree, so
machine drift hits both the same way. ``HEAD`` may be ``WORKTREE`` (the default): the files as
they are now.

- By default: client CPU per cancel, timed (``_driver.py``; ``--latency``, ``-n``).
- ``--instructions``: user-space instructions per cancel under callgrind (``_counting.py``: the
  difference between 2,500 and 500 cancels on warm connections; Python bytecodes where valgrind
  is missing). Counts do not move with the machine's load, so 2 rounds say what 7 timed rounds
  cannot; ``--client tanx-async-tasks`` counts the task-per-cancel path.

Prints the median of each and the per-pair ratios B/A with their median and spread. A
micro-optimisation stays only where B/A shows it pays 3 % or more (CONTRIBUTING.md).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _counting import have_valgrind, per_cancel
from _harness import CLIENT_CORE, REPO, child_command, child_env, fake_server, last_json_line, pinned
from _paired import in_turn, quartiles


def export(rev: str, into: Path) -> Path:
    if rev == "WORKTREE":
        return REPO
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "tanx_async"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def timed(tree: Path, url: str, args: argparse.Namespace) -> float:
    """Client CPU per cancel (µs) of one driver run with ``tree``'s tanx_async."""
    cmd = child_command("_driver", "--client", args.client, "--url", url, "-n", str(args.n), "-c", "64")
    env = child_env()
    env["PYTHONPATH"] = str(tree)  # before site-packages (and the editable install): the tree wins
    proc = subprocess.run(
        pinned(CLIENT_CORE, cmd), capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False
    )
    data = last_json_line(proc.stdout) or {"error": proc.stderr[-500:]}
    if "error" in data or data.get("failed"):
        raise SystemExit(f"{tree}: {data}")
    return float(data["cpu_s"]) / int(data["n"]) * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("base")
    p.add_argument("head", nargs="?", default="WORKTREE")
    p.add_argument("--instructions", action="store_true", help="count instructions per cancel (callgrind)")
    p.add_argument("-r", "--repeats", type=int, default=None, help="paired rounds (7 timed, 2 counted)")
    p.add_argument("-n", type=int, default=5000, help="cancels per timed run")
    p.add_argument("--latency", type=float, default=0.0, help="server latency of the timed runs (s)")
    p.add_argument("--client", default="tanx-async")
    args = p.parse_args()
    rounds = args.repeats or (2 if args.instructions else 7)
    unit = "CPU us"
    if args.instructions and not have_valgrind():
        print("valgrind not found (apt-get install valgrind): counting Python bytecodes instead", flush=True)
    with (
        tempfile.TemporaryDirectory() as tmp,
        fake_server(0.0 if args.instructions else args.latency) as server,
    ):
        trees = {name: export(rev, Path(tmp) / name) for name, rev in (("A", args.base), ("B", args.head))}

        def measure(tree: Path) -> float:
            nonlocal unit
            if not args.instructions:
                return timed(tree, server.url, args)
            figure, unit = per_cancel(server.url, args.client, tree)
            return figure

        figures: dict[str, list[float]] = {"A": [], "B": []}
        for i in range(rounds):
            for name in in_turn(i, "A", "B"):
                figures[name].append(measure(trees[name]))
                print(f"  round {i + 1} {name}: {figures[name][-1]:,.1f}", flush=True)
        ratios = [b / a for a, b in zip(figures["A"], figures["B"], strict=True)]
    for name, rev in (("A", args.base), ("B", args.head)):
        runs = ", ".join(f"{x:,.1f}" for x in figures[name])
        print(f"{name} = {rev}: {unit}/cancel median {statistics.median(figures[name]):,.1f}  runs {runs}")
    q1, med, q3 = quartiles(ratios)
    what = "counted" if args.instructions else f"N={args.n}, latency {args.latency}"
    print(
        f"B/A per pair: median {med:.3f}  quartiles {q1:.3f}-{q3:.3f}  min {min(ratios):.3f}  "
        f"max {max(ratios):.3f}  ({rounds} pairs, {args.client}, {what})"
    )


if __name__ == "__main__":
    main()
