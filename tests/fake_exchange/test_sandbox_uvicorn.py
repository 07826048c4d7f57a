"""The sandbox is a plain ASGI app: it also runs under uvicorn (and in-process)."""

from __future__ import annotations

import httpx
import pytest

from tanx_async import AsyncTanxSession, CancelStatus
from tanx_async.testing import SandboxExchange, UvicornSandboxServer

pytest.importorskip("uvicorn")


async def test_cancel_through_uvicorn() -> None:
    exchange = SandboxExchange(seed=5, cancel_delay=0)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 20)
    with UvicornSandboxServer(exchange) as server:
        assert server.url.startswith("http://127.0.0.1:")
        async with AsyncTanxSession(
            base_url=server.url, access_token=access, refresh_token=refresh
        ) as session:
            outcomes = await session.orders.cancel_many(ids)
    assert {o.status for o in outcomes} == {CancelStatus.QUEUED}
    assert {exchange.order(i).state for i in ids} == {"cancel"}


async def test_cancel_in_process_through_asgi_transport() -> None:
    exchange = SandboxExchange(seed=6, cancel_delay=0)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    [oid] = exchange.seed_orders(uid, 1)
    transport = httpx.ASGITransport(app=exchange.app)
    async with (
        httpx.AsyncClient(transport=transport, base_url="http://sandbox") as client,
        AsyncTanxSession(
            base_url="http://localhost", access_token=access, refresh_token=refresh, http_client=client
        ) as session,
    ):
        order = await session.orders.cancel(oid)
    assert order.id == oid
    assert exchange.order(oid).state == "cancel"
