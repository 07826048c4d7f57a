"""What the command line prints: tables, JSON lines, messages on stderr, the progress bar.

Tables use rich when it is installed and stdout is a terminal, plain aligned text otherwise.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, TextIO

import attrs

from .._errors import brief
from ..models import CancelOutcome, Order

#: Batches at least this long get a progress bar (when stderr is a terminal and rich is there).
PROGRESS_MIN = 50


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return {f.name: _jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def order_json(order: Order) -> dict[str, Any]:
    """An order as a JSON object: the API's field names, Decimals as strings."""
    result: dict[str, Any] = _jsonable(order)
    return result


def outcome_json(outcome: CancelOutcome) -> dict[str, Any]:
    """One cancel outcome as a JSON object."""
    error = outcome.error
    return {
        "order_id": outcome.order_id,
        "status": outcome.status.value,
        "ok": outcome.ok,
        "state": outcome.order.state.value if outcome.order is not None else None,
        "attempts": outcome.attempts,
        "elapsed": round(outcome.elapsed, 6),
        "error": str(error) if error is not None else None,
        "error_type": type(error).__name__ if error is not None else None,
        "order": order_json(outcome.order) if outcome.order is not None else None,
        "note": outcome.note,
    }


def text(value: Any) -> str:
    """A table cell: ``-`` for None, an enum's value, a datetime in UTC to the second."""
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


class Output:
    """Tables (rich on a terminal, plain text otherwise), JSON lines, messages on stderr."""

    def __init__(self, *, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json_mode = json_mode
        self.stdout = stdout
        self.stderr = stderr
        self._console: Any = None
        if not json_mode and _isatty(stdout):
            try:
                from rich.console import Console
            except ImportError:
                pass
            else:
                self._console = Console(file=stdout, highlight=False)

    def json(self, obj: Mapping[str, Any]) -> None:
        self.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def table(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> None:
        """``columns``: (title, "l" or "r")."""
        if self._console is not None:
            from rich import box
            from rich.table import Table

            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
            last = len(columns) - 1
            for i, (title, align) in enumerate(columns):
                # Every column keeps its width; only the last (free text) gives way on a narrow
                # terminal, folding its text.
                width = max([len(title), *(len(row[i]) for row in rows)])
                table.add_column(
                    title,
                    justify="right" if align == "r" else "left",
                    no_wrap=i != last,
                    min_width=width if i != last else min(width, 12),
                    overflow="fold",
                )
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [len(title) for title, _ in columns]
        for row in rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def fmt(cells: Sequence[str]) -> str:
            parts = [
                cell.rjust(w) if align == "r" else cell.ljust(w)
                for cell, w, (_, align) in zip(cells, widths, columns, strict=True)
            ]
            return "  ".join(parts).rstrip()

        self.line(fmt([title for title, _ in columns]))
        for row in rows:
            self.line(fmt(row))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A rich progress bar on stderr, or nothing (stderr not a terminal, rich missing, short batch)."""

    def __init__(self, total: int, description: str, *, stderr: TextIO, enabled: bool = True) -> None:
        self.total = total
        self._description = description
        self._bar: Any = None
        self._task: Any = None
        if enabled and total >= PROGRESS_MIN and _isatty(stderr):
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                return
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=stderr),
                transient=True,
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=self.total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total if total is not None else self.total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


# -- orders and outcomes as tables --------------------------------------------------------------

_OUTCOME_COLUMNS = (
    ("order", "r"),
    ("status", "l"),
    ("ok", "l"),
    ("market", "l"),
    ("side", "l"),
    ("state", "l"),
    ("tries", "r"),
    ("ms", "r"),
    ("error", "l"),
)

ORDER_COLUMNS = (
    ("id", "r"),
    ("market", "l"),
    ("side", "l"),
    ("type", "l"),
    ("state", "l"),
    ("price", "r"),
    ("volume", "r"),
    ("remaining", "r"),
    ("executed", "r"),
    ("created (UTC)", "l"),
)


def _outcome_row(outcome: CancelOutcome) -> list[str]:
    order = outcome.order
    error = outcome.error
    return [
        str(outcome.order_id),
        outcome.status.value,
        "yes" if outcome.ok else "NO",
        text(order.market if order else None),
        text(order.side if order else None),
        text(order.state if order else None),
        str(outcome.attempts),
        f"{outcome.elapsed * 1e3:.0f}",
        brief(error) if error is not None else "",
    ]


def order_row(order: Order) -> list[str]:
    return [
        str(order.id),
        order.market,
        text(order.side),
        text(order.ord_type),
        text(order.state),
        text(order.price),
        text(order.origin_volume),
        text(order.remaining_volume),
        text(order.executed_volume),
        text(order.created_at),
    ]


def print_outcomes(out: Output, outcomes: Sequence[CancelOutcome]) -> None:
    """JSON lines, or a table, a line per outcome that has a note (what evidence decided it), and
    a summary line (counts per status, ok and not ok)."""
    if out.json_mode:
        for outcome in outcomes:
            out.json(outcome_json(outcome))
        return
    out.table(_OUTCOME_COLUMNS, [_outcome_row(o) for o in outcomes])
    for outcome in outcomes:
        if outcome.note is not None:
            out.line(f"note on order {outcome.order_id}: {outcome.note}")
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    ok = sum(o.ok for o in outcomes)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    n = len(outcomes)
    out.line(f"{n} order{'s' if n != 1 else ''}: {summary} ({ok} ok, {n - ok} not ok)")
