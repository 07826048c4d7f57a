"""Observability: what the "tanx_async" logger says at DEBUG/WARNING, what ``on_event`` receives,
and a worked example that turns events into cancel-latency percentiles."""

from __future__ import annotations

import logging
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator

import pytest

from tanx_async import CancelStatus, NotFoundError, RequestEvent
from tests.sandbox import Sandbox, running_sandbox

CANCEL_PATH = "/sapi/v1/orders/cancel/"
REFRESH_PATH = "/sapi/v1/auth/token/refresh/"
# "POST /sapi/v1/orders/cancel/ -> 200 in 3.1 ms (attempt 1)"; a lost answer names the error.
REQUEST_LINE = re.compile(
    r"^(?P<method>GET|POST) (?P<path>/\S+) -> (?P<status>\d{3}|[A-Za-z]+) in (?P<ms>\d+\.\d) ms "
    r"\(attempt (?P<attempt>\d+)\)$"
)
RETRY_LINE = re.compile(r"^(GET|POST) /\S+ failed \(.+\); retry \d+/\d+ in \d+(\.\d+)? m?s$")


def cancel_latency(events: Iterable[RequestEvent], path: str = CANCEL_PATH) -> dict[str, float]:
    """p50/p99/max of the time each cancel request took to be answered (nearest-rank).

    One sample per HTTP attempt that got an answer (``kind == "response"``, any status); the
    retries' back-off sleeps are not in it. For the latency of a whole cancel including its
    retries and look-ups, use ``CancelOutcome.elapsed`` instead.
    """
    samples = sorted(e.elapsed for e in events if e.kind == "response" and e.path == path)
    if not samples:
        return {"count": 0, "p50": math.nan, "p99": math.nan, "max": math.nan}

    def rank(p: float) -> float:
        return samples[max(0, math.ceil(p / 100 * len(samples)) - 1)]

    return {"count": len(samples), "p50": rank(50), "p99": rank(99), "max": samples[-1]}


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def lines(self, level: int) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno == level]


@pytest.fixture
def captured() -> Iterator[Capture]:
    handler = Capture()
    logger = logging.getLogger("tanx_async")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=41, cancel_delay=0.0) as sb:
        yield sb


async def test_one_debug_line_per_request_warnings_for_retries_info_for_refreshes(
    sandbox: Sandbox, captured: Capture
) -> None:
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 120)
    events: list[RequestEvent] = []
    async with sandbox.session(on_event=events.append, max_retries=4) as session:
        assert await session.health() is True
        exchange.expire_access_tokens()
        faults = exchange.faults
        faults.only_paths = (CANCEL_PATH,)
        faults.error_rate, faults.error_statuses = 0.1, (503,)
        faults.drop_before_rate = 0.05
        outcomes = await session.orders.cancel_many(ids, concurrency=16)
        faults.reset()
        with pytest.raises(NotFoundError):
            await session.orders.get(99_999_999)
    assert all(o.status is CancelStatus.QUEUED for o in outcomes)

    # DEBUG: one line per HTTP attempt, with method, path, status (or the error), time, attempt.
    debug = [REQUEST_LINE.match(line) for line in captured.lines(logging.DEBUG)]
    assert all(debug), [line for line, m in zip(captured.lines(logging.DEBUG), debug, strict=True) if not m]
    parsed = [m for m in debug if m is not None]
    assert len(parsed) == len(exchange.requests)  # every request the exchange saw, once
    by_path = Counter(m["path"] for m in parsed)
    assert by_path == Counter(r.path for r in exchange.requests)
    statuses = Counter(m["status"] for m in parsed)
    assert statuses["401"] >= 1 and statuses["503"] >= 1 and statuses["404"] == 1
    assert statuses["APIConnectionError"] == sum(1 for r in exchange.requests if r.fault == "drop_before")
    assert {m["attempt"] for m in parsed} >= {"1", "2"}
    assert all(0 <= float(m["ms"]) < 10_000 for m in parsed)

    # WARNING: one line per retry, nothing else at WARNING or above; a routine refresh is INFO.
    warnings = captured.lines(logging.WARNING)
    retries = [w for w in warnings if RETRY_LINE.match(w)]
    assert len(retries) == sum(1 for e in events if e.kind == "retry") > 0
    assert captured.lines(logging.INFO).count("access token refreshed") == exchange.refresh_count == 1
    assert len(warnings) == len(retries)
    assert [r for r in captured.records if r.levelno > logging.WARNING] == []


