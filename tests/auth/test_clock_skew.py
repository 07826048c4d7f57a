"""Clock skew against the loopback sandbox: expiry is judged on the exchange's clock.

Before: with the exchange's clock ten minutes behind, every fresh token looked expired on
arrival and 2,000 cancels at concurrency 64 made 33 refresh requests (200 at 16: 14).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from email.utils import parsedate_to_datetime

import httpx
import pytest

from tanx_async import CancelStatus
from tanx_async.testing import SandboxClock, SandboxExchange
from tests.internals import auth_of
from tests.sandbox import mismatches, running_sandbox

CANCEL_PATH = "/sapi/v1/orders/cancel/"


@pytest.mark.parametrize(("skew", "n"), [(-600.0, 2000), (600.0, 500)])
async def test_ten_minutes_of_skew_makes_no_refresh_storm(
    skew: float, n: int, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="tanx_async")
    with running_sandbox(seed=21, cancel_delay=0.0, clock=SandboxClock(offset=skew)) as sb:
        ids = sb.exchange.seed_orders(sb.uid, n)
        before = dict.fromkeys(ids, "wait")
        async with sb.session() as session:
            outcomes = await session.orders.cancel_many(ids, concurrency=64)
            offset = auth_of(session).clock.offset
    ex = sb.exchange
    assert Counter(o.status for o in outcomes) == {CancelStatus.QUEUED: n}
    assert mismatches(ex, outcomes, before) == []
    # A fresh token (300 s on the exchange's clock) outlives the batch: no refresh, but for the
    # one a token this machine's clock sees expired gets before the first request while the
    # exchange's clock is unknown (ten minutes behind, it is not: one harmless refresh).
    assert (ex.refresh_count, ex.login_count) == (1 if skew < 0 else 0, 0)
    assert not any(r.status == 401 for r in ex.requests)
    assert offset is not None and abs(offset - skew) < 2.0
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING and "clock" in r.getMessage()]
    assert len(warnings) == 1  # logged once, with its size
    size = re.search(r"clock is (\d+) s (behind|ahead of) ", warnings[0].getMessage())
    assert size is not None and abs(int(size.group(1)) - abs(skew)) <= 2  # Date has 1 s steps
    assert size.group(2) == ("behind" if skew < 0 else "ahead of")


@pytest.mark.parametrize("skew", [-600.0, 600.0])
async def test_under_skew_refreshes_equal_real_expiries(skew: float) -> None:
    with running_sandbox(seed=22, cancel_delay=0.0, clock=SandboxClock(offset=skew)) as sb:
        ex = sb.exchange
        ids = ex.seed_orders(sb.uid, 300)
        # Ten minutes behind, the first token looks expired here: renewed once, first (issue 34).
        first = 1 if skew < 0 else 0
        async with sb.session() as session:
            for expiry in range(3):
                chunk = ids[expiry * 100 : (expiry + 1) * 100]
                outcomes = await session.orders.cancel_many(chunk, concurrency=32)
                assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
                ex.advance_time(ex.access_ttl - 20)  # the token is due (20 s left, 30 s skew)
                await session.health()  # the next Date header shows it
                assert ex.refresh_count == first + expiry
            await session.orders.cancel_many(ids[:1], concurrency=1)
    # Three expiries, three refreshes, each one before its token died (no 401).
    assert ex.refresh_count == first + 3 and ex.refresh_failures == 0
    assert not any(r.status == 401 for r in ex.requests)


async def test_fresh_token_within_the_skew_is_not_refreshed_before_every_request() -> None:
    # A 10 s token and a 30 s refresh skew: before, every request refreshed first.
    with running_sandbox(seed=23, access_ttl=10, cancel_delay=0.0) as sb:
        ex = sb.exchange
        ids = ex.seed_orders(sb.uid, 200)
        async with sb.session() as session:
            await session.health()
            await session.orders.cancel_many(ids, concurrency=16)
    assert ex.refresh_count <= 1  # at most once, should the batch outlast half its lifetime


@pytest.mark.parametrize("skew", [-600.0, 600.0])
async def test_unanswered_cancels_are_settled_truthfully_under_skew(skew: float) -> None:
    """An unanswered cancel's look-up compares the order's ``updated_at`` (exchange clock) with
    when our first attempt left: on the exchange's clock too, or ten minutes of skew would call
    our own cancel "already closed" (behind) or an old cancellation ours (ahead)."""
    with running_sandbox(seed=24, cancel_delay=0.0, clock=SandboxClock(offset=skew)) as sb:
        ex = sb.exchange
        open_ids = ex.seed_orders(sb.uid, 150)
        closed = ex.seed_orders(sb.uid, 50, state="cancel")
        for oid in closed:
            ex.update_order(oid, updated_at=ex.now() - 60)  # a minute before the batch
        before = {oid: ex.order(oid).state for oid in open_ids + closed}
        ex.faults.only_paths = (CANCEL_PATH,)
        ex.faults.drop_after_rate = 0.3  # processed, then the answer is lost
        async with sb.session() as session:
            await session.health()  # the exchange's clock is known before the batch
            outcomes = await session.orders.cancel_many(open_ids + closed, concurrency=16)
    dropped = {r.order_id for r in ex.requests if r.fault == "drop_after" and r.order_id is not None}
    statuses = {o.order_id: o.status for o in outcomes}
    assert mismatches(ex, outcomes, before) == []
    # Enough of each kind went unanswered for the comparison to matter.
    assert sum(statuses[oid] is CancelStatus.CANCELLED for oid in dropped) >= 10
    assert sum(statuses[oid] is CancelStatus.ALREADY_CLOSED for oid in dropped) >= 5


async def test_the_sandbox_date_header_follows_its_clock() -> None:
    clock = SandboxClock(offset=-600)
    exchange = SandboxExchange(seed=25, clock=clock)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=exchange.app), base_url="http://sandbox"
    ) as c:
        for _ in range(2):
            before = clock.now()
            answer = await c.get("/sapi/v1/health/")
            stamp = parsedate_to_datetime(answer.headers["date"]).timestamp()
            assert int(before) <= stamp <= clock.now()
            clock.advance(86_400)
    assert exchange.time_offset == clock.offset == -600 + 2 * 86_400
    with pytest.raises(ValueError, match="only moves forward"):
        clock.advance(-1)
