"""What ``run.py`` hands a scenario (``Context``) and what it gets back (``Measured``), and the
small helpers the scenarios share."""

from __future__ import annotations

import os
import statistics
import subprocess
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Context:
    """One run of the suite, as a scenario sees it."""

    quick: bool
    #: ``run.py -r R``: every scenario's repeats (rounds, runs); None: each scenario's own default.
    repeats: int | None
    log: Callable[[str], None] = print

    def rounds(self, full: int, quick: int = 1) -> int:
        """Repeats of this scenario: ``-r`` when given, else ``quick`` or ``full``."""
        return self.repeats or (quick if self.quick else full)


@dataclass
class Measured:
    """A scenario's result: its section of RESULTS.md (``<!-- name:begin -->`` ...
    ``<!-- name:end -->`` included), whether any run was invalid, and its raw data (results.json)."""

    section: str
    invalid: bool = False
    raw: Any = field(default=None)


def markers(name: str) -> tuple[str, str]:
    return f"<!-- {name}:begin -->", f"<!-- {name}:end -->"


def section(name: str, lines: list[str]) -> str:
    """``lines`` between ``name``'s markers, as one block of text."""
    begin, end = markers(name)
    return "\n".join([begin, *lines, end])


def commit() -> str:
    """The commit measured (short hash), and whether tanx_async/ differed from it."""

    def git(*cmd: str) -> str:
        done = subprocess.run(["git", *cmd], cwd=REPO, capture_output=True, text=True, check=False)
        return done.stdout.strip() if done.returncode == 0 else ""

    short = git("rev-parse", "--short", "HEAD") or "unknown"
    return (
        f"{short} with uncommitted changes to tanx_async/"
        if git("status", "--porcelain", "--", "tanx_async")
        else short
    )


def stamp() -> str:
    """When and at which commit, and the load: the opening of every section."""
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{now}, commit `{commit()}`, load average {load}"


def valid(run: dict[str, Any], n: int) -> str | None:
    """None if a driver's run cancelled all ``n`` orders, else why not."""
    if "error" in run:
        return str(run["error"])
    if run.get("ok") != n or run.get("failed"):
        return f"ok={run.get('ok')} failed={run.get('failed')} of {n}: {run.get('errors')}"
    return None


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def fmt(value: float | None, spec: str) -> str:
    return "—" if value is None else format(value, spec)
