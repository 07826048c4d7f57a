"""The sandbox's answers against tanX's real shapes (its docs and official connectors), in every profile.

The expected shapes are written out here, from the docs and the official connectors' fixtures,
never read back from the sandbox: key sets per endpoint and profile, JSON types, the decimal
string form (``"450.0"``, ``"0.009000000000000001"``, never ``"68733"`` or ``"63062.7550"``),
ISO times with a ``+01:00``/``+02:00`` offset, and trades consistent with the fills.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import datetime
from decimal import Decimal
from typing import Any

import httpx
import pytest

from tanx_async import APIStatusError, BadRequestError, CancelStatus, PermissionDeniedError
from tanx_async.testing import INVENTED_TEXTS, PROFILES, SandboxExchange
from tests.sandbox import Sandbox, running_sandbox

CANCEL = "/sapi/v1/orders/cancel/"
BULK = "/sapi/v1/user/bulkcancel/"
ORDERS = "/sapi/v1/orders/"

#: The order object of the 2024 docs (cancel and list-orders examples).
ORDER_2024 = frozenset(
    {
        *("id", "uuid", "side", "ord_type", "price", "stop_price", "avg_price", "state", "market"),
        *("created_at", "updated_at", "origin_volume", "remaining_volume", "executed_volume"),
        *("maker_fee", "taker_fee", "trades_count", "cancel_reason"),
    }
)
#: The documented GET example and the 2022-23 fixtures: no stop_price, no cancel_reason.
ORDER_OLD = ORDER_2024 - {"stop_price", "cancel_reason"}
#: The Brine-era cancel echo: ``order_id`` instead of ``id``.
ORDER_BRINE_CANCEL = ORDER_OLD - {"id"} | {"order_id"}
#: A fill, as ``GET /sapi/v1/trades/`` documents it.
TRADE = frozenset(
    {
        *("id", "price", "amount", "total", "fee_currency", "fee", "fee_amount", "market"),
        *("created_at", "taker_type", "side", "order_id"),
    }
)
#: profile -> endpoint -> the order's key set (``None``: the cancel payload is ``{}``).
EXPECTED: dict[str, dict[str, frozenset[str] | None]] = {
    "docs": {"get": ORDER_OLD | {"trades"}, "list": ORDER_2024, "cancel": ORDER_2024},
    "full": {"get": ORDER_2024 | {"trades"}, "list": ORDER_2024, "cancel": ORDER_2024},
    "brine": {"get": ORDER_OLD | {"trades"}, "list": ORDER_OLD, "cancel": ORDER_BRINE_CANCEL},
    "ack": {"get": ORDER_OLD | {"trades"}, "list": ORDER_2024, "cancel": None},
}
CANCEL_MESSAGES = {
    "docs": "Order is successfully queued for cancellation",
    "full": "Order is successfully queued for cancellation",
    "brine": "Cancelled Order Successfully",
    "ack": "Order is successfully queued for cancellation",
}
ENVELOPE = frozenset({"status", "message", "payload"})
#: "450.0", "0.0425", "0.009000000000000001": a point, no padding zeros, no exponent.
NUMBER = re.compile(r"\d+\.(?:0|\d*[1-9])")
TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+0[12]:00")
STATES = {"pending", "wait", "done", "cancel"}
ORD_TYPES = {"limit", "market", "stop_limit", "limit_maker"}
CANCEL_REASONS = {
    "Order cancelled by user",
    "Slippage greater than 30%. Order cancelled to prevent loss of funds",
    "Order cancellation was initiated by system",
    "Something went wrong, order was cancelled to prevent loss of funds",
    "Order cancelled because it was matched as a taker order",
}
DEC_ORDER = ("avg_price", "origin_volume", "remaining_volume", "executed_volume", "maker_fee", "taker_fee")
DEC_TRADE = ("price", "amount", "total", "fee", "fee_amount")


def check_number(value: object, where: str) -> Decimal:
    assert isinstance(value, str) and NUMBER.fullmatch(value), f"{where}: {value!r} is not in the API's form"
    return Decimal(value)


def check_time(value: object, where: str) -> datetime:
    assert isinstance(value, str) and TIME.fullmatch(value), f"{where}: {value!r}"
    return datetime.fromisoformat(value)


def check_trade(trade: Any, order: dict[str, Any]) -> None:
    assert isinstance(trade, dict) and set(trade) == TRADE
    assert type(trade["id"]) is int and trade["order_id"] == order.get("id", order.get("order_id"))
    assert trade["market"] == order["market"] and trade["side"] == order["side"]
    assert trade["taker_type"] in ("buy", "sell") and isinstance(trade["fee_currency"], str)
    price, amount, total = (check_number(trade[k], f"trade.{k}") for k in ("price", "amount", "total"))
    for key in ("fee", "fee_amount"):
        check_number(trade[key], f"trade.{key}")
    assert abs(price * amount - total) < Decimal("1e-6")
    check_time(trade["created_at"], "trade.created_at")


def check_order(order: Any, keys: frozenset[str]) -> None:
    """One order object: key set, types, number and time forms, internal consistency."""
    assert isinstance(order, dict)
    assert set(order) == keys, set(order) ^ keys
    ident = order["id"] if "id" in order else order["order_id"]
    assert type(ident) is int and ident > 0
    assert uuid.UUID(order["uuid"]).version == 4
    assert order["side"] in ("buy", "sell") and order["ord_type"] in ORD_TYPES
    assert order["state"] in STATES and isinstance(order["market"], str)
    assert type(order["trades_count"]) is int and order["trades_count"] >= 0
    numbers = {k: check_number(order[k], k) for k in DEC_ORDER}
    if order["ord_type"] == "market":
        assert order["price"] is None
    else:
        check_number(order["price"], "price")
    if "stop_price" in order:
        if order["ord_type"] == "stop_limit":
            check_number(order["stop_price"], "stop_price")
        else:
            assert order["stop_price"] is None
    if "cancel_reason" in order:
        expected_reason = order["state"] == "cancel"
        assert (
            (order["cancel_reason"] in CANCEL_REASONS) if expected_reason else order["cancel_reason"] is None
        )
    created = check_time(order["created_at"], "created_at")
    assert check_time(order["updated_at"], "updated_at") >= created
    filled = numbers["executed_volume"]
    assert abs(numbers["remaining_volume"] + filled - numbers["origin_volume"]) < Decimal("1e-9")
    if not filled:
        assert order["avg_price"] == "0.0" and order["trades_count"] == 0
    if "trades" in order:
        trades = order["trades"]
        assert isinstance(trades, list) and len(trades) == order["trades_count"]
        for trade in trades:
            check_trade(trade, order)
        if trades:
            amounts = [Decimal(t["amount"]) for t in trades]
            assert abs(sum(amounts) - filled) < Decimal("1e-9")
            weighted = sum(
                (Decimal(t["price"]) * a for t, a in zip(trades, amounts, strict=True)), Decimal(0)
            )
            mean = weighted / sum(amounts, Decimal(0))
            if order["ord_type"] == "market":
                assert abs(mean - numbers["avg_price"]) <= Decimal("0.005")
            else:  # a resting order fills at its price
                assert {t["price"] for t in trades} == {order["price"]} == {order["avg_price"]}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=5, cancel_delay=0.0) as sb:
        yield sb


@pytest.fixture
async def client(sandbox: Sandbox) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"JWT {sandbox.access}"}
    async with httpx.AsyncClient(base_url=sandbox.server.url, headers=headers, timeout=5) as c:
        yield c


def seed_every_kind(exchange: SandboxExchange, uid: str) -> list[int]:
    """Open, partly filled, filled, cancelled, market, stop-limit and post-only orders."""
    ids = exchange.seed_orders(uid, 30, state="wait")
    ids += exchange.seed_orders(uid, 10, state="done", markets=("ethusdt", "usdcusdt"))
    ids += exchange.seed_orders(uid, 10, state="cancel", markets=("maticusdt",))
    ids += exchange.seed_orders(uid, 5, state="done", ord_type="market")
    ids += exchange.seed_orders(uid, 5, state="wait", ord_type="stop_limit")
    ids += exchange.seed_orders(uid, 5, state="pending", ord_type="limit_maker")
    return ids


def envelope(response: httpx.Response, status: int, message: str) -> Any:
    body = response.json()
    assert response.status_code == status
    assert set(body) == ENVELOPE
    assert body["status"] == ("success" if status < 400 else "error")
    assert body["message"] == message
    return body["payload"]


@pytest.mark.parametrize("profile", ["docs", "full", "brine", "ack"])
async def test_every_answer_has_the_documented_shape(
    sandbox: Sandbox, client: httpx.AsyncClient, profile: str
) -> None:
    exchange = sandbox.exchange
    exchange.profile = profile  # type: ignore[assignment]
    ids = seed_every_kind(exchange, sandbox.uid)
    expected = EXPECTED[profile]
    # Every kind is there: partly filled, filled market orders with trades, every order type.
    every = [exchange.order(i).to_payload(trades=True) for i in ids]
    assert any(o["trades"] and o["state"] == "wait" for o in every)
    assert any(o["trades"] and o["state"] == "done" and o["ord_type"] == "market" for o in every)
    assert {o["ord_type"] for o in every} == ORD_TYPES

    for oid in ids:
        payload = envelope(await client.get(f"{ORDERS}{oid}/"), 200, "Order Retrieved Successfully")
        check_order(payload, expected["get"] or frozenset())
    listed = envelope(await client.get(ORDERS, params={"limit": 100}), 200, "Orders Retrieved Successfully")
    assert isinstance(listed, list) and len(listed) == len(ids)
    for order in listed:
        check_order(order, expected["list"] or frozenset())

    open_ids = [i for i in ids if exchange.order(i).state in ("wait", "pending")]
    for oid in open_ids:
        payload = envelope(await client.post(CANCEL, json={"order_id": oid}), 200, CANCEL_MESSAGES[profile])
        if expected["cancel"] is None:
            assert payload == {}
        else:
            check_order(payload, expected["cancel"])
            assert payload["state"] in ("wait", "pending")  # as it was when queued
            assert payload.get("cancel_reason") is None
    bulk = await client.post(BULK, json={"market": "btcusdc", "limit": 100})
    assert envelope(bulk, 200, "Orders are successfully queued for cancellation") == {}
    assert envelope(await client.get("/sapi/v1/health/"), 200, "Working fine!") == ""
    await check_auth_answers(exchange, client, sandbox.refresh)


async def check_auth_answers(exchange: SandboxExchange, client: httpx.AsyncClient, refresh: str) -> None:
    """Nonce, login, refresh and the 401s, as the docs and the connectors' fixtures show them."""
    address = "0x" + "ab" * 20
    nonce = envelope(
        await client.post("/sapi/v2/auth/nonce/", json={"eth_address": address}), 200, "Nonce Acquired"
    )
    assert isinstance(nonce, str) and "\u2019" in nonce  # signed as received, apostrophe and all
    short = await client.post("/sapi/v2/auth/nonce/", json={"eth_address": "0x12"})
    assert envelope(short, 400, "Ensure eth_address has at least 30 characters.") == ""
    exchange.verify_signatures = False
    login = await client.post(
        "/sapi/v2/auth/login/", json={"eth_address": address, "user_signature": "0x" + "1b" * 65}
    )
    body = login.json()
    assert login.status_code == 200 and set(body) == ENVELOPE | {"token"}
    assert body["status"] == "success" and body["message"] == "Login Successful"
    assert set(body["payload"]) == {"uid", "signature"} and set(body["token"]) == {"refresh", "access"}
    bad = await client.post("/sapi/v2/auth/login/", json={"eth_address": address, "user_signature": "0x00"})
    assert envelope(bad, 400, "Invalid Credentials or Token Expired, Kindly login again.") == ""
    rotated = envelope(await client.post("/sapi/v1/auth/token/refresh/", json={"refresh": refresh}), 200, "")
    assert set(rotated) == {"access", "refresh"} and all(isinstance(v, str) for v in rotated.values())
    reused = await client.post("/sapi/v1/auth/token/refresh/", json={"refresh": refresh})
    assert envelope(reused, 401, "Token is invalid or expired") == {"code": "token_not_valid"}
    anonymous = await client.get(ORDERS, headers={"Authorization": ""})
    assert envelope(anonymous, 401, "Authentication credentials were not provided.") == ""
    stale = await client.get(ORDERS, headers={"Authorization": "JWT x.y.z"})
    assert envelope(stale, 401, "Given token not valid for any token type") == {
        "token_class": "AccessToken",
        "token_type": "access",
        "message": "Token is invalid or expired",
        "code": "token_not_valid",
    }
    missing = await client.post(BULK, json={})
    assert envelope(missing, 400, "please provide market, market is a mandatory field") == ""


