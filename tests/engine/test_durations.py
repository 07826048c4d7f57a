"""Durations in messages are rounded for people (issue 30, item 2): ``cancel_all(deadline=1)``
against a silent exchange says "deadline of 1 s", not "0.999997 s"."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tanx_async import APITimeoutError, AsyncTanxSession
from tanx_async._duration import duration, within
from tanx_async.testing import SandboxExchange, SandboxServer


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0.999997, "1 s"),
        (1.0, "1 s"),
        (1.5, "1.5 s"),
        (0.15000000000000002, "0.15 s"),
        (0.05, "0.05 s"),
        (0.0004, "0.4 ms"),
        (0.0032, "3.2 ms"),
        (0.00996, "0.01 s"),
        (0.0, "0 s"),
        (9.96, "10 s"),
        (12.4, "12 s"),
        (119.4, "119 s"),
        (300.0, "5 min"),
        (9000.0, "2.5 h"),
        (-2.0, "-2 s"),
        (float("inf"), "inf s"),
    ],
)
def test_duration_rounds_for_people(seconds: float, text: str) -> None:
    assert duration(seconds) == text


def test_within_names_a_bound_only_where_there_was_one() -> None:
    assert within(0.30000000000000004) == " within 0.3 s"
    assert within(None) == ""  # no timeout of ours: the operating system's own gave up


_TEXT = re.compile(r"(-?)([0-9.]+) (ms|s|min|h)")
_UNIT = {"ms": 1e-3, "s": 1.0, "min": 60.0, "h": 3600.0}


@given(st.floats(min_value=-1e7, max_value=1e7, allow_nan=False))
def test_duration_is_short_and_close_to_the_value(seconds: float) -> None:
    text = duration(seconds)
    match = _TEXT.fullmatch(text)
    assert match is not None, text
    assert len(match[2]) <= 7  # "1234.5" hours at most; never 0.999997 or 1e-05
    read = float(match[2]) * _UNIT[match[3]] * (-1 if match[1] else 1)
    # Two significant figures (whole seconds from 10 s, whole minutes from 2 min) and below
    # a microsecond "0 s": within 5 %, or half a unit, of the value.
    assert abs(read - seconds) <= max(0.05 * abs(seconds), 5e-7), (seconds, text)


async def test_cancel_all_on_a_silent_exchange_names_its_deadline_rounded() -> None:
    exchange = SandboxExchange(seed=5)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    exchange.seed_orders(uid, 2)
    exchange.faults.black_hole = True  # connections accepted, never answered
    with SandboxServer(exchange) as server:
        async with AsyncTanxSession(base_url=server.url, access_token=access, refresh_token=refresh) as s:
            with pytest.raises(APITimeoutError) as info:
                await s.orders.cancel_all("btcusdc", deadline=1)
    message = str(info.value)
    assert "within the operation's deadline of 1 s;" in message, message
    assert not re.search(r"\d\.\d{3,}", message), message  # no 0.999997
