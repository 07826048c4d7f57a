"""The private order stream (``session.stream()``) and cancels confirmed by push, against the
sandbox's ``/private`` WebSocket on a loopback socket."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import re
import ssl
import time
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tanx_async
from tanx_async import (
    AsyncTanxSession,
    CancelStatus,
    OrderState,
    OrderStream,
    OrderUpdate,
    RequestEvent,
    StreamError,
    StreamEvent,
    StreamGap,
    StreamRefusedError,
    TradeUpdate,
)
from tanx_async.testing import RequestRecord, SandboxExchange, token_fingerprint
from tests.auth.test_secrets import Capture, captured, error_texts, leaks
from tests.decoding.test_decode import WS_ORDER
from tests.internals import _Buffer, auth_of, constants, stream_url
from tests.sandbox import mismatches, running_sandbox

__all__ = ["captured"]  # the fixture, imported for its use below

ORDERS_PREFIX = "/sapi/v1/orders/"
WAIT = 20.0  # a bound on every wait below (never a speed claim)


def gets(exchange: SandboxExchange) -> list[RequestRecord]:
    """GET look-ups of single orders, from the sandbox's request log."""
    return [
        r
        for r in list(exchange.requests)
        if r.method == "GET" and r.path.startswith(ORDERS_PREFIX) and r.path != ORDERS_PREFIX
    ]


def lookups(exchange: SandboxExchange) -> int:
    """How many GET look-ups of single orders the sandbox saw."""
    return len(gets(exchange))


async def take(events: OrderStream, n: int, kind: type[Any] = object) -> list[StreamEvent]:
    """The next ``n`` events of type ``kind`` (others are skipped), within ``WAIT`` seconds."""
    out: list[StreamEvent] = []
    with anyio.fail_after(WAIT):
        async for event in events:
            if isinstance(event, kind):
                out.append(event)
                if len(out) == n:
                    break
    return out


# -- URLs and arguments ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("base", "expected"),
    [
        ("https://api.tanx.fi", "wss://api.tanx.fi/private"),
        ("https://api-testnet.tanx.fi", "wss://api-testnet.tanx.fi/private"),
        ("http://127.0.0.1:8123", "ws://127.0.0.1:8123/private"),
        ("https://example.com:8443/", "wss://example.com:8443/private"),
    ],
)
def test_stream_url_is_derived_from_the_base_url(base: str, expected: str) -> None:
    assert stream_url(base.rstrip("/"), None, False) == expected
    assert AsyncTanxSession(base_url=base)._stream_url == expected


def test_the_stream_url_never_carries_the_base_urls_credentials() -> None:
    # The session refuses a base_url with a user:password part (and never echoes it) ...
    with pytest.raises(ValueError, match="user name or password") as refused:
        AsyncTanxSession(base_url="https://user:s3cret@api.tanx.fi:8443", access_token="a.b.c")
    assert "s3cret" not in str(refused.value)
    # ... and the stream URL derived from one would drop it anyway.
    assert stream_url("https://user:s3cret@api.tanx.fi:8443", None, False) == "wss://api.tanx.fi:8443/private"
    session = AsyncTanxSession(base_url="https://api.tanx.fi:8443", access_token="a.b.c")
    stream = session.stream()
    assert isinstance(stream, tanx_async.OrderStream)  # exported: users can annotate with it
    assert "OrderStream" in tanx_async.__all__
    assert stream.url == "wss://api.tanx.fi:8443/private"
    assert "s3cret" not in repr(stream) and "user" not in repr(stream)
    assert repr(stream) == "<OrderStream wss://api.tanx.fi:8443/private not connected>"
    assert (stream.connected, stream.connects, stream.gaps) == (False, 0, 0)


def test_stream_url_override_is_checked() -> None:
    assert stream_url("https://api.tanx.fi", "wss://proxy.example/ws", False) == "wss://proxy.example/ws"
    with pytest.raises(ValueError, match="query"):
        AsyncTanxSession(stream_url="wss://api.tanx.fi/private?auth_header=x")
    with pytest.raises(ValueError, match="ws"):
        AsyncTanxSession(stream_url="https://api.tanx.fi/private")
    with pytest.raises(ValueError, match="plain ws"):
        AsyncTanxSession(stream_url="ws://api.tanx.fi/private")
    with pytest.raises(TypeError):
        AsyncTanxSession(stream_url=b"wss://x/private")  # type: ignore[arg-type]
    assert AsyncTanxSession(stream_url="ws://api.tanx.fi/p", allow_insecure_http=True)._stream_url


