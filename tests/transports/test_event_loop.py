"""A session is bound to the event loop it was first used on (issue 13, item 4).

Used from a second ``asyncio.run``, another thread's loop or a trio run, it raises
``EventLoopMismatchError`` (a ``TanxError`` and a ``RuntimeError``) with a message that says what
to do, before anything is sent; on its own loop it keeps working and closes cleanly.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator

import pytest
import trio

from tanx_async import AsyncTanxSession, EventLoopMismatchError, TanxError
from tanx_async.testing import SandboxExchange, SandboxServer

MESSAGE = "bound to the event loop it was first used on.*create one session per event loop"


@pytest.fixture
def served() -> Iterator[tuple[SandboxExchange, SandboxServer, AsyncTanxSession, list[int]]]:
    exchange = SandboxExchange(seed=3)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 3)
    with SandboxServer(exchange) as server:
        session = AsyncTanxSession(base_url=server.url, access_token=access, refresh_token=refresh)
        yield exchange, server, session, ids


def test_a_second_loop_gets_a_typed_error_before_anything_is_sent(
    served: tuple[SandboxExchange, SandboxServer, AsyncTanxSession, list[int]],
) -> None:
    exchange, _, session, ids = served
    first = asyncio.new_event_loop()
    try:
        assert first.run_until_complete(session.orders.get(ids[0])).id == ids[0]
        sent = len(exchange.requests)

        # A second asyncio.run (a new loop in this thread).
        with pytest.raises(EventLoopMismatchError, match=MESSAGE) as info:
            asyncio.run(session.orders.cancel(ids[1]))
        assert isinstance(info.value, TanxError) and isinstance(info.value, RuntimeError)

        # Another thread's loop.
        errors: list[BaseException] = []

        def other_thread() -> None:
            try:
                asyncio.run(session.orders.cancel_many([ids[1], ids[2]]))
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=other_thread)
        thread.start()
        thread.join(timeout=30)
        assert [type(e) for e in errors] == [EventLoopMismatchError]

        # A trio run.
        async def under_trio() -> None:
            await session.orders.get(ids[0])

        with pytest.raises(EventLoopMismatchError, match=MESSAGE):
            trio.run(under_trio)

        # `async with` on another loop fails the same way, at entry.
        async def enter() -> None:
            async with session:
                pass  # pragma: no cover - never entered

        with pytest.raises(EventLoopMismatchError):
            asyncio.run(enter())

        assert len(exchange.requests) == sent  # nothing reached the exchange
        assert {exchange.order(i).state for i in ids[1:]} == {"wait"}
        # Still fine on its own loop, and closed there cleanly.
        assert first.run_until_complete(session.orders.cancel(ids[1])).id == ids[1]
        first.run_until_complete(session.aclose())
        assert session.closed
    finally:
        first.close()


def test_closing_from_another_loop_does_not_touch_the_first_loops_connections(
    served: tuple[SandboxExchange, SandboxServer, AsyncTanxSession, list[int]],
) -> None:
    _, _, session, ids = served
    first = asyncio.new_event_loop()
    try:
        first.run_until_complete(session.orders.get(ids[0]))
        asyncio.run(session.aclose())  # no "Event loop is closed" from deep in the transport
        assert session.closed

        async def drain() -> int:
            # The close was handed to the first loop: it runs there now.
            for _ in range(200):
                if len(asyncio.all_tasks()) == 1:
                    break
                await asyncio.sleep(0.01)
            return len(asyncio.all_tasks())

        assert first.run_until_complete(drain()) == 1
    finally:
        first.close()


def test_a_session_built_outside_any_loop_binds_to_the_first_that_uses_it(
    served: tuple[SandboxExchange, SandboxServer, AsyncTanxSession, list[int]],
) -> None:
    _, _, session, ids = served

    async def twice() -> None:
        async with session:
            await session.orders.get(ids[0])
            await session.with_options(timeout=2).orders.get(ids[1])  # a view shares the binding

    asyncio.run(twice())
    assert session.closed
