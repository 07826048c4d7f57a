"""Shared fixtures: JWT-shaped tokens, order payloads, respx-backed sessions."""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel
import httpx
import pytest
import respx

from tanx_async import AsyncTanxSession

from .internals import Pipeline, flow_module

BASE = "https://api.tanx.fi"
CANCEL_URL = f"{BASE}/sapi/v1/orders/cancel/"
REFRESH_URL = f"{BASE}/sapi/v1/auth/token/refresh/"


def make_jwt(exp: float | None = None, token_type: str = "access", **claims: Any) -> str:
    """A JWT-shaped token (unsigned) whose ``exp`` the client reads."""

    def part(data: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    body: dict[str, Any] = {"token_type": token_type, **claims}
    if exp is not None:
        body["exp"] = int(exp)
    return f"{part({'alg': 'HS256', 'typ': 'JWT'})}.{part(body)}.c2lnbmF0dXJl"


ORDER: dict[str, Any] = {
    "id": 25768879,
    "uuid": "17be02d1-34ef-49df-9b92-264705047d99",
    "side": "buy",
    "ord_type": "limit",
    "price": "68733.81",
    "stop_price": None,
    "avg_price": "0.0",
    "state": "wait",
    "market": "btcusdc",
    "created_at": "2024-05-31T09:02:00+02:00",
    "updated_at": "2024-05-31T09:02:00+02:00",
    "origin_volume": "0.0425",
    "remaining_volume": "0.0335",
    "executed_volume": "0.009000000000000001",
    "maker_fee": "0.0004",
    "taker_fee": "0.0004",
    "trades_count": 2,
    "cancel_reason": None,
}

ACCESS_401: dict[str, Any] = {
    "status": "error",
    "message": "Given token not valid for any token type",
    "payload": {
        "token_class": "AccessToken",
        "token_type": "access",
        "message": "Token is invalid or expired",
        "code": "token_not_valid",
    },
}


def envelope(payload: Any, message: str = "ok", status: str = "success") -> dict[str, Any]:
    return {"status": status, "message": message, "payload": payload}


@pytest.fixture(scope="session", autouse=True)
def _private_token_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The CLI's token cache, for every test and every subprocess a test starts, lives in a
    temporary folder (``XDG_STATE_HOME``), never in the user's state directory or keyring."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
        patch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
        yield


@pytest.fixture(autouse=True)
def _no_proxy_from_the_shell(monkeypatch: pytest.MonkeyPatch) -> None:
    """Sessions honour the proxy variables (trust_env): a developer's own must not steer tests
    (the proxy tests set theirs with monkeypatch)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)


@pytest.fixture(params=["lane", "tasks"])
def batch_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run the test on both paths of the batch engine over the built-in transport: the fast
    path (``_lane``, the default) and a task per cancel (``Pipeline.immediate_enabled``
    switched off for every session the test opens)."""
    if request.param == "tasks":
        monkeypatch.setattr(Pipeline, "immediate_enabled", False)
    return str(request.param)


@pytest.fixture
def access_token() -> str:
    return make_jwt(time.time() + 3600)


@pytest.fixture
def router() -> respx.Router:
    return respx.Router(assert_all_called=False, assert_all_mocked=True)


@pytest.fixture
async def session(router: respx.Router, access_token: str) -> AsyncIterator[AsyncTanxSession]:
    """A session whose HTTP goes to the respx router (injected, never global patching)."""
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(access_token=access_token, refresh_token="refresh-1", http_client=client) as s,
    ):
        yield s


# -- helpers shared by the unit tests ------------------------------------------------------------


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> httpx.Response:
    """An ``httpx.Response`` with a JSON body (respx side effects return these)."""
    return httpx.Response(status, json=body, headers=headers)


def order_payload(**changes: Any) -> dict[str, Any]:
    """``ORDER`` with some keys replaced; a value of ``...`` drops the key."""
    out = dict(ORDER)
    for key, value in changes.items():
        if value is ...:
            out.pop(key, None)
        else:
            out[key] = value
    return out


@contextlib.asynccontextmanager
async def open_session(
    router: respx.Router, *, async_handler: bool = False, **kwargs: Any
) -> AsyncIterator[AsyncTanxSession]:
    """A session over the respx router with custom options. ``async_handler=True`` lets side
    effects be coroutines (so a mocked request can suspend, and concurrency really overlaps)."""
    handler = router.async_handler if async_handler else router.handler
    kwargs.setdefault("access_token", make_jwt(time.time() + 3600))
    kwargs.setdefault("refresh_token", "refresh-1")
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client,
        AsyncTanxSession(http_client=client, **kwargs) as s,
    ):
        yield s


class FakeClock:
    """Stands in for ``anyio.sleep`` (records each delay, advances the clock, returns at once)
    and for the ``time`` module of ``tanx_async._flow`` (its ``monotonic`` reads this clock)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        #: False freezes the clock (sleeps are only recorded): for callers that sleep concurrently.
        self.advance = True

    def monotonic(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.advance:
            self.now += max(seconds, 0.0)
        await anyio.lowlevel.checkpoint()


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """Patch every sleep of the library (retry backoff, flow control) to record instead of wait."""
    fake = FakeClock()
    monkeypatch.setattr(anyio, "sleep", fake.sleep)
    monkeypatch.setattr(flow_module, "time", fake)
    return fake


Effect = httpx.Response | Callable[[httpx.Request], httpx.Response]


async def until(condition: Callable[[], object], seconds: float = 5.0) -> None:
    """Wait (bounded) for ``condition()`` to hold; the caller asserts it afterwards."""
    for _ in range(int(seconds / 0.01)):
        if condition():
            return
        await anyio.sleep(0.01)


def sequence(*effects: Effect) -> Callable[[httpx.Request], httpx.Response]:
    """A side effect answering each call with the next item (a response, or a handler for it)."""
    remaining = iter(effects)

    def handler(request: httpx.Request) -> httpx.Response:
        effect = next(remaining)
        return effect if isinstance(effect, httpx.Response) else effect(request)

    return handler


@pytest.fixture
def self_signed(tmp_path: Path) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.skip("openssl is needed to make a throwaway certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-subj", "/CN=localhost", "-addext", "subjectAltName=IP:127.0.0.1"),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        check=True,
        capture_output=True,
        timeout=30,
    )
    return cert, key
