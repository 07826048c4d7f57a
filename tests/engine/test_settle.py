"""The settling pass (issue 14 section 2), unit level: an ``unknown`` outcome is held back and
looked up again before the batch returns; ``cancel_iter`` yields it once, settled or not."""

from __future__ import annotations

import contextlib
import json
import time
from datetime import datetime, timezone

import httpx
import respx

from tanx_async import AsyncTanxSession, BatchTimeoutError, CancelNotConfirmedError, CancelStatus
from tests.conftest import CANCEL_URL, FakeClock, envelope, json_response, open_session, order_payload

LOST, FINE = 11, 12


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _routes(router: respx.Router, cancels: list[str], lookups: list[str]) -> tuple[respx.Route, respx.Route]:
    """The cancel of ``LOST`` and its look-ups answer from the lists in turn (the last repeats);
    ``FINE`` is always queued."""

    def next_of(items: list[str]) -> str:
        return items.pop(0) if len(items) > 1 else items[0]

    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        effect = next_of(cancels) if oid == LOST else "queued"
        if effect == "queued":
            return json_response(200, envelope(order_payload(id=oid), "queued"))
        if effect == "refused":
            return json_response(400, envelope("", "Order is already queued for cancellation", "error"))
        raise httpx.ReadTimeout("lost")

    def get(request: httpx.Request) -> httpx.Response:
        state = next_of(lookups)
        if state == "down":
            raise httpx.ConnectError("refused")
        return json_response(200, envelope(order_payload(id=LOST, state=state, updated_at=_now())))

    return (
        router.post(CANCEL_URL).mock(side_effect=cancel),
        router.get(f"https://api.tanx.fi/sapi/v1/orders/{LOST}/").mock(side_effect=get),
    )


