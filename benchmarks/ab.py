"""Paired A/B of tanx-async's own cost between two git revisions (or two source trees).

    python benchmarks/ab.py BASE [HEAD] [-r 7] [-n 5000] [--latency 0] [--client tanx-async]

Each revision is exported with ``git archive`` into a temporary folder; one fake exchange
(``fakeserver.py``) serves both, and the driver runs the revisions alternately (A B B A A B ...)
with ``PYTHONPATH`` pointing at each tree, so machine drift hits both the same way. Prints the
median client CPU per cancel of each, the per-pair ratios and their median. ``HEAD`` may be
``WORKTREE`` (the default): the files as they are now.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _harness import BENCH, CLIENT_CORE, REPO, child_env, fake_server, last_json_line, pinned


def export(rev: str, into: Path) -> Path:
    if rev == "WORKTREE":
        return REPO
    into.mkdir(parents=True)
    archive = subprocess.run(["git", "archive", rev, "tanx_async"], cwd=REPO, check=True, capture_output=True)
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)
    return into


def measure(tree: Path, url: str, args: argparse.Namespace) -> float:
    cmd = [
        sys.executable,
        str(BENCH / "driver.py"),
        "--client",
        args.client,
        "--url",
        url,
        "-n",
        str(args.n),
        "-c",
        "64",
    ]
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
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("base")
    p.add_argument("head", nargs="?", default="WORKTREE")
    p.add_argument("-r", "--repeats", type=int, default=7)
    p.add_argument("-n", type=int, default=5000)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--client", default="tanx-async")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, fake_server(args.latency) as server:
        trees = {name: export(rev, Path(tmp) / name) for name, rev in (("A", args.base), ("B", args.head))}
        cpu: dict[str, list[float]] = {"A": [], "B": []}
        for i in range(args.repeats):
            for name in ("A", "B") if i % 2 == 0 else ("B", "A"):
                cpu[name].append(measure(trees[name], server.url, args))
        ratios = [b / a for a, b in zip(cpu["A"], cpu["B"], strict=True)]
    print(f"A = {args.base}: CPU us/cancel median {statistics.median(cpu['A']):.1f}  runs {cpu['A']}")
    print(f"B = {args.head}: CPU us/cancel median {statistics.median(cpu['B']):.1f}  runs {cpu['B']}")
    print(
        f"B/A per pair: median {statistics.median(ratios):.3f}  "
        f"min {min(ratios):.3f}  max {max(ratios):.3f}  ({args.repeats} pairs, N={args.n}, latency {args.latency})"
    )


if __name__ == "__main__":
    main()
