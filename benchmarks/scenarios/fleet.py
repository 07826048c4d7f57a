"""Scenario ``fleet``: four processes on one tanX account, with and without a fleet (issue 31).

Runs the members of ``tests/fleet/`` (``tests/fleet/child.py``: real processes started with
``sys.executable``) against a loopback sandbox whose access tokens live 1.5 s and whose refresh
tokens rotate on every refresh:

- tokens: 4 members, 8 rounds (3 with ``--quick``, or ``-r``) of 25 cancels each, 0.6 s apart, all starting
  from one token pair: without ``fleet=``, with ``file://`` and (when ``redis-server`` is
  installed) with ``redis://``. Prints the cancels' outcomes, the refreshes the exchange
  accepted and refused, and how many times the token came due (the renewals one session alone
  would make).
- budget: 3 members with ``rate_limit=150, rate_limit_burst=15``, 300 cancels each, all at
  once: the busiest second at the exchange, without a fleet and with one.

Short and bounded (about a minute). It borrows the members and the desk of ``tests/fleet/``
(pytest, from the ``dev`` extra: ``scripts/bench.py`` installs it).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from scenarios._base import REPO, Context, Measured, section, stamp

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))  # tests/fleet/: the members, the desk, the sandbox's settings

from tests.fleet.conftest import RedisServer, desk, free_port, redis_binary, run_members
from tests.fleet.test_budget import busiest_second
from tests.fleet.test_tokens import ACCESS_TTL, expiries

PER_ROUND = 25


def tokens(fleet: str | None, rounds: int, per_round: int) -> dict[str, Any]:
    with desk(4 * rounds * per_round, access_ttl=ACCESS_TTL) as d:
        d.exchange.clear_requests()
        specs = [
            d.spec(fleet=fleet, rounds=r, gap=0.6, refresh_skew=0.0) for r in d.rounds(4, rounds, per_round)
        ]
        results = run_members(specs)
        statuses: dict[str, int] = {}
        errors: dict[str, int] = {}
        for result in results:
            for key, n in result.report.get("statuses", {}).items():
                statuses[key] = statuses.get(key, 0) + n
            for key, n in result.report.get("errors", {}).items():
                errors[key] = errors.get(key, 0) + n
        records = list(d.exchange.requests)
        return {
            "statuses": statuses,
            "errors": errors,
            "refreshes": sum(1 for r in records if r.result == "refresh_ok"),
            "refused": sum(1 for r in records if r.result == "refresh_failed"),
            "expiries": expiries(d.issued_at, d.wall(records[0].time), d.wall(records[-1].time)),
        }


def budget(fleet: str | None) -> tuple[int, int]:
    with desk(900, access_ttl=300) as d:
        d.exchange.clear_requests()
        specs = [
            d.spec(fleet=fleet, rounds=r, rate_limit=150, rate_limit_burst=15) for r in d.rounds(3, 1, 300)
        ]
        run_members(specs)
        times = [r.time for r in list(d.exchange.requests)]
        return len(times), busiest_second(times)


def measure(ctx: Context) -> Measured:
    rounds = ctx.rounds(8, 3)
    lines = [
        "## A fleet: four processes on one account (`run.py --scenarios fleet`, issue 31)",
        "",
        f"{stamp()}. Real processes (`tests/fleet/child.py`) against a loopback sandbox whose access "
        f"tokens live {ACCESS_TTL} s and whose refresh tokens rotate on every refresh; every process starts "
        'from the same token pair; `refresh_skew=0`. "Came due": the renewals one session alone would '
        "make in the same run. `redis://` rows only where `redis-server` is installed.",
        "",
        f"4 processes x {rounds} rounds x {PER_ROUND} cancels, 0.6 s apart:",
        "",
        "| fleet | cancels queued | failed | refreshes | refused | came due | errors |",
        "|---|---|---|---|---|---|---|",
    ]
    with tempfile.TemporaryDirectory() as folder:
        server = None
        binary = redis_binary()
        if binary is not None:
            server = RedisServer(binary, free_port(), Path(folder))
            server.start()
        try:
            fleets: list[tuple[str, str | None]] = [
                ("no fleet", None),
                ("`file://`", Path(folder, "fleet").as_uri()),
            ]
            if server is not None:
                fleets.append(("`redis://`", server.url))
            for name, url in fleets:
                r = tokens(url, rounds, PER_ROUND)
                queued = r["statuses"].get("queued", 0)
                failed = sum(n for k, n in r["statuses"].items() if k != "queued")
                errors = "; ".join(f"{n} x {k[:70]}" for k, n in r["errors"].items()) or "-"
                row = f"| {name} | {queued} | {failed} | {r['refreshes']} | {r['refused']} | {r['expiries']} | {errors} |"
                ctx.log(f"  fleet tokens {row}")
                lines.append(row)
            lines += [
                "",
                "3 processes x 300 cancels at once, `rate_limit=150, rate_limit_burst=15` (bound asserted by "
                "tests/fleet/test_budget.py: 150 x 1.1 + 15 = 180):",
                "",
                "| fleet | requests | busiest second at the exchange |",
                "|---|---|---|",
            ]
            for name, url in [("no fleet", None)] + ([("`redis://`", server.url)] if server else []):
                sent, busiest = budget(url)
                ctx.log(f"  fleet budget {name}: {sent} requests, busiest second {busiest}")
                lines.append(f"| {name} | {sent} | {busiest} |")
        finally:
            if server is not None:
                server.stop()
    return Measured(section("fleet", lines))