def test_stream_arguments_are_checked_before_connecting() -> None:
    session = AsyncTanxSession(access_token="a.b.c")
    with pytest.raises(ValueError, match="streams"):
        session.stream(("order", "balance"))
    with pytest.raises(ValueError, match="streams"):
        session.stream(())
    with pytest.raises(ValueError, match="buffer"):
        session.stream(buffer=1)
    with pytest.raises(ValueError, match="heartbeat"):
        session.stream(heartbeat=0)
    with pytest.raises(ValueError, match="confirm_with"):
        session.orders.cancel_iter([1], confirm=True, confirm_with="push")  # type: ignore[arg-type]


# -- the buffer -----------------------------------------------------------------------------


def update(oid: int, state: str = "cancel") -> OrderUpdate:
    return OrderUpdate(id=oid, state=OrderState(state))


async def test_slow_consumer_buffer_is_bounded_and_reports_the_overflow() -> None:
    buffer = _Buffer(4)
    for oid in range(1, 51):
        buffer.put(update(oid))
        assert len(buffer._items) <= 4
    buffer.close()
    got = [event async for event in _drain(buffer)]
    kept = [e for e in got if isinstance(e, OrderUpdate)]
    gaps = [e for e in got if isinstance(e, StreamGap)]
    assert [e.id for e in kept] == [1, 2, 3, 4]
    assert len(gaps) == 1 and gaps[0].reason == "overflow"
    assert gaps[0].dropped == 46 and len(kept) + gaps[0].dropped == 50
    assert buffer.overflows == 1


async def test_buffer_keeps_order_around_an_overflow() -> None:
    buffer = _Buffer(3)
    for oid in (1, 2, 3, 4):  # 4 overflows
        buffer.put(update(oid))
    assert isinstance(await buffer.get(), OrderUpdate)
    assert isinstance(await buffer.get(), OrderUpdate)
    buffer.put(update(5))  # room for the gap and for 5
    rest = [await buffer.get(), await buffer.get(), await buffer.get()]
    assert [type(e).__name__ for e in rest] == ["OrderUpdate", "StreamGap", "OrderUpdate"]
    assert isinstance(rest[1], StreamGap) and rest[1].dropped == 1
    assert isinstance(rest[2], OrderUpdate) and rest[2].id == 5


async def _drain(buffer: _Buffer) -> Any:
    while True:
        try:
            yield await buffer.get()
        except StopAsyncIteration:
            return


# -- decoding -------------------------------------------------------------------------------


def _stream_for_dispatch() -> OrderStream:
    session = AsyncTanxSession(access_token="a.b.c")
    return session.stream(buffer=8)


DOCS_ORDER = WS_ORDER  # the documented sample, shared with test_decode


async def test_the_documented_order_update_decodes() -> None:
    stream = _stream_for_dispatch()
    stream._dispatch('{"order": ' + __import__("json").dumps({**DOCS_ORDER, "brand_new": 1}) + "}")
    event = await stream._buffer.get()
    assert isinstance(event, OrderUpdate)
    assert event.state == OrderState.DONE and event.kind == "bid"
    assert event.avg_price == Decimal("23829.22")
    assert event.updated_at == datetime(2022, 7, 28, 16, 14, 29, tzinfo=timezone.utc)


@pytest.mark.parametrize(
    "text",
    [
        '{"order": "x"}',
        '{"order": {"state": "wait"}}',
        '{"trade": [1]}',
        "[]",
        "not json",
        '{"order": {"id": true, "state": "wait"}}',
    ],
)
def test_a_malformed_update_fails_loudly(text: str) -> None:
    with pytest.raises(StreamError):
        _stream_for_dispatch()._dispatch(text)


