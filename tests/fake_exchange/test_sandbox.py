"""Tests for tanx_async.testing: the fake tanX exchange over a real loopback socket."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import http.client
import json
import logging
import socket
import struct
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import anyio
import httpx
import pytest

from tanx_async.testing import (
    Faults,
    SandboxExchange,
    SandboxServer,
    SimulatedDisconnect,
    serve,
    token_fingerprint,
)

pytestmark = pytest.mark.filterwarnings("error")

CANCEL = "/sapi/v1/orders/cancel/"
BULK = "/sapi/v1/user/bulkcancel/"
ORDERS = "/sapi/v1/orders/"
REFRESH = "/sapi/v1/auth/token/refresh/"
KEY = "0x" + "11" * 32


@pytest.fixture
def exchange() -> SandboxExchange:
    return SandboxExchange(seed=7)


@pytest.fixture
def user(exchange: SandboxExchange) -> tuple[str, str, str]:
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    return uid, access, refresh


@pytest.fixture
def server(exchange: SandboxExchange) -> Iterator[SandboxServer]:
    srv = SandboxServer(exchange)
    with srv:
        assert srv.url.startswith("http://127.0.0.1:")
        yield srv
    assert not srv.running
    assert srv.errors == []


@pytest.fixture
async def client(server: SandboxServer, user: tuple[str, str, str]) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"JWT {user[1]}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers, timeout=5) as c:
        yield c


def wait_until(predicate: Callable[[], bool], timeout: float = 2.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.01)


def send_and_read(conn: http.client.HTTPConnection) -> bytes:
    conn.request("GET", "/sapi/v1/health/")
    return conn.getresponse().read()


def raw_request(
    server: SandboxServer,
    method: str,
    path: str,
    body: Any = None,
    token: str | None = None,
    timeout: float = 5,
) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=timeout)
    try:
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"JWT {token}"
        payload = json.dumps(body) if body is not None else None
        conn.request(method, path, body=payload, headers=headers)
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


# -- public endpoints and login ---------------------------------------------------------


async def test_health(client: httpx.AsyncClient) -> None:
    resp = await client.get("/sapi/v1/health/")
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == {"status": "success", "message": "Working fine!", "payload": ""}


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("0x1234", "Ensure eth_address has at least 30 characters."),
        ("0x" + "zz" * 20, "Enter a valid eth_address."),
        (None, "eth_address: This field is required."),
    ],
)
async def test_nonce_rejects_bad_address(
    client: httpx.AsyncClient, address: str | None, message: str
) -> None:
    body = {} if address is None else {"eth_address": address}
    resp = await client.post("/sapi/v2/auth/nonce/", json=body)
    assert resp.status_code == 400
    assert resp.json() == {"status": "error", "message": message, "payload": ""}


def sign(nonce: str) -> str:
    from eth_account import Account
    from eth_account.messages import encode_defunct

    signed = Account.from_key(KEY).sign_message(encode_defunct(text=nonce))
    sig = signed.signature
    return str(sig.to_0x_hex() if hasattr(sig, "to_0x_hex") else "0x" + sig.hex())


@pytest.mark.parametrize("prefix", ["/sapi/v2/auth/", "/sapi/v1/auth/v2/", "/sapi/v1/auth/"])
async def test_login_with_real_signature(
    exchange: SandboxExchange, client: httpx.AsyncClient, prefix: str
) -> None:
    pytest.importorskip("eth_account")
    from eth_account import Account

    address = Account.from_key(KEY).address
    first = await client.post(prefix + "nonce/", json={"eth_address": address})
    again = await client.post(prefix + "nonce/", json={"eth_address": address})
    assert first.json()["message"] == "Nonce Acquired"
    assert again.json()["message"] == "Cached Nonce Acquired"
    nonce = first.json()["payload"]
    assert again.json()["payload"] == nonce
    assert nonce.startswith("You\u2019re now signing into tanX Sandbox")
    assert "(Login-code:" in nonce

    bad = await client.post(prefix + "login/", json={"eth_address": address, "user_signature": sign("x")})
    assert bad.status_code == 400
    assert bad.json()["message"] == ("Invalid Credentials or Token Expired, Kindly login again.")

    signature = sign(nonce)
    body = {"eth_address": address, "user_signature": signature}
    resp = await client.post(prefix + "login/", json=body)
    assert resp.status_code == 200
    data = resp.json()
    assert data["message"] == "Login Successful"
    assert set(data) == {"status", "message", "payload", "token"}
    uid = data["payload"]["uid"]
    assert data["payload"] == {"uid": uid, "signature": ""}
    access = data["token"]["access"]
    claims = exchange.decode_token(access)
    assert claims is not None
    assert claims["token_type"] == "access"
    assert claims["user_id"] == uid
    assert isinstance(claims["exp"], int)
    refresh_claims = exchange.decode_token(data["token"]["refresh"])
    assert refresh_claims is not None
    assert refresh_claims["token_type"] == "refresh"
    # the nonce is consumed: replaying the login fails
    replay = await client.post(prefix + "login/", json=body)
    assert replay.status_code == 400
    assert exchange.login_count == 3
    orders = await client.get(ORDERS, headers={"Authorization": f"JWT {access}"})
    assert orders.status_code == 200
    assert orders.json()["payload"] == []
    # the same wallet logs into the same user
    nonce2 = await client.post(prefix + "nonce/", json={"eth_address": address})
    body2 = {"eth_address": address, "user_signature": sign(nonce2.json()["payload"])}
    assert (await client.post(prefix + "login/", json=body2)).json()["payload"]["uid"] == uid


async def test_login_without_nonce_fails(client: httpx.AsyncClient) -> None:
    body = {"eth_address": "0x" + "ab" * 20, "user_signature": "0x" + "00" * 65}
    resp = await client.post("/sapi/v2/auth/login/", json=body)
    assert resp.status_code == 400
    assert resp.json()["payload"] == ""


async def test_login_without_verification(exchange: SandboxExchange, client: httpx.AsyncClient) -> None:
    exchange.verify_signatures = False
    address = "0x" + "ab" * 20
    await client.post("/sapi/v2/auth/nonce/", json={"eth_address": address})
    short = {"eth_address": address, "user_signature": "0x1234"}
    assert (await client.post("/sapi/v2/auth/login/", json=short)).status_code == 400
    body = {"eth_address": address, "user_signature": "0x" + "ab" * 65}
    resp = await client.post("/sapi/v2/auth/login/", json=body)
    assert resp.status_code == 200


# -- tokens -------------------------------------------------------------------------------


async def test_refresh_rotation_json_and_form(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    _, _, refresh = user
    resp = await client.post(REFRESH, json={"refresh": refresh})
    assert resp.status_code == 200
    data = resp.json()
    assert data["status"] == "success"
    assert data["message"] == ""
    new_access, new_refresh = data["payload"]["access"], data["payload"]["refresh"]
    assert new_refresh != refresh

    reused = await client.post(REFRESH, json={"refresh": refresh})
    assert reused.status_code == 401
    assert reused.json() == {
        "status": "error",
        "message": "Token is invalid or expired",
        "payload": {"code": "token_not_valid"},
    }
    form = await client.post(REFRESH, data={"refresh": new_refresh})
    assert form.status_code == 200
    missing = await client.post(REFRESH, json={})
    assert missing.status_code == 400
    assert exchange.refresh_count == 3
    assert exchange.refresh_failures == 1
    ok = await client.get(ORDERS, headers={"Authorization": f"JWT {new_access}"})
    assert ok.status_code == 200
    # tokens never appear in the log
    log = repr(exchange.requests)
    for token in (refresh, new_refresh, new_access, user[1]):
        assert token not in log
    assert exchange.requests[-1].token == token_fingerprint(new_access)
    assert exchange.requests[0].body["refresh"].startswith("<redacted:")


async def test_refresh_token_expires(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    exchange.advance_time(exchange.refresh_ttl + 1)
    resp = await client.post(REFRESH, json={"refresh": user[2]})
    assert resp.status_code == 401


async def test_missing_and_wrong_scheme_credentials(
    client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    expected = {
        "status": "error",
        "message": "Authentication credentials were not provided.",
        "payload": "",
    }
    for auth in ("", f"Bearer {user[1]}"):
        resp = await client.get(ORDERS, headers={"Authorization": auth})
        assert resp.status_code == 401
        assert resp.json() == expected


async def test_invalid_and_expired_access_token(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    expected = {
        "status": "error",
        "message": "Given token not valid for any token type",
        "payload": {
            "token_class": "AccessToken",
            "token_type": "access",
            "message": "Token is invalid or expired",
            "code": "token_not_valid",
        },
    }
    bad = await client.get(ORDERS, headers={"Authorization": "JWT nope"})
    assert bad.status_code == 401
    assert bad.json() == expected

    assert (await client.get(ORDERS)).status_code == 200
    exchange.expire_access_tokens()
    expired = await client.get(ORDERS)
    assert expired.status_code == 401
    assert expired.json() == expected
    assert exchange.requests[-1].result == "unauthorized"

    access, _ = exchange.issue_tokens(user[0], access_ttl=10)
    headers = {"Authorization": f"JWT {access}"}
    assert (await client.get(ORDERS, headers=headers)).status_code == 200
    exchange.advance_time(11)
    assert (await client.get(ORDERS, headers=headers)).status_code == 401


# -- orders -------------------------------------------------------------------------------

ORDER_FIELDS = {
    "id",
    "uuid",
    "side",
    "ord_type",
    "price",
    "stop_price",
    "avg_price",
    "state",
    "market",
    "created_at",
    "updated_at",
    "origin_volume",
    "remaining_volume",
    "executed_volume",
    "maker_fee",
    "taker_fee",
    "trades_count",
    "cancel_reason",
}


async def test_list_orders_filters_and_pagination(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    uid = user[0]
    ids = exchange.seed_orders(uid, 120)
    assert ids == list(range(ids[0], ids[0] + 120))
    assert ids[0] >= 25_000_000
    done = exchange.seed_orders(uid, 3, markets=("ethusdt",), state="done", side="buy")
    other = exchange.create_user()
    exchange.seed_orders(other, 5)

    resp = await client.get(ORDERS)
    data = resp.json()
    assert data["message"] == "Orders Retrieved Successfully"
    page = data["payload"]
    assert isinstance(page, list)
    assert len(page) == 50
    assert set(page[0]) == ORDER_FIELDS
    assert page[0]["id"] == done[-1]  # newest first
    assert page[0]["created_at"][-6:] in ("+01:00", "+02:00")  # the server's local time
    created = datetime.fromisoformat(page[0]["created_at"]).timestamp()
    assert created == int(exchange.order(done[-1]).created_at)

    seen: list[int] = []
    for number in range(1, 10):
        chunk = await client.get(ORDERS, params={"limit": 40, "page": number})
        rows = chunk.json()["payload"]
        seen += [r["id"] for r in rows]
        if len(rows) < 40:
            break
    assert sorted(seen) == sorted(ids + done)

    asc = (await client.get(ORDERS, params={"order_by": "asc", "limit": 3})).json()
    assert [r["id"] for r in asc["payload"]] == ids[:3]
    big = await client.get(ORDERS, params={"limit": 1000})
    assert len(big.json()["payload"]) == 100

    eth = (await client.get(ORDERS, params={"market": "ethusdt"})).json()["payload"]
    assert [r["id"] for r in eth] == done[::-1]
    assert all(r["state"] == "done" and r["remaining_volume"] == "0.0" for r in eth)
    base = (await client.get(ORDERS, params={"base_unit": "eth"})).json()["payload"]
    assert {r["market"] for r in base} == {"ethusdc", "ethusdt"}
    quote = await client.get(ORDERS, params={"quote_unit": "usdt", "limit": 100})
    assert {r["market"] for r in quote.json()["payload"]} == {"btcusdt", "ethusdt"}
    sells = await client.get(ORDERS, params={"side": "sell", "state": "wait"})
    assert all(r["side"] == "sell" for r in sells.json()["payload"])

    start = int(exchange.order(ids[100]).created_at) + 1
    recent = await client.get(ORDERS, params={"start_time": start, "limit": 100})
    assert {r["id"] for r in recent.json()["payload"]} <= set(ids[100:] + done)
    params: dict[str, str | int] = {"end_time": start, "limit": 100, "order_by": "asc"}
    old = await client.get(ORDERS, params=params)
    assert ids[0] in {r["id"] for r in old.json()["payload"]}

    bad_params: list[dict[str, str | int]] = [{"limit": "x"}, {"limit": 0}, {"page": 0}, {"order_by": "up"}]
    for query in bad_params:
        bad = await client.get(ORDERS, params=query)
        assert bad.status_code == 400
        assert bad.json()["status"] == "error"


def test_seeded_orders_are_realistic(exchange: SandboxExchange) -> None:
    uid = exchange.create_user()
    ids = exchange.seed_orders(uid, 200, state="wait")
    orders = [exchange.order(i).to_payload() for i in ids]
    partial = [o for o in orders if o["executed_volume"] != "0.0"]
    assert partial, "some orders are partially filled"
    for o in orders:
        assert Decimal(o["origin_volume"]) > 0
        assert o["price"] is not None
        assert o["stop_price"] is None
        assert o["cancel_reason"] is None
        remaining = Decimal(o["remaining_volume"])
        executed = Decimal(o["executed_volume"])
        assert abs(remaining + executed - Decimal(o["origin_volume"])) < Decimal("1e-9")
    assert any(len(o["executed_volume"]) > 12 for o in partial)  # float artefacts
    market = exchange.order(exchange.add_order(uid, ord_type="market", price=None))
    assert market.price is None
    stop = exchange.order(exchange.add_order(uid, ord_type="stop_limit"))
    assert stop.stop_price is not None
    # same seed, same data
    twin = SandboxExchange(seed=7)
    twin_uid = twin.create_user()
    assert twin_uid == uid
    twin_orders = [twin.order(i).to_payload() for i in twin.seed_orders(twin_uid, 200)]
    assert [o["uuid"] for o in twin_orders] == [o["uuid"] for o in orders]


async def test_get_order(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    order_id = exchange.add_order(user[0], price="68733.81", state="wait")
    resp = await client.get(f"{ORDERS}{order_id}/")
    data = resp.json()
    assert data["message"] == "Order Retrieved Successfully"
    # The documented GET example has neither stop_price nor cancel_reason.
    assert set(data["payload"]) == ORDER_FIELDS - {"stop_price", "cancel_reason"} | {"trades"}
    assert data["payload"]["trades"] == []
    assert data["payload"]["price"] == "68733.81"

    foreign = exchange.add_order(exchange.create_user())
    for missing in (foreign, 1):
        nf = await client.get(f"{ORDERS}{missing}/")
        assert nf.status_code == 404
        assert nf.json() == {"status": "error", "message": "Order not found", "payload": ""}
    bad = await client.get(f"{ORDERS}abc/")
    assert bad.status_code == 400

    redirect = await client.get(f"{ORDERS}{order_id}", params={"a": "1"})
    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"{ORDERS}{order_id}/?a=1"
    listing = await client.get("/sapi/v1/orders")
    assert listing.status_code == 301
    followed = await client.get("/sapi/v1/orders", follow_redirects=True)
    assert followed.status_code == 200


async def test_unknown_route_and_method(client: httpx.AsyncClient) -> None:
    resp = await client.get("/sapi/v1/nothing/here/")
    assert resp.status_code == 404
    assert resp.headers["content-type"].startswith("text/html")
    assert b"<h1>Not Found</h1>" in resp.content
    wrong = await client.get(CANCEL)
    assert wrong.status_code == 405
    assert wrong.json()["message"] == 'Method "GET" not allowed.'
    garbage = await client.post(CANCEL, content=b"{nope", headers={"content-type": "application/json"})
    assert garbage.status_code == 400
    assert garbage.json()["message"].startswith("JSON parse error")


# -- cancel -------------------------------------------------------------------------------


async def test_cancel_is_queued_then_applied(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    exchange.cancel_delay = 1.0  # the second cancel and the look-up come well within it
    order_id = exchange.add_order(user[0])
    resp = await client.post(CANCEL, json={"order_id": order_id})
    assert resp.status_code == 200
    data = resp.json()
    assert data["message"] == "Order is successfully queued for cancellation"
    assert data["payload"]["id"] == order_id
    assert data["payload"]["state"] == "wait"
    assert data["payload"]["cancel_reason"] is None
    assert exchange.order(order_id).cancel_queued

    again = await client.post(CANCEL, json={"order_id": order_id})
    assert again.status_code == 400
    assert again.json()["message"] == "Order is already queued for cancellation"
    still = (await client.get(f"{ORDERS}{order_id}/")).json()["payload"]
    assert still["state"] == "wait"

    deadline = time.monotonic() + 6
    while True:
        got = (await client.get(f"{ORDERS}{order_id}/")).json()["payload"]
        if got["state"] == "cancel" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.02)
    assert got["state"] == "cancel"
    listed = (await client.get(ORDERS, params={"state": "cancel"})).json()["payload"]
    assert [o["cancel_reason"] for o in listed if o["id"] == order_id] == ["Order cancelled by user"]
    third = await client.post(CANCEL, json={"order_id": order_id})
    assert third.json()["message"] == "Order is already cancelled"

    attempts = exchange.cancel_attempts(order_id)
    assert [a.result for a in attempts] == [
        "cancel_queued",
        "cancel_rejected:already_queued",
        "cancel_rejected:already_cancelled",
    ]
    assert [a.status for a in attempts] == [200, 400, 400]


async def test_cancel_errors(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    uid = user[0]
    done = exchange.add_order(uid, state="done")
    cancelled = exchange.add_order(uid, state="cancel")
    rejected = exchange.add_order(uid, state="reject")
    foreign = exchange.add_order(exchange.create_user())
    cases = [
        (done, 400, "Order is already filled"),
        (cancelled, 400, "Order is already cancelled"),
        (rejected, 400, "Order is not open"),
        (foreign, 404, "Order not found"),
        (99, 404, "Order not found"),
    ]
    for order_id, status, message in cases:
        resp = await client.post(CANCEL, json={"order_id": order_id})
        assert resp.status_code == status
        assert resp.json() == {"status": "error", "message": message, "payload": ""}
    assert not exchange.order(foreign).cancel_queued
    bodies: list[Any] = [{}, {"order_id": "5"}, {"order_id": True}, {"order_id": 1.5}, {"order_id": 0}, []]
    for body in bodies:
        resp = await client.post(CANCEL, json=body)
        assert resp.status_code == 400
        assert resp.json()["message"] == "order_id must be a positive integer"


async def test_cancel_pending_immediate_and_variants(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    exchange.cancel_delay = 0
    pending = exchange.add_order(user[0], state="pending")
    resp = await client.post(CANCEL, json={"order_id": pending})
    assert resp.json()["payload"]["state"] == "pending"
    assert exchange.order(pending).state == "cancel"

    exchange.legacy_cancel_response = True
    legacy_id = exchange.add_order(user[0])
    legacy = (await client.post(CANCEL, json={"order_id": legacy_id})).json()
    assert legacy["message"] == "Cancelled Order Successfully"
    assert legacy["payload"]["order_id"] == legacy_id
    assert "id" not in legacy["payload"]

    exchange.legacy_cancel_response = False
    exchange.empty_cancel_payload = True
    empty_id = exchange.add_order(user[0])
    empty = (await client.post(CANCEL, json={"order_id": empty_id})).json()
    assert empty["payload"] == {}
    assert empty["message"] == "Order is successfully queued for cancellation"


async def test_fill_while_cancel_queued_wins(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    exchange.cancel_delay = 0.05
    order_id = exchange.add_order(user[0])
    assert (await client.post(CANCEL, json={"order_id": order_id})).status_code == 200
    exchange.update_order(order_id, state="done", remaining_volume="0.0")
    exchange.advance_time(1)
    assert exchange.order(order_id).state == "done"


async def test_bulk_cancel(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    exchange.cancel_delay = 0
    uid = user[0]
    buys = exchange.seed_orders(uid, 6, markets=("btcusdt",), side="buy")
    sells = exchange.seed_orders(uid, 4, markets=("btcusdt",), side="sell")
    eth = exchange.seed_orders(uid, 3, markets=("ethusdc",))
    resp = await client.post(BULK, json={"market": "btcusdt", "limit": 4, "side": "buy"})
    assert resp.status_code == 200
    assert resp.json() == {
        "status": "success",
        "message": "Orders are successfully queued for cancellation",
        "payload": {},
    }
    assert exchange.requests[-1].order_ids == tuple(buys[:4])
    states = {i: exchange.order(i).state for i in buys + sells + eth}
    assert [states[i] for i in buys] == ["cancel"] * 4 + ["wait"] * 2
    assert all(states[i] == "wait" for i in sells + eth)

    rest = await client.post(BULK, json={"market": "btcusdt", "limit": "100"})
    assert rest.status_code == 200
    assert all(exchange.order(i).state == "cancel" for i in buys + sells)

    errors = [
        ({}, "please provide market, market is a mandatory field"),
        ({"market": "dogeusdt"}, "please enter a valid market"),
        ({"market": "btcusdt", "side": "up"}, "please enter a valid side"),
        ({"market": "btcusdt", "limit": -1}, "limit must be a positive integer"),
    ]
    for body, message in errors:
        bad = await client.post(BULK, json=body)
        assert bad.status_code == 400
        assert bad.json() == {"status": "error", "message": message, "payload": ""}


# -- faults -------------------------------------------------------------------------------


async def test_server_errors_and_rate_limit(
    exchange: SandboxExchange, client: httpx.AsyncClient, user: tuple[str, str, str]
) -> None:
    order_id = exchange.add_order(user[0])
    exchange.faults.error_rate = 1.0
    statuses = set()
    for _ in range(30):
        resp = await client.post(CANCEL, json={"order_id": order_id})
        statuses.add(resp.status_code)
        if resp.status_code == 500:
            assert resp.json() == {
                "status": "error",
                "message": "Internal Server Error",
                "payload": "",
            }
        else:
            assert resp.headers["content-type"].startswith("text/html")
            assert b"nginx" in resp.content
    assert statuses == {500, 502, 503}
    assert not exchange.order(order_id).cancel_queued
    assert {r.result for r in exchange.cancel_attempts(order_id)} == {"fault:5xx"}

    exchange.faults.reset()
    exchange.faults.rate_limit_rate = 1.0
    exchange.faults.retry_after = 2.5
    limited = await client.get(ORDERS)
    assert limited.status_code == 429
    assert limited.headers["retry-after"] == "3"
    assert limited.json()["message"] == "Too many requests"
    exchange.faults.retry_after_http_date = True
    dated = await client.get(ORDERS)
    assert dated.headers["retry-after"].endswith("GMT")
    exchange.faults.retry_after = None
    assert "retry-after" not in (await client.get(ORDERS)).headers
    assert exchange.requests[-1].result == "fault:429"


async def test_only_paths_and_reproducible_draws(
    exchange: SandboxExchange, client: httpx.AsyncClient
) -> None:
    exchange.faults.error_rate = 1.0
    exchange.faults.only_paths = (CANCEL,)
    assert (await client.get("/sapi/v1/health/")).status_code == 200
    assert (await client.post(CANCEL, json={"order_id": 1})).status_code >= 500

    def draws(seed: int) -> list[str | None]:
        faults = Faults(seed=seed, error_rate=0.3, drop_after_rate=0.3)
        return [faults.draw() for _ in range(50)]

    assert draws(3) == draws(3)
    assert {"5xx", "drop_after", None} == set(draws(3))


async def test_drop_before_and_after(
    exchange: SandboxExchange, server: SandboxServer, user: tuple[str, str, str]
) -> None:
    first = exchange.add_order(user[0])
    second = exchange.add_order(user[0])
    headers = {"Authorization": f"JWT {user[1]}"}
    async with httpx.AsyncClient(base_url=server.url, headers=headers) as c:
        exchange.faults.drop_before_rate = 1.0
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(CANCEL, json={"order_id": first})
        assert not exchange.order(first).cancel_queued

        exchange.faults.reset()
        exchange.faults.drop_after_rate = 1.0
        with pytest.raises(httpx.RemoteProtocolError):
            await c.post(CANCEL, json={"order_id": second})
        assert exchange.order(second).cancel_queued  # processed, answer lost

        exchange.faults.reset()
        retry = await c.post(CANCEL, json={"order_id": second})
        assert retry.json()["message"] == "Order is already queued for cancellation"
    before, after = exchange.cancel_attempts(first)[0], exchange.cancel_attempts(second)[0]
    assert (before.result, before.fault, before.status) == (
        "fault:drop_before",
        "drop_before",
        None,
    )
    assert (after.result, after.fault, after.status) == (
        "cancel_queued",
        "drop_after",
        None,
    )
    exchange.faults.drop_before_rate = 1.0
    with pytest.raises(http.client.RemoteDisconnected):
        raw_request(server, "GET", "/sapi/v1/health/")


async def test_reset_truncate_stall_black_hole(
    exchange: SandboxExchange, server: SandboxServer, client: httpx.AsyncClient
) -> None:
    faults = exchange.faults
    faults.reset_rate = 1.0
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        await client.get("/sapi/v1/health/")
    with pytest.raises(ConnectionResetError):
        raw_request(server, "GET", "/sapi/v1/health/")

    faults.reset()
    faults.truncate_rate = 1.0
    with pytest.raises(httpx.RemoteProtocolError):
        await client.get(ORDERS)
    with pytest.raises(http.client.IncompleteRead):
        raw_request(server, "GET", ORDERS)

    faults.reset()
    faults.stall_rate = 1.0
    faults.stall_seconds = 0.5
    # The head came and then nothing, for longer than the read timeout: a stall, not a close.
    with pytest.raises(httpx.ReadTimeout):
        await client.get(ORDERS, timeout=httpx.Timeout(5, read=0.1))
    assert exchange.requests[-1].fault == "stall"
    with pytest.raises(http.client.IncompleteRead):
        raw_request(server, "GET", ORDERS)  # the stall ends with a close

    faults.reset()
    faults.black_hole = True
    with pytest.raises(httpx.ReadTimeout):
        await client.get("/sapi/v1/health/", timeout=httpx.Timeout(5, read=0.2))
    results = [r.result for r in exchange.requests]
    assert results[-1] == "fault:black_hole"
    assert {"fault:reset", "orders"} <= set(results)
    assert {r.fault for r in exchange.requests} >= {
        "reset",
        "truncate",
        "stall",
        "black_hole",
    }


async def test_close_keepalive_and_huge_body(
    exchange: SandboxExchange, server: SandboxServer, client: httpx.AsyncClient
) -> None:
    before = server.connections_accepted
    for _ in range(3):
        assert (await client.get("/sapi/v1/health/")).status_code == 200
    assert server.connections_accepted == before + 1  # keep-alive

    exchange.faults.close_keepalive = True
    for _ in range(3):
        resp = await client.get("/sapi/v1/health/")
        assert resp.headers["connection"] == "close"
    # the first answer closes the kept-alive connection, then one per request
    assert server.connections_accepted == before + 3

    exchange.faults.reset()
    exchange.faults.huge_body_bytes = 2_000_000
    resp = await client.get(ORDERS)
    assert len(resp.content) == 2_000_000
    assert resp.json()["message"] == "Orders Retrieved Successfully"


async def test_latency_gives_real_concurrency(
    exchange: SandboxExchange, server: SandboxServer, user: tuple[str, str, str]
) -> None:
    exchange.faults.latency = 0.2
    exchange.faults.latency_jitter = 0.05
    headers = {"Authorization": f"JWT {user[1]}"}
    limits = httpx.Limits(max_connections=32)
    async with httpx.AsyncClient(base_url=server.url, headers=headers, limits=limits) as c:
        responses = await asyncio.gather(*(c.get(ORDERS) for _ in range(32)))
    assert all(r.status_code == 200 for r in responses)
    assert exchange.peak_in_flight >= 16  # served side by side, not one after the other
    assert exchange.in_flight == 0
    assert min(r.duration for r in exchange.requests) >= 0.2


# -- lifecycle ----------------------------------------------------------------------------


def test_stop_closes_connections_and_thread(exchange: SandboxExchange) -> None:
    server = SandboxServer(exchange).start()
    thread = server.thread
    assert thread is not None
    assert thread.is_alive()
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    conn.request("GET", "/sapi/v1/health/")
    assert conn.getresponse().read()
    exchange.faults.black_hole = True
    hung = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    hung.sendall(b"GET /sapi/v1/health/ HTTP/1.1\r\nHost: x\r\n\r\n")
    wait_until(lambda: bool(exchange.requests) and exchange.requests[-1].fault == "black_hole")
    server.stop()  # raises if the thread is still alive after stop_timeout
    assert not thread.is_alive()
    assert not server.running
    assert hung.recv(100) == b""  # closed by the server
    hung.close()
    with pytest.raises((ConnectionError, http.client.HTTPException, OSError)):
        send_and_read(conn)
    conn.close()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
    server.stop()  # idempotent
    assert server.errors == []


def _reset(sock: socket.socket) -> None:
    """Close abortively: ``SO_LINGER`` 0 makes the kernel send RST instead of FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


