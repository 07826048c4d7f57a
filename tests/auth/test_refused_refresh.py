"""A refused refresh (issue 34, item 8): the error never carries the refresh token (nor the
access token) when the server echoes it, in its text, repr, body, attributes or chain; and every
later request is told the tokens were refused, not that none were given."""

from __future__ import annotations

import traceback
from typing import Any

import httpx
import pytest
import respx

from tanx_async import AuthenticationError, CancelStatus, NotAuthenticatedError
from tests.conftest import (
    ACCESS_401,
    CANCEL_URL,
    REFRESH_URL,
    envelope,
    json_response,
    make_jwt,
    open_session,
)
from tests.engine.test_unreadable_headers import IDS, TRANSPORTS, run_on, session_on
from tests.stub import Stub, reply

OPAQUE = "rt-0123456789abcdef-opaque"  # a refresh token that is not a JWT
JWT_REFRESH = make_jwt(2_000_000_000, token_type="refresh")


def _echoes(token: str, status: int) -> dict[str, Any]:
    """A refusal that echoes the token everywhere a server might."""
    return {
        "status": "error",
        "message": f"Token {token} is invalid or expired",
        "payload": {"refresh": token, "detail": [f"bad token: {token}"], "sent": {"token_value": token}},
    }


def _everything(error: BaseException) -> str:
    """All a reporter could reach from the error: its text, repr, body, attributes, chain, and
    the formatted traceback."""
    texts = [str(error), repr(error), repr(vars(error)), "".join(traceback.format_exception(error))]
    seen: BaseException | None = error
    while seen is not None:
        texts += [str(seen), repr(seen), repr(vars(seen))]
        seen = seen.__cause__ or seen.__context__
    return "\n".join(texts)


@pytest.mark.parametrize("status", [400, 401, 403, 200])
@pytest.mark.parametrize("refresh", [OPAQUE, JWT_REFRESH], ids=["opaque", "jwt"])
async def test_a_refused_refresh_never_shows_the_token(
    router: respx.Router, status: int, refresh: str
) -> None:
    access = make_jwt(2_000_000_000)
    router.post(REFRESH_URL).mock(return_value=json_response(status, _echoes(refresh, status)))
    router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    async with open_session(router, access_token=access, refresh_token=refresh, max_retries=0) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.orders.cancel(1)
    error = info.value
    assert error.status_code == status
    assert "is invalid or expired" in error.message  # what the server said, the token cut out
    everything = _everything(error)
    assert refresh not in everything
    assert access not in everything
    assert error.response is None  # (its bytes are the raw answer)
    assert isinstance(error.body, dict) and error.body["payload"]["refresh"] == "<redacted>"


@pytest.mark.parametrize("refresh", [OPAQUE, JWT_REFRESH], ids=["opaque", "jwt"])
async def test_after_a_refusal_every_request_says_the_tokens_were_refused(
    router: respx.Router, refresh: str
) -> None:
    refresh_route = router.post(REFRESH_URL).mock(return_value=json_response(401, _echoes(refresh, 401)))
    cancel = router.post(CANCEL_URL).mock(return_value=json_response(401, ACCESS_401))
    async with open_session(router, refresh_token=refresh, max_retries=0) as session:
        with pytest.raises(AuthenticationError):
            await session.orders.cancel(1)
        for _ in range(2):
            with pytest.raises(AuthenticationError) as later:
                await session.orders.cancel(2)
            assert not isinstance(later.value, NotAuthenticatedError)
            text = str(later.value)
            assert "refused" in text and "log in again" in text
            assert "pass access_token/refresh_token" not in text
            assert refresh not in _everything(later.value)
        outcomes = await session.orders.cancel_many([3, 4])
        assert [o.status for o in outcomes] == [CancelStatus.FAILED] * 2
        assert all(isinstance(o.error, AuthenticationError) and "refused" in str(o.error) for o in outcomes)
        assert session.tokens is None
    assert refresh_route.call_count == 1  # never asked again with the dead token
    assert cancel.call_count == 1  # nothing sent once the tokens are known dead


async def test_a_refused_login_never_shows_the_signature(router: respx.Router) -> None:
    from tests.internals import random_wallet

    signed: list[str] = []

    def login(request: httpx.Request) -> httpx.Response:
        import json

        signature = json.loads(request.content)["user_signature"]
        signed.append(signature)
        return json_response(
            400, envelope({"user_signature": signature}, f"Invalid signature {signature}", "error")
        )

    router.post("https://api.tanx.fi/sapi/v2/auth/nonce/").mock(
        return_value=json_response(200, envelope("sign this nonce"))
    )
    router.post("https://api.tanx.fi/sapi/v2/auth/login/").mock(side_effect=login)
    key, address = random_wallet()
    async with open_session(
        router, access_token=None, refresh_token=None, private_key=key, eth_address=address, max_retries=0
    ) as session:
        with pytest.raises(AuthenticationError) as info:
            await session.orders.cancel(1)
    assert signed and signed[0] not in _everything(info.value)
    assert "Invalid signature" in info.value.message


@pytest.mark.parametrize(("loop", "transport"), TRANSPORTS, ids=IDS)
def test_a_refused_refresh_on_every_transport(loop: str, transport: str) -> None:
    """The same over a loopback exchange, on each transport (each builds the error's answer)."""
    access = make_jwt(2_000_000_000)
    refreshes = [0]

    def answer(
        method: str, path: str, body: Any, headers: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes]:
        if path.endswith("/token/refresh/"):
            refreshes[0] += 1
            return reply(401, _echoes(OPAQUE, 401))
        return reply(401, ACCESS_401)

    async def main() -> None:
        async with (
            Stub(answer) as stub,
            session_on(stub, transport, access_token=access, refresh_token=OPAQUE, max_retries=0) as session,
        ):
            with pytest.raises(AuthenticationError) as info:
                await session.orders.cancel(1)
            assert OPAQUE not in _everything(info.value) and access not in _everything(info.value)
            with pytest.raises(AuthenticationError, match="refused this session's refresh token"):
                await session.orders.cancel(2)
        assert refreshes[0] == 1
        assert len(stub.paths("POST")) == 2  # the cancel, the refresh: nothing after the refusal

    run_on(loop, main)