async def test_numbers_are_written_as_the_api_writes_them(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    exchange = sandbox.exchange
    whole = exchange.add_order(
        sandbox.uid, price=Decimal("68733"), origin_volume=1134, remaining_volume=450.0
    )
    order = envelope(await client.get(f"{ORDERS}{whole}/"), 200, "Order Retrieved Successfully")
    assert (order["price"], order["origin_volume"], order["remaining_volume"]) == (
        "68733.0",
        "1134.0",
        "450.0",
    )
    stop = exchange.add_order(sandbox.uid, ord_type="stop_limit")
    listed = envelope(await client.get(ORDERS, params={"limit": 100}), 200, "Orders Retrieved Successfully")
    [stop_row] = [o for o in listed if o["id"] == stop]
    check_number(stop_row["stop_price"], "stop_price")  # was "63062.7550" (padded)
    artefacts = exchange.seed_orders(sandbox.uid, 200, state="wait")  # ~30% partly filled
    filled = [exchange.order(i).executed_volume for i in artefacts]
    assert any(len(v) > 15 for v in filled), "float artefacts such as 0.009000000000000001 occur"
    assert all(NUMBER.fullmatch(v) for v in filled)


async def test_offsets_follow_the_server_clock_and_mixed_varies_them(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    exchange = sandbox.exchange
    winter = exchange.add_order(sandbox.uid, created_at=1_705_312_800.0)  # 2024-01-15 10:00 UTC
    summer = exchange.add_order(sandbox.uid, created_at=1_717_146_120.0)  # 2024-05-31 09:02 UTC
    get = {
        oid: envelope(await client.get(f"{ORDERS}{oid}/"), 200, "Order Retrieved Successfully")
        for oid in (winter, summer)
    }
    assert get[winter]["created_at"] == "2024-01-15T11:00:00+01:00"
    assert get[summer]["created_at"] == "2024-05-31T11:02:00+02:00"
    # EU summer time starts at 01:00 UTC on the last Sunday of March and ends likewise in October.
    for utc, local in [
        (1_711_846_799.0, "2024-03-31T01:59:59+01:00"),
        (1_711_846_800.0, "2024-03-31T03:00:00+02:00"),
        (1_729_990_799.0, "2024-10-27T02:59:59+02:00"),
        (1_729_990_800.0, "2024-10-27T02:00:00+01:00"),
    ]:
        oid = exchange.add_order(sandbox.uid, created_at=utc)
        assert (await client.get(f"{ORDERS}{oid}/")).json()["payload"]["created_at"] == local

    exchange.profile = "mixed"
    offsets: Counter[str] = Counter()
    for _ in range(40):
        order = (await client.get(f"{ORDERS}{summer}/")).json()["payload"]
        offsets[order["created_at"][-6:]] += 1
        assert datetime.fromisoformat(order["created_at"]).timestamp() == 1_717_146_120.0  # same instant
    assert set(offsets) == {"+01:00", "+02:00"}


async def test_mixed_profile_varies_every_shape_reproducibly(sandbox: Sandbox) -> None:
    async def shapes(seed: int) -> list[str]:
        with running_sandbox(seed=seed, cancel_delay=0.0, profile="mixed") as sb:
            ids = sb.exchange.seed_orders(sb.uid, 60)
            headers = {"Authorization": f"JWT {sb.access}"}
            seen = []
            async with httpx.AsyncClient(base_url=sb.server.url, headers=headers, timeout=5) as c:
                for oid in ids:
                    body = (await c.post(CANCEL, json={"order_id": oid})).json()
                    payload = body["payload"]
                    if not payload:
                        kind = "ack"
                    elif "order_id" in payload:
                        kind = "brine"
                        check_order(payload, ORDER_BRINE_CANCEL)
                    else:
                        kind = "docs"
                        check_order(payload, ORDER_2024)
                    assert body["message"] == CANCEL_MESSAGES[kind]
                    seen.append(kind)
            return seen

    first = await shapes(3)
    assert set(first) == {"docs", "brine", "ack"}  # the 2024 echo, the Brine echo, the {} ack
    assert await shapes(3) == first  # same seed, same shapes


async def test_the_library_decodes_every_profile(sandbox: Sandbox) -> None:
    exchange = sandbox.exchange
    exchange.profile = "mixed"
    ids = seed_every_kind(exchange, sandbox.uid)
    async with sandbox.session() as session:
        for oid in ids:
            order = await session.orders.get(oid)
            truth = exchange.order(oid)
            assert order.id == oid and order.trades_count == truth.trades_count == len(order.trades)
            assert abs(
                sum((t.amount or Decimal(0) for t in order.trades), Decimal(0)) - order.executed_volume
            ) < Decimal("1e-9")
            assert all(t.order_id == oid and t.created_at is not None for t in order.trades)
        listed = [o async for o in session.orders.iter(page_size=25)]
        assert sorted(o.id for o in listed) == sorted(ids)
        open_ids = [i for i in ids if exchange.order(i).state in ("wait", "pending")]
        outcomes = await session.orders.cancel_many(open_ids)
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
    assert all(exchange.order(i).state == "cancel" for i in open_ids)


async def test_list_orders_for_an_unknown_market_is_refused(
    sandbox: Sandbox, client: httpx.AsyncClient
) -> None:
    sandbox.exchange.seed_orders(sandbox.uid, 3)
    resp = await client.get(ORDERS, params={"market": "btcusdx"})
    assert envelope(resp, 400, "please enter a valid market") == ""
    async with sandbox.session() as session:
        with pytest.raises(BadRequestError, match="please enter a valid market"):
            await session.orders.list(market="btcusdx")
        assert len(await session.orders.list(market="btcusdc")) == 1


# -- error shapes -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "status", "body"),
    [
        (
            "status_error_rate",
            200,
            {"status": "error", "message": "Something went wrong, please try again", "payload": ""},
        ),
        ("bare_error_rate", 400, {"status": "error", "message": "Bad Request"}),
        ("forbidden_rate", 403, {"status": "error", "message": "Invalid organization key", "payload": ""}),
        (
            "object_error_rate",
            400,
            {
                "status": "error",
                "message": "User does not exist",
                "payload": {"destination_address": "0x" + "0" * 40, "exists": False},
            },
        ),
    ],
)
async def test_error_shape_faults(
    sandbox: Sandbox, client: httpx.AsyncClient, fault: str, status: int, body: dict[str, Any]
) -> None:
    exchange = sandbox.exchange
    [oid] = exchange.seed_orders(sandbox.uid, 1)
    setattr(exchange.faults, fault, 1.0)
    resp = await client.post(CANCEL, json={"order_id": oid})
    assert resp.status_code == status and resp.json() == body
    assert exchange.order(oid).state == "wait"  # not processed
    async with sandbox.session() as session:
        with pytest.raises(APIStatusError) as caught:
            await session.orders.cancel(oid)  # never a success, whatever the HTTP status says
        assert caught.value.status_code == status
        if status == 403:
            assert isinstance(caught.value, PermissionDeniedError)
        exchange.faults.only_paths = (CANCEL,)  # the look-up goes through
        [outcome] = await session.orders.cancel_many([oid])
    assert outcome.status is CancelStatus.FAILED and not outcome.ok
    assert exchange.order(oid).state == "wait"


# -- texts -------------------------------------------------------------------------------------


async def test_random_texts_replace_every_invented_text(sandbox: Sandbox, client: httpx.AsyncClient) -> None:
    exchange = sandbox.exchange
    exchange.texts = "random"
    [done] = exchange.seed_orders(sandbox.uid, 1, state="done")
    [cancelled] = exchange.seed_orders(sandbox.uid, 1, state="cancel")
    [queued] = exchange.seed_orders(sandbox.uid, 1)
    exchange.cancel_delay = 60
    await client.post(CANCEL, json={"order_id": queued})
    reject = exchange.add_order(sandbox.uid, state="reject")
    invented: list[tuple[int, str]] = []
    for _ in range(2):
        for oid in (done, cancelled, queued, reject, 99, -1):
            resp = await client.post(CANCEL, json={"order_id": oid})
            invented.append((resp.status_code, resp.json()["message"]))
        for params in ({"limit": 0}, {"page": "x"}, {"order_by": "up"}):
            resp = await client.get(ORDERS, params=params)
            invented.append((resp.status_code, resp.json()["message"]))
        resp = await client.post(BULK, json={"market": "btcusdc", "side": "up"})
        invented.append((resp.status_code, resp.json()["message"]))
        resp = await client.get(f"{ORDERS}99/")
        invented.append((resp.status_code, resp.json()["message"]))
    assert {s for s, _ in invented} == {400, 404}
    fixed = {t.split(" - ")[0].split('"')[0] for t in INVENTED_TEXTS.values()}
    for _, text in invented:
        assert text and not any(f in text for f in fixed), text
        assert not re.search(r"queued|cancel|fill|found|exist|open|already", text, re.IGNORECASE), text
    assert len({t for _, t in invented}) == len(invented)  # a different sentence per answer
    # The real texts stay as they are.
    real = await client.post(BULK, json={"market": "btcusdx"})
    assert envelope(real, 400, "please enter a valid market") == ""
    missing = await client.post(BULK, json={})
    assert envelope(missing, 400, "please provide market, market is a mandatory field") == ""
    ok = await client.post(CANCEL, json={"order_id": exchange.seed_orders(sandbox.uid, 1)[0]})
    assert envelope(ok, 200, "Order is successfully queued for cancellation")["state"] == "wait"


def test_profile_and_texts_are_checked() -> None:
    assert set(PROFILES) == {*EXPECTED, "mixed"}  # every profile has its shapes written out above
    with pytest.raises(ValueError, match="profile must be one of"):
        SandboxExchange(profile="newest")  # type: ignore[arg-type]
    exchange = SandboxExchange()
    with pytest.raises(ValueError, match="texts must be one of"):
        exchange.texts = "loud"  # type: ignore[assignment]
    with pytest.raises(TypeError, match="number or a decimal string"):
        exchange.add_order(exchange.create_user(), price=True)
