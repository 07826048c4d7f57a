"""Cancellation safety: a batch cancelled (or its session closed) at any point leaves no task
running, no connection checked out, no false outcome, and a session that still works."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter
from collections.abc import AsyncIterator, Callable

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tanx_async import (
    AsyncTanxSession,
    CancelOutcome,
    CancelStatus,
    SessionClosedError,
)
from tests.internals import in_use
from tests.sandbox import (
    BATCH_TRANSPORTS,
    TRANSPORTS,
    Sandbox,
    mismatches,
    processed_cancels,
    running_sandbox,
)

CANCEL_PATH = "/sapi/v1/orders/cancel/"


async def drain(outcomes: AsyncIterator[CancelOutcome], into: list[CancelOutcome]) -> None:
    """Consume ``cancel_iter`` and close it however the loop ends (what ``aclosing`` does)."""
    try:
        async for outcome in outcomes:
            into.append(outcome)
    finally:
        aclose = getattr(outcomes, "aclose", None)
        if aclose is not None:
            await aclose()


async def settle(condition: Callable[[], bool], *, seconds: float = 2.0) -> None:
    """Give background clean-up a short, bounded time (at most ``seconds``)."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)


def extra_tasks(before: set[asyncio.Task[object]]) -> set[asyncio.Task[object]]:
    current = asyncio.current_task()
    return {t for t in asyncio.all_tasks() if t not in before and t is not current and not t.done()}


def false_claims(sandbox: Sandbox, outcomes: list[CancelOutcome]) -> list[str]:
    """Queued/cancelled without a processed cancel, or failed/skipped although one was processed."""
    done = processed_cancels(sandbox.exchange)
    wrong = []
    for o in outcomes:
        if o.status in (CancelStatus.QUEUED, CancelStatus.CANCELLED) and o.order_id not in done:
            wrong.append(f"{o.order_id}: {o.status.value} but no cancel of ours was processed")
        if o.status in (CancelStatus.FAILED, CancelStatus.SKIPPED) and o.order_id in done:
            wrong.append(f"{o.order_id}: {o.status.value} but its cancel was processed")
        if not o.ok and o.error is None:
            wrong.append(f"{o.order_id}: {o.status.value} without an error")
    return wrong


async def cancelled_batch(sandbox: Sandbox, delay: float, mode: str, how: str, transport: str) -> None:
    """One example: start a batch of 100, cancel it after ``delay``, then check everything."""
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 100)
    fresh = exchange.seed_orders(sandbox.uid, 10)
    before_tasks = set(asyncio.all_tasks())
    got: list[CancelOutcome] = []

    async def batch(session: AsyncTanxSession) -> None:
        if mode == "many":
            got.extend(await session.orders.cancel_many(ids, concurrency=32))
        else:
            await drain(session.orders.cancel_iter(ids, concurrency=32), got)

    async with sandbox.session(transport=transport) as session:
        with anyio.fail_after(10):
            if how == "move_on_after":
                with anyio.move_on_after(delay):
                    await batch(session)
            else:
                with anyio.CancelScope() as scope:
                    async with anyio.create_task_group() as tg:

                        async def cancel_later() -> None:
                            await anyio.sleep(delay)
                            scope.cancel()

                        tg.start_soon(cancel_later)
                        await batch(session)
                        scope.cancel()  # finished first: stop the canceller
            await settle(lambda: not extra_tasks(before_tasks))
            assert extra_tasks(before_tasks) == set()
            await settle(lambda: in_use(session) == 0)
            assert in_use(session) == 0
            # Still usable: a fresh batch goes through.
            follow_up = await session.orders.cancel_many(fresh)
        assert [o.status for o in follow_up] == [CancelStatus.QUEUED] * len(fresh)
        assert in_use(session) == 0
    assert extra_tasks(before_tasks) == set()
    if mode == "many" and got:
        assert len(got) == len(ids)  # finished before the cancel: all or nothing
    assert len({o.order_id for o in got}) == len(got)
    before = dict.fromkeys(ids, "wait")
    assert mismatches(exchange, got, before) == []
    assert false_claims(sandbox, got) == []


