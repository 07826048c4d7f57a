"""Every operation has an overall deadline (issue 13, item 5).

Against an exchange that accepts connections and never answers (the sandbox's ``black_hole``),
``orders.cancel`` / ``get`` / ``list`` / each order of a batch report within the deadline: the
cancel as unknown (it may have reached the exchange), the reads as a timeout. The bounds on the
waits here are generous (10 s for a 1.5 s deadline): no timing is asserted tightly.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import httpx
import pytest
import respx

from tanx_async import (
    NOT_GIVEN,
    APITimeoutError,
    AsyncTanxSession,
    CancelOutcomeUnknownError,
    CancelStatus,
)
from tanx_async import _constants as C
from tanx_async.testing import SandboxExchange, SandboxServer
from tests.conftest import BASE, json_response, open_session
from tests.internals import Deadline

DEADLINE = 1.5
BOUND = 10.0  # far above DEADLINE; without a deadline, one silent cancel took 41 s


class Silent:
    def __init__(self) -> None:
        self.exchange = SandboxExchange(seed=5)
        uid = self.exchange.create_user()
        self.access, self.refresh = self.exchange.issue_tokens(uid)
        self.ids = self.exchange.seed_orders(uid, 4)


@pytest.fixture
async def silent() -> AsyncIterator[tuple[Silent, str]]:
    ex = Silent()
    with SandboxServer(ex.exchange) as server:
        yield ex, server.url


def silent_session(ex: Silent, url: str, **kwargs: object) -> AsyncTanxSession:
    return AsyncTanxSession(base_url=url, access_token=ex.access, refresh_token=ex.refresh, **kwargs)  # type: ignore[arg-type]


async def test_a_silent_exchange_is_answered_within_the_deadline(silent: tuple[Silent, str]) -> None:
    ex, url = silent
    async with silent_session(ex, url, deadline=DEADLINE) as session:
        assert (await session.orders.get(ex.ids[0])).id == ex.ids[0]  # answered: no deadline trouble
        ex.exchange.faults.black_hole = True

        started = time.monotonic()
        with pytest.raises(CancelOutcomeUnknownError) as unknown:
            await session.orders.cancel(ex.ids[0])
        assert time.monotonic() - started < BOUND
        cause = unknown.value.cause
        assert isinstance(cause, APITimeoutError) and cause.maybe_processed
        assert f"deadline of {DEADLINE:g} s" in str(cause)

        for read in (lambda: session.orders.get(ex.ids[1]), lambda: session.orders.list(state="wait")):
            started = time.monotonic()
            with pytest.raises(APITimeoutError, match="operation's deadline"):
                await read()
            assert time.monotonic() - started < BOUND

        started = time.monotonic()
        outcomes = await session.orders.cancel_many(ex.ids[2:])
        assert time.monotonic() - started < BOUND
        assert [o.status for o in outcomes] == [CancelStatus.UNKNOWN] * 2
        assert not any(o.ok for o in outcomes)
        assert all(isinstance(o.error, APITimeoutError) for o in outcomes)


async def test_per_call_deadline_overrides_the_session(silent: tuple[Silent, str]) -> None:
    ex, url = silent
    ex.exchange.faults.black_hole = True
    async with silent_session(ex, url, deadline=None) as session:
        assert session.deadline is None
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="deadline of 1 s"):
            await session.orders.get(ex.ids[0], deadline=1)
        with pytest.raises(CancelOutcomeUnknownError):
            await session.orders.cancel(ex.ids[0], deadline=1)
        with pytest.raises(APITimeoutError, match="deadline of 1 s"):
            await session.orders.list(deadline=1)
        assert time.monotonic() - started < 3 * BOUND
        view = session.with_options(deadline=1)
        assert view.deadline == 1 and session.deadline is None
        with pytest.raises(APITimeoutError, match="deadline of 1 s"):
            await view.orders.get(ex.ids[0])


async def test_with_options_keeps_changes_or_removes_the_deadline() -> None:
    """Left out, ``deadline`` keeps the session's; None removes it (``NOT_GIVEN`` is the default);
    a view of a view starts from the view's."""
    session = AsyncTanxSession(access_token="a.b.c", deadline=5)
    assert session.with_options(max_retries=0).deadline == 5
    assert session.with_options(deadline=NOT_GIVEN).deadline == 5
    unbounded = session.with_options(deadline=None)
    assert unbounded.deadline is None and session.deadline == 5
    assert unbounded.with_options(timeout=1).deadline is None
    assert unbounded.with_options(deadline=2).deadline == 2
    for bad, error in ((0, ValueError), ("5", TypeError)):
        with pytest.raises(error, match="deadline"):
            session.with_options(deadline=bad)  # type: ignore[arg-type]
    assert not NOT_GIVEN and repr(NOT_GIVEN) == "NOT_GIVEN"
    await session.aclose()


