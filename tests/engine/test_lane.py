"""The batch engine's fast path (``_lane``): cancels sent and settled in the transport's
callbacks while every answer is a plain success, handed to the worker task the moment one is
not. Against the sandbox on a loopback socket, with the built-in transport.

What it must show: the fast path really carries the batch (counted at ``Express.send``), an
answer that is not a success is taken over from where the lane left it (never sent twice), a
token expiring mid-batch is renewed once, the deadline and the consumer's pace are honoured, and
no connection is left checked out. The batch, fault, outage and cancellation suites run on both
paths as well (``batch_path`` and ``BATCH_TRANSPORTS``).
"""

from __future__ import annotations

import asyncio
import asyncio.selector_events
import contextlib
import gc
import json
import weakref
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import anyio
import pytest

from tanx_async import BatchTimeoutError, CancelOutcome, CancelStatus
from tests.conftest import until
from tests.internals import Batch, Channel, Express, Lane, in_use, sender_of
from tests.sandbox import Sandbox, mismatches, processed_cancels, running_sandbox

CANCEL_PATH = "/sapi/v1/orders/cancel/"


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=11, cancel_delay=0.0) as sb:
        yield sb


@pytest.fixture
def express_sends(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How many attempts the fast path made (``sent``) and declined (``declined``)."""
    counts: Counter[str] = Counter()
    send = Express.send

    def counting(self: Express, content: bytes, record: Any, started: float) -> bool:
        sent = send(self, content, record, started)
        counts["sent" if sent else "declined"] += 1
        return sent

    monkeypatch.setattr(Express, "send", counting)
    return counts


@pytest.fixture
def stops(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Why lanes stopped: ``end`` (ids ran out), ``answer`` (not a success: taken over),
    ``declined`` (the next cancel could not go at once), ``error``."""
    counts: Counter[str] = Counter()
    stopped = Lane.stopped

    async def counting(self: Lane) -> Any:
        stop = await stopped(self)
        kind = (
            "error"
            if stop.error is not None
            else "end"
            if stop.oid is None
            else "answer"
            if stop.first is not None
            else "declined"
        )
        counts[kind] += 1
        return stop

    monkeypatch.setattr(Lane, "stopped", counting)
    return counts


def cancels_sent(sandbox: Sandbox) -> Counter[int]:
    """How many cancel requests of each order the exchange received."""
    sent: Counter[int] = Counter()
    for record in sandbox.exchange.requests:
        if record.method == "POST" and record.path == CANCEL_PATH and isinstance(record.body, dict):
            sent[int(record.body["order_id"])] += 1
    return sent


async def test_a_plain_batch_runs_on_the_fast_path(
    sandbox: Sandbox, express_sends: Counter[str], stops: Counter[str]
) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 300)
    async with sandbox.session() as session:
        assert await session.warm_up(16) == 16
        outcomes = await session.orders.cancel_many(ids, concurrency=16)
        assert in_use(session) == 0  # every lane gave its connection back
    assert [o.order_id for o in outcomes] == ids
    assert all(o.status is CancelStatus.QUEUED and o.attempts == 1 for o in outcomes)
    assert express_sends["sent"] == 300  # every cancel on the fast path: the pool was warm
    assert stops == {"end": 16}  # each worker's lane ran until the ids ran out
    assert cancels_sent(sandbox) == dict.fromkeys(ids, 1)
    assert {sandbox.exchange.order(i).state for i in ids} == {"cancel"}
    assert outcomes[0].order is not None and outcomes[0].order.id == ids[0]  # the echo, lazily