def test_cancelling_a_batch_at_any_point_leaves_nothing_behind() -> None:
    with running_sandbox(seed=31, cancel_delay=0.0) as sandbox:
        sandbox.exchange.faults.latency = 0.01
        sandbox.exchange.faults.latency_jitter = 0.03

        @settings(max_examples=15, deadline=None, database=None)
        @given(
            delay=st.floats(0, 0.3),
            mode=st.sampled_from(["many", "iter"]),
            how=st.sampled_from(["move_on_after", "scope.cancel"]),
            transport=st.sampled_from(BATCH_TRANSPORTS),
        )
        def check(delay: float, mode: str, how: str, transport: str) -> None:
            anyio.run(cancelled_batch, sandbox, delay, mode, how, transport)

        check()
        assert sandbox.server.errors == []


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.mark.parametrize("transport", BATCH_TRANSPORTS)
@pytest.mark.parametrize("rate_limit", [None, 150.0])  # with a rate limit, tasks wait before sending
async def test_aclose_during_a_batch_finishes_it_cleanly(transport: str, rate_limit: float | None) -> None:
    errors = Errors()
    logging.getLogger("tanx_async").addHandler(errors)
    try:
        with running_sandbox(seed=32, cancel_delay=0.0) as sandbox:
            ids = sandbox.exchange.seed_orders(sandbox.uid, 200)
            sandbox.exchange.faults.latency = 0.02
            session = sandbox.session(transport=transport, rate_limit=rate_limit)
            results: list[CancelOutcome] = []

            async def run() -> None:
                results.extend(await session.orders.cancel_many(ids, concurrency=16))

            with anyio.fail_after(10):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(run)
                    await settle(lambda: len(processed_cancels(sandbox.exchange)) >= 20, seconds=5)
                    await session.aclose()
            await anyio.sleep(0.1)  # requests the server had already read finish there
    finally:
        logging.getLogger("tanx_async").removeHandler(errors)
    assert session.closed
    assert [o.order_id for o in results] == ids  # every id has its outcome, none hung
    counts = Counter(o.status for o in results)
    assert counts[CancelStatus.QUEUED] >= 1
    assert counts[CancelStatus.QUEUED] < len(ids)
    assert set(counts) <= {CancelStatus.QUEUED, CancelStatus.FAILED, CancelStatus.UNKNOWN}
    unfinished = [o for o in results if o.status is not CancelStatus.QUEUED]
    assert all(isinstance(o.error, SessionClosedError) for o in unfinished)
    # In flight when the pool closed: maybe processed, so unknown - never "failed".
    assert false_claims(sandbox, results) == []
    assert [r.getMessage() for r in errors.records] == []  # no "unexpected error" tracebacks


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_closed_session_raises_session_closed_error(transport: str) -> None:
    with running_sandbox(seed=33, cancel_delay=0.0) as sandbox:
        ids = sandbox.exchange.seed_orders(sandbox.uid, 3)
        session = sandbox.session(transport=transport)
        async with session:
            assert await session.health() is True
        await session.aclose()  # idempotent
        assert session.closed
        with pytest.raises(SessionClosedError):
            await session.health()
        with pytest.raises(SessionClosedError):
            await session.orders.get(ids[0])
        with pytest.raises(SessionClosedError):
            await session.orders.cancel(ids[0])
        with pytest.raises(SessionClosedError):
            await session.orders.cancel_many(ids)
        with pytest.raises(SessionClosedError):
            await drain(session.orders.cancel_iter(ids), [])
        with pytest.raises(SessionClosedError):
            async with session:
                pass
        clone = session.with_options(max_retries=0)
        with pytest.raises(SessionClosedError):
            await clone.health()
        assert sandbox.exchange.cancel_attempts(ids[0]) == []
