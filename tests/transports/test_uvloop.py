"""Trading engines often run on uvloop: the default transport must work there too.

Each test runs its own loop with ``uvloop.run`` (not pytest-asyncio's loop), against the sandbox
on a loopback socket: socket faults, TLS, pool limits and timeouts.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

import pytest

from tanx_async import APITimeoutError, CancelStatus
from tests.auth.test_secrets import tls_round_trip
from tests.internals import Http11Sender, httpx, sender_of
from tests.sandbox import mismatches, running_sandbox
from tests.transports.test_http11 import TIMEOUT, answer_slowly, scripted

uvloop = pytest.importorskip("uvloop")


def run(coro: Coroutine[Any, Any, None]) -> None:
    async def checked() -> None:
        assert type(asyncio.get_running_loop()).__module__.startswith("uvloop")
        await coro

    uvloop.run(checked())


def test_a_faulted_batch_is_truthful_under_uvloop() -> None:
    with running_sandbox(seed=41, cancel_delay=0.0) as sandbox:
        exchange = sandbox.exchange
        ids = exchange.seed_orders(sandbox.uid, 300)
        missing = [90_000_000 + i for i in range(20)]
        before = {oid: exchange.order(oid).state for oid in ids}
        faults = exchange.faults
        faults.only_paths = ("/sapi/v1/orders",)
        faults.error_rate = 0.05
        faults.reset_rate = 0.02
        faults.drop_after_rate = 0.02
        faults.truncate_rate = 0.02

        async def main() -> None:
            async with sandbox.session() as session:
                outcomes = await session.orders.cancel_many(ids + missing, concurrency=32)
                sender = sender_of(session)
                assert isinstance(sender, Http11Sender)
                assert sender.connections_in_use() == 0
            assert [o.order_id for o in outcomes] == ids + missing
            judged = [o for o in outcomes if o.status is not CancelStatus.UNKNOWN]
            assert mismatches(exchange, judged, before) == []
            assert sum(o.ok for o in outcomes) >= 280

        run(main())
        assert any(r.fault == "reset" for r in exchange.requests)
        assert any(r.fault == "drop_after" for r in exchange.requests)


def test_tls_under_uvloop(self_signed: tuple[Path, Path]) -> None:
    run(tls_round_trip(self_signed, "auto"))


def test_pool_limit_and_read_timeout_under_uvloop() -> None:
    async def main() -> None:
        async with scripted(answer_slowly, max_connections=2, max_keepalive_connections=2) as (
            script,
            sender,
            url,
        ):
            got = await asyncio.gather(*(sender.send("GET", url, {}, None, TIMEOUT) for _ in range(10)))
            assert [r.status for r in got] == [200] * 10
            assert script.max_open == 2
            with pytest.raises(APITimeoutError) as timed_out:
                await sender.send("GET", url, {}, None, httpx.Timeout(1.0, read=0.001))
            assert timed_out.value.maybe_processed is True

    run(main())
