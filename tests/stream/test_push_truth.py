"""The private stream and push confirmation against a scripted stream (``tests.stub.WsStub``)
and a scripted REST exchange (``tests.stub.Stub``), on asyncio (the built-in transport) and trio
(the anyio one): issue 34, items 5, 6 and 10.

- 5: a server that acks every subscription and then closes at once is redialled with a growing
  backoff (before: ~1,900 connections and StreamGaps in 2 s), and the look-ups after those gaps
  stay bounded (before: 1,534 GETs for one order in 2 s).
- 6: ``confirm_with="auto"`` polls within a short ``confirm_timeout`` (before: never, when it
  was 3 s or less).
- 10: a pushed ``cancel`` older than our first attempt is ``already_closed``; an update whose id
  is ``"7"`` or ``7.0`` is not order 7.
"""

from __future__ import annotations

import time
from typing import Any, Literal

import anyio
import pytest

from tanx_async import CancelNotConfirmedError, CancelStatus, StreamError, StreamGap
from tests.conftest import envelope, order_payload, until
from tests.engine.test_unreadable_headers import IDS as ALL_IDS
from tests.engine.test_unreadable_headers import TRANSPORTS as ALL
from tests.engine.test_unreadable_headers import run_on, session_on
from tests.stub import Stub, WsConnection, WsStub, reply

#: The stream is one (anyio) for every REST transport: the built-in one on each event loop; the
#: tests whose look-ups matter run on every REST transport (``ALL``).
LOOPS = [("asyncio", "native"), ("trio", "native")]
IDS = [loop for loop, _ in LOOPS]
WINDOW = 2.0  # seconds: the window
Mode = Literal["stream", "auto"]


