"""Retry policy, Retry-After, backoff, connection errors and session-wide flow control."""

from __future__ import annotations

import email.utils
import itertools
import json
import math
import random
import time

import anyio
import httpx
import pytest
import respx

from tanx_async import (
    APIConnectionError,
    APITimeoutError,
    AsyncTanxSession,
    AuthenticationError,
    BadRequestError,
    CancelStatus,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    TanxError,
)
from tests.conftest import (
    ACCESS_401,
    BASE,
    CANCEL_URL,
    ORDER,
    REFRESH_URL,
    FakeClock,
    envelope,
    json_response,
    open_session,
)
from tests.internals import APIStatusError, FlowControl, RetryPolicy, is_ambiguous, parse_retry_after

PATH = "/sapi/v1/orders/7/"
URL = BASE + PATH
OK = envelope({"id": 7})
TOKENS = envelope({"access": "new-access", "refresh": "refresh-2"})


def _status(code: int, retry_after: float | None = None) -> APIStatusError:
    from tests.internals import status_error_class

    err = status_error_class(code)("x", status_code=code, body=None, response=None)
    if isinstance(err, RateLimitError):
        err.retry_after = retry_after
    return err


# -- RetryPolicy.should_retry ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "idempotent", "expected"),
    [
        # Proven not processed: retried whatever the request.
        (_status(429), False, True),
        (_status(429, 1.0), False, True),
        (_status(429, 30.0), True, True),
        (_status(429, 30.5), True, False),  # above the cap: the caller decides
        (_status(503), False, True),
        (_status(503), True, True),
        # Maybe processed: only idempotent requests.
        (_status(500), True, True),
        (_status(500), False, False),
        (_status(502), True, True),
        (_status(502), False, False),
        (_status(504), True, True),
        (_status(504), False, False),
        (_status(408), True, True),
        (_status(408), False, False),
        # Never retried.
        (_status(400), True, False),
        (_status(401), True, False),
        (_status(403), True, False),
        (_status(404), True, False),
        (_status(409), True, False),
        (_status(422), True, False),
        (_status(200), True, False),  # a 200 with status: error
        (APIConnectionError("refused", maybe_processed=False), False, True),
        (APIConnectionError("refused", maybe_processed=False), True, True),
        (APIConnectionError("reset", maybe_processed=True), True, True),
        (APIConnectionError("reset", maybe_processed=True), False, False),
        (APITimeoutError("connect", maybe_processed=False), False, True),
        (APITimeoutError("read", maybe_processed=True), True, True),
        (APITimeoutError("read", maybe_processed=True), False, False),
        (ResponseValidationError("bad", body=b"x"), True, False),
        (TanxError("other"), True, False),
    ],
)
def test_should_retry(error: TanxError, idempotent: bool, expected: bool) -> None:
    policy = RetryPolicy(max_retries=3)
    assert policy.should_retry(error, attempt=0, idempotent=idempotent) is expected
    # Whatever the error, the budget ends the retries.
    assert policy.should_retry(error, attempt=3, idempotent=idempotent) is False


def test_should_retry_respects_max_retries() -> None:
    policy = RetryPolicy(max_retries=2)
    err = _status(503)
    assert [policy.should_retry(err, attempt=a, idempotent=True) for a in range(4)] == [
        True,
        True,
        False,
        False,
    ]
    assert RetryPolicy(max_retries=0).should_retry(err, attempt=0, idempotent=True) is False


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (APIConnectionError("x", maybe_processed=True), True),
        (APIConnectionError("x", maybe_processed=False), False),
        (APITimeoutError("x", maybe_processed=True), True),
        (_status(500), True),
        (_status(502), True),
        (_status(504), True),
        (_status(408), True),
        (_status(503), False),
        (_status(429), False),
        (_status(400), False),
        (TanxError("x"), False),
    ],
)
def test_is_ambiguous(error: TanxError, expected: bool) -> None:
    assert is_ambiguous(error) is expected


# -- RetryPolicy.delay -------------------------------------------------------------------------


