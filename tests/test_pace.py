"""``Pacer``: at most ``per_turn`` answers handed over per event-loop iteration, the rest held in
order; held answers count as done (nothing can fail them) and a cancelled one is dropped."""

from __future__ import annotations

import asyncio

from .internals import Pacer


async def test_a_wave_is_spread_over_iterations_in_order() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=2)
    futures = [pacer.future_type(loop=loop) for _ in range(5)]
    woken: list[tuple[int, int]] = []
    turn = [0]

    async def wait(i: int) -> None:
        assert await futures[i] == i
        woken.append((turn[0], i))

    tasks = [asyncio.create_task(wait(i)) for i in range(5)]
    await asyncio.sleep(0)  # every task is now waiting
    for i, future in enumerate(futures):
        future.set_result(i)
    assert all(f.done() for f in futures)  # complete, whether handed over or held
    for _ in range(5):
        turn[0] += 1
        await asyncio.sleep(0)
    await asyncio.gather(*tasks)
    assert [i for _, i in woken] == [0, 1, 2, 3, 4]
    per_turn = [sum(1 for t, _ in woken if t == n) for n in range(1, 6)]
    assert max(per_turn) <= 2, woken


async def test_a_held_answer_whose_task_is_cancelled_is_dropped() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=1)
    first, second, third = (pacer.future_type(loop=loop) for _ in range(3))
    first.set_result("a")
    second.set_result("b")  # held
    third.set_result("c")  # held
    second.cancel()
    assert second.cancelled()
    assert await first == "a"
    assert await third == "c"  # the cancelled one did not take a turn's place
    assert second.cancelled()


async def test_answers_arriving_one_by_one_are_never_held() -> None:
    loop = asyncio.get_running_loop()
    pacer = Pacer(loop, per_turn=1)
    for i in range(5):
        future = pacer.future_type(loop=loop)
        future.set_result(i)
        assert future.result() == i  # handed over at once
        await asyncio.sleep(0)
        await asyncio.sleep(0)
