"""Issue 31: ``Fleet`` in one process, over respx: URLs refused before anything is sent, two
sessions of one ``file://`` fleet sharing a pair and a 429's pause, a fleet that fails."""

from __future__ import annotations

import importlib.util
import json
import logging
import stat
import time
import types
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from tanx_async import (
    AsyncTanxSession,
    Fleet,
    MissingDependencyError,
    RateLimitError,
    RequestEvent,
    _fleet,
    _fleet_file,
)
from tests.conftest import (
    ACCESS_401,
    CANCEL_URL,
    REFRESH_URL,
    FakeClock,
    envelope,
    json_response,
    make_jwt,
    order_payload,
)

BASE = "https://api.tanx.fi"


@pytest.mark.parametrize(
    "url", ["http://example.com/fleet", "redis+sentinel://h/0", "", "/var/lib/fleet", "memcached://h"]
)
def test_an_unsupported_url_is_refused_naming_the_schemes(url: str) -> None:
    with pytest.raises(ValueError, match=r"file:///path/to/dir .*redis://host:port/db"):
        Fleet(url)


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("file://relative/dir", "local folder"),
        ("file:relative", "absolute path"),
        ("redis:///0", "needs a host"),
        ("redis://h:6379/zero", "is a number"),
    ],
)
def test_a_malformed_url_is_refused(url: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        Fleet(url)


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ValueError, match="lease"):
        Fleet("file:///tmp/x", lease=0)
    with pytest.raises(TypeError, match="URL string"):
        Fleet(b"file:///tmp/x")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"tanx_async\.Fleet"):
        AsyncTanxSession(access_token="a", fleet="file:///tmp/x")  # type: ignore[arg-type]


def test_redis_without_redis_py_says_which_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "redis" else real(name, *a)
    )
    with pytest.raises(MissingDependencyError, match=r"tanx-async\[redis\]"):
        Fleet("redis://127.0.0.1:6379/0")


def test_the_redis_password_never_shows() -> None:
    pytest.importorskip("redis")
    fleet = Fleet("redis://user:s3cret@10.0.0.5:6380/2")
    assert "s3cret" not in repr(fleet) and "s3cret" not in fleet.where
    assert fleet.where == "redis://10.0.0.5:6380/2"


class Exchange:
    """A respx router standing for the exchange: refresh rotates, cancel needs the live token."""

    def __init__(self) -> None:
        self.live = make_jwt(time.time() + 3600, n=0)
        self.refresh = "refresh-0"
        self.refreshes = 0
        self.cancel_tokens: list[str] = []
        self.throttle = 0  # answer this many cancels with 429 Retry-After: 2
        self.router = respx.Router(assert_all_called=False, assert_all_mocked=True)
        self.router.post(REFRESH_URL).mock(side_effect=self._refresh)
        self.router.post(CANCEL_URL).mock(side_effect=self._cancel)

    def _refresh(self, request: httpx.Request) -> httpx.Response:
        self.refreshes += 1
        if json.loads(request.content)["refresh"] != self.refresh:
            return json_response(
                401, {"status": "error", "message": "Token is invalid or expired", "payload": {}}
            )
        self.live = make_jwt(time.time() + 3600, n=self.refreshes)
        self.refresh = f"refresh-{self.refreshes}"
        return json_response(200, envelope({"access": self.live, "refresh": self.refresh}))

    def _cancel(self, request: httpx.Request) -> httpx.Response:
        token = request.headers["Authorization"].removeprefix("JWT ")
        self.cancel_tokens.append(token)
        if self.throttle:
            self.throttle -= 1
            return json_response(429, envelope("", "Too many requests", "error"), {"Retry-After": "2"})
        if token != self.live:
            return json_response(401, ACCESS_401)
        oid = json.loads(request.content)["order_id"]
        return json_response(
            200, envelope(order_payload(id=oid), "Order is successfully queued for cancellation")
        )


def session(
    exchange: Exchange, fleet: Fleet | None, access: str, refresh: str, **kwargs: Any
) -> AsyncTanxSession:
    client = httpx.AsyncClient(transport=httpx.MockTransport(exchange.router.handler))
    return AsyncTanxSession(
        access_token=access, refresh_token=refresh, http_client=client, fleet=fleet, **kwargs
    )


async def test_a_second_session_takes_the_pair_the_first_renewed(tmp_path: Path) -> None:
    exchange = Exchange()
    stale, first_refresh = exchange.live, exchange.refresh
    exchange.live = make_jwt(time.time() + 3600, n=-1)  # the pair both start from is dead
    fleet = Fleet((tmp_path / "fleet").as_uri())
    async with session(exchange, fleet, stale, first_refresh) as a:
        await a.orders.cancel(1)
    assert exchange.refreshes == 1
    # B starts from the same (now spent) pair: it takes the fleet's and never refreshes.
    async with session(exchange, fleet, stale, first_refresh) as b:
        await b.orders.cancel(2)
    assert exchange.refreshes == 1
    assert exchange.cancel_tokens[-1] == exchange.live
    tokens = tmp_path / "fleet" / "tokens.json"
    assert stat.S_IMODE(tokens.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "fleet").stat().st_mode) == 0o700
    (entry,) = json.loads(tokens.read_text())["pairs"].items()
    assert first_refresh not in entry[0] and entry[0].startswith(BASE + " refresh:")
    assert entry[1]["seq"] == 1
    for path in (tmp_path / "fleet").iterdir():
        assert stat.S_IMODE(path.stat().st_mode) & 0o077 == 0, path
        if path.name != "tokens.json":
            assert exchange.live not in path.read_text() and exchange.refresh not in path.read_text()