def test_a_refused_subscription_message_raises() -> None:
    with pytest.raises(StreamRefusedError, match="nope"):
        _stream_for_dispatch()._dispatch('{"error": "nope"}')


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=150, deadline=None)
@given(
    key=st.sampled_from(["order", "trade"]),
    body=st.dictionaries(
        st.sampled_from([*DOCS_ORDER, "order_id", "amount", "total", "taker_type", "x"]),
        json_values,
        max_size=10,
    ),
)
def test_any_update_decodes_or_raises_a_stream_error(key: str, body: dict[str, Any]) -> None:
    """Hypothesis: whatever shape arrives, the result is a typed event or a ``StreamError``."""
    import json

    stream = _stream_for_dispatch()
    try:
        stream._dispatch(json.dumps({key: body}))
    except StreamError:
        return
    event = stream._buffer._items[-1]
    assert isinstance(event, OrderUpdate if key == "order" else TradeUpdate)


# -- against the sandbox --------------------------------------------------------------------


async def test_order_and_trade_updates_arrive_typed() -> None:
    with running_sandbox(seed=2, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 3)
        async with sb.session() as session, session.stream() as events:
            assert "connected" in repr(events)
            await session.orders.cancel_many(ids[:2])
            order = sb.exchange.order(ids[2])
            sb.exchange.update_order(
                ids[2], state="done", executed_volume=order.origin_volume, remaining_volume="0.0"
            )
            got = await take(events, 4)
    orders = {e.id: e for e in got if isinstance(e, OrderUpdate)}
    trades = [e for e in got if isinstance(e, TradeUpdate)]
    assert {orders[i].state for i in ids[:2]} == {OrderState.CANCEL}
    assert orders[ids[2]].state == OrderState.DONE
    assert len(trades) == 1 and trades[0].order_id == ids[2]
    assert trades[0].amount == Decimal(order.origin_volume)
    first = orders[ids[0]]
    assert first.updated_at is not None and first.updated_at.tzinfo == timezone.utc
    assert isinstance(first.origin_volume, Decimal) and first.kind in ("bid", "ask")


async def test_the_streams_argument_chooses_what_is_pushed() -> None:
    with running_sandbox(seed=2, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 2)
        async with sb.session() as session, session.stream(streams=("trade",)) as events:
            await session.orders.cancel(ids[0])  # an order update: not subscribed
            order = sb.exchange.order(ids[1])
            sb.exchange.update_order(ids[1], state="done", executed_volume=order.origin_volume)
            (event,) = await take(events, 1)
    assert isinstance(event, TradeUpdate) and event.order_id == ids[1]


async def test_other_users_updates_are_not_pushed() -> None:
    with running_sandbox(seed=2, cancel_delay=0.0) as sb:
        other = sb.exchange.create_user()
        theirs = sb.exchange.seed_orders(other, 1)
        mine = sb.exchange.seed_orders(sb.uid, 1)
        async with sb.session() as session, session.stream() as events:
            sb.exchange.update_order(theirs[0], state="cancel")
            sb.exchange.update_order(mine[0], state="cancel")
            (event,) = await take(events, 1)
    assert isinstance(event, OrderUpdate) and event.id == mine[0]


@pytest.mark.parametrize("server_closes", [True, False])
async def test_reconnect_uses_a_refreshed_token(server_closes: bool) -> None:
    """The token expires on the exchange. If the server closes the socket then (undocumented
    for tanX: both ways are handled), the client reconnects: the handshake with the old token is
    refused, the session refreshes (once), and the stream resumes with a gap. If it does not,
    the socket simply keeps working."""
    seen: list[RequestEvent] = []
    with running_sandbox(seed=4, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 2)
        hub = sb.exchange.ws
        hub.faults.close_on_token_expiry = server_closes
        async with sb.session(on_event=seen.append) as session, session.stream() as events:
            old = auth_of(session).access
            sb.exchange.advance_time(sb.exchange.access_ttl + 1)
            sb.exchange.refresh_count = 0
            if server_closes:
                (gap,) = await take(events, 1, StreamGap)
                assert isinstance(gap, StreamGap) and gap.reason == "reconnect"
            sb.exchange.update_order(ids[0], state="cancel")
            (event,) = await take(events, 1, OrderUpdate)
            assert isinstance(event, OrderUpdate) and event.id == ids[0]
            renewed = auth_of(session).access
    handshakes = [r for r in sb.exchange.requests if r.path == "/private"]
    if server_closes:
        assert sb.exchange.refresh_count == 1 and renewed != old
        assert [r.result for r in handshakes] == ["ws_open", "ws_refused", "ws_open"]
        assert handshakes[0].token != handshakes[2].token  # the refreshed token
        assert events.connects == 2 and events.gaps == 1
        kinds = [e.kind for e in seen if e.path == "/private"]
        assert kinds == ["stream_open", "stream_lost", "stream_open", "stream_gap"]
    else:
        assert sb.exchange.refresh_count == 0 and renewed == old
        assert [r.result for r in handshakes] == ["ws_open"]
        assert events.gaps == 0
    assert all(r.query == "auth_header=<redacted>" for r in handshakes)


