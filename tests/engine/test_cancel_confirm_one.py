"""``orders.cancel(order_id, confirm=True)``: the single-order call confirms as ``cancel_many``
does (issue 30, item 8), against the sandbox over a loopback socket."""

from __future__ import annotations

from collections.abc import Iterator

import anyio
import pytest

from tanx_async import CancelNotConfirmedError, NotFoundError, OrderState
from tests.conftest import until
from tests.sandbox import Sandbox, running_sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=11, cancel_delay=0.2) as sandbox:
        yield sandbox


def lookups(sandbox: Sandbox, oid: int) -> int:
    return sum(
        1 for r in sandbox.exchange.requests if r.method == "GET" and r.path == f"/sapi/v1/orders/{oid}/"
    )


async def test_without_confirm_the_order_comes_back_queued(sandbox: Sandbox) -> None:
    (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1)
    async with sandbox.session() as session:
        order = await session.orders.cancel(oid)
    assert order.id == oid and order.state == OrderState.WAIT  # queued, not yet applied


@pytest.mark.parametrize("mode", ["auto", "stream", "poll"])
async def test_confirm_returns_the_order_once_the_exchange_shows_it_cancelled(
    sandbox: Sandbox, mode: str
) -> None:
    (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1)
    async with sandbox.session() as session:
        order = await session.orders.cancel(oid, confirm=True, confirm_with=mode)  # type: ignore[arg-type]
    assert order.id == oid and order.state == OrderState.CANCEL
    assert sandbox.exchange.order(oid).state == "cancel"
    if mode == "poll":
        assert lookups(sandbox, oid) >= 1
    else:  # by push: the stream was opened, and no look-up was needed
        assert sandbox.exchange.ws.subscriptions == 1
        assert lookups(sandbox, oid) == 0


async def test_not_confirmed_in_time_raises_cancel_not_confirmed() -> None:
    with running_sandbox(seed=12, cancel_delay=60.0) as sandbox:
        (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1)
        async with sandbox.session() as session:
            with pytest.raises(CancelNotConfirmedError) as info:
                await session.orders.cancel(oid, confirm=True, confirm_timeout=0.3, confirm_with="poll")
        assert info.value.order_id == oid
        assert info.value.order is not None and info.value.order.state == OrderState.WAIT
        assert sandbox.exchange.order(oid).cancel_queued  # the cancel itself was queued


async def test_filled_before_the_cancel_took_effect_is_not_confirmed() -> None:
    with running_sandbox(seed=13, cancel_delay=60.0) as sandbox:
        ex = sandbox.exchange
        (oid,) = ex.seed_orders(sandbox.uid, 1)
        caught: list[BaseException] = []

        async def cancel() -> None:
            async with sandbox.session() as session:
                try:
                    await session.orders.cancel(oid, confirm=True, confirm_timeout=20, confirm_with="poll")
                except CancelNotConfirmedError as exc:
                    caught.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel)
            await until(lambda: ex.order(oid).cancel_queued, 20)
            assert ex.order(oid).cancel_queued
            order = ex.order(oid)
            ex.update_order(oid, state="done", executed_volume=order.origin_volume, remaining_volume="0.0")
        (error,) = caught
        assert isinstance(error, CancelNotConfirmedError) and "filled (done)" in str(error)
        assert error.order is not None and error.order.state == OrderState.DONE


async def test_a_refusal_raises_as_without_confirm(sandbox: Sandbox) -> None:
    async with sandbox.session() as session:
        with pytest.raises(NotFoundError):
            await session.orders.cancel(999, confirm=True, confirm_with="poll")
        with pytest.raises(NotFoundError):
            await session.orders.cancel(999)


async def test_bad_confirm_options_are_refused_before_anything_is_sent(sandbox: Sandbox) -> None:
    (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1)
    async with sandbox.session() as session:
        with pytest.raises(ValueError, match="confirm_with"):
            await session.orders.cancel(oid, confirm=True, confirm_with="carrier-pigeon")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="confirm_timeout"):
            await session.orders.cancel(oid, confirm=True, confirm_timeout=0)
    assert sandbox.exchange.requests == []
