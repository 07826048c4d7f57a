"""Issue 31: one rate budget for a fleet of processes, through a real Redis."""

from __future__ import annotations

from .conftest import RedisServer, desk, run_members

RATE, BURST, MEMBERS, EACH = 150, 15, 3, 300


def busiest_second(times: list[float]) -> int:
    """The most requests in any one-second window (``times`` in seconds, any origin)."""
    times = sorted(times)
    best, start = 0, 0
    for end, t in enumerate(times):
        while t - times[start] >= 1.0:
            start += 1
        best = max(best, end - start + 1)
    return best


def test_three_processes_keep_to_one_budget(redis_server: RedisServer) -> None:
    with desk(MEMBERS * EACH, access_ttl=300) as d:
        d.exchange.clear_requests()
        rounds = d.rounds(MEMBERS, 1, EACH)
        specs = [
            d.spec(fleet=redis_server.url, rounds=r, rate_limit=RATE, rate_limit_burst=BURST) for r in rounds
        ]
        results = run_members(specs)
        for result in results:
            assert result.returncode == 0, result.stderr
            assert result.report["statuses"] == {"queued": EACH}, result.report
            assert "fleet_unavailable" not in result.report["events"]
        times = [r.time for r in list(d.exchange.requests)]
        busiest = busiest_second(times)
        print(f"{len(times)} requests, busiest second {busiest} (budget {RATE}/s, burst {BURST})")
        assert len(times) == MEMBERS * EACH
        assert busiest <= RATE * 1.1 + BURST