async def test_on_event_receives_responses_retries_errors_and_refreshes(sandbox: Sandbox) -> None:
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 64)
    events: list[RequestEvent] = []
    async with sandbox.session(on_event=events.append, max_retries=2) as session:
        exchange.expire_access_tokens()
        exchange.faults.only_paths = (CANCEL_PATH,)
        exchange.faults.error_rate = 0.2
        exchange.faults.error_statuses = (503,)
        await session.orders.cancel_many(ids, concurrency=32)  # 32 parallel 401s, one refresh
        exchange.faults.reset()
        with pytest.raises(NotFoundError):
            await session.orders.get(99_999_999)
    kinds = Counter(e.kind for e in events)
    assert set(kinds) == {"response", "retry", "error", "token_refreshed"}
    # One event per refresh made, however many requests waited for it.
    assert kinds["token_refreshed"] == exchange.refresh_count == 1
    assert kinds["response"] == len(exchange.requests)
    assert kinds["retry"] == sum(1 for e in events if e.kind == "response" and e.status == 503) - sum(
        1 for e in events if e.kind == "error" and e.status == 503
    )
    [error] = [e for e in events if e.kind == "error" and e.status == 404]
    assert (error.method, error.path, error.error) == ("GET", "/sapi/v1/orders/99999999/", "NotFoundError")
    retry = next(e for e in events if e.kind == "retry")
    assert retry.delay is not None and retry.delay > 0 and retry.error == "InternalServerError"
    refreshed = [e for e in events if e.kind == "response" and e.path == REFRESH_PATH]
    assert [e.status for e in refreshed] == [200]
    assert all(e.elapsed >= 0 for e in events)


async def test_cancel_latency_percentiles_from_events(sandbox: Sandbox) -> None:
    """The worked example: p50/p99 of cancel latency, from nothing but ``on_event``."""
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 200)
    exchange.faults.latency, exchange.faults.latency_jitter = 0.005, 0.01
    events: list[RequestEvent] = []
    async with sandbox.session(on_event=events.append) as session:
        outcomes = await session.orders.cancel_many(ids, concurrency=32)
    stats = cancel_latency(events)
    print(
        f"\ncancel latency over {stats['count']:.0f} requests: p50 {stats['p50'] * 1e3:.1f} ms, "
        f"p99 {stats['p99'] * 1e3:.1f} ms, max {stats['max'] * 1e3:.1f} ms"
    )
    assert stats["count"] == len(ids)
    assert 0.005 <= stats["p50"] <= stats["p99"] <= stats["max"] < 5.0  # loose: not a benchmark
    assert all(o.ok for o in outcomes)
    # The same from the outcomes (whole cancel, retries included) is never shorter.
    assert max(o.elapsed for o in outcomes) >= stats["p50"]


def test_latency_helper_uses_nearest_rank() -> None:
    events = [
        RequestEvent(kind="response", method="POST", path=CANCEL_PATH, status=200, elapsed=i / 1000)
        for i in range(1, 101)
    ]
    events.append(RequestEvent(kind="retry", method="POST", path=CANCEL_PATH, elapsed=9.0))
    stats = cancel_latency(events)
    assert stats == {"count": 100, "p50": 0.050, "p99": 0.099, "max": 0.100}
    assert math.isnan(cancel_latency([])["p50"])


async def test_login_and_proactive_refresh_are_reported_as_events() -> None:
    pytest.importorskip("eth_account")
    from tanx_async import AsyncTanxSession
    from tests.internals import random_wallet

    key, address = random_wallet()
    events: list[RequestEvent] = []
    with running_sandbox(seed=9) as sb:
        async with AsyncTanxSession(
            base_url=sb.server.url, private_key=key, eth_address=address, on_event=events.append
        ) as session:
            await session.health()
            assert [e.kind for e in events if e.kind != "response"] == []
            [oid] = sb.exchange.seed_orders(session.uid or sb.exchange.create_user(address), 1)
            await session.orders.get(oid)  # logs in first
            sb.exchange.advance_time(sb.exchange.access_ttl - 10)  # the token is now within the skew
            await session.health()  # (its Date header shows the exchange's clock moved)
            await session.orders.get(oid)  # refreshed before sending
    kinds = [e.kind for e in events if e.kind != "response"]
    assert kinds == ["login", "token_refreshed"]
    assert sb.exchange.login_count == 1
    assert sb.exchange.refresh_count == 1
