"""A session that lives for days: 500 access-token expiries and 20 refresh-token expiries.

The sandbox's clock and the session's own clock are moved forward together (``advance``): no real
waiting, so a week of token rotations takes seconds. Between expiries the session cancels orders.
"""

from __future__ import annotations

import gc
import os
import time
import tracemalloc
from collections import Counter

import pytest

from tanx_async import AsyncTanxSession, CancelStatus
from tanx_async.testing import SandboxExchange, SandboxServer
from tests.internals import auth_of, random_wallet

CYCLES = 500
#: Every 25th cycle the session idles longer than the refresh token lives (a weekend).
WEEKEND_EVERY = 25
#: Tracing starts after the warm-up (first imports, pools, caches); growth is measured from MEASURE.
WARM_UP = 50
MEASURE = 150
CANCELS_PER_CYCLE = 2


def _rss() -> int:
    """Resident set size in bytes (Linux), or 0 where /proc is not there."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError):  # pragma: no cover - not Linux
        return 0


def _traced() -> int:
    """Bytes allocated since tracing started and still alive (after a full collection)."""
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


async def test_500_access_and_20_refresh_expiries_one_renewal_each_and_flat_memory() -> None:
    pytest.importorskip("eth_account")
    key, address = random_wallet()
    exchange = SandboxExchange(seed=31, cancel_delay=0.0, access_ttl=300, refresh_ttl=86_400)
    uid = exchange.create_user(address)
    moved = 0.0

    def advance(seconds: float) -> None:
        nonlocal moved
        exchange.advance_time(seconds)
        moved += seconds

    refreshes = [0] * (CYCLES + 1)  # preallocated: the bookkeeping itself must not grow
    logins = [0] * (CYCLES + 1)
    statuses: Counter[int | None] = Counter()
    outcomes: Counter[CancelStatus] = Counter()
    ids = exchange.seed_orders(
        uid, CANCELS_PER_CYCLE
    )  # reopened each cycle: the exchange stays the same size
    rss = {}
    traced = {}
    try:
        with SandboxServer(exchange) as server:
            async with AsyncTanxSession(base_url=server.url, private_key=key, eth_address=address) as session:
                # This machine's clock moves with the exchange's (both live through the days).
                auth_of(session).clock.local = lambda: time.time() + moved
                await session.health()
                for cycle in range(CYCLES + 1):
                    if cycle == WARM_UP:
                        tracemalloc.start(1)
                    if cycle == MEASURE:
                        traced["measure"], rss["measure"] = _traced(), _rss()
                    before_refresh, before_login = exchange.refresh_count, exchange.login_count
                    for oid in ids:
                        exchange.update_order(oid, state="wait", cancel_reason=None, cancel_due=None)
                    for outcome in await session.orders.cancel_many(ids):
                        outcomes[outcome.status] += 1
                    refreshes[cycle] = exchange.refresh_count - before_refresh
                    logins[cycle] = exchange.login_count - before_login
                    statuses.update(r.status for r in exchange.requests)
                    exchange.clear_requests()
                    weekend = cycle % WEEKEND_EVERY == WEEKEND_EVERY - 1
                    if cycle < CYCLES:
                        # The access token dies; at a weekend the refresh token dies too.
                        advance(exchange.refresh_ttl + 60 if weekend else exchange.access_ttl)
                traced["end"], rss["end"] = _traced(), _rss()
    finally:
        tracemalloc.stop()

    # Cycle 0 logged in; each later cycle follows one expiry and made exactly one renewal: a
    # refresh after an access expiry, a login (no doomed refresh) after a refresh expiry.
    weekends = [c for c in range(1, CYCLES + 1) if c % WEEKEND_EVERY == 0]
    assert len(weekends) == CYCLES // WEEKEND_EVERY
    assert [c for c in range(CYCLES + 1) if logins[c]] == [0, *weekends]
    assert [c for c in range(CYCLES + 1) if refreshes[c]] == [
        c for c in range(1, CYCLES + 1) if c not in weekends
    ]
    assert max(logins) == max(refreshes) == 1
    assert (exchange.refresh_failures, exchange.login_count) == (0, len(weekends) + 1)
    assert exchange.refresh_count == CYCLES - len(weekends)
    # 0 failed requests: every request answered 200 (no 401, no error), every cancel queued.
    assert set(statuses) == {200}
    assert outcomes == {CancelStatus.QUEUED: (CYCLES + 1) * CANCELS_PER_CYCLE}
    # Memory after warm-up does not grow with the cycles (generous bounds; figures printed).
    growth = traced["end"] - traced["measure"]
    print(
        f"\nlong-lived: live bytes allocated since cycle {WARM_UP} (tracemalloc): {traced['measure']} at "
        f"cycle {MEASURE}, {traced['end']} at cycle {CYCLES} ({growth:+d} B over {CYCLES - MEASURE} cycles); "
        f"RSS {rss['measure'] / 2**20:.1f} -> {rss['end'] / 2**20:.1f} MiB"
    )
    # One leaked answer per cycle (a Response, its body and order) would be ~1 KiB a cycle.
    assert growth < 64 * 1024
    assert rss["end"] - rss["measure"] < 16 * 2**20
