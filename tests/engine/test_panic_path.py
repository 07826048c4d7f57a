"""The panic path waits on nothing but the exchange (issue 28), on asyncio and on trio.

1. ``confirm=True`` never holds the sending back: every cancel is on the wire while the exchange
   has applied none of them yet, and a deadline shorter than the confirmations skips nothing.
2. A slow consumer never holds the sending back: 0 skipped, each id exactly once; a lazy
   input's buffer is capped as documented.
3. Leaving ``cancel_iter`` early (``return``, ``break``, an exception) never cancels the caller.
4. Cancelling the task awaiting ``cancel_many`` keeps every outcome known (``on_outcome``), and
   ``CancelIterator.stop()`` returns one for every id not yet yielded.
5. ``session.aclose()`` ends a stream its consumer is reading (``SessionClosedError``), its task
   and socket with it, and a ``cancel_iter`` batch still running.
"""

from __future__ import annotations

import contextlib
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import anyio
import pytest

from tanx_async import (
    BatchInterruptedError,
    CancelNotConfirmedError,
    CancelOutcome,
    CancelStatus,
    SessionClosedError,
    StreamError,
)
from tanx_async._confirm import ConfirmWith
from tests.conftest import until
from tests.internals import constants, in_use
from tests.sandbox import Sandbox, processed_cancels, running_sandbox

BACKENDS = ["asyncio", "trio"]


def in_flight_of(iterator: Any) -> dict[int, Any]:
    """The ids a ``cancel_iter`` batch has taken and not handed over yet."""
    return iterator._feed.batch._in_flight  # type: ignore[no-any-return]


def run_on(backend: str, main: Callable[[], Awaitable[Any]]) -> Any:
    if backend == "trio":
        pytest.importorskip("trio")
    return anyio.run(main, backend=backend)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=28, cancel_delay=0.0) as sb:
        yield sb


def applied(sandbox: Sandbox, ids: list[int]) -> int:
    """How many of ``ids`` the exchange shows ``cancel`` (its queued cancel took effect)."""
    return sum(sandbox.exchange.order(i).state == "cancel" for i in ids)


# -- 1. confirmation beside the sending --------------------------------------------------------