def _mid_answer(server: SandboxServer, token: str) -> socket.socket:
    """A client whose request is being answered: the head has arrived, the (huge) body has not,
    and the client reads no more, so the server is stuck writing it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(f"GET {ORDERS} HTTP/1.1\r\nHost: x\r\nAuthorization: JWT {token}\r\n\r\n".encode())
    assert sock.recv(12).startswith(b"HTTP/1.1 200")
    return sock


def test_connections_reset_mid_answer_log_nothing(
    exchange: SandboxExchange,
    user: tuple[str, str, str],
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Clients that reset the connection while their answer is being written, some while the
    server is stopping (their tasks being cancelled), make closing the connection raise
    ConnectionResetError/BrokenPipeError: expected, swallowed, never "Task exception was never
    retrieved" nor an entry in ``errors``."""
    waiting: list[asyncio.StreamWriter] = []  # the server's ``wait_closed()`` calls
    raised: list[BaseException] = []  # and what they raised
    wait_closed = asyncio.StreamWriter.wait_closed

    async def watched(writer: asyncio.StreamWriter) -> None:
        waiting.append(writer)
        try:
            await wait_closed(writer)
        except BaseException as exc:
            raised.append(exc)
            raise

    monkeypatch.setattr(asyncio.StreamWriter, "wait_closed", watched)
    caplog.set_level(logging.WARNING, logger="asyncio")
    exchange.faults.huge_body_bytes = 8_000_000  # far more than the socket buffers hold
    server = SandboxServer(exchange, stop_timeout=10).start()
    stuck: list[socket.socket] = []
    try:
        for _ in range(4):  # while the server runs
            _reset(_mid_answer(server, user[1]))
        wait_until(lambda: len(raised) >= 4, timeout=10)
        stuck += [_mid_answer(server, user[1]) for _ in range(4)]
    finally:
        stopping = threading.Thread(target=server.stop)  # cancels the connection tasks
        stopping.start()
        # Cancelled, the stuck tasks wait for their close (their answers cannot be flushed).
        wait_until(lambda: len(waiting) >= len(raised) + len(stuck), timeout=10)
        for sock in stuck:
            _reset(sock)
        stopping.join(15)
    assert not server.running
    gc.collect()  # "never retrieved" is logged when the task is collected
    assert len(raised) >= 8 and all(isinstance(e, ConnectionError) for e in raised), raised
    assert server.errors == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncio")] == []
    assert "never retrieved" not in caplog.text


