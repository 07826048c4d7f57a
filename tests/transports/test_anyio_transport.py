"""The built-in HTTP/1.1 client over anyio streams (``AnyioSender``), the default under trio.

The same sandbox socket faults as ``test_faults`` (the same expectations: the right error, an
honest ``maybe_processed``, no connection left checked out, recovery), a burst reusing its
connections, TLS with verification, and a session closed under a request in flight.
"""

from __future__ import annotations

import ssl
from typing import Any

import anyio
import pytest

from tanx_async import APIConnectionError, CancelOutcomeUnknownError, SessionClosedError, TanxError
from tests.engine.test_faults import CASES, apply, check_error, short_read
from tests.internals import AnyioSender, in_use, sender_of
from tests.sandbox import Sandbox, running_sandbox

trio = pytest.importorskip("trio")


@pytest.mark.parametrize("name", list(CASES))
def test_fault_under_trio_gives_the_right_error_and_leaks_no_connection(name: str) -> None:
    case = CASES[name]

    async def main(sandbox: Sandbox) -> None:
        exchange = sandbox.exchange
        [oid] = exchange.seed_orders(sandbox.uid, 1)
        kwargs: dict[str, Any] = {"max_retries": 0, "max_response_bytes": 64 * 1024}
        if case.timeout is not None:
            kwargs["timeout"] = short_read(case.timeout)
        apply(exchange, case.faults)
        async with sandbox.session(**kwargs) as session:
            with pytest.raises(TanxError) as got:
                await session.orders.get(oid)
            check_error(got.value, case)
            assert in_use(session) == 0
            with pytest.raises(TanxError) as got:
                await session.orders.cancel(oid)
            if case.cancel_ambiguous:
                assert type(got.value) is CancelOutcomeUnknownError, repr(got.value)
                check_error(got.value.cause, case)
            else:
                check_error(got.value, case)
            assert in_use(session) == 0
            assert isinstance(sender_of(session), AnyioSender)
            exchange.faults.reset()
            assert await session.health() is True
            assert (await session.orders.get(oid)).id == oid
        await anyio.sleep(0.03)
        cancels = exchange.cancel_attempts(oid)
        assert len(cancels) == 1
        assert cancels[0].result == ("cancel_queued" if case.processed else f"fault:{cancels[0].fault}")

    with running_sandbox(seed=5, cancel_delay=0.01) as sandbox:
        trio.run(main, sandbox)


def test_a_trio_burst_reuses_its_connections() -> None:
    async def main(sandbox: Sandbox) -> None:
        ids = sandbox.exchange.seed_orders(sandbox.uid, 200)
        async with sandbox.session() as session:
            outcomes = await session.orders.cancel_many(ids, concurrency=16)
            assert [o.order_id for o in outcomes] == ids
            assert all(o.ok for o in outcomes)
            assert in_use(session) == 0

    with running_sandbox() as sandbox:
        trio.run(main, sandbox)
        assert sandbox.server.connections_accepted <= 16


def test_trio_over_tls_verifies_the_certificate() -> None:
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    answer = b'{"status":"success","message":"ok","payload":{}}'

    async def handle(stream: Any) -> None:
        async with stream:
            while True:
                data = b""
                try:
                    while b"\r\n\r\n" not in data:
                        data += await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    return  # the client closed its keep-alive connection
                await stream.send(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(answer), answer))

    async def main() -> None:
        listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        tls = anyio.streams.tls.TLSListener(listener, server_ctx, standard_compatible=False)
        port = listener.extra(anyio.abc.SocketAttribute.local_port)
        url = f"https://127.0.0.1:{port}"
        async with anyio.create_task_group() as tg:
            tg.start_soon(tls.serve, handle)
            from tanx_async import AsyncTanxSession

            async with AsyncTanxSession(base_url=url, verify=client_ctx) as session:
                assert await session.health() is True
                assert await session.health() is True
            async with AsyncTanxSession(base_url=url, max_retries=0) as session:
                with pytest.raises(APIConnectionError, match="CERTIFICATE_VERIFY_FAILED") as caught:
                    await session.health()
                assert caught.value.maybe_processed is False
            tg.cancel_scope.cancel()
        await tls.aclose()

    import anyio.abc
    import anyio.streams.tls

    trio.run(main)


def test_closing_the_session_under_a_trio_request_says_it_may_have_been_processed() -> None:
    async def main(sandbox: Sandbox) -> None:
        [oid] = sandbox.exchange.seed_orders(sandbox.uid, 1)
        sandbox.exchange.faults.stall_rate = 1.0
        sandbox.exchange.faults.stall_seconds = 2.0
        session = sandbox.session(timeout=5.0, max_retries=0)
        async with session:
            errors: list[BaseException] = []

            async def get() -> None:
                try:
                    await session.orders.get(oid)
                except BaseException as exc:
                    errors.append(exc)

            async with anyio.create_task_group() as tg:
                tg.start_soon(get)
                await anyio.sleep(0.2)
                await session.aclose()
            assert len(errors) == 1 and isinstance(errors[0], SessionClosedError), errors

    with running_sandbox() as sandbox:
        trio.run(main, sandbox)