@pytest.mark.parametrize("confirm_with", ["poll", "auto"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_confirmation_never_holds_the_sending_back(
    sandbox: Sandbox, backend: str, confirm_with: ConfirmWith
) -> None:
    """200 cancels on 8 workers, each applied 3 s after it is queued: every cancel reaches the
    exchange while it has applied none (a worker waiting for its order's confirmation would
    have sent 8), and every order then ends confirmed."""
    sandbox.exchange.cancel_delay = 3.0
    ids = sandbox.exchange.seed_orders(sandbox.uid, 200)
    seen: dict[str, int] = {}

    async def main() -> list[CancelOutcome]:
        async with sandbox.session() as session, anyio.create_task_group() as tg:

            async def watch() -> None:
                await until(lambda: len(processed_cancels(sandbox.exchange)) == len(ids), 2.5)
                seen["processed"] = len(processed_cancels(sandbox.exchange))
                seen["applied"] = applied(sandbox, ids)

            tg.start_soon(watch)
            outcomes = await session.orders.cancel_many(
                ids, concurrency=8, confirm=True, confirm_with=confirm_with, confirm_timeout=8
            )
        return outcomes

    outcomes = run_on(backend, main)
    assert seen == {"processed": 200, "applied": 0}
    assert Counter(o.status for o in outcomes) == {CancelStatus.CANCELLED: 200}


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_deadline_shorter_than_the_confirmations_skips_nothing(sandbox: Sandbox, backend: str) -> None:
    """The issue's case: 100 ids, orders applied 2 s after their cancel, ``deadline=1.0``: every
    cancel was sent (none ``skipped``), and each is ``queued``, not ok, not confirmed."""
    sandbox.exchange.cancel_delay = 2.0
    ids = sandbox.exchange.seed_orders(sandbox.uid, 100)

    async def main() -> list[CancelOutcome]:
        async with sandbox.session() as session:
            return await session.orders.cancel_many(ids, concurrency=8, confirm=True, deadline=1.0)

    outcomes = run_on(backend, main)
    assert Counter(o.status for o in outcomes) == {CancelStatus.QUEUED: 100}
    assert all(isinstance(o.error, CancelNotConfirmedError) and not o.ok for o in outcomes)
    assert processed_cancels(sandbox.exchange) == set(ids)


@pytest.mark.parametrize("confirm_with", ["poll", "auto"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_look_ups_wait_until_every_cancel_is_sent(
    sandbox: Sandbox, backend: str, confirm_with: ConfirmWith
) -> None:
    """Look-ups yield to the cancels: with polling (and with ``auto`` once the push windows,
    cut to 0.05 s here, have passed) no look-up reaches the exchange before the batch's last
    cancel did, although each order is due for one 50 ms after its cancel was queued."""
    sandbox.exchange.cancel_delay = 0.4
    # Each cancel takes 3 ms at the exchange: the 300 on 8 workers take over 0.1 s, twice the
    # wait before each order's first look-up.
    sandbox.exchange.faults.latency = 0.003
    sandbox.exchange.faults.only_paths = ("/sapi/v1/orders/cancel/",)
    ids = sandbox.exchange.seed_orders(sandbox.uid, 300)

    async def main() -> list[CancelOutcome]:
        async with sandbox.session() as session:
            return await session.orders.cancel_many(
                ids, concurrency=8, confirm=True, confirm_with=confirm_with, confirm_timeout=0.1 * 30
            )

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "CONFIRM_PUSH_WINDOW", 0.05)
        patch.setattr(constants, "CONFIRM_PUSH_SHARE", 0.01)
        outcomes = run_on(backend, main)
    assert Counter(o.status for o in outcomes) == {CancelStatus.CANCELLED: 300}
    log = sandbox.exchange.requests
    cancels = [r.time for r in log if r.path == "/sapi/v1/orders/cancel/"]
    look_ups = [r.time for r in log if r.method == "GET" and r.path.startswith("/sapi/v1/orders/")]
    if confirm_with == "poll":
        assert look_ups  # (each order is looked up until it shows ``cancel``)
    assert len(cancels) == 300
    assert not look_ups or min(look_ups) >= max(cancels)


@pytest.mark.parametrize("lazy", [False, True], ids=["sized", "lazy"])
async def test_a_full_confirmer_holds_new_ids_back_and_frees_itself(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, lazy: bool
) -> None:
    """At most ``CONFIRM_MAX_PENDING`` orders wait for confirmation: past it the batch takes no
    new id until some are confirmed (look-ups then run although ids are left to send, or
    nothing would free it), and every order still ends confirmed."""
    monkeypatch.setattr(constants, "CONFIRM_MAX_PENDING", 10)
    sandbox.exchange.cancel_delay = 0.05
    ids = sandbox.exchange.seed_orders(sandbox.uid, 60)
    most = 0

    async def sample() -> None:
        nonlocal most
        while True:
            waiting = len(processed_cancels(sandbox.exchange)) - applied(sandbox, ids)
            most = max(most, waiting)
            await anyio.sleep(0.005)

    async with sandbox.session() as session, anyio.create_task_group() as tg:
        tg.start_soon(sample)
        source = iter(ids) if lazy else ids
        outcomes = await session.orders.cancel_many(
            source, concurrency=4, confirm=True, confirm_with="poll", confirm_timeout=10
        )
        tg.cancel_scope.cancel()
    assert Counter(o.status for o in outcomes) == {CancelStatus.CANCELLED: 60}
    # Queued and not yet applied at the exchange: at most the cap, plus one cancel per worker
    # answered before its worker saw the confirmer full (and what the sampling missed).
    assert most <= 10 + 4


@pytest.mark.parametrize("confirm_with", ["poll", "auto"])
async def test_an_order_is_looked_up_before_its_confirmation_ends_even_when_sending_outlasts_it(
    sandbox: Sandbox, confirm_with: ConfirmWith
) -> None:
    """Look-ups yield to the cancels, but an order whose ``confirm_timeout`` passes while they
    wait is looked up once (as soon as they may run) before it is called not confirmed: the
    exchange cancelled every one, and every one says so."""
    sandbox.exchange.cancel_delay = 0.05
    sandbox.exchange.faults.latency = 0.01  # 60 cancels one at a time: 0.6 s of sending
    sandbox.exchange.faults.only_paths = ("/sapi/v1/orders/cancel/",)
    ids = sandbox.exchange.seed_orders(sandbox.uid, 60)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constants, "CONFIRM_PUSH_WINDOW", 0.05)
        async with sandbox.session() as session:
            outcomes = await session.orders.cancel_many(
                ids, concurrency=1, confirm=True, confirm_with=confirm_with, confirm_timeout=0.2
            )
    assert Counter(o.status for o in outcomes) == {CancelStatus.CANCELLED: 60}


@pytest.mark.parametrize("session_deadline", [None, 0.5])
async def test_a_confirmation_ends_in_its_timeout_and_one_look_up_however_long_the_sending(
    sandbox: Sandbox, session_deadline: float | None
) -> None:
    """60 cancels one at a time, 30 ms each at the exchange (1.8 s of sending), polled, with a
    0.3 s ``confirm_timeout``: the first order's outcome comes long before the sending ends (its
    one look-up is made at its timeout, not after the sending), and every look-up reaches the
    exchange (one held back past the session's per-order ``deadline`` gets a deadline of its
    own, rather than failing unsent), so every order ends ``cancelled``."""
    sandbox.exchange.cancel_delay = 0.05
    sandbox.exchange.faults.latency = 0.03
    sandbox.exchange.faults.only_paths = ("/sapi/v1/orders/cancel/",)
    ids = sandbox.exchange.seed_orders(sandbox.uid, 60)
    got: dict[int, CancelOutcome] = {}
    first_after = 0.0
    async with sandbox.session(deadline=session_deadline) as session:
        started = time.monotonic()
        async for outcome in session.orders.cancel_iter(
            iter(ids), concurrency=1, confirm=True, confirm_with="poll", confirm_timeout=0.3
        ):
            got[outcome.order_id] = outcome
            if len(got) == 1:
                first_after = time.monotonic() - started
    assert Counter(o.status for o in got.values()) == {CancelStatus.CANCELLED: 60}
    log = sandbox.exchange.requests
    cancels = sorted(r.time for r in log if r.path == "/sapi/v1/orders/cancel/")
    assert first_after < (cancels[-1] - cancels[0]) / 2  # (the sending took 1.8 s)


@pytest.mark.parametrize("confirm_with", ["stream", "auto"])
async def test_a_slow_consumer_never_holds_the_pushes_back(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, confirm_with: ConfirmWith
) -> None:
    """A lazy input's consumer stops reading for 1.5 s with its buffer full: the stream's
    updates still confirm the orders meanwhile (a push is never held behind a hand-over), and
    what waits for the consumer stays within the confirmer's cap plus the buffer."""
    monkeypatch.setattr(constants, "ITER_MAX_BUFFERED", 5)
    monkeypatch.setattr(constants, "CONFIRM_MAX_PENDING", 20)
    sandbox.exchange.cancel_delay = 0.05
    ids = sandbox.exchange.seed_orders(sandbox.uid, 150)
    got: Counter[CancelStatus] = Counter()
    most = 0
    async with sandbox.session() as session:
        iterator = session.orders.cancel_iter(
            iter(ids), concurrency=4, confirm=True, confirm_with=confirm_with, confirm_timeout=1.0
        )
        async for outcome in iterator:
            got[outcome.status] += 1
            most = max(most, len(in_flight_of(iterator)))
            await anyio.sleep(1.5 if sum(got.values()) == 1 else 0.001)
    assert got == {CancelStatus.CANCELLED: 150}
    assert most <= 20 + 5 + 4  # the confirmer's cap, the buffer, one cancel per worker


# -- 2. a slow consumer -------------------------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_slow_consumer_never_holds_the_sending_back(sandbox: Sandbox, backend: str) -> None:
    """1,000 ids, ``deadline=3``, a consumer spending 5 ms per outcome (5 s in all): nothing
    ``skipped``, each id exactly once (the deadline strikes while outcomes still wait for the
    consumer: none is delivered twice)."""
    ids = sandbox.exchange.seed_orders(sandbox.uid, 1000)

    async def main() -> list[CancelOutcome]:
        got: list[CancelOutcome] = []
        async with sandbox.session() as session:
            async for outcome in session.orders.cancel_iter(ids, deadline=3):
                got.append(outcome)
                await anyio.sleep(0.005)
        return got

    outcomes = run_on(backend, main)
    assert sorted(o.order_id for o in outcomes) == sorted(ids)  # one each, none twice
    assert Counter(o.status for o in outcomes) == {CancelStatus.QUEUED: 1000}
    assert processed_cancels(sandbox.exchange) == set(ids)


async def test_a_lazy_input_waits_for_the_consumer_only_past_the_documented_cap(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A generator may be endless, so its outcomes are capped (``ITER_MAX_BUFFERED``): past
    the cap no new id is taken until the consumer reads; below it nothing waits."""
    monkeypatch.setattr(constants, "ITER_MAX_BUFFERED", 20)
    ids = sandbox.exchange.seed_orders(sandbox.uid, 120)
    ahead: list[int] = []
    read = 0
    async with sandbox.session() as session:
        async for outcome in session.orders.cancel_iter(iter(ids), concurrency=4):
            assert outcome.status is CancelStatus.QUEUED
            if read == 0:
                await anyio.sleep(0.5)  # far behind: the workers fill the buffer and stop there
            read += 1
            ahead.append(len(processed_cancels(sandbox.exchange)) - read)
    assert read == len(ids)
    # At most the cap waiting, plus one taken id per worker in flight.
    assert max(ahead) <= 20 + 4
    assert max(ahead) >= 20 - 1  # (the cap was reached: the workers did run ahead until it)


# -- 3. leaving early ---------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["return", "break", "raise"])
@pytest.mark.parametrize("backend", BACKENDS)
def test_leaving_cancel_iter_early_never_cancels_the_caller(sandbox: Sandbox, backend: str, how: str) -> None:
    """Without ``aclosing``: the caller goes on (and sleeps) undisturbed; no more ids are sent;
    the cancels already sent finish in the session's task; no connection stays out."""
    ids = sandbox.exchange.seed_orders(sandbox.uid, 400)
    sandbox.exchange.faults.latency = 0.02

    async def first(session: Any) -> int:
        got = -1
        async for outcome in session.orders.cancel_iter(ids, concurrency=4):
            if how == "return":
                return int(outcome.order_id)
            if how == "raise":
                raise LookupError(outcome.order_id)
            got = outcome.order_id
            break
        return got

    async def main() -> tuple[int, bool]:
        async with sandbox.session() as session:
            try:
                got = await first(session)
            except LookupError as exc:
                got = int(exc.args[0])
            slept = False
            await anyio.sleep(0.3)  # a cancelled caller would be interrupted here
            slept = True
            await until(lambda: in_use(session) == 0)
            assert in_use(session) == 0
        return got, slept

    got, slept = run_on(backend, main)
    assert got in ids and slept
    assert len(processed_cancels(sandbox.exchange)) < len(ids)  # the rest was never sent


# -- 4. cancellation keeps what is known -------------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_cancelled_cancel_many_tells_every_outcome(sandbox: Sandbox, backend: str) -> None:
    """Cancelled mid-batch (as Ctrl-C cancels the main task): ``on_outcome`` has been called
    exactly once per id before the cancellation goes on, and each outcome is true: ``queued``
    only for cancels the exchange processed, ``skipped`` only for ids it never saw."""
    ids = sandbox.exchange.seed_orders(sandbox.uid, 600)
    sandbox.exchange.faults.latency = 0.02
    told: list[CancelOutcome] = []

    async def main() -> bool:
        async with sandbox.session() as session:
            with anyio.move_on_after(0.4) as scope:
                await session.orders.cancel_many(ids, concurrency=8, on_outcome=told.append)
            return scope.cancelled_caught

    assert run_on(backend, main)
    assert sorted(o.order_id for o in told) == sorted(ids)
    processed = processed_cancels(sandbox.exchange)
    by_status = Counter(o.status for o in told)
    assert by_status[CancelStatus.QUEUED] >= 1 and by_status[CancelStatus.SKIPPED] >= 1
    assert set(by_status) <= {CancelStatus.QUEUED, CancelStatus.UNKNOWN, CancelStatus.SKIPPED}
    for o in told:
        if o.status is CancelStatus.QUEUED:
            assert o.order_id in processed
        elif o.status is CancelStatus.SKIPPED:
            assert o.order_id not in processed
            assert isinstance(o.error, BatchInterruptedError) and not o.error.sent
        else:
            assert isinstance(o.error, BatchInterruptedError) and o.error.sent
    assert by_status[CancelStatus.UNKNOWN] <= 8  # at most one in flight per worker


async def test_on_outcome_is_called_once_per_id_and_a_raising_one_costs_nothing(
    sandbox: Sandbox, caplog: pytest.LogCaptureFixture
) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 50)
    told: list[int] = []

    def on_outcome(outcome: CancelOutcome) -> None:
        told.append(outcome.order_id)
        if len(told) % 10 == 0:
            raise RuntimeError("a broken callback")

    async with sandbox.session() as session:
        outcomes = await session.orders.cancel_many(ids, on_outcome=on_outcome)
    assert sorted(told) == sorted(ids)
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
    assert sum("on_outcome raised" in r.getMessage() for r in caplog.records) == 5


async def test_on_outcome_must_be_callable(sandbox: Sandbox) -> None:
    async with sandbox.session() as session:
        with pytest.raises(TypeError, match="on_outcome must be callable"):
            await session.orders.cancel_many([1], on_outcome="print")  # type: ignore[arg-type]
    assert sandbox.exchange.requests == []


async def test_stop_returns_an_outcome_for_every_id_not_yet_yielded(sandbox: Sandbox) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 300)
    sandbox.exchange.faults.latency = 0.02
    seen: list[CancelOutcome] = []
    async with sandbox.session() as session:
        it = session.orders.cancel_iter(ids, concurrency=4)
        async for outcome in it:
            seen.append(outcome)
            if len(seen) == 10:
                break
        rest = it.stop()
        await until(lambda: in_use(session) == 0)
    assert sorted(o.order_id for o in seen + rest) == sorted(ids)
    processed = processed_cancels(sandbox.exchange)
    for o in rest:
        if o.status is CancelStatus.SKIPPED:
            assert o.order_id not in processed
        elif o.status is CancelStatus.QUEUED:
            assert o.order_id in processed
    assert Counter(o.status for o in rest)[CancelStatus.SKIPPED] >= 200


# -- 5. aclose ends what the session started --------------------------------------------------


@pytest.mark.parametrize("backend", BACKENDS)
def test_aclose_ends_a_stream_being_read(sandbox: Sandbox, backend: str) -> None:
    """The consumer gets ``SessionClosedError`` (it does not wait forever), the stream's task
    ends and its socket closes."""

    async def main() -> tuple[str, bool]:
        session = sandbox.session()
        failure = "none"
        stream = session.stream()
        async with anyio.create_task_group() as tg:

            async def read() -> None:
                nonlocal failure
                try:
                    async with stream as events:
                        async for _ in events:
                            pass
                except SessionClosedError:
                    failure = "SessionClosedError"

            tg.start_soon(read)
            await until(lambda: stream.connected)
            with anyio.fail_after(5):
                await session.aclose()
        return failure, stream.connected

    failure, connected = run_on(backend, main)
    assert failure == "SessionClosedError"
    assert not connected
    # The server sees every socket of the session closed (the stream's among them).
    for _ in range(500):
        if not sandbox.server._connections:
            break
        time.sleep(0.01)
    assert not sandbox.server._connections


@pytest.mark.parametrize("backend", BACKENDS)
def test_aclose_ends_a_cancel_iter_batch_still_running(sandbox: Sandbox, backend: str) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 300)
    sandbox.exchange.faults.latency = 0.05

    async def main() -> str:
        session = sandbox.session()
        it = session.orders.cancel_iter(ids, concurrency=4)
        await it.__anext__()
        with anyio.fail_after(5):
            await session.aclose()
        try:
            async for _ in it:
                pass
        except SessionClosedError:
            return "SessionClosedError"
        return "ended quietly"

    assert run_on(backend, main) == "SessionClosedError"
    assert len(processed_cancels(sandbox.exchange)) < len(ids)


