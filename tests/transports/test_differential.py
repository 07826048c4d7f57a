"""The same byte streams, fed to every transport that pools connections: none ever hands one
request's answer to another.

Hypothesis writes a plan for a run of requests made one after another on one session: for each,
the answer's framing (``Content-Length`` or chunked) and where its bytes are cut into separate
sends, then what follows it on the same connection: nothing, a complete extra answer that
names the *next* request (the dangerous one, marked as stray only for the check: pipelined in the same send, in a send of its own,
or a moment later while the connection sits idle), junk bytes, blank lines, or a close. Every
answer names its request (``{"req": i}``); each request must come back with its own answer or
fail, never with another's. The next request leaves only once the server has sent everything
the plan holds for the previous one, so whatever strays is on the connection before the next
request could be written: a transport cannot mistake it for an answer it asked for without
reusing a connection it should have dropped.

The native transport's batch fast path reads answers with the same connection code as a task's
request, so the plain ``session.request`` covers it (``native-tasks`` is not run twice).
"""

from __future__ import annotations

import json
import threading
from typing import Any

import anyio
import attrs
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tanx_async import TanxError
from tests.conftest import until
from tests.transports.rawserver import POOLING, Request, raw_server, raw_session, run

TRANSPORTS = [pair for pair in POOLING if pair[0] != "native-tasks"]
AFTER = ["nothing", "next-answer", "junk", "blank-lines", "close"]
WHEN = ["same-send", "own-send", "while-idle"]


@attrs.frozen
class Plan:
    """What the server sends for one request."""

    framing: str
    cuts: tuple[int, ...]
    after: str
    when: str


def body(index: int, *, stray: bool = False) -> bytes:
    payload: dict[str, Any] = {"req": index, "stray": True} if stray else {"req": index}
    return json.dumps({"status": "success", "message": "ok", "payload": payload}).encode()


def framed(index: int, framing: str, *, stray: bool = False) -> bytes:
    data = body(index, stray=stray)
    if framing == "length":
        return b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(data), data)
    half = len(data) // 2
    chunks = b"%x\r\n%s\r\n%x\r\n%s\r\n0\r\n\r\n" % (half, data[:half], len(data) - half, data[half:])
    return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks


def pieces(data: bytes, cuts: tuple[int, ...]) -> list[bytes]:
    points = sorted({c % len(data) for c in cuts} - {0})
    out, last = [], 0
    for point in [*points, len(data)]:
        out.append(data[last:point])
        last = point
    return out


def script_for(plans: list[Plan], done: list[threading.Event]) -> Any:
    def script(request: Request) -> None:
        index = int(request.target.strip("/").split("/")[-1])
        plan = plans[index]
        try:
            answer = framed(index, plan.framing)
            extra = {
                "nothing": b"",
                "next-answer": framed(index + 1, plan.framing, stray=True),
                "junk": b"XYZ\r\n",
                "blank-lines": b"\r\n\r\n",
                "close": b"",
            }[plan.after]
            sends = pieces(answer, plan.cuts)
            if extra and plan.when == "same-send":
                sends[-1] += extra
                extra = b""
            for data in sends:
                request.send(data)
            if extra:
                if plan.when == "while-idle" and request.stop.wait(0.02):
                    return
                request.send(extra)
            if plan.after == "close":
                request.close()
        finally:
            done[index].set()

    return script


async def one_run(
    transport: str, backend: str, url: str, plans: list[Plan], done: list[threading.Event]
) -> None:
    async with raw_session(transport, backend, url, max_retries=0) as session:
        for index in range(len(plans)):
            got: dict[str, Any] | None = None
            try:
                got = await session.request("POST", f"/r/{index}/", json={"i": index}, idempotent=False)
            except TanxError as exc:
                # Failing is safe, and the built-in transports have no cause to: each answer is
                # well formed, and a connection left dirty is dropped for a new one. httpx may
                # fail right after bytes past an answer (h11 keeps them for the next request's
                # answer, which the session then refuses: a stray, not this request's).
                dirty = index > 0 and plans[index - 1].after in ("next-answer", "junk", "blank-lines")
                if not (transport == "httpx" and dirty):
                    raise AssertionError(f"{transport}/{backend}: request {index} failed: {exc!r}") from exc
            if got is not None:
                payload = got.get("payload", got)
                assert payload == {"req": index}, f"{transport}/{backend}: request {index} got {got}"
            await until(done[index].is_set)
            assert done[index].is_set()
            # A turn of the event loop with the stray bytes (if any) on the idle connection.
            await anyio.sleep(0.01)


plans_strategy = st.lists(
    st.builds(
        Plan,
        framing=st.sampled_from(["length", "chunked"]),
        cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=4).map(tuple),
        after=st.sampled_from(AFTER),
        when=st.sampled_from(WHEN),
    ),
    min_size=2,
    max_size=4,
)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(plans=plans_strategy)
# The stray next answer read together with the answer (h11 keeps it: httpx refuses it), and
# arriving while the connection sits idle (every transport must drop the connection).
@example(plans=[Plan("length", (), "next-answer", "same-send"), Plan("length", (), "nothing", "own-send")])
@example(plans=[Plan("chunked", (7,), "next-answer", "while-idle"), Plan("length", (), "close", "own-send")])
def test_no_transport_hands_one_requests_answer_to_another(plans: list[Plan]) -> None:
    for transport, backend in TRANSPORTS:
        if backend == "trio":
            pytest.importorskip("trio")
        done = [threading.Event() for _ in plans]
        with raw_server(script_for(plans, done)) as server:

            async def main() -> None:
                await one_run(transport, backend, server.url, plans, done)  # noqa: B023 - run at once

            run(backend, main)