async def test_an_answer_that_is_not_a_success_is_taken_over_not_sent_again(
    sandbox: Sandbox, express_sends: Counter[str], stops: Counter[str]
) -> None:
    """Refusals (a filled order, an unknown id) and 5xx answers arrive on the fast path; the
    worker goes on from each (a look-up, a retry) without sending that attempt again: the
    exchange received exactly as many cancels of each order as its outcome counts."""
    exchange = sandbox.exchange
    open_ids = exchange.seed_orders(sandbox.uid, 120)
    done = exchange.seed_orders(sandbox.uid, 10, state="done")
    unknown = list(range(990_000_001, 990_000_011))
    ids = open_ids[:60] + done + unknown + open_ids[60:]
    before = {oid: exchange.order(oid).state for oid in open_ids + done}
    async with sandbox.session(max_retries=3) as session:
        await session.warm_up(8)
        exchange.faults.error_rate = 0.15
        exchange.faults.error_statuses = (503,)
        outcomes = await session.orders.cancel_many(ids, concurrency=8)
        exchange.faults.error_rate = 0.0
        assert in_use(session) == 0
    assert mismatches(exchange, outcomes, before) == []
    statuses = Counter(o.status for o in outcomes)
    assert statuses[CancelStatus.ALREADY_CLOSED] == 10 and statuses[CancelStatus.NOT_FOUND] == 10
    assert stops["answer"] > 20  # the refusals and the 503s were taken over from the lanes
    assert express_sends["sent"] > len(ids) // 2
    sent = cancels_sent(sandbox)
    assert {o.order_id: o.attempts for o in outcomes} == {oid: sent[oid] for oid in ids}
    assert any(o.attempts > 1 for o in outcomes)  # retried after a 503


async def test_a_token_expiring_mid_batch_is_renewed_once(sandbox: Sandbox, stops: Counter[str]) -> None:
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 200)
    got: list[CancelOutcome] = []
    async with sandbox.session() as session:
        await session.warm_up(16)
        async with contextlib.aclosing(session.orders.cancel_iter(ids, concurrency=16)) as stream:
            async for outcome in stream:
                got.append(outcome)
                if len(got) == 50:
                    exchange.expire_access_tokens()  # the lanes' next answers are 401s
    assert sorted(o.order_id for o in got) == sorted(ids)
    assert all(o.status is CancelStatus.QUEUED for o in got)
    refreshes = [r for r in exchange.requests if r.path.endswith("/token/refresh/")]
    assert len(refreshes) == 1  # one renewal for every lane that met the expiry
    unauthorized = [r for r in exchange.requests if r.status == 401]
    assert unauthorized and stops["answer"] >= 1
    assert sum(o.attempts for o in got) == sum(cancels_sent(sandbox).values())


async def test_the_batch_deadline_strikes_the_lanes_in_flight(
    sandbox: Sandbox, express_sends: Counter[str]
) -> None:
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 40)
    async with sandbox.session() as session:
        await session.warm_up(8)
        exchange.faults.latency = 5.0
        outcomes = await session.orders.cancel_many(ids, concurrency=8, deadline=0.3)
        exchange.faults.latency = 0.0
        assert in_use(session) == 0  # the aborted lanes' connections were closed, not kept
        again = await session.orders.cancel_many(ids[-2:])
    assert express_sends["sent"] >= 8  # the first cancel of each worker went on the fast path
    counts = Counter(o.status for o in outcomes)
    assert counts == {CancelStatus.UNKNOWN: 8, CancelStatus.SKIPPED: 32}
    assert all(isinstance(o.error, BatchTimeoutError) for o in outcomes)
    assert [o.error.sent for o in outcomes if isinstance(o.error, BatchTimeoutError)] == [
        o.status is CancelStatus.UNKNOWN for o in outcomes
    ]
    assert [o.status for o in again] == [CancelStatus.QUEUED] * 2