async def test_a_gap_is_reconciled_with_one_lookup_per_waiting_order() -> None:
    """The socket drops mid-batch: updates pushed meanwhile are lost. Every order still waiting
    is looked up once after the reconnect, and every outcome is still the truth."""
    with running_sandbox(seed=5, cancel_delay=0.02) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 300)
        before = dict.fromkeys(ids, "wait")
        faults = sb.exchange.ws.faults
        faults.drop_after, faults.times = 100, 1
        async with sb.session() as session:
            outcomes = await session.orders.cancel_many(ids, concurrency=16, confirm=True)
    assert collections.Counter(o.status for o in outcomes) == {CancelStatus.CANCELLED: 300}
    assert mismatches(sb.exchange, outcomes, before) == []
    assert sb.exchange.ws.accepted == 2  # one drop, one reconnect
    # One look-up per order waiting at the gap (confirmation runs beside the sending, so that
    # may be every order already queued), plus any order whose push window ran out during the
    # reconnect (polled): never a storm of look-ups for one order.
    assert 1 <= lookups(sb.exchange) <= len(ids)
    assert max(collections.Counter(r.path for r in gets(sb.exchange)).values()) <= 3


async def test_a_stalled_stream_is_detected_and_reconnected() -> None:
    seen: list[RequestEvent] = []
    with running_sandbox(seed=6, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 3)
        faults = sb.exchange.ws.faults
        faults.stall_after, faults.times = 0, 1  # the first socket goes silent, pongs included
        async with sb.session(on_event=seen.append) as session, session.stream(heartbeat=0.1) as events:
            sb.exchange.update_order(ids[0], state="cancel")  # swallowed by the stall
            (gap,) = await take(events, 1, StreamGap)
            sb.exchange.update_order(ids[1], state="cancel")
            (event,) = await take(events, 1, OrderUpdate)
    assert isinstance(gap, StreamGap) and gap.reason == "reconnect" and gap.ended >= gap.started
    assert isinstance(event, OrderUpdate) and event.id == ids[1]
    lost = [e.error for e in seen if e.kind == "stream_lost"]
    assert len(lost) == 1 and lost[0] is not None and lost[0].startswith("stalled")


async def test_a_close_code_is_followed_by_a_reconnect_and_a_gap() -> None:
    with running_sandbox(seed=6, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 2)
        async with sb.session() as session, session.stream() as events:
            assert sb.exchange.ws.drop_all("close", 1012) == 1
            (gap,) = await take(events, 1, StreamGap)
            assert isinstance(gap, StreamGap) and gap.reason == "reconnect"
            sb.exchange.update_order(ids[0], state="cancel")
            (event,) = await take(events, 1, OrderUpdate)
    assert isinstance(event, OrderUpdate) and event.id == ids[0]
    assert events.connects == 2


async def test_a_refused_subscription_raises_or_falls_back_to_polling() -> None:
    with running_sandbox(seed=7, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 20)
        sb.exchange.ws.faults.refuse_subscription = "streams not allowed for this account"
        async with sb.session() as session:
            with pytest.raises(StreamRefusedError, match="not allowed for this account"):
                async with session.stream():
                    pass  # pragma: no cover - never entered
            # "stream" refuses to start the batch: nothing is sent.
            with pytest.raises(StreamRefusedError):
                await session.orders.cancel_many(ids, confirm=True, confirm_with="stream")
            # cancel_iter says so the same way (not inside an exception group).
            with pytest.raises(StreamRefusedError):
                async with contextlib.aclosing(
                    session.orders.cancel_iter(ids, confirm=True, confirm_with="stream")
                ) as stream:
                    async for _ in stream:
                        pass  # pragma: no cover - nothing is sent
            assert not any(r.path == "/sapi/v1/orders/cancel/" for r in sb.exchange.requests)
            # "auto" confirms by polling instead.
            outcomes = await session.orders.cancel_many(ids, confirm=True)
    assert {o.status for o in outcomes} == {CancelStatus.CANCELLED}
    assert lookups(sb.exchange) >= len(ids)


