"""Issue 31: what a fleet does when a member dies holding the renewal lock, and when Redis stops
mid-run (real processes, real signals, a real redis-server)."""

from __future__ import annotations

import signal
import time
from pathlib import Path

import pytest

from .conftest import ADDRESS, Desk, RedisServer, desk, finish, run_members, start

LEASE = 2.0


def wait_for(condition: object, seconds: float, what: str) -> None:
    assert callable(condition)
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        time.sleep(0.01)
    pytest.fail(f"{what} did not happen within {seconds} s")


def kill_the_renewer(d: Desk, fleet: str) -> None:
    """Member A starts renewing (its refresh hangs at the exchange) and is SIGKILLed while it
    holds the renewal lock; members B and C, started then, renew and carry on."""
    d.exchange.expire_access_tokens()  # every member's first request must renew
    d.exchange.faults.only_paths = ("/sapi/v1/auth/token/refresh/",)
    d.exchange.faults.latency = 6.0  # A's refresh: long past the lease
    rounds = d.rounds(3, 2, 20)
    a = start(d.spec(fleet=fleet, rounds=rounds[0], signer=ADDRESS, lease=LEASE))
    try:
        # A holds the lock once its refresh is at the exchange (it locks, then sends).
        wait_for(lambda: d.exchange.in_flight > 0, 60, "member A's refresh")
    finally:
        a.send_signal(signal.SIGKILL)
        a.communicate(timeout=10)  # (reaps it and closes its pipes)
    assert a.returncode == -signal.SIGKILL
    d.exchange.faults.latency = 0.0  # (A's refresh, already at the exchange, still hangs)
    before = {r.result for r in list(d.exchange.requests)}
    assert "refresh_ok" not in before and "login_ok" not in before
    survivors = run_members(
        [d.spec(fleet=fleet, rounds=r, signer=ADDRESS, lease=LEASE, gap=0.2) for r in rounds[1:]]
    )
    for result in survivors:
        assert result.returncode == 0, result.stderr
        assert result.report["statuses"] == {"queued": 40}, result.report
        assert "fleet_unavailable" not in result.report["events"], result.stderr
    renewals = [r for r in list(d.exchange.requests) if r.result in ("refresh_ok", "login_ok")]
    print(f"{fleet.split(':')[0]}: renewals after the kill: {[r.result for r in renewals]}")
    # The survivors renewed once for both (a refresh, or a login if the dead member's refresh,
    # still at the exchange, rotated the token first): never once each and again.
    assert 1 <= len(renewals) <= 2


def test_a_member_killed_holding_the_redis_lock_does_not_stall_the_fleet(redis_server: RedisServer) -> None:
    with desk(120, access_ttl=300) as d:
        kill_the_renewer(d, redis_server.url)


def test_a_member_killed_holding_the_file_lock_does_not_stall_the_fleet(tmp_path: Path) -> None:
    with desk(120, access_ttl=300) as d:
        kill_the_renewer(d, (tmp_path / "fleet").as_uri())


@pytest.mark.parametrize("how", ["stopped", "frozen"])
def test_redis_stopped_mid_run_cancels_go_on_alone(
    redis_server: RedisServer, tmp_path: Path, how: str
) -> None:
    """``stopped``: the server exits (connections refused); ``frozen``: SIGSTOP, it accepts
    and answers nothing (each member's call gives up after the fleet's timeout)."""
    members, rounds_each, per_round = 2, 6, 25
    with desk(members * rounds_each * per_round, access_ttl=300) as d:
        d.exchange.clear_requests()
        ready = [tmp_path / f"ready-{n}" for n in range(members)]
        specs = [
            d.spec(
                fleet=redis_server.url,
                rounds=r,
                gap=0.3,
                rate_limit=200,
                rate_limit_burst=10,
                ready_file=str(ready[n]),
            )
            for n, r in enumerate(d.rounds(members, rounds_each, per_round))
        ]
        processes = [start(spec) for spec in specs]
        wait_for(lambda: all(path.exists() for path in ready), 60, "every member's first round")
        if how == "stopped":
            redis_server.stop()
        else:
            redis_server.freeze()
        results = [finish(p) for p in processes]
        for result in results:
            assert result.returncode == 0, result.stderr
            assert result.report["statuses"] == {"queued": rounds_each * per_round}, result.report
            assert result.report["events"].get("fleet_unavailable", 0) >= 1
            warnings = [line for line in result.stderr.splitlines() if line.startswith("WARNING")]
            assert len(warnings) == 1 and "fleet" in warnings[0], result.stderr
            assert "redis://127.0.0.1" in warnings[0]
        # Nothing lost, nothing sent twice: every order's cancel was processed exactly once.
        cancels = [r.order_id for r in list(d.exchange.requests) if r.result == "cancel_queued"]
        assert len(cancels) == len(set(cancels)) == members * rounds_each * per_round


@pytest.mark.parametrize("backend", ["file", "redis"])
def test_a_dead_refresh_token_means_one_login_for_the_fleet(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """With a signer, when the refresh token is gone, one member logs in for all of them."""
    if backend == "redis":
        fleet = request.getfixturevalue("redis_server").url
    else:
        fleet = (tmp_path / "fleet").as_uri()
    with desk(90, access_ttl=300) as d:
        d.exchange.expire_access_tokens()
        d.exchange.revoke_refresh_tokens()
        d.exchange.clear_requests()
        results = run_members([d.spec(fleet=fleet, rounds=r, signer=ADDRESS) for r in d.rounds(3, 1, 30)])
        for result in results:
            assert result.returncode == 0, result.stderr
            assert result.report["statuses"] == {"queued": 30}, result.report
        outcomes = [r.result for r in list(d.exchange.requests)]
        assert outcomes.count("login_ok") == 1
        assert outcomes.count("refresh_failed") == 1  # the one member that tried the dead token
