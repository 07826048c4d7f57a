"""What one cancel costs, counted instead of timed: CPU instructions or Python bytecodes.

Timings on this 2-core machine move by 20-30 % between runs; counts do not. The counted process
(``_counted.py``) cancels N orders on warm connections against the fake server (latency 0, plain
HTTP, concurrency 64), once with N=500 and once with N=2,500; the difference divided by 2,000 is
the cost of one cancel, start-up, imports and warm-up cancelled out:

- *instructions*: user-space instructions under valgrind's callgrind (the kernel's share, the
  system calls, is not counted; it is the same few calls per cancel for every client here);
- *bytecodes*: Python bytecodes executed (``sys.settrace`` with opcode events), by function,
  which says where in the Python code the instructions go.

Used by scenarios ``instructions`` and ``telemetry`` and by ``ab.py --instructions``. ``tree``
is the source tree whose ``tanx_async`` is counted (first on ``PYTHONPATH``); the counted process
is always this tree's ``_counted.py``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from _harness import REPO, child_command, child_env, last_json_line

SMALL, LARGE = 500, 2500


def have_valgrind() -> bool:
    return shutil.which("valgrind") is not None


def _env(tree: Path) -> dict[str, str]:
    env = child_env()
    env["PYTHONPATH"] = os.pathsep.join([str(tree), env["PYTHONPATH"]])  # the tree's tanx_async wins
    return env


def run_counted(url: str, n: int, client: str, how: str, tree: Path = REPO) -> dict[str, Any]:
    """One counted process: ``{"instructions": I}`` (``how="instructions"``, under callgrind) or
    ``{"bytecodes": [[file, function, count], ...]}`` (``how="bytecodes"``)."""
    cmd = child_command("_counted", "--url", url, "--n", str(n), "--client", client)
    if how == "bytecodes":
        proc = subprocess.run(
            [*cmd, "--trace"],
            capture_output=True,
            text=True,
            env=_env(tree),
            cwd=REPO,
            timeout=600,
            check=False,
        )
        data = last_json_line(proc.stdout)
        if proc.returncode or data is None:
            raise RuntimeError(f"{client} n={n}: {(proc.stderr or proc.stdout).strip()[-500:]}")
        return data
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "callgrind.out"
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", *cmd],
            capture_output=True,
            text=True,
            env=_env(tree),
            cwd=REPO,
            timeout=1200,
            check=False,
        )
    found = re.search(r"Collected : (\d+)", proc.stderr)
    if proc.returncode or found is None:
        raise RuntimeError(f"{client} n={n} under callgrind: {proc.stderr.strip()[-500:]}")
    return {"instructions": int(found.group(1))}


def instructions_per_cancel(url: str, client: str, tree: Path = REPO) -> float:
    small, large = (run_counted(url, n, client, "instructions", tree)["instructions"] for n in (SMALL, LARGE))
    return float(large - small) / (LARGE - SMALL)


def bytecodes_per_cancel(url: str, client: str, tree: Path = REPO) -> dict[tuple[str, str], float]:
    """Bytecodes per cancel by (file, function)."""
    small, large = (
        {(f, fn): c for f, fn, c in run_counted(url, n, client, "bytecodes", tree)["bytecodes"]}
        for n in (SMALL, LARGE)
    )
    return {k: (large.get(k, 0) - small.get(k, 0)) / (LARGE - SMALL) for k in set(small) | set(large)}


def per_cancel(url: str, client: str, tree: Path = REPO) -> tuple[float, str]:
    """One figure per cancel: instructions where valgrind is installed, else bytecodes; and its unit."""
    if have_valgrind():
        return instructions_per_cancel(url, client, tree), "instructions"
    return sum(bytecodes_per_cancel(url, client, tree).values()), "bytecodes"