async def test_a_refused_token_is_renewed_once_then_reported() -> None:
    with running_sandbox(seed=8) as sb:
        sb.exchange.ws.faults.refuse_tokens = True
        async with sb.session() as session:
            with pytest.raises(StreamRefusedError) as refused:
                async with session.stream():
                    pass  # pragma: no cover - never entered
    assert refused.value.status_code == 401
    assert sb.exchange.refresh_count == 1
    assert [r.result for r in sb.exchange.requests if r.path == "/private"] == ["ws_refused"] * 2


async def test_opening_a_stream_is_bounded_by_the_session_deadline() -> None:
    """``deadline`` bounds opening the stream, attempts and backoff included: 9 attempts
    against a dead port take over 10 s of backoff (``tanx-async --deadline 1 watch`` took 16 s);
    within 1 s only the first few are made. Once open, the stream is not cut by it."""
    with running_sandbox(seed=8) as sb:
        url = sb.server.url
    async with AsyncTanxSession(base_url=url, access_token=sb.access, deadline=1) as session:
        started = time.monotonic()
        with pytest.raises(StreamError, match=r"within 1 s after (\d+) attempts?") as failed:
            async with session.stream():
                pass  # pragma: no cover - never entered
        elapsed = time.monotonic() - started
    made = int(re.search(r"after (\d+) attempt", str(failed.value)).group(1))  # type: ignore[union-attr]
    assert 1 <= made < constants.STREAM_MAX_RECONNECTS + 1
    assert elapsed < 6.0  # the deadline and a loaded machine's slack, not the 10 s backoff
    with running_sandbox(seed=8) as sb:
        session = AsyncTanxSession(base_url=sb.server.url, access_token=sb.access, deadline=0.5)
        async with session, session.stream() as events:
            await anyio.sleep(0.8)  # longer than the deadline: still open
            assert events.connected


async def test_a_stream_that_cannot_connect_gives_up_after_its_attempts() -> None:
    with running_sandbox(seed=8) as sb:
        url = sb.server.url
    # The server is gone: nothing listens on its port any more.
    async with AsyncTanxSession(base_url=url, access_token=sb.access) as session:
        with pytest.raises(StreamError, match="after 2 attempts"):
            async with session.stream(max_reconnects=1):
                pass  # pragma: no cover - never entered


async def test_duplicated_and_reordered_updates_do_not_confuse_confirmation() -> None:
    with running_sandbox(seed=9, cancel_delay=0.01) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 200)
        faults = sb.exchange.ws.faults
        faults.duplicate_rate, faults.reorder_rate = 0.3, 0.3
        async with sb.session() as session:
            outcomes = await session.orders.cancel_many(ids, concurrency=32, confirm=True)
    assert {o.status for o in outcomes} == {CancelStatus.CANCELLED}
    assert mismatches(sb.exchange, outcomes, dict.fromkeys(ids, "wait")) == []
    assert sb.exchange.ws.pushed > 200  # the duplicates were sent


async def test_confirm_by_push_reports_a_fill_as_already_closed() -> None:
    """A cancel is queued, then the order fills before the cancel takes effect: the ``done``
    push settles it as already closed, not cancelled (the evidence rule)."""
    with running_sandbox(seed=10, cancel_delay=60.0) as sb:
        (oid,) = sb.exchange.seed_orders(sb.uid, 1)

        queued = anyio.Event()

        def on_event(event: RequestEvent) -> None:
            if event.kind == "response" and event.path == "/sapi/v1/orders/cancel/":
                queued.set()

        async def fill_once_queued() -> None:
            with anyio.fail_after(WAIT):
                await queued.wait()
            order = sb.exchange.order(oid)
            assert order.cancel_queued
            sb.exchange.update_order(
                oid, state="done", executed_volume=order.origin_volume, remaining_volume="0.0"
            )

        async with sb.session(on_event=on_event) as session, anyio.create_task_group() as tg:
            tg.start_soon(fill_once_queued)
            (outcome,) = await session.orders.cancel_many([oid], confirm=True, confirm_with="stream")
    assert outcome.status is CancelStatus.ALREADY_CLOSED and outcome.ok
    assert outcome.order is not None and outcome.order.state == OrderState.DONE
    assert lookups(sb.exchange) == 0