async def test_a_slow_consumer_never_makes_the_lanes_wait(sandbox: Sandbox, stops: Counter[str]) -> None:
    """A sized input's outcomes wait for the consumer in a buffer of one per id: the lanes
    carry every cancel to the end while the consumer is still at the first outcomes."""
    ids = sandbox.exchange.seed_orders(sandbox.uid, 120)
    got: list[int] = []
    sent_when_first_read = -1
    async with sandbox.session() as session:
        await session.warm_up(8)
        async with contextlib.aclosing(session.orders.cancel_iter(ids, concurrency=8)) as stream:
            async for outcome in stream:
                assert outcome.status is CancelStatus.QUEUED
                if not got:
                    await anyio.sleep(0.5)  # the consumer is behind from the start
                    sent_when_first_read = len(processed_cancels(sandbox.exchange))
                got.append(outcome.order_id)
                await anyio.sleep(0.002)
        assert in_use(session) == 0
    assert sorted(got) == sorted(ids)  # each once
    assert sent_when_first_read == len(ids)  # all on the wire while the consumer slept
    assert stops["end"] >= 1 and stops["error"] == 0


async def test_a_lazy_source_that_fails_mid_batch_stops_the_feed_then_raises_its_error(
    sandbox: Sandbox, batch_path: str
) -> None:
    """As an invalid id does: every id already taken gets its outcome, then the source's own
    error is raised as it is (not wrapped in exception groups), on both paths."""
    ids = sandbox.exchange.seed_orders(sandbox.uid, 60)

    def source() -> Iterator[int]:
        yield from ids[:40]
        raise RuntimeError("the id feed broke")

    got: list[CancelOutcome] = []
    async with sandbox.session() as session:
        await session.warm_up(4)
        with pytest.raises(RuntimeError, match="the id feed broke"):
            async with contextlib.aclosing(session.orders.cancel_iter(source(), concurrency=4)) as stream:
                async for outcome in stream:
                    got.append(outcome)
        assert in_use(session) == 0
    assert sorted(o.order_id for o in got) == sorted(ids[:40])
    assert all(o.status is CancelStatus.QUEUED for o in got)
    assert {sandbox.exchange.order(i).state for i in ids[40:]} == {"wait"}


async def test_the_fast_path_sends_what_the_task_path_sends(
    sandbox: Sandbox, express_sends: Counter[str]
) -> None:
    """The same request on the wire: method, path, body and token."""
    [first, second] = sandbox.exchange.seed_orders(sandbox.uid, 2)
    async with sandbox.session() as session:
        await session.orders.cancel_many([first])  # cold pool: the task path
        await session.orders.cancel_many([second])  # warm connection: the fast path
    assert express_sends == {"declined": 1, "sent": 1}
    one, two = (r for r in sandbox.exchange.requests if r.path == CANCEL_PATH)
    assert (one.method, json.dumps(one.body)) == ("POST", json.dumps({"order_id": first}))
    assert (two.method, json.dumps(two.body)) == ("POST", json.dumps({"order_id": second}))
    assert one.token == two.token


async def test_a_deadline_striking_as_answers_arrive_claims_nothing_false(
    sandbox: Sandbox, batch_path: str
) -> None:
    """The batch deadline lands among the answers (held by the pacer, being handled, just
    handled): an order whose cancel the exchange processed is never failed or skipped, one it
    did not is never queued, and every order has one outcome."""
    exchange = sandbox.exchange
    async with sandbox.session() as session:
        await session.warm_up(8)
        for step in range(10):
            ids = exchange.seed_orders(sandbox.uid, 40)
            exchange.faults.latency, exchange.faults.latency_jitter = 0.04, 0.04
            outcomes = await session.orders.cancel_many(ids, concurrency=8, deadline=0.05 + step * 0.01)
            exchange.faults.latency = exchange.faults.latency_jitter = 0.0
            assert [o.order_id for o in outcomes] == ids
            done = processed_cancels(sandbox.exchange)
            for o in outcomes:
                if o.status in (CancelStatus.FAILED, CancelStatus.SKIPPED):
                    assert o.order_id not in done, f"{o.order_id}: {o.status.value} but it was processed"
                    assert isinstance(o.error, BatchTimeoutError) and not o.error.sent
                if o.ok:
                    assert o.order_id in done, f"{o.order_id}: {o.status.value} but nothing was processed"
            # The answers still on their way arrive before the next round (bounded: a leaked
            # connection never comes back).
            for _ in range(100):
                if in_use(session) == 0:
                    break
                await anyio.sleep(0.02)
            assert in_use(session) == 0