async def test_without_a_fleet_the_second_session_is_refused() -> None:
    """What the fleet prevents, in miniature: B refreshes with the token A rotated away."""
    exchange = Exchange()
    stale, first_refresh = exchange.live, exchange.refresh
    exchange.live = make_jwt(time.time() + 3600, n=-1)
    async with session(exchange, None, stale, first_refresh) as a:
        await a.orders.cancel(1)
    async with session(exchange, None, stale, first_refresh) as b:
        outcomes = await b.orders.cancel_many([2])
    assert outcomes[0].status.value == "failed" and exchange.refreshes == 2


async def test_a_429_pauses_every_session_of_the_fleet(
    tmp_path: Path, clock: FakeClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The fleet's clocks are the fake one too: sleeps are recorded and move it, never waited.
    fake_time = types.SimpleNamespace(monotonic=clock.monotonic, time=time.time)
    monkeypatch.setattr(_fleet_file, "time", fake_time)
    monkeypatch.setattr(_fleet, "time", fake_time)
    exchange = Exchange()
    fleet = Fleet((tmp_path / "fleet").as_uri())
    async with (
        session(exchange, fleet, exchange.live, exchange.refresh, max_retries=0) as a,
        session(exchange, fleet, exchange.live, exchange.refresh) as b,
    ):
        await b.orders.cancel(1)  # (B has looked at the fleet's pause: none)
        assert clock.sleeps == []
        exchange.throttle = 1
        with pytest.raises(RateLimitError):
            await a.orders.cancel(2)  # 429 Retry-After: 2 (A does not retry: max_retries=0)
        assert clock.sleeps == []
        clock.now += 0.5  # past B's last look at the pause (FLEET_PAUSE_POLL), within the 2 s
        await b.orders.cancel(3)
    # B never met the 429 itself, but waited out the rest of the pause A's 429 put on the fleet.
    assert clock.sleeps == [pytest.approx(1.5)]
    assert exchange.cancel_tokens.count(exchange.live) == 3


async def test_a_fleet_that_fails_leaves_the_session_alone_once_warned(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    exchange = Exchange()
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("")  # the fleet's folder cannot be made: every call fails
    events: list[RequestEvent] = []
    fleet = Fleet((blocker / "fleet").as_uri())
    stale = exchange.live
    exchange.live = make_jwt(time.time() + 3600, n=-1)
    with caplog.at_level(logging.INFO, logger="tanx_async"):
        async with session(
            exchange, fleet, stale, exchange.refresh, on_event=events.append, rate_limit=1000
        ) as s:
            outcomes = await s.orders.cancel_many([1, 2, 3])
            await s.orders.cancel(4)
    assert [o.status.value for o in outcomes] == ["queued"] * 3
    assert exchange.refreshes == 1  # its own tokens, renewed alone
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "works alone" in warnings[0].getMessage()
    assert str(blocker) in warnings[0].getMessage()
    kinds = [e.kind for e in events if e.kind.startswith("fleet_")]
    assert kinds == ["fleet_unavailable"]
    assert all(e.method == "FLEET" for e in events if e.kind.startswith("fleet_"))


async def test_a_pair_renewed_alone_reaches_the_fleet_when_it_is_back(tmp_path: Path) -> None:
    exchange = Exchange()
    blocker = tmp_path / "desk"
    blocker.write_text("")  # the fleet's folder cannot be made yet
    events: list[RequestEvent] = []
    fleet = Fleet((blocker / "fleet").as_uri(), retry_after=0.05)
    stale = exchange.live
    exchange.live = make_jwt(time.time() + 3600, n=-1)
    async with session(
        exchange, fleet, stale, exchange.refresh, on_event=events.append, rate_limit=1000
    ) as s:
        await s.orders.cancel(1)  # renewed alone: the fleet is down
        assert exchange.refreshes == 1
        blocker.unlink()  # the fleet can work again
        await anyio.sleep(0.1)  # (past retry_after)
        await s.orders.cancel(2)  # the fleet answers again
        await s.orders.cancel(3)  # and is offered the pair renewed alone
    kinds = [e.kind for e in events if e.kind.startswith("fleet_")]
    assert kinds == ["fleet_unavailable", "fleet_restored"]
    (entry,) = json.loads((blocker / "fleet" / "tokens.json").read_text())["pairs"].values()
    assert entry["access"] == exchange.live and entry["refresh"] == exchange.refresh
    assert exchange.refreshes == 1