async def test_confirm_with_stream_never_polls_and_says_so_when_unconfirmed() -> None:
    with running_sandbox(seed=11, cancel_delay=60.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 3)
        async with sb.session() as session:
            outcomes = await session.orders.cancel_many(
                ids, confirm=True, confirm_with="stream", confirm_timeout=0.3
            )
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
    assert all(not o.ok and o.error is not None for o in outcomes)
    assert lookups(sb.exchange) == 0


# -- the bar: 2,000 cancels -----------------------------------------------------------------


@pytest.mark.parametrize("drops", [0, 3])
async def test_2000_cancels_confirmed_by_push(drops: int) -> None:
    """2,000 cancels with confirm=True all end ``cancelled``. Without faults at most 1 % of the
    ids need a look-up; with the socket dropped ``drops`` times mid-batch the look-ups stay
    bounded by the orders waiting at each gap (the figure is printed for the report)."""
    with running_sandbox(seed=12, cancel_delay=0.01) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 2000)
        faults = sb.exchange.ws.faults
        if drops:
            faults.drop_after, faults.times = 400, drops
        async with sb.session() as session:
            outcomes = await session.orders.cancel_many(ids, confirm=True)
            workers = session.max_concurrency
    assert collections.Counter(o.status for o in outcomes) == {CancelStatus.CANCELLED: 2000}
    assert mismatches(sb.exchange, outcomes, dict.fromkeys(ids, "wait")) == []
    count = lookups(sb.exchange)
    print(f"\n2000 cancels, {drops} stream drops: {count} GET look-ups, {sb.exchange.ws.accepted} connects")
    if drops:
        # (The batch may end before the last drop: the sending never waits for the pushes.)
        gaps = sb.exchange.ws.accepted - 1
        assert 1 <= gaps <= drops
        # At most one look-up per order waiting at each gap, plus the polls after a push window.
        assert count <= (gaps + 1) * len(ids)
        assert max(collections.Counter(r.path for r in gets(sb.exchange)).values()) <= gaps + 2
        del workers
    else:
        assert count <= 20


# -- trio -----------------------------------------------------------------------------------


def test_stream_and_push_confirmation_under_trio() -> None:
    trio = pytest.importorskip("trio")
    with running_sandbox(seed=13, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 60)

        async def main() -> tuple[list[CancelStatus], list[StreamEvent]]:
            async with sb.session() as session:
                outcomes = await session.orders.cancel_many(ids[:50], confirm=True, confirm_with="stream")
                async with session.stream() as events:
                    sb.exchange.ws.drop_all()
                    gap = await take(events, 1, StreamGap)
                    await session.orders.cancel(ids[50])
                    pushed = await take(events, 1, OrderUpdate)
                return [o.status for o in outcomes], gap + pushed

        statuses, got = trio.run(main)
    assert statuses == [CancelStatus.CANCELLED] * 50
    assert isinstance(got[0], StreamGap) and isinstance(got[1], OrderUpdate) and got[1].id == ids[50]
    assert lookups(sb.exchange) == 0


# -- secrets --------------------------------------------------------------------------------


async def test_the_stream_url_and_token_never_leak(captured: Capture) -> None:
    """The stream URL holds the access token: it appears in no log line (DEBUG on), repr,
    event or exception, through connects, refusals, drops, stalls, renewals and gaps."""
    texts: list[str] = []
    seen: list[RequestEvent] = []
    tokens: list[str] = []
    with running_sandbox(seed=14, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 40)
        hub = sb.exchange.ws
        async with sb.session(on_event=seen.append) as session:
            tokens.append(auth_of(session).access or "")
            async with session.stream(heartbeat=0.1) as events:
                texts.append(repr(events))
                hub.faults.stall_after, hub.faults.times = 0, 1
                sb.exchange.update_order(ids[0], state="cancel")
                await take(events, 1, StreamGap)
                sb.exchange.expire_access_tokens()
                hub.drop_all()
                await take(events, 1, StreamGap)  # reconnected with a refreshed token
                tokens.append(auth_of(session).access or "")
                texts.append(repr(events))
            outcomes = await session.orders.cancel_many(ids[1:], confirm=True)
            texts += [repr(o) for o in outcomes]
            hub.faults.refuse_tokens = True
            with pytest.raises(StreamRefusedError) as refused:
                async with session.stream():
                    pass  # pragma: no cover - never entered
            texts += error_texts(refused.value)
            tokens.append(auth_of(session).access or "")
            hub.faults.refuse_tokens = False
            hub.faults.refuse_subscription = "refused"
            with pytest.raises(StreamRefusedError) as refused_sub:
                async with session.stream():
                    pass  # pragma: no cover - never entered
            texts += error_texts(refused_sub.value)
        texts += [repr(r) for r in sb.exchange.requests]
    texts += [repr(e) for e in seen] + captured.texts()
    assert len(set(tokens)) == 3  # three different tokens were used
    assert any("/private" in t for t in captured.texts())  # the stream did log (without its query)
    assert leaks([*tokens, sb.refresh], texts) == []
    assert not any("auth_header=" in t and "<redacted>" not in t for t in texts)


