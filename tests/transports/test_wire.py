"""The native transport's parsing against two independent parsers, and the review's cases.

The differential test sends the same byte stream as the answer to a real request over a
loopback socket (the native transport), and feeds it to httptools (llhttp) and to h11 directly.
Wherever either of them rejects the answer, the native transport raises and never pools the
connection; where the native transport accepts, both agree on status and body. Then one
regression test per case the review found (issue 11), the desync first.
"""

from __future__ import annotations

import asyncio
import gzip
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Literal

import attrs
import h11
import httptools
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tanx_async import APIConnectionError, APITimeoutError
from tests.internals import Http11Sender, RawResponse, httpx, idle_connections

MAX_HEAD = 64 * 1024
CAP = 1 << 20
TIMEOUT = httpx.Timeout(5.0)

# --- a loopback server that answers every request with given bytes ---------------------------


@attrs.define
class Wire:
    """Answers the n-th request with ``answers[n]`` (the last one again past the end); after
    writing, closes the connection when ``close`` and keeps it open otherwise. ``late`` bytes
    are written on the same connection a moment after the first answer."""

    answers: list[bytes]
    close: bool = False
    late: bytes = b""
    port: int = 0
    requests: int = 0
    connections: int = 0
    tasks: set[asyncio.Task[None]] = attrs.field(factory=set)

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in head.split(b"\r\n"):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":")[1])
                await reader.readexactly(length)
                n = self.requests
                self.requests += 1
                writer.write(self.answers[min(n, len(self.answers) - 1)])
                await writer.drain()
                if self.close:
                    writer.close()
                    return
                if n == 0 and self.late:
                    await asyncio.sleep(0.05)  # the tail arrives after the answer looked complete
                    writer.write(self.late)
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.CancelledError):
            pass
        finally:
            writer.close()


@asynccontextmanager
async def wire(
    *answers: bytes, close: bool = False, late: bytes = b""
) -> AsyncIterator[tuple[Wire, Http11Sender, str]]:
    script = Wire(list(answers), close=close, late=late)
    server = await asyncio.start_server(script.serve, "127.0.0.1", 0)
    script.port = server.sockets[0].getsockname()[1]
    sender = Http11Sender(limits=httpx.Limits(max_connections=4), verify=True, max_response_bytes=CAP)
    try:
        yield script, sender, f"http://127.0.0.1:{script.port}/sapi/v1/orders/cancel/"
    finally:
        await sender.aclose()
        server.close()
        for task in script.tasks:
            task.cancel()
        await asyncio.gather(*script.tasks, return_exceptions=True)
        await server.wait_closed()


async def post(sender: Http11Sender, url: str) -> RawResponse:
    return await sender.send("POST", url, {"Content-Type": "application/json"}, b'{"order_id":1}', TIMEOUT)


# --- the two reference parsers ---------------------------------------------------------------


@attrs.define
class Verdict:
    kind: Literal["ok", "error", "incomplete"]
    status: int = 0
    body: bytes = b""
    exact: bool = True  # nothing came after the message
    keep_alive: bool = False