def test_delay_is_exponential_with_equal_jitter() -> None:
    policy = RetryPolicy(backoff_base=0.1, backoff_cap=2.0)
    rng = random.Random(1234)
    err = _status(503)
    for attempt in range(10):
        ceiling = min(2.0, 0.1 * 2**attempt)
        samples = [policy.delay(err, attempt=attempt, rng=rng) for _ in range(300)]
        assert all(ceiling / 2 <= s <= ceiling for s in samples), (attempt, min(samples), max(samples))
        # Jitter: the samples spread over the upper half of the backoff.
        assert max(samples) - min(samples) > ceiling / 4


def test_delay_uses_global_random_without_rng() -> None:
    policy = RetryPolicy()
    delay = policy.delay(APIConnectionError("x", maybe_processed=False), attempt=1)
    assert 0.1 <= delay <= 0.2


@pytest.mark.parametrize(("retry_after", "expected"), [(1.0, 1.0), (0.0, 0.0), (30.0, 30.0), (500.0, 30.0)])
def test_delay_honours_retry_after_up_to_the_cap(retry_after: float, expected: float) -> None:
    assert RetryPolicy().delay(_status(429, retry_after), attempt=5) == expected


def test_delay_of_429_without_retry_after_is_backoff() -> None:
    delay = RetryPolicy(backoff_base=0.1).delay(_status(429), attempt=0, rng=random.Random(0))
    assert 0.05 <= delay <= 0.1


# -- parse_retry_after ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({}, None),
        ({"retry-after": "1"}, 1.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after": "0"}, 0.0),
        ({"retry-after": "-3"}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after": ""}, None),
        ({"retry-after": "nan"}, None),
        ({"retry-after": "inf"}, None),
        ({"retry-after": "1e999"}, None),
        ({"retry-after-ms": "250"}, 0.25),
        ({"retry-after-ms": "250", "retry-after": "9"}, 0.25),
        ({"retry-after-ms": "junk", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "nan", "retry-after": "9"}, 9.0),
        ({"retry-after-ms": "inf"}, None),
        ({"retry-after-ms": "-5"}, 0.0),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers) == expected


def test_parse_retry_after_http_date() -> None:
    now = 1_445_412_480.0  # Wed, 21 Oct 2015 07:28:00 GMT
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:28:30 GMT"}, now=now) == 30.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 07:27:00 GMT"}, now=now) == 0.0
    assert parse_retry_after({"retry-after": "Wed, 21 Oct 2015 09:28:30 +0200"}, now=now) == 30.0
    assert parse_retry_after({"retry-after": "Wed, 99 Foo 2015"}, now=now) is None


def test_parse_retry_after_http_date_counts_from_the_answers_date() -> None:
    # This machine's clock is irrelevant (it may be minutes off): both dates are the exchange's.
    headers = {"retry-after": "Wed, 21 Oct 2015 07:28:05 GMT", "date": "Wed, 21 Oct 2015 07:28:00 GMT"}
    assert parse_retry_after(headers) == 5.0
    assert parse_retry_after({**headers, "date": "garbage"}) == 0.0  # from now (years later)


def test_parse_retry_after_reads_httpx_headers_case_insensitively() -> None:
    assert parse_retry_after(httpx.Headers({"Retry-After": "4"})) == 4.0


# -- retries through the session ---------------------------------------------------------------


async def test_5xx_then_200_is_retried(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(URL).mock(
        side_effect=[
            json_response(500, envelope("", "Internal Server Error", "error")),
            httpx.Response(502, content=b"<title>502 Bad Gateway</title>"),
            httpx.Response(503, content=b""),
            json_response(200, OK),
        ]
    )
    assert await session.request("GET", PATH, idempotent=True) == OK
    assert route.call_count == 4
    assert len(clock.sleeps) == 3
    for attempt, delay in enumerate(clock.sleeps):
        ceiling = min(2.0, 0.1 * 2**attempt)
        assert ceiling / 2 <= delay <= ceiling


async def test_every_attempt_is_the_same_request(router: respx.Router, clock: FakeClock) -> None:
    route = router.post(CANCEL_URL).mock(
        side_effect=[httpx.Response(503), httpx.Response(503), json_response(200, envelope(ORDER))]
    )
    async with open_session(router) as session:
        await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 5}, idempotent=True)
    assert route.call_count == 3
    bodies = {call.request.content for call in route.calls}
    assert bodies == {b'{"order_id":5}'}
    auth = {call.request.headers["Authorization"] for call in route.calls}
    assert len(auth) == 1


