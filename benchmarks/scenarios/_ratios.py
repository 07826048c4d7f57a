"""The suite's paired CPU ratios (tanx-async / the floor, uvloop / the floor, raw aiohttp / the
floor, trio / asyncio), from the runs of scenarios a-tls, a, b-tls and b.

Every ratio here is paired: the two runs divided are adjacent runs of the same repeat against the
same server process (repeats interleave the clients), and the median of those per-repeat ratios
is reported, never a ratio of medians taken from different runs.
"""

from __future__ import annotations

from typing import Any

from scenarios._base import median

TARGET_FLOOR = 2.0  # tanx-async's CPU per cancel at most this many times the floor's
TARGET_TRIO = 3.0


def _paired(cells: list[Any], key: str, top: str, bottom: str) -> tuple[float | None, int]:
    """Median over repeats of (``top``'s CPU per cancel / ``bottom``'s), valid pairs only."""
    by_name = {c.spec.name: c for c in cells if c.scenario.key == key}
    a, b = by_name.get(top), by_name.get(bottom)
    if a is None or b is None:
        return None, 0
    ratios = [
        (x["cpu_s"] / a.n) / (y["cpu_s"] / b.n)
        for x, y in zip(a.runs, b.runs, strict=False)
        if x.get("_valid") and y.get("_valid") and y["cpu_s"] > 0
    ]
    return median(ratios), len(ratios)


def render_ratios(cells: list[Any]) -> list[str]:
    rows = [
        ("tanx-async", "floor", TARGET_FLOOR, "tanx-async vs the Python floor"),
        ("tanx-async-uvloop", "floor", TARGET_FLOOR, "tanx-async on uvloop vs the floor"),
        ("aiohttp", "floor", None, "raw aiohttp vs the floor"),
        ("tanx-async-trio", "tanx-async", TARGET_TRIO, "tanx-async under trio vs on asyncio"),
    ]
    keys = [k for k in ("a-tls", "a", "b-tls", "b") if any(c.scenario.key == k for c in cells)]
    if not keys:
        return []
    lines = [
        "",
        "## Paired CPU ratios: the floor and trio",
        "",
        "Client CPU per cancel of one client divided by another's, per repeat (adjacent runs against "
        "the same server), median over repeats. Target: tanx-async ≤ "
        f"{TARGET_FLOOR:g}x the floor; trio ≤ {TARGET_TRIO:g}x the asyncio path.",
        "",
        "| ratio | " + " | ".join(keys) + " | target |",
        "|---|" + "---|" * len(keys) + "---|",
    ]
    for top, bottom, target, title in rows:
        cols = []
        for key in keys:
            ratio, pairs = _paired(cells, key, top, bottom)
            cols.append(f"{ratio:.2f}x ({pairs})" if ratio is not None else "—")
        lines.append(f"| {title} | " + " | ".join(cols) + f" | {f'≤ {target:g}x' if target else ''} |")
    return lines