class _Messages:
    """httptools' callbacks, recorded per message."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.messages: list[dict[str, object]] = []

    def on_message_begin(self) -> None:
        self.messages.append({"status": 0, "body": [], "done": False, "framed": False})

    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() in (b"content-length", b"transfer-encoding"):
            self.messages[-1]["framed"] = True

    def on_headers_complete(self) -> None:
        self.messages[-1]["status"] = self.parser.get_status_code()
        self.messages[-1]["keep"] = self.parser.should_keep_alive()

    def on_body(self, body: bytes) -> None:
        parts = self.messages[-1]["body"]
        assert isinstance(parts, list)
        parts.append(body)

    def on_message_complete(self) -> None:
        self.messages[-1]["done"] = True


def by_httptools(data: bytes, *, eof: bool) -> Verdict:
    seen = _Messages()
    failed = False
    try:
        seen.parser.feed_data(data)
    except httptools.HttpParserError:
        failed = True
    finals = [m for m in seen.messages if not 100 <= int(m["status"]) < 200 or not m["done"]]  # type: ignore[call-overload]
    if not finals:
        return Verdict("error" if failed or eof else "incomplete")
    final = finals[0]
    status = int(final["status"])  # type: ignore[call-overload]
    body = b"".join(final["body"])  # type: ignore[arg-type]
    if final["done"]:
        exact = final is seen.messages[-1] and not failed
        return Verdict("ok", status, body, exact, bool(final.get("keep")))
    if failed:
        return Verdict("error")
    if eof and status and not final["framed"] and status not in (204, 304):
        return Verdict("ok", status, body, True, False)  # read until close
    return Verdict("error" if eof else "incomplete")


def by_h11(data: bytes, *, eof: bool) -> Verdict:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_HEAD)
    conn.send(
        h11.Request(method="POST", target="/x", headers=[("Host", "127.0.0.1"), ("Content-Length", "0")])
    )
    conn.send(h11.EndOfMessage())
    conn.receive_data(data)
    if eof:
        conn.receive_data(b"")
    status, body = 0, b""
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                return Verdict("incomplete")
            if isinstance(event, h11.Response):
                status = event.status_code
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                break
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                return Verdict("error")
    except h11.RemoteProtocolError:
        return Verdict("error")
    trailing, _ = conn.trailing_data
    return Verdict("ok", status, body, not trailing, conn.their_state is h11.DONE)


# --- answers, well-formed and not ------------------------------------------------------------

BAD_STATUS = [0, 99, 600, 999, 101]
GOOD_REASONS = [b" OK", b" Bad Request", b"", b" ", b" caf\xe9", b" tab\there"]
BAD_REASONS = [b" O\x01K", b" A\x7fB", b" A\x00B"]
GOOD_HEADERS = [
    b"X-A: 1",
    b"X-D: caf\xc3\xa9",
    b"X-E: a\tb",
    b"X-H:  spaced  ",
    b"Connection: close",
    b"Keep-Alive: timeout=5",
]
BAD_HEADERS = [
    b"X-B: a\x00b",
    b"X-C: a\x01b",
    b"X F: 1",
    b"X-G : 1",
    b" X-I: folded",
    b"X-J: \x7f",
    b"X-K: a\rb",
]
GOOD_SIZES = [b"%x", b"%X", b"%x;ext=1", b"00%x"]
BAD_SIZES = [b"0x%x", b"+%x", b" %x", b"%x ", b"0_%x", b"-%x"]
GOOD_FRAMINGS = ["length", "chunked", "close", "te-Chunked"]
BAD_FRAMINGS = [
    "length+chunked",
    "te-gzip-chunked",
    "length-dup",
    "length-plus",
    "length-short",
    "length-long",
]
TRAILING = [b"", b"", b"", b"\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nhi", b"junk"]


def pick(draw: st.DrawFn, clean: bool, good: list[bytes], bad: list[bytes]) -> bytes:
    return draw(st.sampled_from(good if clean else good + bad))


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    """Half of them well-formed; the others with one or more of the review's defects."""
    clean = draw(st.booleans())
    version = pick(draw, clean, [b"HTTP/1.1"] * 4 + [b"HTTP/1.0"], [b"HTTP/1.9", b"HTTP/2.0", b"HTTP/1.x"])
    status = draw(
        st.sampled_from([200, 200, 201, 204, 304, 400, 404, 429, 500, 503, *([] if clean else BAD_STATUS)])
    )
    head = version + b" %03d" % status + pick(draw, clean, GOOD_REASONS, BAD_REASONS) + b"\r\n"
    for _ in range(draw(st.integers(0, 3))):
        head += pick(draw, clean, GOOD_HEADERS, BAD_HEADERS) + b"\r\n"
    body = draw(st.binary(max_size=300))
    framing = draw(st.sampled_from(GOOD_FRAMINGS if clean else GOOD_FRAMINGS + BAD_FRAMINGS))
    size_format = pick(draw, clean, GOOD_SIZES, BAD_SIZES)
    chunks = b""
    rest = body
    for cut in draw(st.lists(st.integers(1, 200), max_size=3)):
        if rest:
            piece, rest = rest[:cut], rest[cut:]
            chunks += size_format % len(piece) + b"\r\n" + piece + b"\r\n"
    if rest:
        chunks += b"%x\r\n" % len(rest) + rest + b"\r\n"
    chunks += b"0\r\n\r\n"
    if framing == "length":
        head, payload = head + b"Content-Length: %d\r\n" % len(body), body
    elif framing == "chunked":
        head, payload = head + b"Transfer-Encoding: chunked\r\n", chunks
    elif framing == "close":
        payload = body
    elif framing == "length+chunked":
        head, payload = head + b"Content-Length: %d\r\nTransfer-Encoding: chunked\r\n" % len(body), chunks
    elif framing == "te-gzip-chunked":
        head, payload = head + b"Transfer-Encoding: gzip, chunked\r\n", chunks
    elif framing == "te-Chunked":
        head, payload = head + b"Transfer-Encoding: Chunked\r\n", chunks
    elif framing == "length-dup":
        head, payload = head + b"Content-Length: %d\r\nContent-Length: %d\r\n" % (len(body), len(body)), body
    elif framing == "length-plus":
        head, payload = head + b"Content-Length: +%d\r\n" % len(body), body
    elif framing == "length-short":
        head, payload = head + b"Content-Length: %d\r\n" % (len(body) + 5), body
    else:  # length-long: bytes past the declared body
        head, payload = head + b"Content-Length: %d\r\n" % max(0, len(body) - 3), body
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" if draw(st.booleans()) else b""
    leading = b"" if clean else draw(st.sampled_from([b"", b"\r\n"]))
    return leading + interim + head + b"\r\n" + payload + draw(st.sampled_from(TRAILING))