def _exchange(state: str, cancelled: set[int] | None = None) -> Any:
    """Cancels answer 200 with the order (still ``wait``); look-ups show it in ``state``."""

    def answer(
        method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/cancel/"):
            oid = body["order_id"]
            if cancelled is not None:
                cancelled.add(oid)
            return reply(200, envelope(order_payload(id=oid, state="wait")))
        oid = int(path.rstrip("/").rsplit("/", 1)[1])
        return reply(200, envelope(order_payload(id=oid, state=state)))

    return answer


async def _at_once(connection: WsConnection) -> None:
    """Subscribed, then closed at once (the script returning closes it with 1011)."""


# -- item 5: flapping connections --------------------------------------------------------------


@pytest.mark.parametrize(("loop", "transport"), LOOPS, ids=IDS)
def test_a_stream_that_dies_right_after_subscribing_backs_off(loop: str, transport: str) -> None:
    async def main() -> None:
        async with Stub(_exchange("wait")) as rest, WsStub(_at_once) as ws:
            async with session_on(rest, transport, stream_url=ws.url) as session:
                gaps = 0
                events = session.stream()
                async with events:
                    with anyio.move_on_after(WINDOW):
                        async for event in events:
                            gaps += isinstance(event, StreamGap)
                connections = ws.connections
            # Backoff 0.1-0.2, 0.2-0.4, 0.4-0.8, 0.8-1.6 s...: at most 5 connections in 2 s
            # (one more for slack); before, about 1,900.
            assert 2 <= connections <= 6, connections
            assert gaps <= connections

    run_on(loop, main)


@pytest.mark.parametrize(("loop", "transport"), LOOPS, ids=IDS)
def test_connections_that_die_young_spend_the_reconnects(loop: str, transport: str) -> None:
    async def main() -> None:
        async with Stub(_exchange("wait")) as rest, WsStub(_at_once) as ws:
            async with session_on(rest, transport, stream_url=ws.url) as session:
                with pytest.raises(StreamError, match=r"died within 10 s of subscribing"):
                    async with session.stream(max_reconnects=2) as events:
                        with anyio.fail_after(30):
                            async for _ in events:
                                pass
            assert ws.connections == 3  # the first, and two reconnects that died young

    run_on(loop, main)


@pytest.mark.parametrize("mode", ["stream", "auto"])
@pytest.mark.parametrize(("loop", "transport"), ALL, ids=ALL_IDS)
def test_look_ups_after_flapping_gaps_are_bounded(loop: str, transport: str, mode: Mode) -> None:
    """One order waits for its push while every connection dies at once: at most one look-up
    per gap (and with ``auto`` the poll's own few), never one per millisecond."""

    async def main() -> None:
        async with Stub(_exchange("wait")) as rest, WsStub(_at_once) as ws:
            async with session_on(rest, transport, stream_url=ws.url) as session:
                [outcome] = await session.orders.cancel_many(
                    [7],
                    confirm=True,
                    confirm_with=mode,
                    confirm_timeout=WINDOW,
                )
            gets = len(rest.paths("GET"))
            assert outcome.status is CancelStatus.QUEUED and isinstance(
                outcome.error, CancelNotConfirmedError
            )
            assert ws.connections <= 6, ws.connections
            # Gaps: one look-up each (before: 1,534 in 2 s). auto: the push wait is cut to 1 s and
            # then polled with backoff (0.05, 0.1, 0.2, 0.4 s...): a handful more.
            assert gets <= ws.connections + (8 if mode == "auto" else 0), (gets, ws.connections)

    run_on(loop, main)


# -- item 6: auto polls within a short confirm_timeout -----------------------------------------


@pytest.mark.parametrize("timeout", [1.0, 2.0, 3.0])
@pytest.mark.parametrize(("loop", "transport"), ALL, ids=ALL_IDS)
def test_auto_polls_within_a_short_confirm_timeout(loop: str, transport: str, timeout: float) -> None:
    async def silent(connection: WsConnection) -> None:
        await anyio.sleep_forever()

    async def main() -> None:
        async with Stub(_exchange("cancel")) as rest, WsStub(silent) as ws:
            async with session_on(rest, transport, stream_url=ws.url) as session:
                outcomes = await session.orders.cancel_many([1, 2], confirm=True, confirm_timeout=timeout)
            assert [o.status for o in outcomes] == [CancelStatus.CANCELLED] * 2, outcomes
            gets = rest.paths("GET")
            assert sorted(gets) == ["/sapi/v1/orders/1/", "/sapi/v1/orders/2/"]  # one look-up each
            assert ws.connections == 1

    run_on(loop, main)


# -- item 10: what a push proves ----------------------------------------------------------------


@pytest.mark.parametrize(("loop", "transport"), LOOPS, ids=IDS)
def test_a_pushed_cancel_older_than_our_first_attempt_is_already_closed(loop: str, transport: str) -> None:
    cancelled: set[int] = set()

    async def push_once_cancelled(connection: WsConnection) -> None:
        await until(lambda: cancelled == {1, 2}, 10)
        now = int(time.time())
        await connection.push({"order": {"id": 1, "state": "cancel", "updated_at": now - 3600}})
        await connection.push({"order": {"id": 2, "state": "cancel", "updated_at": now + 1}})
        await anyio.sleep_forever()

    async def main() -> None:
        async with Stub(_exchange("wait", cancelled)) as rest, WsStub(push_once_cancelled) as ws:
            async with session_on(rest, transport, stream_url=ws.url) as session:
                old, ours = await session.orders.cancel_many([1, 2], confirm=True, confirm_with="stream")
            assert old.status is CancelStatus.ALREADY_CLOSED and old.ok, old
            assert ours.status is CancelStatus.CANCELLED, ours
            assert rest.paths("GET") == []  # settled by the pushes alone

    run_on(loop, main)


@pytest.mark.parametrize("pushed_id", ["7", 7.0], ids=["string", "float"])
@pytest.mark.parametrize("mode", ["stream", "auto"])
@pytest.mark.parametrize(("loop", "transport"), LOOPS, ids=IDS)
def test_an_update_with_an_id_of_another_type_is_not_that_order(
    loop: str, transport: str, mode: Mode, pushed_id: object
) -> None:
    """The exchange sends ``{"id": "7", "state": "cancel"}``: not order 7 (a shape we do not
    know: the stream fails loudly), so order 7, which look-ups show still open, is never
    ``cancelled``."""
    cancelled: set[int] = set()

    async def push_odd_id(connection: WsConnection) -> None:
        await until(lambda: cancelled, 10)
        await connection.push({"order": {"id": pushed_id, "state": "cancel"}})
        await anyio.sleep_forever()

    async def main() -> None:
        async with Stub(_exchange("wait", cancelled)) as rest, WsStub(push_odd_id) as ws:
            async with session_on(rest, transport, stream_url=ws.url) as session:
                [outcome] = await session.orders.cancel_many(
                    [7],
                    confirm=True,
                    confirm_with=mode,
                    confirm_timeout=1.0,
                )
            assert outcome.status is CancelStatus.QUEUED, outcome
            assert isinstance(outcome.error, CancelNotConfirmedError)

    run_on(loop, main)


@pytest.mark.parametrize("pushed_id", ["7", 7.0, True], ids=["string", "float", "bool"])
def test_the_stream_fails_loudly_on_an_id_of_another_type(pushed_id: object) -> None:
    async def push_odd_id(connection: WsConnection) -> None:
        await connection.push({"order": {"id": 8, "state": "wait"}})
        await connection.push({"order": {"id": pushed_id, "state": "cancel"}})
        await anyio.sleep_forever()

    async def main() -> None:
        seen: list[Any] = []
        async with (
            Stub(_exchange("wait")) as rest,
            WsStub(push_odd_id) as ws,
            session_on(rest, "native", stream_url=ws.url) as session,
        ):
            with pytest.raises(StreamError, match="expected int"):
                async with session.stream() as events:
                    with anyio.fail_after(10):
                        async for event in events:
                            seen.append(event)
        assert [e.id for e in seen] == [8]

    run_on("asyncio", main)