def _unflushed(server: SandboxServer) -> int:
    """Bytes the server has written and the kernel could not take (peers that read nothing)."""
    return sum(w.transport.get_write_buffer_size() for w in list(server._connections.values()))


def test_stop_is_bounded_with_peers_that_read_nothing(
    exchange: SandboxExchange, user: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """Clients that stop reading in the middle of a large answer leave the server unable to
    flush it: cancelled, their connections would wait for a close that never comes. ``stop()``
    aborts them after a grace period and returns within ``stop_timeout``, the thread gone."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    exchange.faults.huge_body_bytes = 8_000_000
    server = SandboxServer(exchange, stop_timeout=4).start()
    thread = server.thread
    assert thread is not None
    stuck = [_mid_answer(server, user[1]) for _ in range(3)]
    try:
        wait_until(lambda: _unflushed(server) > 0)  # more than the socket buffers hold
        server.stop()  # raised "did not stop in time" before the connections were aborted
        assert not thread.is_alive()
    finally:
        for sock in stuck:
            sock.close()
    assert server.errors == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncio")] == []


def test_stop_aborts_a_connection_closing_towards_a_peer_that_reads_nothing(
    exchange: SandboxExchange, user: tuple[str, str, str], caplog: pytest.LogCaptureFixture
) -> None:
    """A connection the server has closed (``Connection: close``) with the end of its answers
    still unsent, its peer reading nothing: at ``stop()`` it is waiting for that close, and is
    aborted. Its socket was left open (on Python >= 3.12 ``stop()`` timed out waiting for it)."""
    caplog.set_level(logging.WARNING, logger="asyncio")
    exchange.faults.huge_body_bytes = 10_000
    server = SandboxServer(exchange, stop_timeout=4).start()
    request = f"GET {ORDERS} HTTP/1.1\r\nHost: x\r\nAuthorization: JWT {user[1]}\r\n"
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    try:
        for _ in range(10_000):  # pipelined, none read, until the kernel takes no more
            sock.sendall((request + "\r\n").encode())
            time.sleep(0.002)
            if _unflushed(server) > 0:
                break
        assert _unflushed(server) > 0
        sock.sendall((request + "Connection: close\r\n\r\n").encode())
        wait_until(lambda: all(w.transport.is_closing() for w in list(server._connections.values())))
        server.stop()
        # The server's side is closed: what it had sent can be read, then the end of the stream.
        sock.settimeout(10)
        with contextlib.suppress(ConnectionResetError):
            while sock.recv(1 << 20):
                pass
    finally:
        sock.close()
    assert not server.running
    assert server.errors == []
    assert [r.getMessage() for r in caplog.records if r.name.startswith("asyncio")] == []


def test_refuses_non_loopback(exchange: SandboxExchange) -> None:
    with pytest.raises(ValueError, match="non-loopback"):
        SandboxServer(exchange, host="0.0.0.0")
    with serve(exchange, host="localhost") as srv:
        assert srv.url.startswith("http://127.0.0.1:")
        assert raw_request(srv, "GET", "/sapi/v1/health/")[0] == 200


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_async_context_manager(exchange: SandboxExchange, backend: str) -> None:
    if backend == "trio":
        pytest.importorskip("trio")

    async def main() -> int:
        async with SandboxServer(exchange) as srv:
            status = await anyio.to_thread.run_sync(lambda: raw_request(srv, "GET", "/sapi/v1/health/")[0])
        assert not srv.running
        return status

    assert anyio.run(main, backend=backend) == 200


# -- in-process ASGI ------------------------------------------------------------------


async def test_in_process_asgi_degrades_socket_faults(
    exchange: SandboxExchange, user: tuple[str, str, str]
) -> None:
    order_id = exchange.add_order(user[0])
    transport = httpx.ASGITransport(app=exchange.app)
    headers = {"Authorization": f"JWT {user[1]}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://sandbox", headers=headers) as c:
        assert (await c.get("/sapi/v1/health/")).status_code == 200
        exchange.faults.drop_after_rate = 1.0
        with pytest.raises(SimulatedDisconnect):
            await c.post(CANCEL, json={"order_id": order_id})
        assert exchange.order(order_id).cancel_queued
        exchange.faults.reset()
        exchange.faults.truncate_rate = 1.0
        resp = await c.get(ORDERS)
        with pytest.raises(json.JSONDecodeError):
            resp.json()
        exchange.faults.reset()
        exchange.faults.stall_rate = 1.0
        exchange.faults.stall_seconds = 0.01
        with pytest.raises(SimulatedDisconnect):
            await c.get(ORDERS)


def test_in_process_asgi_under_trio(exchange: SandboxExchange, user: tuple[str, str, str]) -> None:
    trio = pytest.importorskip("trio")
    ids = exchange.seed_orders(user[0], 10)
    exchange.faults.latency = 0.05
    exchange.cancel_delay = 60

    async def main() -> None:
        transport = httpx.ASGITransport(app=exchange.app)
        headers = {"Authorization": f"JWT {user[1]}"}
        async with httpx.AsyncClient(transport=transport, base_url="http://sandbox", headers=headers) as c:

            async def cancel(order_id: int) -> None:
                resp = await c.post(CANCEL, json={"order_id": order_id})
                assert resp.status_code == 200

            async with trio.open_nursery() as nursery:
                for order_id in ids:
                    nursery.start_soon(cancel, order_id)

    anyio.run(main, backend="trio")
    assert exchange.peak_in_flight == len(ids)
    assert all(exchange.order(i).cancel_queued for i in ids)
