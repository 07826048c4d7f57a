"""The Python floor: the least an asyncio client can do per cancel, as a reference.

A minimal ``asyncio.BufferedProtocol`` client (reads into one shared buffer): C connections opened up front (TLS through the standard
``ssl`` module when the URL is https, verification on), each with one request in flight at a
time (no pipelining: the same rule as every other client), request bytes built from one pre-built
head plus the body, ``Content-Length`` framing only (no chunked, no compression, no interim
answers: the fake server sends none), ``orjson`` to decode and the same envelope check as the
raw clients (status 200, ``"status": "success"``, the echoed id). No retries, no pool, no
timeouts: a general library cannot skip those, which is why this is a floor and not a client.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from urllib.parse import urlsplit

import orjson
from _common import CANCEL_PATH, WARMUP_ID_BASE, Meter, Tally, check_envelope, client_ssl, die

#: One read buffer for every connection (each read is consumed before the next one starts).
_READ = memoryview(bytearray(256 * 1024))


class FloorConnection(asyncio.BufferedProtocol):
    """One connection; ``request`` writes the bytes and waits for one Content-Length answer.
    Reads go into one shared buffer (``get_buffer``): no bytes object per read."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self.need = -1  # the whole message's size once its head was read

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        return _READ

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(_READ[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        buf = self.buf
        buf += data
        if self.need < 0:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return
            at = buf.find(b"Content-Length: ", 0, end)
            if at < 0:
                self._fail("no Content-Length")
                return
            self.need = end + 4 + int(buf[at + 16 : buf.find(b"\r\n", at)])
        if len(buf) < self.need:
            return
        status = int(buf[9:12])
        body = bytes(buf[buf.find(b"\r\n\r\n") + 4 : self.need])
        del buf[: self.need]
        self.need = -1
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result((status, body))

    def connection_lost(self, exc: Exception | None) -> None:
        self._fail(f"connection lost ({exc})")

    def _fail(self, why: str) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(ConnectionError(why))

    async def request(self, data: bytes) -> tuple[int, bytes]:
        assert self.transport is not None
        self.waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return await self.waiter


async def bench_floor(url: str, n: int, c: int, warmup: int, token: str, cafile: str | None) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or (443 if parts.scheme == "https" else 80)
    context = client_ssl(cafile)
    if parts.scheme == "https" and context is None:
        die("floor: an https URL needs --cafile")
    head = (
        f"POST {CANCEL_PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nAuthorization: JWT {token}\r\n"
        "Content-Type: application/json\r\nContent-Length: "
    ).encode()
    loop = asyncio.get_running_loop()
    conns: list[FloorConnection] = []
    for _ in range(c):
        _, proto = await loop.create_connection(FloorConnection, host, port, ssl=context)
        conns.append(proto)

    async def run(ids: Iterable[int], tally: Tally) -> None:
        it = iter(ids)

        async def worker(conn: FloorConnection) -> None:
            for order_id in it:  # bounded by the iterator
                body = b'{"order_id":%d}' % order_id
                try:
                    status, raw = await conn.request(head + b"%d\r\n\r\n" % len(body) + body)
                except ConnectionError as exc:
                    tally.fail(str(exc))
                    return
                if status != 200:
                    tally.fail(f"HTTP {status}: {raw[:120]!r}")
                    continue
                why = check_envelope(raw, order_id, orjson.loads(raw))
                if why is None:
                    tally.ok += 1
                else:
                    tally.fail(why)

        await asyncio.gather(*(worker(conn) for conn in conns))

    try:
        warm = Tally()
        await run(range(WARMUP_ID_BASE, WARMUP_ID_BASE + warmup), warm)
        if warm.failed:
            die(f"warm-up failed: {warm.samples}")
        tally = Tally()
        meter = Meter()
        meter.start()
        await run(range(1, n + 1), tally)
        meter.stop()
    finally:
        for conn in conns:
            if conn.transport is not None:
                conn.transport.close()
        await asyncio.sleep(0)
    meter.result("floor", n, c, warmup, tally).emit()
