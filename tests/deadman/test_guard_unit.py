"""The pieces of the guard and of the switch's fleet side, without Redis where none is needed:
the record a switch keeps (``Armed``), which guard takes which switch, the pair a switch offers
the fleet (``FleetLink.offer``), a pair adopted from the fleet reaching the watchdog's listener,
``local=False``'s refusals, and the ``guard`` command's usage errors and secrecy."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tanx_async import AsyncTanxSession, Fleet
from tanx_async._guard import Guard, takes
from tanx_async._remote_switch import Armed, covered_by
from tanx_async.models import TokenPair
from tests.conftest import make_jwt
from tests.deadman.test_dead_man_switch import ROOT
from tests.fleet.conftest import free_port
from tests.fleet.test_fleet_unit import BASE, Exchange, session

RECORD = {
    "id": "host-1-ab",
    "base_url": BASE,
    "identity": f"{BASE} refresh:0123456789abcdef",
    "markets": ["btcusdc"],
    "timeout": 2.0,
    "deadline": 30.0,
    "host": "host",
    "pid": 1,
    "armed_at": 1.0,
    "local": True,
    "allow_insecure_http": False,
}


def test_a_switch_record_round_trips_and_holds_no_token() -> None:
    armed = Armed.from_json(json.dumps(RECORD))
    assert armed.markets == ("btcusdc",) and armed.covers == "btcusdc"
    assert json.loads(armed.to_json()) == RECORD


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"timeout": "2"}, "wrong type"),
        ({"timeout": 0}, "wrong type"),
        ({"markets": "btcusdc"}, "wrong type"),
        ({"pid": None}, "wrong type"),
        ({"local": 1}, "wrong type"),
        ({"identity": "https://evil.example refresh:0123456789abcdef"}, "another exchange"),
    ],
)
def test_a_record_of_an_unknown_shape_is_refused(change: dict[str, object], why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Armed.from_json(json.dumps(RECORD | change))
    with pytest.raises(ValueError):
        Armed.from_json("[]")


def test_which_guard_takes_which_switch() -> None:
    everything = Armed.from_json(json.dumps(RECORD | {"markets": None}))
    btc = Armed.from_json(json.dumps(RECORD))
    assert takes(None, everything) and takes(None, btc)
    assert takes({"btcusdc", "ethusdc"}, btc)
    assert not takes({"btcusdc"}, everything)  # it would sweep less than the switch guards
    assert not takes({"ethusdc"}, btc)
    assert covered_by([None], None) and covered_by([frozenset({"btcusdc"})], ["btcusdc"])
    assert not covered_by([frozenset({"btcusdc"})], None) and not covered_by([], ["btcusdc"])


def test_the_guard_and_local_false_refuse_what_cannot_work(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="redis://"):
        Guard(Fleet((tmp_path / "fleet").as_uri()))
    plain = AsyncTanxSession(access_token="a", refresh_token="r")
    on_file = AsyncTanxSession(access_token="a", refresh_token="r", fleet=Fleet((tmp_path / "f").as_uri()))
    for s in (plain, on_file):
        with pytest.raises(ValueError, match="needs a redis:// fleet"):
            s.orders.dead_man_switch(local=False)
    with pytest.raises(TypeError, match="local"):
        plain.orders.dead_man_switch(local=1)  # type: ignore[arg-type]


async def test_offer_stores_the_sessions_pair_only_where_the_fleet_holds_none_or_older(
    tmp_path: Path,
) -> None:
    exchange = Exchange()
    fleet = Fleet((tmp_path / "fleet").as_uri())
    tokens = tmp_path / "fleet" / "tokens.json"

    def stored() -> tuple[str, int]:
        (entry,) = json.loads(tokens.read_text())["pairs"].values()
        return entry["access"], entry["seq"]

    async with session(exchange, fleet, exchange.live, exchange.refresh) as a:
        link = a._pipeline.fleet
        assert link is not None
        assert await link.offer()  # none there: the session's pair is stored
        assert stored() == (exchange.live, 1)
    # A session built from an older pair (its access token expires sooner): it takes the
    # fleet's, and offers nothing.
    older = make_jwt(time.time() + 60, n=-5)
    async with session(exchange, fleet, older, "refresh-old") as b:
        link = b._pipeline.fleet
        assert link is not None
        first = a._pipeline.fleet
        assert first is not None
        link.key = first.key  # (same identity as A's)
        assert await link.offer()
        assert stored() == (exchange.live, 1)
        assert b.tokens is not None and b.tokens.access == exchange.live
    # A session built from a newer pair: join keeps it, and offer stores it (seq 2).
    newer = make_jwt(time.time() + 7200, n=7)
    async with session(exchange, fleet, newer, exchange.refresh) as c:
        link = c._pipeline.fleet
        assert link is not None
        assert await link.offer()
        assert stored() == (newer, 2)


async def test_a_pair_adopted_from_the_fleet_reaches_the_listeners(tmp_path: Path) -> None:
    """The watchdog of a fleet member is handed the pair another member renewed (its own
    refresh token was rotated away by that renewal)."""
    exchange = Exchange()
    stale, first_refresh = exchange.live, exchange.refresh
    exchange.live = make_jwt(time.time() + 3600, n=-1)  # the pair both start from is dead
    fleet = Fleet((tmp_path / "fleet").as_uri())
    async with session(exchange, fleet, stale, first_refresh) as a:
        await a.orders.cancel(1)  # renews, stores the new pair in the fleet
    heard: list[TokenPair] = []
    async with session(exchange, fleet, stale, first_refresh) as b:
        b._pipeline.auth.listeners.append(heard.append)
        await b.orders.cancel(2)  # takes the fleet's pair
    assert exchange.refreshes == 1
    assert [p.access for p in heard] == [exchange.live]


def _guard_cli(*args: str) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")} | {"PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-m", "tanx_async", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_guard_usage_errors() -> None:
    for args, said in [
        (("guard",), "guard needs the desk's fleet"),
        (("guard", "--fleet", "file:///tmp/x"), "a file:// fleet is one machine"),
        (
            ("guard", "--fleet", "redis://127.0.0.1:1/0", "--network", "testnet"),
            "guard does not use --network",
        ),
    ]:
        proc = _guard_cli(*args)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        assert said in err.decode()


def test_the_guard_never_shows_the_fleets_password() -> None:
    """A Redis that does not answer: the guard says nothing is guarded, naming the fleet without
    its password; SIGTERM stops it (exit 0)."""
    pytest.importorskip("redis", reason="redis-py is not installed (the `redis` extra)")
    port = free_port()  # nothing listens there
    proc = _guard_cli("guard", "--fleet", f"redis://:hunter2@127.0.0.1:{port}/3")
    try:
        time.sleep(1.5)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0
    text = out.decode() + err.decode()
    assert "hunter2" not in text
    assert f"the fleet redis://127.0.0.1:{port}/3 does not answer" in text
    assert "NOTHING is guarded until it does" in text
