"""Hardening: every socket-level fault of the sandbox, against both transports, over loopback.

For each fault the client must (a) raise the right error, saying honestly whether the request may
have been processed, (b) leave no connection checked out of its pool, and (c) never report a
cancel as queued or cancelled unless the exchange said so. A token refresh or a login that may
have reached the server is never sent again (d).
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import anyio
import attrs
import httpx
import pytest

from tanx_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncTanxSession,
    AuthenticationError,
    CancelOutcome,
    CancelOutcomeUnknownError,
    CancelStatus,
    InternalServerError,
    ResponseTooLargeError,
    TanxError,
)
from tanx_async.testing import SandboxExchange, SandboxServer
from tests.conftest import until
from tests.internals import Http11Sender, HttpxSender, in_use, random_wallet, sender_of
from tests.sandbox import (
    BATCH_TRANSPORTS,
    TRANSPORTS,
    Sandbox,
    mismatches,
    processed_cancels,
    running_sandbox,
    transport_name,
)

CANCEL_PATH = "/sapi/v1/orders/cancel/"
REFRESH_PATH = "/sapi/v1/auth/token/refresh/"
LOGIN_PATH = "/sapi/v2/auth/login/"


def session_for(sandbox: Sandbox, transport: str, **kwargs: Any) -> AsyncTanxSession:
    """``transport``: one of ``BATCH_TRANSPORTS`` (``native`` is the default on asyncio)."""
    return sandbox.session(transport=transport, **kwargs)


async def settled_in_use(session: AsyncTanxSession) -> int:
    """Connections still checked out after a short, bounded settle (a leak never settles)."""
    for _ in range(50):
        if in_use(session) == 0:
            return 0
        await anyio.sleep(0.02)
    return in_use(session)


@attrs.frozen
class Case:
    """One fault, how to switch it on, and what the client must make of it."""

    faults: dict[str, Any]
    error: type[Exception]  # exact type from get/health with max_retries=0
    processed: bool  # the sandbox processes the request before misbehaving
    timeout: float | None = None  # a short read timeout (see ``short_read``)
    message: str | None = None
    status: int | None = None
    cancel_ambiguous: bool = True  # cancel -> CancelOutcomeUnknownError (else the error itself)


CASES: dict[str, Case] = {
    "reset": Case({"reset_rate": 1.0}, APIConnectionError, processed=False),
    "drop_before": Case({"drop_before_rate": 1.0}, APIConnectionError, processed=False),
    "drop_after": Case({"drop_after_rate": 1.0}, APIConnectionError, processed=True),
    "truncate": Case({"truncate_rate": 1.0}, APIConnectionError, processed=True),
    "502": Case(
        {"error_rate": 1.0, "error_statuses": (502,)},
        InternalServerError,
        processed=False,
        message="502 Bad Gateway",
        status=502,
    ),
    "503": Case(
        {"error_rate": 1.0, "error_statuses": (503,)},
        InternalServerError,
        processed=False,
        message="503 Service Temporarily Unavailable",
        status=503,
        cancel_ambiguous=False,  # a 503 proves the request was not processed
    ),
    "stall": Case({"stall_rate": 1.0, "stall_seconds": 1.5}, APITimeoutError, processed=True, timeout=0.2),
    "huge_body": Case({"huge_body_bytes": 1_000_000}, ResponseTooLargeError, processed=True),
    "black_hole": Case({"black_hole": True}, APITimeoutError, processed=False, timeout=0.2),
}


def short_read(seconds: float) -> httpx.Timeout:
    """A read timeout of ``seconds``, and more for connecting, writing and the pool: on a
    loaded machine an attempt that did not connect within a fraction of a second would prove
    the request not sent, which is not what these tests are about."""
    return httpx.Timeout(2.0, connect=0.5, read=seconds)


def apply(exchange: SandboxExchange, faults: dict[str, Any]) -> None:
    for name, value in faults.items():
        setattr(exchange.faults, name, value)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=5, cancel_delay=0.01) as sb:
        yield sb


def check_error(exc: BaseException, case: Case) -> None:
    assert type(exc) is case.error, repr(exc)
    if isinstance(exc, APIConnectionError):
        # Only a failure before a byte was written proves "not processed"; none of these is.
        assert exc.maybe_processed is True
    if case.message is not None:
        assert isinstance(exc, InternalServerError)
        assert exc.message == case.message  # the HTML page's <title>
        assert exc.status_code == case.status


# -- (a) + (b): the error type, and no connection leaked --------------------------------------


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize("name", list(CASES))
async def test_fault_gives_the_right_error_and_leaks_no_connection(
    sandbox: Sandbox, transport: str, name: str
) -> None:
    case = CASES[name]
    exchange = sandbox.exchange
    [oid] = exchange.seed_orders(sandbox.uid, 1)
    kwargs: dict[str, Any] = {"max_retries": 0, "max_response_bytes": 64 * 1024}
    if case.timeout is not None:
        kwargs["timeout"] = short_read(case.timeout)
    apply(exchange, case.faults)
    async with session_for(sandbox, transport, **kwargs) as session:
        with pytest.raises(TanxError) as got:
            await session.orders.get(oid)
        check_error(got.value, case)
        assert await settled_in_use(session) == 0

        with pytest.raises(TanxError) as got:
            await session.health()
        check_error(got.value, case)

        # The lookup after an unanswered cancel fails too, so a cancel that may have been
        # processed is reported as unknown (with the cause), never as a plain failure.
        with pytest.raises(TanxError) as got:
            await session.orders.cancel(oid)
        if case.cancel_ambiguous:
            assert type(got.value) is CancelOutcomeUnknownError, repr(got.value)
            assert got.value.maybe_processed is True
            check_error(got.value.cause, case)
        else:
            check_error(got.value, case)
        assert await settled_in_use(session) == 0

        sender = sender_of(session)
        expected = {"native": Http11Sender, "httpx": HttpxSender}[transport]
        assert isinstance(sender, expected)
        # The session recovers once the exchange behaves.
        exchange.faults.reset()
        assert await session.health() is True
        assert (await session.orders.get(oid)).id == oid
        assert await settled_in_use(session) == 0
    await anyio.sleep(0.03)  # past cancel_delay

    cancels = exchange.cancel_attempts(oid)
    assert len(cancels) == 1  # max_retries=0: sent once
    assert cancels[0].result == ("cancel_queued" if case.processed else f"fault:{cancels[0].fault}")
    assert (exchange.order(oid).state == "cancel") is case.processed


@pytest.mark.parametrize("transport", BATCH_TRANSPORTS)
async def test_close_keepalive_pool_recovers_transparently(sandbox: Sandbox, transport: str) -> None:
    exchange = sandbox.exchange
    server: SandboxServer = sandbox.server
    ids = exchange.seed_orders(sandbox.uid, 40)
    exchange.faults.close_keepalive = True
    accepted = server.connections_accepted
    async with session_for(sandbox, transport, max_retries=0) as session:
        for oid in ids[:5]:  # sequential: each request finds its pooled connection closed
            assert (await session.orders.get(oid)).id == oid
            assert await session.health() is True
        outcomes = await session.orders.cancel_many(ids, concurrency=16)
        assert await settled_in_use(session) == 0
    assert all(o.status is CancelStatus.QUEUED for o in outcomes), Counter(o.status for o in outcomes)
    assert all(o.attempts == 1 for o in outcomes)  # no request needed a retry
    # One connection per request: the server really closed every one.
    assert server.connections_accepted - accepted >= 10 + len(ids)


# -- (c): cancel outcomes stay truthful under each fault ---------------------------------------


def claimed_without_the_exchange(exchange: SandboxExchange, outcomes: list[CancelOutcome]) -> list[int]:
    """Ids reported queued/cancelled although no cancel of ours was processed for them."""
    processed = processed_cancels(exchange)
    return [
        o.order_id
        for o in outcomes
        if o.status in (CancelStatus.QUEUED, CancelStatus.CANCELLED) and o.order_id not in processed
    ]


def untruthful(exchange: SandboxExchange, outcomes: list[CancelOutcome], before: dict[int, str]) -> list[str]:
    """``mismatches`` where it applies, plus what it cannot judge.

    ``mismatches`` reads ``unknown`` and ``failed`` as "still open". An ``unknown`` outcome
    makes no claim about the order (under post-processing faults the cancel may well have
    happened: that is why it is unknown); a ``failed`` one claims our cancel did not happen,
    which for an order closed before the batch (or unknown to the exchange) whose look-up failed
    too is all it can say: only the look-up could have told it otherwise.
    """
    processed = processed_cancels(exchange)
    judged = [
        o
        for o in outcomes
        if o.status is not CancelStatus.UNKNOWN
        and not (o.status is CancelStatus.FAILED and before.get(o.order_id) in ("cancel", "done", None))
    ]
    wrong = mismatches(exchange, judged, before)
    wrong += [
        f"{oid}: claimed without a processed cancel"
        for oid in claimed_without_the_exchange(exchange, outcomes)
    ]
    for o in outcomes:
        if o.status is CancelStatus.FAILED and o.order_id in processed:
            wrong.append(f"{o.order_id}: failed, but one of its cancels was processed")
        if o.status is CancelStatus.UNKNOWN and (o.error is None or not exchange.cancel_attempts(o.order_id)):
            wrong.append(f"{o.order_id}: unknown without an error or without being sent")
        if not o.ok and o.error is None:
            wrong.append(f"{o.order_id}: {o.status.value} without an error")
    return wrong


@pytest.mark.parametrize(
    ("transport", "shapes"),
    [(t, "docs+fixed") for t in BATCH_TRANSPORTS]
    + [("native", "mixed+random"), ("native-tasks", "mixed+random")],
)
@pytest.mark.parametrize("name", [n for n in CASES if n not in ("huge_body", "black_hole")])
async def test_cancel_many_under_fault_rate_is_truthful(
    sandbox: Sandbox, transport: str, shapes: str, name: str
) -> None:
    """``mixed+random``: every answer in one of the sandbox's real shapes, every invented text
    a random sentence (the outcomes may be less precise, never untrue)."""
    case = CASES[name]
    exchange = sandbox.exchange
    exchange.profile, exchange.texts = shapes.split("+")  # type: ignore[assignment]
    open_ids = exchange.seed_orders(sandbox.uid, 60)
    closed = exchange.seed_orders(sandbox.uid, 10, state="cancel") + exchange.seed_orders(
        sandbox.uid, 10, state="done"
    )
    for oid in closed:
        # Closed minutes ago. (An order closed within CLOCK_SKEW_TOLERANCE before an unanswered
        # cancel is reported CANCELLED by design; seeding leaves some updated_at at "now".)
        exchange.update_order(oid, updated_at=exchange.now() - 600)
    unknown = [80_000_000 + i for i in range(10)]
    ids = open_ids + closed + unknown
    random.Random(name).shuffle(ids)
    before = {oid: exchange.order(oid).state for oid in open_ids + closed}
    faults = {k: (0.3 if k.endswith("_rate") else v) for k, v in case.faults.items()}
    apply(exchange, faults)
    exchange.faults.only_paths = ("/sapi/v1/orders",)
    exchange.faults.latency = 0.002
    async with session_for(
        sandbox, transport, max_retries=2, timeout=short_read(case.timeout) if case.timeout else 5.0
    ) as session:
        with anyio.fail_after(20):
            outcomes = await session.orders.cancel_many(ids, concurrency=32)
        assert await settled_in_use(session) == 0
    # The sandbox records a request when its handler starts: on a loaded machine, one the
    # client wrote and gave up on may still be on its way. (Waiting hides nothing: a cancel
    # that was never sent is never recorded.)
    unknown = [o.order_id for o in outcomes if o.status is CancelStatus.UNKNOWN]
    await until(
        lambda: exchange.in_flight == 0 and all(exchange.cancel_attempts(oid) for oid in unknown), seconds=2.0
    )
    await anyio.sleep(0.05)  # let the queued cancellations take effect

    assert [o.order_id for o in outcomes] == ids
    assert untruthful(exchange, outcomes, before) == []
    counts = Counter(o.status for o in outcomes)
    print(f"\n{shapes} {transport} {name}:", " ".join(f"{s.value}={n}" for s, n in sorted(counts.items())))
    assert counts[CancelStatus.NOT_FOUND] + counts[CancelStatus.UNKNOWN] + counts[CancelStatus.FAILED] >= 10
    assert any(r.fault for r in exchange.requests)  # the faults really happened


@pytest.mark.parametrize("transport", BATCH_TRANSPORTS)
@pytest.mark.parametrize("name", ["huge_body", "black_hole"])
async def test_cancel_many_when_no_answer_is_readable(sandbox: Sandbox, transport: str, name: str) -> None:
    """Every answer lost or refused: nothing may be reported queued, cancelled or closed."""
    case = CASES[name]
    exchange = sandbox.exchange
    ids = exchange.seed_orders(sandbox.uid, 8)
    apply(exchange, case.faults)
    timeout = short_read(0.15) if case.timeout else 5.0
    async with session_for(
        sandbox, transport, max_retries=2, timeout=timeout, max_response_bytes=64 * 1024
    ) as session:
        with anyio.fail_after(15):
            outcomes = await session.orders.cancel_many(ids, concurrency=8)
        assert await settled_in_use(session) == 0
    await anyio.sleep(0.05)
    assert {o.status for o in outcomes} == {CancelStatus.UNKNOWN}
    # (Every request's error, not its last attempt's: an attempt that timed out reading may be
    # followed by one that never connected on a loaded machine.)
    assert all(isinstance(o.error, APIConnectionError) and o.error.maybe_processed for o in outcomes), [
        repr(o.error) for o in outcomes
    ]
    assert claimed_without_the_exchange(exchange, outcomes) == []
    # Why "unknown" and not "failed": with a huge body the cancels did happen.
    expected = "cancel" if case.processed else "wait"
    assert {exchange.order(oid).state for oid in ids} == {expected}


# -- (d): a refresh or a login that may have been processed is never replayed -----------------


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refresh_dropped_after_processing_is_not_replayed(sandbox: Sandbox, transport: str) -> None:
    exchange = sandbox.exchange
    [oid] = exchange.seed_orders(sandbox.uid, 1)
    exchange.faults.only_paths = (REFRESH_PATH,)
    exchange.faults.drop_after_rate = 1.0
    async with session_for(sandbox, transport, max_retries=3) as session:
        exchange.expire_access_tokens()
        with pytest.raises(APIConnectionError) as got:
            await session.orders.get(oid)
        assert got.value.maybe_processed is True
        assert got.value.path == REFRESH_PATH
        refreshes = [r for r in exchange.requests if r.path == REFRESH_PATH]
        # Exactly one refresh left, although retries were allowed: it rotated the token.
        assert [(r.result, r.fault) for r in refreshes] == [("refresh_ok", "drop_after")]
        assert exchange.refresh_count == 1

        # Observed: the session still holds the refresh token the exchange rotated away, so
        # without a signer the next request ends in AuthenticationError (the user must log in
        # again) and the session forgets its tokens.
        exchange.faults.reset()
        with pytest.raises(AuthenticationError, match="Token is invalid or expired"):
            await session.orders.get(oid)
        assert exchange.refresh_count == 2
        assert exchange.refresh_failures == 1
        assert session.tokens is None
        # ...and every later request is told the tokens were refused (issue 34), sending nothing.
        with pytest.raises(AuthenticationError, match="refused this session's refresh token"):
            await session.orders.get(oid)
        assert await settled_in_use(session) == 0
    assert exchange.refresh_count == 2  # nothing more was tried


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_refresh_lost_with_a_signer_recovers_by_logging_in(transport: str) -> None:
    key, address = random_wallet()
    with running_sandbox(seed=6, cancel_delay=0.0) as sb:
        exchange = sb.exchange
        uid = exchange.create_user(address)
        [oid] = exchange.seed_orders(uid, 1)
        async with AsyncTanxSession(
            base_url=sb.server.url,
            private_key=key,
            eth_address=address,
            transport=transport_name(transport),
        ) as session:
            await session.login()
            exchange.faults.only_paths = (REFRESH_PATH,)
            exchange.faults.drop_after_rate = 1.0
            exchange.expire_access_tokens()
            with pytest.raises(APIConnectionError):
                await session.orders.get(oid)
            exchange.faults.reset()
            order = await session.orders.get(oid)  # refresh refused -> a fresh login
            assert order.id == oid
        assert exchange.refresh_count == 2
        assert exchange.refresh_failures == 1
        assert exchange.login_count == 2


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_login_dropped_after_processing_is_not_replayed(transport: str) -> None:
    key, address = random_wallet()
    with running_sandbox(seed=8, cancel_delay=0.0) as sb:
        exchange = sb.exchange
        uid = exchange.create_user(address)
        [oid] = exchange.seed_orders(uid, 1)
        exchange.faults.only_paths = (LOGIN_PATH,)
        exchange.faults.drop_after_rate = 1.0
        async with AsyncTanxSession(
            base_url=sb.server.url,
            private_key=key,
            eth_address=address,
            max_retries=3,
            transport=transport_name(transport),
        ) as session:
            with pytest.raises(APIConnectionError) as got:
                await session.login()
            assert got.value.maybe_processed is True
            logins = [r for r in exchange.requests if r.path == LOGIN_PATH]
            assert [(r.result, r.fault) for r in logins] == [("login_ok", "drop_after")]
            assert session.tokens is None
            # The processed login consumed its nonce; the next use asks for a new one.
            exchange.faults.reset()
            assert (await session.orders.get(oid)).id == oid
            assert await settled_in_use(session) == 0
        assert exchange.login_count == 2
        assert [r.result for r in exchange.requests if r.path == "/sapi/v2/auth/nonce/"] == ["nonce", "nonce"]