async def test_the_deadline_is_checked_and_has_a_trading_default() -> None:
    session = AsyncTanxSession(access_token="a.b.c")
    assert session.deadline == C.OPERATION_DEADLINE <= 10
    assert session.with_options(timeout=1).deadline == C.OPERATION_DEADLINE
    for bad, error in ((0, ValueError), (-1, ValueError), (float("inf"), ValueError), ("5", TypeError)):
        with pytest.raises(error, match="deadline"):
            AsyncTanxSession(access_token="a.b.c", deadline=bad)  # type: ignore[arg-type]
        with pytest.raises(error, match="deadline"):
            await session.orders.get(1, deadline=bad)  # type: ignore[arg-type]
    await session.aclose()


async def test_a_429_pause_longer_than_the_deadline_fails_at_once(router: respx.Router) -> None:
    route = router.get(f"{BASE}/sapi/v1/orders/7/").mock(
        return_value=json_response(429, {"status": "error", "message": "slow down"}, {"Retry-After": "30"})
    )
    async with open_session(router, deadline=2.0) as session:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match="did not reach the exchange") as info:
            await session.orders.get(7)
        assert "429 holds the session" not in str(info.value)  # this one was sent, and refused
        assert time.monotonic() - started < BOUND  # not the 30 s pause
        assert info.value.maybe_processed is False
        assert route.call_count == 1
        # The pause holds the session: the next operation does not even try, and says why.
        with pytest.raises(APITimeoutError, match=r"429 holds the session for (2\d|30) s more"):
            await session.orders.get(7)
        assert route.call_count == 1


async def test_each_attempt_is_cut_to_what_is_left() -> None:
    full = httpx.Timeout(5.0, connect=3.0, pool=10.0)
    deadline = Deadline(10.0)
    assert deadline.cut(full, 9.0) is full  # the hot path builds nothing
    cut = deadline.cut(full, 1.234)
    assert (cut.connect, cut.read, cut.write, cut.pool) == (1.25, 1.25, 1.25, 1.25)  # rounded up
    assert deadline.cut(full, 4.0).connect == 3.0  # a phase shorter than what is left stays
    # Rounded to a grid: a transport caching timeouts by value sees a bounded number of them.
    assert len({deadline.cut(full, i / 1000).read for i in range(1, 5000)}) <= 100


async def test_a_worker_passes_its_clock_to_each_deadline_it_begins() -> None:
    """A batch worker asks for the loop's clock once; every per-order deadline it begins runs
    on that clock (and outlives neither the next ``begin`` nor the task)."""
    from tanx_async import _deadline

    ticks = iter([100.0, 200.0, 250.0])
    _deadline.begin(10.0, extra=2.0, now=lambda: next(ticks))
    first = _deadline.current()
    assert first is not None
    assert first.at == 112.0  # begun at 100 on the worker's clock, for 10 + 2 s
    assert first.remaining() == -88.0  # read on that clock too (now 200)
    _deadline.begin(None)
    assert _deadline.current() is None
