"""``cancel_iter`` over ids with repeats, in every form (issue 13 item 1): exactly one outcome per
distinct id, the same as ``cancel_many``'s, and never an exception; lazy memory stays bounded."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanx_async import AsyncTanxSession, CancelOutcome, CancelStatus
from tests.internals import RecentIds, constants
from tests.sandbox import Sandbox, mismatches, running_sandbox

#: Every test here runs on both paths of the batch engine (the fast path, a task per cancel).
pytestmark = pytest.mark.usefixtures("batch_path")

FORMS: dict[str, Callable[[list[int]], Iterable[int]]] = {
    "list": list,
    "tuple": tuple,
    "set": set,
    "dict": dict.fromkeys,
    "generator": lambda ids: (i for i in ids),
    "iterator": iter,
}

# A sequence of positions in a pool of 8 orders: 0-4 open, 5-6 filled, 7 unknown to the exchange.
SEQUENCES = st.lists(st.integers(min_value=0, max_value=7), max_size=24)


def _pool(sb: Sandbox) -> list[int]:
    exchange = sb.exchange
    open_ids = exchange.seed_orders(sb.uid, 5)
    filled = exchange.seed_orders(sb.uid, 2, state="done")
    for oid in filled:
        exchange.update_order(oid, updated_at=exchange.now() - 600)
    return [*open_ids, *filled, 99_000_000 + len(exchange.orders_of(sb.uid))]


async def _iterate(session: AsyncTanxSession, ids: Iterable[int], **kwargs: Any) -> list[CancelOutcome]:
    async with contextlib.aclosing(session.orders.cancel_iter(ids, **kwargs)) as outcomes:
        return [o async for o in outcomes]


@pytest.fixture(scope="module")
def faulty() -> Iterator[Sandbox]:
    with running_sandbox(seed=13, cancel_delay=0.0) as sb:
        yield sb


@settings(
    max_examples=30,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(positions=SEQUENCES, form=st.sampled_from(sorted(FORMS)), concurrency=st.sampled_from([1, 3, 64]))
def test_one_outcome_per_distinct_id_in_every_form(
    faulty: Sandbox, positions: list[int], form: str, concurrency: int
) -> None:
    async def main() -> None:
        exchange = faulty.exchange
        faults = exchange.faults
        pools = [_pool(faulty) for _ in range(3)]
        before = {oid: exchange.order(oid).state for pool in pools for oid in pool[:7]}
        faulty_ids, iter_ids, many_ids = ([pool[p] for p in positions] for pool in pools)
        async with faulty.session(max_retries=8) as session:
            # With faults: one outcome per distinct id, each true to the exchange, never a raise.
            faults.only_paths = ("/sapi/v1/orders",)
            faults.error_rate, faults.drop_after_rate, faults.reset_rate = 0.1, 0.1, 0.05
            try:
                outcomes = await _iterate(session, FORMS[form](faulty_ids), concurrency=concurrency)
            finally:
                faults.reset()
            got = [o.order_id for o in outcomes]
            assert sorted(got) == sorted(set(faulty_ids)), (form, positions)
            assert mismatches(exchange, outcomes, before) == []
            # Without faults: the same outcomes as cancel_many's, position for position.
            iterated = await _iterate(session, FORMS[form](iter_ids), concurrency=concurrency)
            many = await session.orders.cancel_many(many_ids, concurrency=concurrency)
        by_position = {pools[1].index(o.order_id): o.status for o in iterated}
        assert by_position == {pools[2].index(o.order_id): o.status for o in many}
        assert len(iterated) == len(by_position)

    anyio.run(main)


async def test_a_repeat_beyond_the_window_is_cancelled_and_reported_again(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(constants, "DEDUPE_WINDOW", 2)
    with running_sandbox(seed=3, cancel_delay=0.0) as sb:
        a, b, c = sb.exchange.seed_orders(sb.uid, 3)
        async with sb.session() as session:
            near = await _iterate(session, (i for i in [a, b, a]), concurrency=1)
            far = await _iterate(session, (i for i in [a, b, c, a]), concurrency=1)
            loose = await _iterate(session, (i for i in [b, c, b]), concurrency=1, dedupe=False)
    assert [o.order_id for o in near] == [a, b]  # within the window: once
    assert [o.order_id for o in far] == [a, b, c, a]  # a's repeat came 3 ids later
    # The repeat's cancel is refused (already cancelled); the look-up and this session's own
    # earlier 2xx make it cancelled, not a failure.
    assert far[-1].status is CancelStatus.CANCELLED and far[-1].ok
    assert [o.order_id for o in loose] == [b, c, b]  # dedupe=False: finished repeats go again


async def test_a_repeat_of_an_id_in_flight_is_dropped_even_without_dedupe() -> None:
    with running_sandbox(seed=4, cancel_delay=0.0) as sb:
        [a] = sb.exchange.seed_orders(sb.uid, 1)
        sb.exchange.faults.latency = 0.05  # keep it in flight while the repeats are pulled
        async with sb.session() as session:
            outcomes = await _iterate(session, (i for i in [a, a, a, a]), concurrency=4, dedupe=False)
    assert [(o.order_id, o.status) for o in outcomes] == [(a, CancelStatus.QUEUED)]


def test_the_window_is_bounded() -> None:
    window = RecentIds(3)
    for oid in range(10):
        window.add(oid)
        window.add(oid)
    assert len(window) == 3
    assert [oid in window for oid in range(10)] == [False] * 7 + [True] * 3
    assert len(RecentIds(0)) == 0 and 1 not in RecentIds(0)


async def test_an_outcome_taken_as_the_deadline_strikes_is_yielded_once() -> None:
    """The consumer is slow, so the worker waits to hand over order 3. The loop is then busy
    until the consumer's timer and the batch deadline are due in the same iteration, the
    consumer's first: the deadline cancels the worker, the consumer takes order 3 from it, and
    the worker's hand-over raises although its outcome was taken. The consumer's taking is what
    counts (``Batch.delivered``): the deadline does not hand order 3 over a second time."""
    with running_sandbox(seed=3, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 6)
        got: list[CancelOutcome] = []
        async with sb.session() as session:
            await session.warm_up(1)
            with anyio.fail_after(10):
                async with contextlib.aclosing(
                    session.orders.cancel_iter(ids, concurrency=1, deadline=0.3)
                ) as stream:
                    async for outcome in stream:
                        got.append(outcome)
                        if len(got) == 1:
                            loop = asyncio.get_running_loop()
                            loop.call_later(0.04, time.sleep, 0.5)  # the loop busy from +40 ms to +540 ms
                            await asyncio.sleep(0.05)
    assert sorted(o.order_id for o in got) == sorted(ids)  # each once
    assert got[0].status is CancelStatus.QUEUED
    assert {o.status for o in got} <= {CancelStatus.QUEUED, CancelStatus.SKIPPED, CancelStatus.UNKNOWN}
