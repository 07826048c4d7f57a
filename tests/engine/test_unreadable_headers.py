"""Headers we cannot read are ignored, never a crash after the exchange accepted a request
(issue 34, items 2 and 3): a ``Date`` outside Python's calendar, a ``Retry-After`` date with a
20-digit year. On every transport: the built-in one (asyncio), the anyio one (trio) and
httpx, against a scripted loopback exchange (``tests.stub``); and through respx."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import anyio
import httpx
import pytest
import respx
from hypothesis import given
from hypothesis import strategies as st

from tanx_async import AsyncTanxSession, CancelStatus, RateLimitError
from tests.conftest import CANCEL_URL, envelope, json_response, make_jwt, open_session, order_payload
from tests.decoding.test_properties import PROFILE
from tests.internals import ExchangeClock, TransportName, auth_of
from tests.stub import Stub, reply

BAD_DATE = "Mon, 01 Jan 10000 00:00:07 GMT"
HUGE_DATE = "Mon, 01 Jan 99999999999999999999 00:00:00 GMT"

#: (event loop, transport): every transport a session can use.
TRANSPORTS = [("asyncio", "native"), ("asyncio", "httpx"), ("trio", "native")]
IDS = [f"{loop}-{name}" for loop, name in TRANSPORTS]


def run_on(loop: str, main: Callable[[], Awaitable[None]]) -> None:
    if loop == "trio":
        pytest.importorskip("trio")
    anyio.run(main, backend=loop)


def session_on(stub: Stub, transport: str, **kwargs: Any) -> AsyncTanxSession:
    name: TransportName = "auto" if transport == "native" else transport  # type: ignore[assignment]
    kwargs.setdefault("access_token", make_jwt(time.time() + 3600))
    kwargs.setdefault("refresh_token", "refresh-1")
    return AsyncTanxSession(base_url=stub.url, transport=name, **kwargs)


def _order_id(path: str) -> int:
    return int(path.rstrip("/").rsplit("/", 1)[1])


@pytest.mark.parametrize(("loop", "transport"), TRANSPORTS, ids=IDS)
def test_an_unreadable_date_is_ignored_on_every_path(loop: str, transport: str) -> None:
    """``orders.cancel``, ``cancel_many`` (its fast path too), confirmation look-ups and the
    settling pass: every answer carries ``Date: Mon, 01 Jan 10000 ...``; every outcome is what
    the exchange said, and the clock stays unknown (as with no ``Date`` at all)."""
    ambiguous = 99  # its cancel answers 504 and its first look-up 500: the settling pass settles it
    lookups: dict[int, int] = {}

    def answer(
        method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/cancel/"):
            oid = body["order_id"]
            if oid == ambiguous:
                return reply(504, envelope("", "Gateway Timeout", "error"), date=BAD_DATE)
            return reply(200, envelope(order_payload(id=oid)), date=BAD_DATE)
        oid = _order_id(path)
        lookups[oid] = lookups.get(oid, 0) + 1
        if oid == ambiguous and lookups[oid] == 1:
            return reply(500, envelope("", "Internal Server Error", "error"), date=BAD_DATE)
        now = time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(time.time() + 5))
        return reply(200, envelope(order_payload(id=oid, state="cancel", updated_at=now)), date=BAD_DATE)

    async def main() -> None:
        async with Stub(answer) as stub, session_on(stub, transport, max_retries=0) as session:
            order = await session.orders.cancel(5)
            assert order.id == 5
            outcomes = await session.orders.cancel_many(range(10, 40), concurrency=4)
            assert [o.status for o in outcomes] == [CancelStatus.QUEUED] * 30, [o.error for o in outcomes]
            confirmed = await session.orders.cancel_many([50, 51], confirm=True, confirm_with="poll")
            assert [o.status for o in confirmed] == [CancelStatus.CANCELLED] * 2
            [settled] = await session.orders.cancel_many([ambiguous])
            assert settled.status is CancelStatus.CANCELLED, settled
            assert "settled" in (settled.note or "")
            assert lookups[ambiguous] == 2  # the batch's own look-up, then the settling pass's
            assert auth_of(session).clock.offset is None  # nothing learned from an unreadable Date

    run_on(loop, main)


async def test_an_unreadable_date_through_respx(router: respx.Router) -> None:
    def cancel(request: httpx.Request) -> httpx.Response:
        oid = json.loads(request.content)["order_id"]
        return json_response(200, envelope(order_payload(id=oid)), headers={"Date": BAD_DATE})

    router.post(CANCEL_URL).mock(side_effect=cancel)
    async with open_session(router) as session:
        assert (await session.orders.cancel(5)).id == 5
        outcomes = await session.orders.cancel_many([1, 2, 3])
        assert all(o.status is CancelStatus.QUEUED for o in outcomes)


def test_an_unreadable_date_after_a_good_one_is_not_taken_for_it() -> None:
    """A failed parse never pairs the new text with the previous text's stamp, and the same
    unreadable text seen again is still ignored."""
    now = [1_445_412_480.0]  # Wed, 21 Oct 2015 07:28:00 GMT
    clock = ExchangeClock(local=lambda: now[0])
    clock.observe({"date": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0)
    assert clock.offset is not None and abs(clock.offset) < 1
    now[0] += 3600  # this machine's clock jumps an hour
    for _ in range(2):
        clock.observe({"date": BAD_DATE}, 0.0)
        assert clock.offset is not None and abs(clock.offset) < 1  # unchanged: nothing learned
    clock.observe({"date": "Wed, 21 Oct 2015 08:28:00 GMT"}, 0.0)
    assert abs(clock.offset) < 1


@PROFILE
@given(
    st.text(max_size=60)
    | st.builds(
        "{}, {:02d} {} {} {:02d}:{:02d}:{:02d} {}".format,
        st.sampled_from(["Mon", "Tue", "Xyz", ""]),
        st.integers(0, 99),
        st.sampled_from(["Jan", "Feb", "Dec", "Foo"]),
        st.integers(-(10**25), 10**25),
        st.integers(0, 99),
        st.integers(0, 99),
        st.integers(0, 99),
        st.sampled_from(["GMT", "+0000", "-2359", "+9999", "UT", "EST", ""]),
    )
)
def test_observe_never_raises(value: str) -> None:
    clock = ExchangeClock(local=lambda: 1_700_000_000.0)
    clock.observe({"date": value}, 0.01)
    assert clock.offset is None or clock.offset == clock.offset


@pytest.mark.parametrize(("loop", "transport"), TRANSPORTS, ids=IDS)
def test_a_429_with_an_overflowing_retry_after_date_is_a_rate_limit(loop: str, transport: str) -> None:
    """``Retry-After: Mon, 01 Jan 99999999999999999999 ...`` reads as no ``Retry-After``: the 429
    is retried with backoff, never an ``OverflowError``."""
    calls = [0]

    def answer(
        method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        calls[0] += 1
        if calls[0] == 1:
            return reply(429, envelope("", "Too many requests", "error"), retry_after=HUGE_DATE)
        return reply(200, envelope(order_payload(id=_order_id(path))))

    async def main() -> None:
        async with Stub(answer) as stub:
            async with session_on(stub, transport, max_retries=1) as session:
                assert (await session.orders.get(7)).id == 7
            calls[0] = 0
            async with session_on(stub, transport, max_retries=0) as session:
                with pytest.raises(RateLimitError) as info:
                    await session.orders.get(7)
                assert info.value.retry_after is None

    run_on(loop, main)


async def test_a_429_with_an_overflowing_retry_after_through_respx(router: respx.Router) -> None:
    route = router.get("https://api.tanx.fi/sapi/v1/orders/7/").mock(
        return_value=json_response(
            429, envelope("", "slow down", "error"), headers={"Retry-After": HUGE_DATE}
        )
    )
    async with open_session(router, max_retries=0) as session:
        with pytest.raises(RateLimitError) as info:
            await session.orders.get(7)
    assert info.value.retry_after is None
    assert route.call_count == 1