async def test_the_early_exit_works_with_aclosing_too(sandbox: Sandbox) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 100)
    async with sandbox.session() as session:
        async with contextlib.aclosing(session.orders.cancel_iter(ids, concurrency=2)) as it:
            async for _ in it:
                break
        await anyio.sleep(0.1)
        await until(lambda: in_use(session) == 0)
        # The session is still fully usable.
        assert (await session.orders.cancel_many(ids[-1:]))[0].order_id == ids[-1]


async def test_a_batch_that_refuses_to_start_raises_its_error_as_it_is_with_on_outcome(
    sandbox: Sandbox,
) -> None:
    """``confirm_with="stream"`` and no stream: ``StreamError`` before anything is sent, not
    wrapped in an exception group by the task that tells ``on_outcome``."""
    ids = sandbox.exchange.seed_orders(sandbox.uid, 3)
    told: list[CancelOutcome] = []
    async with sandbox.session(stream_url="ws://127.0.0.1:9/private", allow_insecure_http=True) as session:
        with pytest.raises(StreamError):
            await session.orders.cancel_many(ids, confirm=True, confirm_with="stream", on_outcome=told.append)
    assert told == [] and processed_cancels(sandbox.exchange) == set()


async def test_a_bug_while_adding_an_order_to_the_confirmer_costs_that_order_its_confirmation_only(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``Confirmer.add`` failing (a bug) leaves the order ``queued``, not confirmed, delivered
    once, and the batch (or the one ``cancel``) ends: nothing is lost, nothing waits forever."""
    from tanx_async._confirm import Confirmer

    def broken(*args: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Confirmer, "_add", broken)
    ids = sandbox.exchange.seed_orders(sandbox.uid, 6)
    async with sandbox.session() as session:
        outcomes = await session.orders.cancel_many(ids[:5], confirm=True, confirm_with="poll")
        with pytest.raises(CancelNotConfirmedError, match="confirming failed"):
            await session.orders.cancel(ids[5], confirm=True, confirm_with="poll")
    assert sorted(o.order_id for o in outcomes) == sorted(ids[:5])
    assert all(
        o.status is CancelStatus.QUEUED and isinstance(o.error, CancelNotConfirmedError) for o in outcomes
    )