async def test_an_on_event_that_raises_fails_nothing_and_hangs_nothing(
    sandbox: Sandbox, batch_path: str, caplog: pytest.LogCaptureFixture
) -> None:
    """``on_event`` is the caller's code: what it raises is logged and ignored on both paths (on
    the fast path it runs on the loop's next turn, never inside the transport's callback). A
    broken metrics hook never fails a cancel; the batch ends and no connection stays out."""

    def on_event(event: Any) -> None:
        if event.kind == "response" and event.path == CANCEL_PATH:
            raise RuntimeError("a broken event handler")

    ids = sandbox.exchange.seed_orders(sandbox.uid, 30)
    async with sandbox.session(on_event=on_event) as session:
        await session.warm_up(4)
        with anyio.fail_after(10):
            outcomes = await session.orders.cancel_many(ids, concurrency=4)
        await anyio.lowlevel.checkpoint()  # (the fast path's last events are told on the next turn)
        assert in_use(session) == 0
    assert [o.order_id for o in outcomes] == ids
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
    assert {sandbox.exchange.order(i).state for i in ids} == {"cancel"}
    raised = [r for r in caplog.records if "on_event raised" in r.getMessage()]
    assert len(raised) == len(ids)
    assert all(r.exc_info and "a broken event handler" in str(r.exc_info[1]) for r in raised)


async def test_a_token_that_cannot_be_sent_fails_every_order_without_a_leak(
    sandbox: Sandbox, batch_path: str
) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 12)
    async with sandbox.session(access_token=sandbox.access + "\n", refresh_token=None) as session:
        await session.warm_up(4)
        outcomes = await session.orders.cancel_many(ids, concurrency=4)
        assert in_use(session) == 0
    assert {o.status for o in outcomes} == {CancelStatus.FAILED}
    assert all("not sent" in str(o.error) for o in outcomes)
    assert processed_cancels(sandbox.exchange) == set()


@pytest.mark.parametrize("where", ["timer", "write"])
@pytest.mark.parametrize(("orders", "concurrency", "errors"), [(24, 4, 3), (1, 1, 1)])
async def test_an_error_while_sending_means_nothing_was_sent(
    sandbox: Sandbox,
    batch_path: str,
    monkeypatch: pytest.MonkeyPatch,
    where: str,
    orders: int,
    concurrency: int,
    errors: int,
) -> None:
    """``Connection.start`` arms the read timeout first and writes last, so an error there (in
    arming the timer, or a write that refuses) means nothing was written: the order is sent
    again the ordinary way and processed once, and neither a read timeout nor a connection is
    left behind. (When the timer came after the write, an error there had the cancel written,
    taken as not sent, and sent a second time.) On the fast path the worker sends it again at
    once; on the task path the error leaves the order unknown and the settling pass sends it.
    One order alone shows the connection given back (no later request on it hides a leak)."""
    failures = {"left": errors}

    def failing(original: Any) -> Any:
        def fail_then_call(self: Any, *args: Any) -> Any:
            if failures["left"] and (where == "timer" or b"/cancel/" in bytes(args[0][:80])):
                failures["left"] -= 1
                raise RuntimeError("an error while sending")
            return original(self, *args)

        return fail_then_call

    ids = sandbox.exchange.seed_orders(sandbox.uid, orders)
    async with sandbox.session() as session:
        await session.warm_up(concurrency)
        deadlines = sender_of(session)._deadlines
        if where == "timer":
            monkeypatch.setattr(type(deadlines), "add", failing(type(deadlines).add))
        else:
            transport = asyncio.selector_events._SelectorSocketTransport  # type: ignore[attr-defined]
            monkeypatch.setattr(transport, "write", failing(transport.write))
        with anyio.fail_after(10):
            outcomes = await session.orders.cancel_many(ids, concurrency=concurrency)
        assert in_use(session) == 0
        assert not deadlines._conns  # no read timeout left armed
    assert failures["left"] == 0
    assert [o.order_id for o in outcomes] == ids
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
    assert cancels_sent(sandbox) == Counter(dict.fromkeys(ids, 1))  # each processed once


