"""``Pacer``: at most ``per_turn`` answers handed over per event-loop iteration, the rest held in
order; a held answer stands (the connection counts it complete) and one whose task was
cancelled meanwhile is dropped."""

from __future__ import annotations

import asyncio
from collections import Counter

import httpx
import respx

from tests.conftest import CANCEL_URL, open_session
from tests.internals import Pacer, constants


async def test_a_wave_is_spread_over_iterations_in_order() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=2)
    futures: list[asyncio.Future[int]] = [loop.create_future() for _ in range(5)]
    woken: list[tuple[int, int]] = []
    turn = [0]

    async def wait(i: int) -> None:
        assert await futures[i] == i
        woken.append((turn[0], i))

    tasks = [asyncio.create_task(wait(i)) for i in range(5)]
    await asyncio.sleep(0)  # every task is now waiting
    for i, future in enumerate(futures):
        pacer.deliver(future, i)
    assert [f.done() for f in futures] == [True, True, False, False, False]
    assert len(pacer) == 3  # held, in order
    for _ in range(5):
        turn[0] += 1
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert [i for _, i in woken] == [0, 1, 2, 3, 4]
    per_turn = [sum(1 for t, _ in woken if t == n) for n in range(1, 6)]
    assert max(per_turn) <= 2, woken
    assert len(pacer) == 0


async def test_a_held_answer_whose_task_is_cancelled_is_dropped() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=1)
    first, second, third = (loop.create_future() for _ in range(3))
    pacer.deliver(first, "a")
    pacer.deliver(second, "b")  # held
    pacer.deliver(third, "c")  # held
    second.cancel()
    assert await first == "a"
    assert await third == "c"  # the cancelled one did not take a turn's place
    assert second.cancelled()
    assert len(pacer) == 0


async def test_answers_arriving_one_by_one_are_never_held() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=1)
    for i in range(5):
        future: asyncio.Future[int] = loop.create_future()
        pacer.deliver(future, i)
        assert future.result() == i  # handed over at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)


async def test_a_batch_starts_its_workers_a_few_per_loop_iteration() -> None:
    """64 workers sending at once would hold the loop for milliseconds in one iteration: they
    start ``WORKERS_STARTED_PER_TURN`` per iteration, and every one of them still starts."""
    loop = asyncio.get_running_loop()
    turn = [0]
    stop = asyncio.Event()

    def tick() -> None:
        turn[0] += 1
        if not stop.is_set():
            loop.call_soon(tick)

    sent_in_turn: list[int] = []

    async def hang(request: httpx.Request) -> httpx.Response:
        sent_in_turn.append(turn[0])
        await asyncio.Event().wait()  # never answered: only the workers' first steps count
        raise AssertionError("unreachable")

    router = respx.Router(assert_all_mocked=True)
    router.post(CANCEL_URL).mock(side_effect=hang)
    async with open_session(router, async_handler=True, max_concurrency=64) as session:
        loop.call_soon(tick)
        outcomes = await session.orders.cancel_many(range(1, 201), deadline=0.5)
        stop.set()
    per_turn = Counter(sent_in_turn)
    assert len(sent_in_turn) == 64  # every worker started and sent its first cancel
    assert max(per_turn.values()) <= constants.WORKERS_STARTED_PER_TURN, per_turn
    assert len(per_turn) >= 64 // constants.WORKERS_STARTED_PER_TURN
    assert len(outcomes) == 200 and all(not o.ok for o in outcomes)  # the deadline's outcomes
