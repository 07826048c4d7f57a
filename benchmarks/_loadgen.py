"""Measure the fake server's capacity: a raw asyncio client, many connections, pipelined requests.

Each connection keeps ``--depth`` cancel requests in flight (HTTP/1.1 pipelining) and refills as
responses arrive, for ``--seconds``. Responses are counted by their header terminator (the JSON
bodies never contain a blank line) and the first one of every connection is checked to be the
success envelope. Prints one JSON line: ``{"responses": .., "seconds": .., "rps": ..}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit

from _common import CANCEL_PATH, die, loopback_only, make_access_token


def _request(host: str, token: str, order_id: int) -> bytes:
    body = json.dumps({"order_id": order_id}).encode()
    return (
        f"POST {CANCEL_PATH} HTTP/1.1\r\nHost: {host}\r\nAuthorization: JWT {token}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


class Pipeliner(asyncio.Protocol):
    def __init__(self, request: bytes, depth: int, deadline: float, done: asyncio.Future[None]) -> None:
        self.request = request
        self.depth = depth
        self.deadline = deadline
        self.done = done
        self.responses = 0
        self.in_flight = 0
        self.tail = b""
        self.first: bytes | None = None
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.write(self.request * self.depth)
        self.in_flight = self.depth

    def data_received(self, data: bytes) -> None:
        if self.first is None:
            self.first = data[:400]
        chunk = self.tail + data
        got = chunk.count(b"\r\n\r\n")
        self.tail = chunk[-3:]
        self.responses += got
        self.in_flight -= got
        if time.perf_counter() < self.deadline:
            refill = self.depth - self.in_flight
            if refill > 0 and self.transport is not None:
                self.transport.write(self.request * refill)
                self.in_flight += refill
        elif self.in_flight <= 0 and not self.done.done():
            self.done.set_result(None)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.done.done():
            self.done.set_result(None)


async def measure(url: str, connections: int, depth: int, seconds: float) -> dict[str, float]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    request = _request(f"{host}:{port}", make_access_token(), 12345)
    loop = asyncio.get_running_loop()
    start = time.perf_counter()
    deadline = start + seconds
    protos: list[Pipeliner] = []
    waits: list[asyncio.Future[None]] = []
    for _ in range(connections):
        fut: asyncio.Future[None] = loop.create_future()
        _, proto = await loop.create_connection(
            lambda f=fut: Pipeliner(request, depth, deadline, f),  # type: ignore[misc]
            host,
            port,
        )
        protos.append(proto)
        waits.append(fut)
    await asyncio.wait_for(asyncio.gather(*waits), timeout=seconds + 10)
    elapsed = time.perf_counter() - start
    for p in protos:
        if p.first is None or b" 200 " not in p.first or b'"status":"success"' not in p.first:
            die(f"loadgen: unexpected response {p.first!r}")
        if p.transport is not None:
            p.transport.close()
    total = sum(p.responses for p in protos)
    return {"responses": total, "seconds": elapsed, "rps": total / elapsed}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="fake-server capacity (pipelined loopback client)")
    p.add_argument("--url", required=True)
    p.add_argument("--connections", type=int, default=64)
    p.add_argument("--depth", type=int, default=16)
    p.add_argument("--seconds", type=float, default=3.0)
    args = p.parse_args(argv)
    loopback_only(args.url)
    result = asyncio.run(measure(args.url, args.connections, args.depth, args.seconds))
    result.update(connections=args.connections, depth=args.depth)
    print(json.dumps(result), flush=True)
    return 0