async def test_429_retry_after_is_honoured(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(URL).mock(
        side_effect=[
            json_response(429, envelope("", "Too many requests", "error"), headers={"Retry-After": "1"}),
            json_response(200, OK),
        ]
    )
    start = clock.now
    assert await session.request("GET", PATH, idempotent=True) == OK
    assert route.call_count == 2
    assert clock.sleeps[0] == 1.0  # the retry waits exactly Retry-After, no jitter
    assert clock.now - start >= 1.0


async def test_429_retry_after_http_date_is_honoured(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    when = email.utils.formatdate(time.time() + 5, usegmt=True)
    route = router.get(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": when}), json_response(200, OK)]
    )
    await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 2
    assert 3.0 <= clock.sleeps[0] <= 5.0  # whole seconds on the wire


async def test_429_retry_after_ms_is_honoured(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(URL).mock(
        side_effect=[httpx.Response(429, headers={"retry-after-ms": "250"}), json_response(200, OK)]
    )
    await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 2
    assert clock.sleeps[0] == 0.25


async def test_429_is_retried_even_when_not_idempotent(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(URL).mock(side_effect=[httpx.Response(429), json_response(200, OK)])
    await session.request("POST", PATH, json={}, idempotent=False)
    assert route.call_count == 2


async def test_429_retry_after_above_cap_is_not_retried(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(URL).mock(
        return_value=json_response(429, envelope("", "slow", "error"), headers={"Retry-After": "3600"})
    )
    with pytest.raises(RateLimitError) as info:
        await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 1
    assert info.value.retry_after == 3600.0
    assert clock.sleeps == []


@pytest.mark.parametrize(
    ("status", "cls"),
    [(400, BadRequestError), (403, PermissionDeniedError), (404, NotFoundError), (401, AuthenticationError)],
)
async def test_4xx_is_not_retried(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock, status: int, cls: type[TanxError]
) -> None:
    refresh = router.post(REFRESH_URL)
    route = router.get(URL).mock(return_value=json_response(status, envelope("", "no", "error")))
    with pytest.raises(cls):
        await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 1
    assert refresh.call_count == 0
    assert clock.sleeps == []


async def test_500_is_not_retried_when_not_idempotent(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(URL).mock(return_value=httpx.Response(500))
    with pytest.raises(InternalServerError):
        await session.request("POST", PATH, json={}, idempotent=False)
    assert route.call_count == 1


async def test_401_access_refreshes_once_and_resends_once(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    refresh = router.post(REFRESH_URL).mock(return_value=json_response(200, TOKENS))
    route = router.get(URL).mock(return_value=json_response(401, ACCESS_401))
    with pytest.raises(AuthenticationError) as info:
        await session.request("GET", PATH, idempotent=True)
    assert info.value.status_code == 401
    assert refresh.call_count == 1
    assert route.call_count == 2
    assert route.calls[1].request.headers["Authorization"] == "JWT new-access"
    assert clock.sleeps == []  # the resend is not a backoff retry


@pytest.mark.parametrize("max_retries", [0, 1, 2, 5])
async def test_max_retries_is_respected(router: respx.Router, clock: FakeClock, max_retries: int) -> None:
    route = router.get(URL).mock(return_value=httpx.Response(503))
    async with open_session(router, max_retries=max_retries) as session:
        with pytest.raises(InternalServerError):
            await session.request("GET", PATH, idempotent=True)
    assert route.call_count == max_retries + 1
    assert len(clock.sleeps) == max_retries


async def test_with_options_max_retries(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(URL).mock(return_value=httpx.Response(503))
    with pytest.raises(InternalServerError):
        await session.with_options(max_retries=1).request("GET", PATH, idempotent=True)
    assert route.call_count == 2
    with pytest.raises(InternalServerError):
        await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 2 + 4  # the original keeps its default of 3 retries


# -- connection errors -------------------------------------------------------------------------


async def test_connect_error_is_retried_for_cancel(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(CANCEL_URL).mock(
        side_effect=[httpx.ConnectError("refused"), json_response(200, envelope(ORDER))]
    )
    order = await session.orders.cancel(ORDER["id"])
    assert order.id == ORDER["id"]
    assert route.call_count == 2
    assert json.loads(route.calls[1].request.content) == {"order_id": ORDER["id"]}


async def test_connect_error_is_retried_even_when_not_idempotent(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(URL).mock(side_effect=[httpx.ConnectError("refused"), json_response(200, OK)])
    await session.request("POST", PATH, json={}, idempotent=False)
    assert route.call_count == 2


async def test_connect_error_every_time(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.get(URL).mock(side_effect=httpx.ConnectError("refused"))
    with pytest.raises(APIConnectionError) as info:
        await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 4
    assert info.value.maybe_processed is False
    assert (info.value.method, info.value.path) == ("GET", PATH)
    assert "ConnectError" in str(info.value)


async def test_read_timeout_is_retried_for_cancel(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(CANCEL_URL).mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.ReadTimeout("slow"),
            json_response(200, envelope(ORDER)),
        ]
    )
    order = await session.orders.cancel(ORDER["id"])
    assert order.id == ORDER["id"]
    assert route.call_count == 3


async def test_read_timeout_every_time_on_a_request(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(CANCEL_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError) as info:
        await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    assert route.call_count == 4
    assert info.value.maybe_processed is True


async def test_read_timeout_is_not_retried_for_non_idempotent(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    route = router.post(URL).mock(side_effect=httpx.ReadTimeout("slow"))
    with pytest.raises(APITimeoutError):
        await session.request("POST", PATH, json={}, idempotent=False)
    assert route.call_count == 1


async def test_read_timeout_is_not_retried_for_the_refresh(router: respx.Router, clock: FakeClock) -> None:
    refresh = router.post(REFRESH_URL).mock(side_effect=httpx.ReadTimeout("slow"))
    cancel = router.post(CANCEL_URL).mock(
        side_effect=[json_response(401, ACCESS_401), json_response(200, envelope(ORDER))]
    )
    async with open_session(router) as session:
        with pytest.raises(APITimeoutError) as info:
            await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    # The refresh token rotates: a refresh that may have arrived is never replayed.
    assert refresh.call_count == 1
    assert cancel.call_count == 1
    assert info.value.maybe_processed is True


async def test_connect_error_is_retried_for_the_refresh(router: respx.Router, clock: FakeClock) -> None:
    refresh = router.post(REFRESH_URL).mock(
        side_effect=[httpx.ConnectError("refused"), json_response(200, TOKENS)]
    )
    cancel = router.post(CANCEL_URL).mock(
        side_effect=[json_response(401, ACCESS_401), json_response(200, envelope(ORDER))]
    )
    async with open_session(router) as session:
        await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    assert refresh.call_count == 2
    assert cancel.call_count == 2
    assert json.loads(refresh.calls[1].request.content) == {"refresh": "refresh-1"}


# -- flow control: the 429 pause and the rate limit --------------------------------------------


async def test_flow_pause_holds_every_caller(clock: FakeClock) -> None:
    flow = FlowControl()
    flow.pause(1.0)
    assert flow.paused_for == 1.0
    done: list[float] = []

    async def caller() -> None:
        await flow.acquire()
        done.append(clock.now)

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(caller)
    assert len(done) == 5
    assert all(t >= 1000.0 + 1.0 for t in done)
    assert flow.paused_for == 0.0


async def test_flow_longest_pause_wins(clock: FakeClock) -> None:
    flow = FlowControl()
    flow.pause(2.0)
    flow.pause(0.5)
    assert flow.paused_for == 2.0
    await flow.acquire()
    assert clock.now >= 1002.0


async def test_flow_pause_extended_while_waiting(clock: FakeClock, monkeypatch: pytest.MonkeyPatch) -> None:
    flow = FlowControl()
    flow.pause(1.0)
    extended = False

    async def sleep(seconds: float) -> None:
        nonlocal extended
        await clock.sleep(seconds)
        if not extended:
            extended = True
            flow.pause(3.0)  # another 429 arrived while we slept

    monkeypatch.setattr(anyio, "sleep", sleep)
    await flow.acquire()
    assert clock.now >= 1000.0 + 1.0 + 3.0
    assert len(clock.sleeps) == 2


async def test_flow_rate_limit_spaces_requests(clock: FakeClock) -> None:
    flow = FlowControl(rate=10)
    stamps = []
    for _ in range(5):
        await flow.acquire()
        stamps.append(clock.now)
    gaps = [b - a for a, b in itertools.pairwise(stamps)]
    assert gaps == pytest.approx([0.1] * 4)


async def test_flow_rate_limit_burst(clock: FakeClock) -> None:
    flow = FlowControl(rate=10, burst=3)
    for _ in range(3):
        await flow.acquire()
    assert clock.sleeps == []  # the burst goes out at once
    await flow.acquire()
    assert clock.sleeps == [pytest.approx(0.1)]


async def test_flow_rate_limit_concurrent_callers(clock: FakeClock) -> None:
    flow = FlowControl(rate=20)
    clock.advance = False  # the callers sleep side by side: record what each one waits

    async with anyio.create_task_group() as tg:
        for _ in range(5):
            tg.start_soon(flow.acquire)
    # Each caller reserved its own slot before sleeping: one every 50 ms, none bunched.
    assert sorted(clock.sleeps) == pytest.approx([0.05, 0.10, 0.15, 0.20])


async def test_flow_rate_limit_real_time_loose() -> None:
    flow = FlowControl(rate=50)
    started = time.monotonic()
    async with anyio.create_task_group() as tg:
        for _ in range(6):
            tg.start_soon(flow.acquire)
    assert time.monotonic() - started >= 0.09  # 5 intervals of 20 ms, loosely


async def test_flow_no_limit_never_sleeps(clock: FakeClock) -> None:
    flow = FlowControl()
    for _ in range(100):
        await flow.acquire()
    assert clock.sleeps == []
    assert flow.paused_for == 0.0


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1.0, 1), (10, 0)])
def test_flow_bad_arguments(rate: float, burst: int) -> None:
    with pytest.raises(ValueError, match="rate_limit"):
        FlowControl(rate, burst)


async def test_session_rate_limit(router: respx.Router, clock: FakeClock) -> None:
    route = router.get(URL).mock(return_value=json_response(200, OK))
    async with open_session(router, rate_limit=4) as session:
        for _ in range(3):
            await session.request("GET", PATH, idempotent=True)
    assert route.call_count == 3
    assert clock.sleeps == pytest.approx([0.25, 0.25])


async def test_429_pauses_the_whole_session(router: respx.Router) -> None:
    # Real time, loose bounds: request B starts after A's 429 and must wait out A's Retry-After.
    limited = anyio.Event()
    seen: dict[str, float] = {}

    async def slow_route(request: httpx.Request) -> httpx.Response:
        if "limited_at" not in seen:
            seen["limited_at"] = time.monotonic()
            limited.set()
            return httpx.Response(429, headers={"Retry-After": "0.3"})
        seen["a_retried_at"] = time.monotonic()
        return json_response(200, OK)

    async def other_route(request: httpx.Request) -> httpx.Response:
        seen["b_sent_at"] = time.monotonic()
        return json_response(200, OK)

    router.get(URL).mock(side_effect=slow_route)
    other = router.get(f"{BASE}/sapi/v1/orders/8/").mock(side_effect=other_route)

    async with open_session(router, async_handler=True) as session:

        async def b() -> None:
            await limited.wait()
            await session.request("GET", "/sapi/v1/orders/8/", idempotent=True)

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(b)
                tg.start_soon(lambda: session.request("GET", PATH, idempotent=True))
    assert other.call_count == 1
    assert seen["b_sent_at"] - seen["limited_at"] >= 0.25
    assert seen["a_retried_at"] - seen["limited_at"] >= 0.25


async def test_429_pause_seen_by_other_with_options_views(router: respx.Router, clock: FakeClock) -> None:
    router.get(URL).mock(
        side_effect=[httpx.Response(429, headers={"Retry-After": "2"}), json_response(200, OK)]
    )
    async with open_session(router, max_retries=0) as session:
        with pytest.raises(RateLimitError):
            await session.request("GET", PATH, idempotent=True)
        view = session.with_options(timeout=1.0)
        before = clock.now
        await view.request("GET", PATH, idempotent=True)
    assert clock.now - before >= 2.0
    assert math.isclose(clock.sleeps[-1], 2.0, abs_tol=1e-6)


async def test_a_request_that_may_have_arrived_stays_maybe_processed_after_a_later_refusal(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    """The first attempt timed out reading (it may have been processed); the retries never
    connected. The error raised speaks of the request, not of its last attempt."""
    route = router.post(CANCEL_URL).mock(
        side_effect=[
            httpx.ReadTimeout("slow"),
            httpx.ConnectError("refused"),
            httpx.PoolTimeout("full"),
            httpx.ConnectError("refused"),
        ]
    )
    with pytest.raises(APIConnectionError) as info:
        await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    assert route.call_count == 4
    assert info.value.maybe_processed is True
    assert "an earlier attempt may have" in str(info.value)


async def _cancel_with_a_failing_renewal(
    router: respx.Router, *, timed_out_first: bool
) -> pytest.ExceptionInfo[APIConnectionError]:
    """A cancel (after a read timeout, if ``timed_out_first``) meets an expired token, and the
    refresh never connects."""
    first = [httpx.ReadTimeout("slow")] if timed_out_first else []
    router.post(CANCEL_URL).mock(side_effect=[*first, json_response(401, ACCESS_401)])
    router.post(REFRESH_URL).mock(side_effect=httpx.ConnectError("refused"))
    async with open_session(router, access_token="opaque-old") as session:
        with pytest.raises(APIConnectionError) as info:
            await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    return info


async def test_a_renewal_that_fails_after_an_attempt_that_may_have_arrived_keeps_maybe_processed(
    router: respx.Router, clock: FakeClock
) -> None:
    """Attempt 1 timed out reading (it may have been processed); attempt 2 met an expired token
    and the refresh never connected. The error raised speaks of the cancel, not of the refresh
    (whose own error, shared by every request waiting on it, is left as it is: the cause)."""
    info = await _cancel_with_a_failing_renewal(router, timed_out_first=True)
    assert info.value.maybe_processed is True
    assert info.value.path == "/sapi/v1/orders/cancel/"
    assert "token renewal failed" in str(info.value) and "an earlier attempt may have" in str(info.value)
    cause = info.value.__cause__
    assert isinstance(cause, APIConnectionError) and cause.maybe_processed is False


async def test_a_renewal_that_fails_before_anything_was_sent_is_raised_as_it_is(
    router: respx.Router, clock: FakeClock
) -> None:
    info = await _cancel_with_a_failing_renewal(router, timed_out_first=False)
    assert info.value.maybe_processed is False
    assert info.value.path == "/sapi/v1/auth/token/refresh/"
    assert info.value.__cause__ is not info.value


async def test_a_batch_outcome_after_such_a_renewal_failure_is_unknown_and_says_maybe_processed(
    router: respx.Router, clock: FakeClock
) -> None:
    router.post(CANCEL_URL).mock(side_effect=[httpx.ReadTimeout("slow"), json_response(401, ACCESS_401)])
    router.post(REFRESH_URL).mock(side_effect=httpx.ConnectError("refused"))
    router.get(url__regex=r".*/sapi/v1/orders/\d+/$").mock(return_value=json_response(401, ACCESS_401))
    async with open_session(router, access_token="opaque-old") as session:
        [outcome] = await session.orders.cancel_many([1])
    assert outcome.status is CancelStatus.UNKNOWN
    assert isinstance(outcome.error, APIConnectionError) and outcome.error.maybe_processed is True