#: Where the native transport is stricter than both references (our own checks around llhttp).
STRICTER = ("bad status line", "unsupported transfer-encoding", "reason phrase")


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=answers(), keep_open=st.booleans())
def test_native_agrees_with_llhttp_and_h11_and_never_pools_what_they_reject(
    data: bytes, keep_open: bool
) -> None:
    # Kept open only where both references decide without the close; else the server closes.
    open_verdicts = (by_httptools(data, eof=False), by_h11(data, eof=False))
    close = not keep_open or any(v.kind == "incomplete" for v in open_verdicts)
    llhttp, h11_ = (by_httptools(data, eof=True), by_h11(data, eof=True)) if close else open_verdicts

    async def run() -> tuple[RawResponse | APIConnectionError, int]:
        async with wire(data, close=close) as (_script, sender, url):
            try:
                raw: RawResponse | APIConnectionError = await post(sender, url)
            except APIConnectionError as exc:
                raw = exc
            await asyncio.sleep(0)
            return raw, idle_connections(sender)

    got, pooled = asyncio.run(run())
    event(f"references: {llhttp.kind}/{h11_.kind}; native: {type(got).__name__}; pooled {pooled}")
    if llhttp.kind != "ok" or h11_.kind != "ok":
        assert isinstance(got, APIConnectionError), (
            llhttp,
            h11_,
            got.status if isinstance(got, RawResponse) else got,
        )
        assert not isinstance(got, APITimeoutError), "waited for an answer both references call finished"
        assert got.maybe_processed is True
        assert pooled == 0
        return
    if isinstance(got, APIConnectionError):
        assert not isinstance(got, APITimeoutError)
        assert any(why in str(got) for why in STRICTER), (got, llhttp, h11_)
        event(f"stricter than both: {str(got)[:60]}")
        assert pooled == 0
        return
    assert got.status == llhttp.status == h11_.status
    assert got.content == llhttp.body == h11_.body
    if not close:
        assert pooled == int(llhttp.exact and h11_.exact and llhttp.keep_alive and h11_.keep_alive)


# --- the review's cases, one regression test each --------------------------------------------

REAL = b'{"status":"success","message":"real","payload":null}'
TAIL = b'{"status":"success","message":"tail","payload":null}'


def ok(body: bytes = REAL, extra: bytes = b"") -> bytes:
    return b"HTTP/1.1 200 OK\r\n" + extra + b"Content-Length: %d\r\n\r\n" % len(body) + body


