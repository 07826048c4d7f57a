"""Every transport keeps the operation's deadline against an answer that trickles in.

The server answers a byte every 0.5 s, heads and bodies alike (the cancel and the look-up that
would settle it). A read timeout per read, as httpx's is, never fires on such an answer; the
operation's deadline (``deadline=2``) must end ``orders.cancel`` all the same, with the outcome
unknown (the cancel may have been processed), on every transport.
"""

from __future__ import annotations

import anyio
import pytest

from tanx_async import CancelOutcomeUnknownError
from tests.transports.rawserver import POOLING, Request, raw_server, raw_session, run

ANSWER = b'HTTP/1.1 200 OK\r\nContent-Length: 33\r\n\r\n{"status":"success","payload":{}}'


def trickle(request: Request) -> None:
    """A byte every 0.5 s until the client goes away (or the server stops)."""
    server_stop = request.stop
    for byte in ANSWER:
        if server_stop.wait(0.5):
            return
        request.send(bytes([byte]))


@pytest.mark.parametrize(("transport", "backend"), POOLING)
def test_the_deadline_holds_against_an_answer_trickled_a_byte_at_a_time(transport: str, backend: str) -> None:
    with raw_server(trickle) as server:

        async def main() -> None:
            async with raw_session(transport, backend, server.url) as session:
                # A guard against a hang, far above what the deadline allows (about twice 2 s).
                with anyio.fail_after(15):
                    with pytest.raises(CancelOutcomeUnknownError) as got:
                        await session.orders.cancel(5, deadline=2)
                assert got.value.maybe_processed is True

        run(backend, main)
        assert server.requests, "the cancel never reached the server"
        assert server.requests[0].body == b'{"order_id":5}'
