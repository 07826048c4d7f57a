"""Issue 31: one token pair for a fleet of processes (real processes against a loopback sandbox
whose access tokens live 1.5 s and whose refresh tokens rotate on every refresh)."""

from __future__ import annotations

import math
from pathlib import Path

from .conftest import Desk, RedisServer, desk, run_members

ACCESS_TTL = 1.5
MEMBERS, ROUNDS, PER_ROUND, GAP = 4, 8, 25, 0.6


def expiries(issued: float, first: float, last: float) -> int:
    """How many times the account's access token comes due between the run's first request
    (``first``) and its last (``last``), when it is renewed exactly when its own JWT says it
    expires (``exp`` is whole seconds, rounded down, as the sandbox mints it) and the pair
    given to the members was issued at ``issued``: the renewals one session alone would make."""
    count = 0
    if math.floor(issued + ACCESS_TTL) <= first:
        count, issued = 1, first  # dead before the run: renewed by its first request
    while (exp := math.floor(issued + ACCESS_TTL)) <= last:
        count += 1
        issued = exp
    return count


def four_members(d: Desk, fleet: str | None) -> None:
    rounds = d.rounds(MEMBERS, ROUNDS, PER_ROUND)
    d.exchange.clear_requests()
    results = run_members([d.spec(fleet=fleet, rounds=r, gap=GAP, refresh_skew=0.0) for r in rounds])
    for result in results:
        assert result.returncode == 0, result.stderr
    statuses: dict[str, int] = {}
    for result in results:
        for status, n in result.report["statuses"].items():
            statuses[status] = statuses.get(status, 0) + n
    records = list(d.exchange.requests)
    refreshes = sum(1 for r in records if r.result == "refresh_ok")
    refused = sum(1 for r in records if r.result == "refresh_failed")
    due = expiries(d.issued_at, d.wall(records[0].time), d.wall(records[-1].time))
    errors = [e for result in results for e in result.report["errors"]]
    print(f"fleet={fleet}: {statuses}, refreshes {refreshes}, refused {refused}, expiries {due}")
    assert statuses == {"queued": MEMBERS * ROUNDS * PER_ROUND}, (statuses, errors)
    assert refused == 0
    assert 1 <= refreshes <= due + 2, (refreshes, due)


def test_four_processes_share_one_pair_through_a_folder(tmp_path: Path) -> None:
    with desk(MEMBERS * ROUNDS * PER_ROUND, access_ttl=ACCESS_TTL) as d:
        four_members(d, (tmp_path / "fleet").as_uri())
        files = sorted(p.name for p in (tmp_path / "fleet").iterdir())
        assert "tokens.json" in files
        for path in (tmp_path / "fleet").iterdir():
            assert path.stat().st_mode & 0o077 == 0, path  # mode 0600
            assert d.access not in path.read_text(errors="replace") or path.name == "tokens.json"


def test_four_processes_share_one_pair_through_redis(redis_server: RedisServer) -> None:
    with desk(MEMBERS * ROUNDS * PER_ROUND, access_ttl=ACCESS_TTL) as d:
        four_members(d, redis_server.url)