async def test_desync_a_late_tail_never_reaches_the_next_request() -> None:
    """Content-Length and chunked together: llhttp refuses it, so the connection is closed
    and the bytes that arrive after it can never be read as the next request's answer."""
    ambiguous = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" % (
        len(TAIL) + 40
    )
    async with wire(ambiguous, ok(), late=ok(TAIL)) as (script, sender, url):
        with pytest.raises(APIConnectionError, match="Transfer-Encoding") as got:
            await post(sender, url)
        assert got.value.maybe_processed is True
        assert idle_connections(sender) == 0
        for _ in range(3):
            assert (await post(sender, url)).content == REAL
        assert script.connections == 2  # the first one closed, never reused


@pytest.mark.parametrize("coding", [b"gzip, chunked", b"chunked, chunked", b"identity", b"chunked;q=1"])
async def test_transfer_encoding_must_be_exactly_chunked(coding: bytes) -> None:
    answer = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: " + coding + b"\r\n\r\n" + b"5\r\n" + gzip.compress(b"")[:5]
    )
    async with wire(answer + b"\r\n0\r\n\r\n") as (_script, sender, url):
        with pytest.raises(APIConnectionError) as got:
            await post(sender, url)
        assert "ransfer-encoding" in str(got.value) or "Transfer-Encoding" in str(got.value)
        assert idle_connections(sender) == 0


async def test_a_gzip_body_cut_short_is_an_error_not_a_shorter_answer() -> None:
    packed = gzip.compress(REAL * 20)
    answer = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + packed[: len(packed) // 2]
    async with wire(answer, close=True) as (_script, sender, url):
        with pytest.raises(APIConnectionError, match="cut short") as got:
            await post(sender, url)
        assert got.value.maybe_processed is True


async def test_every_gzip_member_is_decoded() -> None:
    packed = gzip.compress(b'{"status":"success",') + gzip.compress(b'"payload":null}')
    async with wire(ok(packed, extra=b"Content-Encoding: gzip\r\n")) as (_script, sender, url):
        raw = await post(sender, url)
        assert raw.content == b'{"status":"success","payload":null}'
        assert idle_connections(sender) == 1


async def test_bytes_after_a_gzip_body_are_an_error() -> None:
    packed = gzip.compress(REAL) + b"garbage"
    async with wire(ok(packed, extra=b"Content-Encoding: gzip\r\n")) as (_script, sender, url):
        with pytest.raises(APIConnectionError, match="gzip"):
            await post(sender, url)


@pytest.mark.parametrize("size", [b"0x5", b"+5", b"0_5", b" 5", b"5 ", b"-5"])
async def test_chunk_sizes_are_plain_hex(size: bytes) -> None:
    answer = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + size + b"\r\nhello\r\n0\r\n\r\n"
    async with wire(answer) as (_script, sender, url):
        with pytest.raises(APIConnectionError, match="chunk size"):
            await post(sender, url)
        assert idle_connections(sender) == 0


@pytest.mark.parametrize(
    "head",
    [
        b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\n",
        b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\n",
        b"HTTP/1.1 200 OK\r\nX-\rA: 1\r\n",
        b"HTTP/1.1 200 OK\r\nX-\x00A: 1\r\n",
        b"HTTP/1.1 200 OK\r\nX A: 1\r\n",
        b"HTTP/1.1 200 O\x00K\r\n",
        b"HTTP/1.1 200 O\x01K\r\n",
        b"HTTP/1.9 200 OK\r\n",
        b"HTTP/1.x 200 OK\r\n",
        b"HTTP/2.0 200 OK\r\n",
        b"HTTP/1.1 000 OK\r\n",
        b"HTTP/1.1 099 OK\r\n",
        b"HTTP/1.1 600 OK\r\n",
        b"\r\nHTTP/1.1 200 OK\r\n",
    ],
)
async def test_control_bytes_bad_versions_and_statuses_are_refused(head: bytes) -> None:
    async with wire(head + b"Content-Length: 2\r\n\r\nok") as (_script, sender, url):
        with pytest.raises(APIConnectionError) as got:
            await post(sender, url)
        assert got.value.maybe_processed is True
        assert idle_connections(sender) == 0


@pytest.mark.parametrize("size", [70_000, 100_000])
async def test_a_complete_head_over_64_kib_in_one_read_is_refused(size: int) -> None:
    answer = b"HTTP/1.1 200 OK\r\nX-Pad: " + b"a" * size + b"\r\nContent-Length: 2\r\n\r\nok"
    async with wire(answer) as (_script, sender, url):
        with pytest.raises(APIConnectionError, match="headers longer than 65536"):
            await post(sender, url)


async def test_a_101_upgrade_is_refused() -> None:
    async with wire(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n"
    ) as (
        _script,
        sender,
        url,
    ):
        with pytest.raises(APIConnectionError, match="101"):
            await post(sender, url)


async def test_a_read_until_close_body_ends_at_the_close() -> None:
    async with wire(b"HTTP/1.1 200 OK\r\n\r\n" + REAL, close=True) as (_script, sender, url):
        raw = await post(sender, url)
        assert raw.content == REAL
        assert idle_connections(sender) == 0


@pytest.mark.parametrize("after", [b"\r\n", b"\r\n\r\n", b"H", ok()])
async def test_bytes_past_a_complete_answer_close_its_connection(after: bytes) -> None:
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n%x\r\n" % len(REAL) + REAL + b"\r\n0\r\n\r\n"
    )
    async with wire(chunked + after, ok()) as (script, sender, url):
        assert (await post(sender, url)).content == REAL
        assert idle_connections(sender) == 0
        assert (await post(sender, url)).content == REAL
        assert script.connections == 2