async def test_uvicorn_serves_the_stream_too() -> None:
    """The stream endpoint is plain ASGI: uvicorn serves it (socket faults degrade there)."""
    pytest.importorskip("uvicorn")
    from tanx_async.testing import UvicornSandboxServer

    exchange = SandboxExchange(seed=15, cancel_delay=0.0)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 20)
    with UvicornSandboxServer(exchange) as server:
        async with AsyncTanxSession(
            base_url=server.url, access_token=access, refresh_token=refresh
        ) as session:
            outcomes = await session.orders.cancel_many(ids, confirm=True, confirm_with="stream")
            exchange.ws.faults.refuse_tokens = True
            with pytest.raises(StreamRefusedError) as refused:
                async with session.stream():
                    pass  # pragma: no cover - never entered
    assert {o.status for o in outcomes} == {CancelStatus.CANCELLED}
    assert refused.value.status_code == 401 and lookups(exchange) == 0


async def test_the_stream_over_tls_verifies_like_rest(self_signed: tuple[Path, Path]) -> None:
    """wss through a TLS terminator in front of the sandbox: an untrusted certificate is
    refused by default, and ``verify=`` (here a context trusting it) is honoured as for REST."""
    cert, key = self_signed
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(cert, key)
    with running_sandbox(seed=16, cancel_delay=0.0) as sb:
        (oid,) = sb.exchange.seed_orders(sb.uid, 1)
        upstream = int(sb.server.url.rsplit(":", 1)[1])

        async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                while data := await reader.read(65536):
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", upstream)
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))

        terminator = await asyncio.start_server(relay, "127.0.0.1", 0, ssl=server_context)
        url = f"https://127.0.0.1:{terminator.sockets[0].getsockname()[1]}"
        try:
            async with AsyncTanxSession(base_url=url, access_token=sb.access) as session:
                with pytest.raises(StreamError, match="SSL") as refused:
                    async with session.stream(max_reconnects=0):
                        pass  # pragma: no cover - never entered
            trusted = ssl.create_default_context(cafile=str(cert))
            async with (
                AsyncTanxSession(base_url=url, access_token=sb.access, verify=trusted) as session,
                session.stream() as events,
            ):
                assert events.url == f"wss://127.0.0.1:{url.rsplit(':', 1)[1]}/private"
                sb.exchange.update_order(oid, state="cancel")
                (event,) = await take(events, 1, OrderUpdate)
        finally:
            terminator.close()
    assert isinstance(event, OrderUpdate) and event.id == oid
    assert "wss://" not in str(refused.value)  # no URL in the error


async def test_a_token_about_to_expire_is_refreshed_before_connecting() -> None:
    with running_sandbox(seed=17) as sb:
        access, refresh = sb.exchange.issue_tokens(sb.uid, access_ttl=60)
        async with AsyncTanxSession(
            base_url=sb.server.url, access_token=access, refresh_token=refresh
        ) as session:
            sb.exchange.clock.advance(45)  # 15 s left on the exchange's clock: inside the 30 s skew
            assert await session.health()  # its Date header tells the session the exchange's clock
            async with session.stream():
                renewed = auth_of(session).access
    (handshake,) = [r for r in sb.exchange.requests if r.path == "/private"]
    assert sb.exchange.refresh_count == 1 and renewed is not None and renewed != access
    assert handshake.result == "ws_open" and handshake.token == token_fingerprint(renewed)