async def test_an_unknown_is_settled_once_the_exchange_answers(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    # Lost answers; the first look-up (4 attempts) fails, the next shows the order cancelled.
    _, get = _routes(router, ["lost"], ["down"] * 4 + ["cancel"])
    outcomes = await session.orders.cancel_many([LOST, FINE])
    lost = outcomes[0]
    assert lost.status is CancelStatus.CANCELLED and lost.ok
    assert lost.note is not None and lost.note.startswith("settled by look-up 1 after")
    assert get.call_count == 5
    assert outcomes[1].status is CancelStatus.QUEUED


async def test_a_still_resting_order_gets_the_cancel_again(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    cancel, _ = _routes(router, ["lost"] * 4 + ["queued"], ["wait"])
    (lost,) = await session.orders.cancel_many([LOST])
    assert lost.status is CancelStatus.QUEUED and lost.ok and lost.error is None
    assert lost.note == "settled: the cancel was sent again once the exchange answered"
    assert cancel.call_count == 5 and lost.attempts == 5


async def test_with_confirm_the_cancel_sent_again_is_confirmed(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    _, get = _routes(router, ["lost"] * 4 + ["queued"], ["wait", "wait", "wait", "cancel"])
    (lost,) = await session.orders.cancel_many([LOST], confirm=True)
    assert lost.status is CancelStatus.CANCELLED and lost.ok
    assert get.call_count == 4


async def test_with_confirm_a_cancel_sent_again_but_never_seen_cancelled_is_not_ok(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    _routes(router, ["lost"] * 4 + ["queued"], ["wait"])
    (pending,) = await session.orders.cancel_many([LOST], confirm=True)
    assert pending.status is CancelStatus.QUEUED and not pending.ok
    assert pending.error is not None and "not confirmed in time" in str(pending.error)


async def test_a_refusal_after_a_lost_answer_stays_unknown_until_a_look_up_proves_it(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    # The first attempt's answer is lost, the retry refused "already queued": words, not proof.
    _routes(router, ["lost", "refused"], ["wait", "wait", "wait", "cancel"])
    (lost,) = await session.orders.cancel_many([LOST])
    assert lost.status is CancelStatus.CANCELLED and lost.ok  # proven by the look-up


async def test_cancel_iter_yields_an_unknown_once_after_the_others(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    _routes(router, ["lost"] * 8, ["wait"])
    async with contextlib.aclosing(session.orders.cancel_iter(i for i in [LOST, FINE, LOST])) as it:
        outcomes = [o async for o in it]
    assert [(o.order_id, o.status) for o in outcomes] == [
        (FINE, CancelStatus.QUEUED),
        (LOST, CancelStatus.UNKNOWN),
    ]
    assert outcomes[1].note is not None and outcomes[1].note.startswith(
        "still unknown after the settling pass"
    )


async def test_the_deadline_ends_the_settling_pass(router: respx.Router, session: AsyncTanxSession) -> None:
    _routes(router, ["lost"], ["down"])
    (lost,) = await session.with_options(max_retries=0).orders.cancel_many([LOST], deadline=0.3)
    assert lost.status is CancelStatus.UNKNOWN and not lost.ok
    # Whichever came first, the pass's own end at the deadline or the deadline's cancellation:
    assert lost.note is not None and "settling pass" in lost.note
    assert not isinstance(lost.error, BatchTimeoutError)  # the cancel's own error is kept


async def test_without_a_batch_deadline_the_settling_pass_lasts_the_sessions_deadline(
    router: respx.Router, session: AsyncTanxSession
) -> None:
    """No batch deadline: the pass over an order still ``unknown`` takes what one operation may
    take (the session's ``deadline``, here 0.5 s), not the full 5 s it takes at most."""
    _routes(router, ["lost"], ["down"])
    quick = session.with_options(max_retries=0, deadline=0.5)
    started = time.monotonic()
    (lost,) = await quick.orders.cancel_many([LOST])
    took = time.monotonic() - started
    assert lost.status is CancelStatus.UNKNOWN and lost.note is not None and "settling pass" in lost.note
    # The first attempt and look-up (0.5 s at most), then the pass (0.5 s); it was 5 s more.
    assert took < 4.0


async def test_an_unexpected_error_in_the_settling_pass_keeps_every_outcome(
    router: respx.Router, session: AsyncTanxSession, clock: FakeClock
) -> None:
    # A look-up that raises something no transport should (a bug in a custom transport): the
    # batch still returns every order's outcome, the lost one still unknown and saying why.
    cancels = ["lost"]
    _routes(router, cancels, ["wait"])

    def broken(request: httpx.Request) -> httpx.Response:
        raise RuntimeError("transport bug")

    router.get(f"https://api.tanx.fi/sapi/v1/orders/{LOST}/").mock(side_effect=broken)
    outcomes = await session.orders.cancel_many([LOST, FINE])
    lost, fine = outcomes
    assert fine.status is CancelStatus.QUEUED and fine.ok
    assert lost.status is CancelStatus.UNKNOWN and not lost.ok
    assert lost.note is not None and "RuntimeError: transport bug" in lost.note


async def test_a_batch_deadline_while_confirming_a_queued_cancel_says_queued_not_failed(
    router: respx.Router,
) -> None:
    """The exchange answered the cancel 2xx; the batch deadline struck while ``confirm=True``
    polled for ``cancel``. The outcome is queued and not ok (not confirmed), never "failed" or
    "not sent"."""
    router.post(CANCEL_URL).mock(return_value=json_response(200, envelope(order_payload(id=1))))
    router.get(url__regex=r".*/sapi/v1/orders/1/$").mock(
        return_value=json_response(200, envelope(order_payload(id=1, state="wait")))
    )
    async with open_session(router) as session:
        [outcome] = await session.orders.cancel_many(
            [1], confirm=True, confirm_with="poll", confirm_timeout=5.0, deadline=0.3
        )
    assert outcome.status is CancelStatus.QUEUED and not outcome.ok
    assert isinstance(outcome.error, CancelNotConfirmedError)
    assert "not confirmed before the batch deadline" in str(outcome.error)
    assert outcome.attempts == 1