async def test_head_answers_have_no_body_and_keep_the_connection() -> None:
    async with wire(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n", ok()) as (script, sender, url):
        raw = await sender.send("HEAD", url, {}, None, TIMEOUT)
        assert (raw.status, raw.content) == (200, b"")
        assert idle_connections(sender) == 1
        assert (await post(sender, url)).content == REAL
        assert script.connections == 1


async def test_interim_answers_are_skipped() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n"
    async with wire(interim + ok()) as (_script, sender, url):
        raw = await post(sender, url)
        assert (raw.status, raw.content) == (200, REAL)
        assert "link" not in raw.headers


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/a\tb",
        "http://127.0.0.1:9/a\x01b",
        "http://127.0.0.1:9/a\x7fb",
        "http://127.0.0.1:9/a?b=\r\n",
        "http://127.0.0.1:9/a\nb",
    ],
)
async def test_control_bytes_in_the_path_are_refused_before_sending(url: str) -> None:
    sender = Http11Sender(limits=httpx.Limits(), verify=True, max_response_bytes=CAP)
    try:
        with pytest.raises(APIConnectionError, match="control character") as got:
            await sender.send("GET", url, {}, None, TIMEOUT)
        assert got.value.maybe_processed is False
    finally:
        await sender.aclose()


@pytest.mark.parametrize(
    "headers",
    [{"X-A": "a\x01b"}, {"X-A": "a\x7fb"}, {"X-A": "a\x1bb"}, {"X A": "1"}, {"X:A": "1"}, {"": "1"}],
)
async def test_control_bytes_and_bad_names_in_headers_are_refused_before_sending(
    headers: dict[str, str],
) -> None:
    async with wire(ok()) as (script, sender, url):
        with pytest.raises(APIConnectionError, match="not sent") as got:
            await sender.send("POST", url, headers, b"{}", TIMEOUT)
        assert got.value.maybe_processed is False
        assert script.requests == 0
        # A tab inside a value is allowed (RFC 9110 field-value).
        assert (await sender.send("POST", url, {"X-A": "a\tb"}, b"{}", TIMEOUT)).status == 200


@pytest.mark.parametrize("method", ["GET\r\nX-Evil: 1", "GE T", "POST\x00", ""])
async def test_a_method_that_is_not_a_token_is_refused_before_sending(method: str) -> None:
    async with wire(ok()) as (script, sender, url):
        with pytest.raises(APIConnectionError, match="not a token; not sent") as got:
            await sender.send(method, url, {}, None, TIMEOUT)
        assert got.value.maybe_processed is False
        assert script.requests == 0