class _StubExpress:
    """Stands in for ``Pipeline.express``'s ``Express``: records what the lane asks of it."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.released = self.aborted = 0

    def send(self, content: bytes, record: Any, started: float) -> bool:
        self.sent.append(content)
        record.count += 1
        record.sending = True
        return True

    def release(self) -> None:
        self.released += 1

    def abort(self) -> None:
        self.aborted += 1

    def first(self) -> Any:
        raise AssertionError("no worker takes over in this test")


class _StubPipeline:
    def __init__(self) -> None:
        self.express_ = _StubExpress()

    def express(self, *args: Any) -> _StubExpress:
        return self.express_


async def _answered_after_the_worker_was_cancelled(
    make: Callable[..., CancelOutcome], body: dict[str, Any], taken: list[int]
) -> tuple[_StubPipeline, dict[int, CancelOutcome], Any]:
    """The race the batch deadline can meet: the worker is cancelled, and before it runs again
    the transport hands the lane its answer (``body``, a 2xx success envelope; ``Express``
    has cleared the record's ``sending``, as it does for one). Returns the stub pipeline, the
    outcomes kept for the batch's expiry, and the order's record."""
    from tests.internals import Attempts, httpx

    pipeline = _StubPipeline()
    unsent: dict[int, CancelOutcome] = {}

    class Owner:
        """The batch, as a lane sees it: only ``keep`` may be called in this race."""

        def begin(self) -> tuple[int, Any] | None:
            taken.append(1)
            return 2, Attempts()

        def finished(self, result: CancelOutcome, record: Any, started: float) -> None:
            raise AssertionError("nothing is handed over after the worker was cancelled")

        def keep(self, result: CancelOutcome) -> None:
            unsent[result.order_id] = result

    lane = Lane(
        pipeline,  # type: ignore[arg-type]
        Owner(),
        timeout=httpx.Timeout(5.0),
        per_order=None,
        make=make,
    )
    record = Attempts()
    assert lane.send(1, record, 0.0)
    waiting = asyncio.get_running_loop().create_task(lane.stopped())
    await asyncio.sleep(0)  # the worker waits for its lane
    waiting.cancel()  # the deadline: cancelled, not yet run again
    record.sending = False
    lane._answered(body, type("Answer", (), {"content": b"{}"})())
    with pytest.raises(asyncio.CancelledError):
        await waiting
    return pipeline, unsent, record


async def test_an_answer_handled_after_the_worker_was_cancelled_sends_nothing_more() -> None:
    """The lane must send nothing more, and keep what the answer proves (a success's outcome)
    for the batch's expiry; it must not take another id."""

    def make(oid: int, record: Any, started: float, body: Any, content: bytes) -> CancelOutcome:
        return CancelOutcome(order_id=oid, status=CancelStatus.QUEUED, attempts=record.count)

    taken: list[int] = []
    pipeline, unsent, _ = await _answered_after_the_worker_was_cancelled(
        make, {"status": "success", "payload": {}}, taken
    )
    assert pipeline.express_.sent == [b'{"order_id":1}']  # nothing sent after the cancel
    assert taken == []  # no id taken (it stays unsent: the expiry says skipped)
    assert list(unsent) == [1] and unsent[1].status is CancelStatus.QUEUED  # the 2xx kept
    assert pipeline.express_.released >= 1  # the connection went back (aborting found nothing)


async def test_a_2xx_it_cannot_read_after_the_worker_was_cancelled_leaves_the_order_sent() -> None:
    """The same race, with a 2xx whose payload echoes another order (``queued`` raises). The
    exchange answered, so the cancel may have been processed: the record must still say so,
    or the batch's expiry would report the order failed and not sent."""
    from tanx_async import ResponseValidationError

    def make(oid: int, record: Any, started: float, body: Any, content: bytes) -> CancelOutcome:
        raise ResponseValidationError("the answer echoes order 2", body=content)

    taken: list[int] = []
    pipeline, unsent, record = await _answered_after_the_worker_was_cancelled(
        make, {"status": "success", "payload": {"id": 2}}, taken
    )
    assert pipeline.express_.sent == [b'{"order_id":1}'] and taken == []
    assert unsent == {}
    assert record.ambiguous  # what ``Batch.remaining`` reads to say unknown rather than failed


@contextlib.contextmanager
def cyclic_garbage() -> Iterator[Counter[str]]:
    """The batch engine's objects made in the block that only the cyclic garbage collector could
    free (it is off meanwhile), by type, filled in when the block ends."""
    found: Counter[str] = Counter()
    engine = (Batch, Lane, Express, Channel, CancelOutcome)
    gc.collect()
    gc.disable()
    try:
        yield found
        gc.set_debug(gc.DEBUG_SAVEALL)
        gc.collect()
        found.update(type(o).__name__ for o in gc.garbage if isinstance(o, engine))
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()


@pytest.mark.parametrize(
    "ending",
    ["cancel_many's ids ran out", "cancel_iter's ids ran out", "the batch deadline", "the consumer left"],
)
async def test_a_finished_batch_is_freed_without_the_cyclic_collector(
    sandbox: Sandbox, express_sends: Counter[str], ending: str
) -> None:
    """A lane and its express hold each other, and the lane holds its batch. Each worker closes
    its lane however it ends, so a finished batch, its outcomes with it, goes the moment the
    caller drops them: not at the next full garbage collection, which a market maker's repeated
    bursts would otherwise wait for with every outcome of every burst in memory (the batch lives
    through the burst, so it is in the oldest generation by the time it ends).

    A batch ended by cancellation leaves Python's own cycles behind (a cancelled task's error,
    its traceback and the frames in it, the worker's with its lane among them): young, gone at
    the next collection of the youngest generation, and holding none of the outcomes."""
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 60)
    async with sandbox.session() as session:
        await session.warm_up(8)
        with cyclic_garbage() as garbage:
            outcomes: list[CancelOutcome] = []
            if ending == "cancel_many's ids ran out":
                outcomes = await session.orders.cancel_many(ids, concurrency=8)
            elif ending == "the batch deadline":
                exchange.faults.latency = 5.0
                outcomes = await session.orders.cancel_many(ids, concurrency=8, deadline=0.3)
                exchange.faults.latency = 0.0
                assert Counter(o.status for o in outcomes) == {
                    CancelStatus.UNKNOWN: 8,
                    CancelStatus.SKIPPED: 52,
                }
            else:
                async with contextlib.aclosing(session.orders.cancel_iter(ids, concurrency=8)) as stream:
                    async for outcome in stream:
                        outcomes.append(outcome)
                        if ending == "the consumer left" and len(outcomes) == 20:
                            break
                del outcome, stream
                # Left early: the cancels already sent finish in the session's own task.
                await until(lambda: in_use(session) == 0)
            if "ran out" in ending:
                assert len(outcomes) == 60 and {o.status for o in outcomes} == {CancelStatus.QUEUED}
            refs = [weakref.ref(o) for o in outcomes]
            del outcomes
            assert [ref() for ref in refs] == [None] * len(refs)  # freed as they were dropped
        assert express_sends["sent"] >= 8  # the lanes carried the batch
        assert in_use(session) == 0
    if "ran out" in ending:
        assert garbage == {}
    else:
        assert garbage["Express"] == garbage["Channel"] == 0, garbage