async def test_a_slow_consumer_gets_a_gap_not_unbounded_memory() -> None:
    """Against the sandbox: 60 updates arrive while nobody reads a stream whose buffer holds 5;
    the reader then finds the first 5, a gap counting the other 55, then new updates again."""
    with running_sandbox(seed=18, cancel_delay=0.0) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 61)
        async with sb.session() as session, session.stream(streams=("order",), buffer=5) as events:
            for oid in ids[:60]:
                sb.exchange.update_order(oid, state="cancel")
            buffer = events._buffer
            for _ in range(int(WAIT / 0.01)):  # bounded: until the client has read all 60
                if len(buffer._items) + buffer._dropped >= 60:
                    break
                await anyio.sleep(0.01)
            assert len(buffer._items) == 5 and buffer._dropped == 55 and buffer.overflows == 1
            got = await take(events, 6)  # the 5 kept, then the gap
            sb.exchange.update_order(ids[60], state="cancel")
            (later,) = await take(events, 1)  # room again: nothing is dropped any more
    kept = [e for e in got if isinstance(e, OrderUpdate)]
    assert [e.id for e in kept] == ids[:5]
    gap = got[5]
    assert isinstance(gap, StreamGap) and gap.reason == "overflow" and gap.dropped == 55
    assert isinstance(later, OrderUpdate) and later.id == ids[60]


@contextlib.contextmanager
def _silent_listener() -> Any:
    """A loopback port that takes TCP connections (the kernel's backlog) and never answers."""
    import socket

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    try:
        yield f"ws://127.0.0.1:{sock.getsockname()[1]}/private"
    finally:
        sock.close()


async def test_a_stream_that_never_answers_does_not_eat_the_batch_deadline() -> None:
    """``confirm=True`` (auto) with a stream endpoint that hangs: the cancels still go out
    within the batch deadline, confirmed by polling, instead of the stream's opening taking the
    whole deadline and every order being skipped."""
    with running_sandbox(seed=12) as sb, _silent_listener() as silent:
        ids = sb.exchange.seed_orders(sb.uid, 5)
        more = sb.exchange.seed_orders(sb.uid, 5)
        async with sb.session(stream_url=silent, allow_insecure_http=True) as session:
            started = time.monotonic()
            outcomes = await session.orders.cancel_many(ids, confirm=True, deadline=2.0)
            elapsed = time.monotonic() - started
            # Without a batch deadline: the stream gets CONFIRM_STREAM_OPEN_WITHIN (1 s), not
            # its 2 attempts of 3 s (the connect timeout) each.
            started = time.monotonic()
            others = await session.orders.cancel_many(more, confirm=True)
            unbounded = time.monotonic() - started
    assert {o.status for o in outcomes} == {CancelStatus.CANCELLED}
    assert elapsed < 2.0 + 1.0  # the batch deadline, and slack for a loaded machine
    assert {o.status for o in others} == {CancelStatus.CANCELLED}
    # (Not the stream's 2 attempts of 3 s.)
    assert constants.CONFIRM_STREAM_OPEN_WITHIN <= unbounded < constants.CONFIRM_STREAM_OPEN_WITHIN + 3.0


async def test_errors_leave_the_stream_block_as_themselves() -> None:
    """Neither the block's own exception nor the stream's (a refusal on reconnecting) comes out
    wrapped in an exception group: ``except StreamError`` around the block, as documented,
    catches it (they came out as ``ExceptionGroup``, and ``tanx-async watch | head`` crashed)."""
    with running_sandbox(seed=3) as sb:
        async with sb.session() as session:
            with pytest.raises(ValueError, match="mine"):
                async with session.stream():
                    raise ValueError("mine")
            with pytest.raises(StreamRefusedError):
                async with session.stream() as events:
                    sb.exchange.ws.faults.refuse_tokens = True
                    sb.exchange.ws.drop_all()
                    with anyio.fail_after(WAIT):
                        async for _ in events:
                            pass
            # A cancellation from outside still leaves as a cancellation (the timeout's).
            sb.exchange.ws.faults.refuse_tokens = False
            with anyio.move_on_after(0.2) as scope:
                async with session.stream() as events:
                    async for _ in events:
                        pass
            assert scope.cancelled_caught
