"""A token whose ``exp`` is no time we can hold (issue 34, item 4): ``1e300``, negative beyond
year 1, NaN, infinite, a string. Its expiry is *unknown*, as for a token that is not a JWT:
``session.tokens`` never raises (``access_expires_at`` is None), nothing is refreshed ahead of
time on its account, the token is sent and a 401 renews it; ``on_tokens`` gets the pair."""

from __future__ import annotations

import base64
import json
import logging
import math
from datetime import datetime, timezone
from typing import Any

import httpx
import pytest
import respx
from hypothesis import example, given
from hypothesis import strategies as st

from tanx_async import AsyncTanxSession, TokenPair
from tests.conftest import (
    ACCESS_401,
    CANCEL_URL,
    REFRESH_URL,
    envelope,
    json_response,
    open_session,
    order_payload,
)
from tests.decoding.test_properties import PROFILE
from tests.internals import learn_clock


def jwt_with(exp_json: str, signature: str = "c2ln") -> str:
    """A JWT-shaped token whose claims carry ``"exp": <exp_json>`` as written (any JSON text)."""

    def part(text: str) -> str:
        return base64.urlsafe_b64encode(text.encode()).rstrip(b"=").decode()

    claims = '{"token_type":"access","exp":' + exp_json + "}"
    return f"{part(json.dumps({'alg': 'HS256'}))}.{part(claims)}.{signature}"


ABSURD = ["1e300", "-1e300", "1e999", "NaN", "Infinity", '"tomorrow"', "true", "[1]", "1" + "0" * 400, "1e12"]


def _readable(exp: object) -> float | None:
    """What the session may say of ``exp``: the time it names, when ``datetime`` holds it."""
    if isinstance(exp, bool) or not isinstance(exp, int | float):
        return None
    try:
        return datetime.fromtimestamp(float(exp), tz=timezone.utc).timestamp()
    except (OverflowError, ValueError, OSError):
        return None


EXP_JSON = (
    st.floats(allow_nan=False, allow_infinity=False).map(json.dumps)
    | st.integers().map(str)
    | st.integers(min_value=-(10**20), max_value=10**20).map(str)
    | st.sampled_from(ABSURD)
    | st.text(max_size=10).map(json.dumps)
)


@PROFILE
@given(EXP_JSON)
@example("1e300")
def test_tokens_never_raise_whatever_the_exp(exp_json: str) -> None:
    token = jwt_with(exp_json)
    session = AsyncTanxSession(access_token=token, refresh_token="refresh-1")
    tokens = session.tokens  # (raised OverflowError for 1e300)
    assert tokens is not None and tokens.access == token
    try:
        exp: Any = json.loads(exp_json)
    except ValueError:
        exp = None
    expected = _readable(exp)
    if expected is None:
        assert tokens.access_expires_at is None
    else:
        assert tokens.access_expires_at is not None
        assert math.isclose(tokens.access_expires_at.timestamp(), expected, abs_tol=1e-3)


@pytest.mark.parametrize("exp_json", ABSURD)
async def test_a_token_with_an_absurd_exp_is_sent_and_renewed_on_a_401(
    router: respx.Router, exp_json: str
) -> None:
    """Unknown expiry: no refresh ahead of time (even with the exchange's clock known), the token
    goes out, a 401 renews it once; the renewed pair (itself with an absurd ``exp``) reaches
    ``on_tokens`` and ``session.tokens`` without a warning."""
    stale, fresh = jwt_with(exp_json), jwt_with(exp_json, "ZnJlc2g")
    refresh = router.post(REFRESH_URL).mock(
        return_value=json_response(200, envelope({"access": fresh, "refresh": "refresh-2"}))
    )
    sent: list[str] = []

    def cancel(request: httpx.Request) -> httpx.Response:
        sent.append(request.headers["Authorization"])
        if len(sent) == 1:
            return json_response(401, ACCESS_401)
        return json_response(200, envelope(order_payload(id=json.loads(request.content)["order_id"])))

    router.post(CANCEL_URL).mock(side_effect=cancel)
    got: list[TokenPair] = []
    async with open_session(router, access_token=stale, on_tokens=got.append) as session:
        learn_clock(session)
        assert session.tokens is not None and session.tokens.access_expires_at is None
        assert (await session.orders.cancel(5)).id == 5
        assert session.tokens is not None and session.tokens.access == fresh
    assert sent == [f"JWT {stale}", f"JWT {fresh}"]
    assert refresh.call_count == 1
    assert [pair.access for pair in got] == [fresh]
    assert got[0].access_expires_at is None


async def test_on_tokens_is_not_skipped_for_an_absurd_exp(
    router: respx.Router, caplog: pytest.LogCaptureFixture
) -> None:
    router.post(REFRESH_URL).mock(
        return_value=json_response(200, envelope({"access": jwt_with("1e300"), "refresh": "refresh-2"}))
    )
    router.post(CANCEL_URL).mock(
        side_effect=[
            json_response(401, ACCESS_401),
            json_response(200, envelope(order_payload(id=5))),
        ]
    )
    got: list[TokenPair] = []
    with caplog.at_level(logging.WARNING, logger="tanx_async"):
        async with open_session(router, on_tokens=got.append) as session:
            await session.orders.cancel(5)
    assert len(got) == 1
    assert not [r for r in caplog.records if "on_tokens" in r.getMessage()]
