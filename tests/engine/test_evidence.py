"""No "ok" without evidence (issue 11 section 3).

An outcome is ok only from a 2xx answer to the cancel, a look-up showing the order ``cancel`` or
``done``, or this session's own 2xx cancel of the same order moments earlier. The words of a
refusal never decide: whatever they say, a refused cancel whose look-up fails or shows the order
resting is not ok, and ``orders.cancel`` raises.
"""

from __future__ import annotations

import time
from typing import Any

import anyio
import httpx
import pytest
import respx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tanx_async import (
    APIStatusError,
    AsyncTanxSession,
    CancelOutcomeUnknownError,
    CancelStatus,
    OrderState,
    TanxError,
)
from tests.conftest import CANCEL_URL, FakeClock, envelope, json_response, make_jwt, order_payload
from tests.internals import CancelMemory, cancel_memory_of
from tests.sandbox import running_sandbox

GET_URL = "https://api.tanx.fi/sapi/v1/orders/7/"

# Texts that *suggest* success, and anything else.
SUGGESTIVE = st.sampled_from(
    [
        "Order is already queued for cancellation",
        "Order could not be queued for cancellation",
        "Order is already cancelled",
        "Order has already been cancelled",
        "Order is already filled",
        "Order already executed",
        "pending cancel",
        "Order is closed",
        "done",
    ]
)
TEXTS = (
    SUGGESTIVE | st.text(max_size=60) | st.builds(lambda a, b: f"{a} {b}", SUGGESTIVE, st.text(max_size=20))
)
REFUSALS = st.sampled_from([400, 409, 422, 500, 503])
LOOKUPS = st.sampled_from(["wait", "pending", "500", "timeout", "garbage"])


def _lookup(kind: str) -> Any:
    if kind in ("wait", "pending"):
        return json_response(200, envelope(order_payload(id=7, state=kind), "Order Retrieved Successfully"))
    if kind == "500":
        return json_response(500, envelope("", "Internal Server Error", "error"))
    if kind == "garbage":
        return json_response(200, envelope({"id": "not a number"}))
    raise httpx.ReadTimeout("no answer")


async def _cancel_with(text: str, status: int, lookup: str) -> tuple[Any, BaseException | None]:
    router = respx.Router(assert_all_called=False, assert_all_mocked=True)
    router.post(CANCEL_URL).mock(return_value=json_response(status, envelope("", text, "error")))
    router.get(GET_URL).mock(side_effect=lambda request: _lookup(lookup))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(access_token=make_jwt(time.time() + 3600), http_client=client, max_retries=1) as s,
    ):
        (outcome,) = await s.orders.cancel_many([7])
        raised: BaseException | None = None
        try:
            await s.orders.cancel(7)
        except TanxError as exc:
            raised = exc
    return outcome, raised


@settings(
    max_examples=60,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(text=TEXTS, status=REFUSALS, lookup=LOOKUPS)
def test_no_refusal_text_makes_an_outcome_ok(clock: FakeClock, text: str, status: int, lookup: str) -> None:
    outcome, raised = anyio.run(_cancel_with, text, status, lookup)
    assert not outcome.ok, outcome
    assert outcome.status in (CancelStatus.FAILED, CancelStatus.UNKNOWN), outcome
    assert outcome.error is not None
    # A 500 may hide a processed cancel: unknown (a 503 says it was not processed); a 4xx is
    # a refusal: failed.
    expected = CancelStatus.UNKNOWN if status == 500 else CancelStatus.FAILED
    assert outcome.status is expected
    # The single-order call raises instead of returning an order.
    assert raised is not None
    if status == 500:
        assert isinstance(raised, CancelOutcomeUnknownError)
        assert "may hide a processed cancel" in raised.message
    else:
        assert isinstance(raised, APIStatusError) and raised.status_code == status


async def test_a_refusal_after_our_own_2xx_is_queued_with_that_evidence(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    answers = iter(
        [
            json_response(
                200, envelope(order_payload(id=7), "Order is successfully queued for cancellation")
            ),
            json_response(400, envelope("", "Order could not be queued for cancellation", "error")),
            json_response(400, envelope("", "Order could not be queued for cancellation", "error")),
        ]
    )
    router.post(CANCEL_URL).mock(side_effect=lambda request: next(answers))
    router.get(GET_URL).mock(return_value=json_response(200, envelope(order_payload(id=7, state="wait"))))
    first = await session.orders.cancel(7)
    assert first.state is OrderState.WAIT
    # A second task cancels the same order: refused, the look-up shows it resting, but this
    # session's own 2xx a moment ago is evidence that its cancellation is queued.
    (second,) = await session.orders.cancel_many([7])
    assert second.status is CancelStatus.QUEUED and second.ok
    assert second.error is None
    assert second.note is not None
    assert "this session got a 2xx for this order's cancel" in second.note
    assert "HTTP 400: Order could not be queued for cancellation" in second.note
    assert "a look-up shows it wait" in second.note
    third = await session.orders.cancel(7)  # the single-order call follows the same rule
    assert third.id == 7


async def test_the_memory_belongs_to_the_session_and_its_views(router: respx.Router) -> None:
    router.post(CANCEL_URL).mock(return_value=json_response(200, envelope(order_payload(id=7))))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(access_token=make_jwt(time.time() + 3600), http_client=client) as s,
        AsyncTanxSession(access_token=make_jwt(time.time() + 3600), http_client=client) as other,
    ):
        await s.orders.cancel(7)
        view = s.with_options(max_retries=0)
        assert cancel_memory_of(view).age(7) is not None
        assert cancel_memory_of(other).age(7) is None


def test_cancel_memory_is_bounded_in_count_and_time(monkeypatch: pytest.MonkeyPatch) -> None:
    now = [100.0]
    monkeypatch.setattr(time, "monotonic", lambda: now[0])
    memory = CancelMemory(size=3, window=60.0)
    for oid in (1, 2, 3, 4):
        memory.accepted(oid)
    assert len(memory) == 3
    assert memory.age(1) is None  # the oldest fell out
    now[0] += 59.0
    assert memory.age(4) == pytest.approx(59.0)
    memory.accepted(2)  # refreshed
    now[0] += 2.0
    assert memory.age(3) is None and memory.age(4) is None  # older than the window
    assert memory.age(2) == pytest.approx(2.0)
    assert len(memory) == 1


async def test_two_cancels_of_one_order_against_the_sandbox() -> None:
    """Two strategy tasks cancel the same order: the sandbox refuses the second while the first
    is queued. In the same session both are ok; a session without that memory is refused."""
    with running_sandbox(seed=5, cancel_delay=30.0) as sb:
        [oid] = sb.exchange.seed_orders(sb.uid, 1)
        async with sb.session() as session, sb.session() as stranger:
            async with anyio.create_task_group() as tg:
                results: list[Any] = []

                async def cancel() -> None:
                    results.append(await session.orders.cancel(oid))

                tg.start_soon(cancel)
                tg.start_soon(cancel)
            assert [r.id for r in results] == [oid, oid]
            (again,) = await session.orders.cancel_many([oid])
            assert again.status is CancelStatus.QUEUED and again.note is not None
            (theirs,) = await stranger.orders.cancel_many([oid])
        results_log = [r.result for r in sb.exchange.cancel_attempts(oid)]
    assert results_log == [
        "cancel_queued",
        "cancel_rejected:already_queued",
        *["cancel_rejected:already_queued"] * 2,
    ]
    # The stranger has no evidence: the order still rests, whatever the refusal says.
    assert theirs.status is CancelStatus.FAILED and not theirs.ok
    assert theirs.order is not None and theirs.order.state is OrderState.WAIT
