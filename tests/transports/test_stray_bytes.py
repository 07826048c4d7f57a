"""Bytes nobody asked for, on an idle pooled connection, are never the next request's answer.

A server answers order 1's cancel (200, ``{"status":"success","payload":{}}``), then 50 ms later
sends a stray second answer (200 ``{}``, a documented cancel answer, so no echo check can catch
it) in its own segment, then answers order 2's cancel with 404. A transport that reused the
connection without looking would report order 2 queued, ok, from the stray bytes: every
transport that pools connections must notice and drop the connection instead.
"""

from __future__ import annotations

import ssl
import threading
import time
from typing import Any

import anyio
import pytest

from tanx_async import CancelStatus
from tests.conftest import until
from tests.transports.rawserver import POOLING, Request, answer, raw_server, raw_session, run

ACCEPTED = b'{"status":"success","payload":{}}'
NOT_FOUND = b'{"status":"error","message":"Not found"}'


def tls_pair() -> tuple[ssl.SSLContext, dict[str, Any]]:
    """A server context for 127.0.0.1 and the session options that trust it."""
    trustme = pytest.importorskip("trustme")
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, {"verify": client}


@pytest.mark.parametrize("tls", [False, True], ids=["tcp", "tls"])
@pytest.mark.parametrize(("transport", "backend"), POOLING)
def test_a_stray_answer_on_an_idle_connection_is_not_the_next_cancels_answer(
    transport: str, backend: str, tls: bool
) -> None:
    server_tls, options = tls_pair() if tls else (None, {})
    stray_sent = threading.Event()

    def script(request: Request) -> None:
        if request.index == 0:
            request.send(answer(200, ACCEPTED))
            time.sleep(0.05)
            request.send(answer(200, b"{}"))  # nobody asked for it
            stray_sent.set()
        else:
            request.send(answer(404, NOT_FOUND))

    with raw_server(script, server_tls) as server:

        async def main() -> None:
            async with raw_session(transport, backend, server.url, **options) as session:
                [first] = await session.orders.cancel_many([1])
                assert first.ok and first.status is CancelStatus.QUEUED, first
                await until(stray_sent.is_set)
                assert stray_sent.is_set()
                # The connection then sits idle a moment with the stray bytes on it: the case.
                await anyio.sleep(0.05)
                [second] = await session.orders.cancel_many([2])
                assert not second.ok, second
                assert second.status is CancelStatus.NOT_FOUND, second

        run(backend, main)
        # Order 2's cancel reached the server on a connection without the stray. (Had a slow
        # client read the stray together with order 1's answer, httpx would have sent it on the
        # stray's connection first, refused the waiting answer and sent it again.)
        cancels = [r for r in server.requests if r.body == b'{"order_id":2}']
        assert any(r.connection != 0 for r in cancels), server.requests
