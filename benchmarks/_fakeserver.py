"""A fast loopback fake of tanX's ``POST /sapi/v1/orders/cancel/`` for benchmarks.

A raw ``asyncio.Protocol`` HTTP/1.1 server: keep-alive and pipelining, just enough parsing
(request line, headers, ``Content-Length`` body), the documented success envelope echoing the
``order_id`` of the body. Latency is injected with ``loop.call_later`` so that concurrency is
real and a waiting request costs the server nothing. Stdlib only, so any interpreter can run it.

Routes:
- ``POST /sapi/v1/orders/cancel/``: 200 success envelope; 401 without ``Authorization: JWT ...``;
  400 (tanX error envelope) when the body has no integer ``order_id``.
- ``GET /__stats``: ``{"cancels": N, "requests": M}`` counters (used by the orchestrator to check
  that a client really sent what it claims).
- anything else: 404 error envelope.

On start it prints one JSON line ``{"port": P, "pid": ...}`` to stdout. It stops on SIGTERM or
SIGINT, and by itself after ``--max-seconds``.

``--tls CERT KEY`` serves HTTPS (the orchestrator makes the certificate at run time with
trustme). ``--keep-alive S`` closes a connection idle for S seconds and says so in every answer
(``Keep-Alive: timeout=S``, as nginx or Apache would); without it idle connections stay open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import signal
import ssl
import sys
from collections.abc import Callable

CANCEL_PATH = b"/sapi/v1/orders/cancel/"
_ORDER_ID_RE = re.compile(rb'"order_id"\s*:\s*(-?\d+)')
_MAX_HEADER_BYTES = 64 * 1024
_MAX_BODY_BYTES = 1024 * 1024

# The success envelope of docs.tanx.fi (cancel order), split around the id.
_PAYLOAD_HEAD = (
    b'{"status":"success","message":"Order is successfully queued for cancellation","payload":{"id":'
)
_PAYLOAD_TAIL = (
    b',"uuid":"17be02d1-34ef-49df-9b92-264705047d99","side":"buy","ord_type":"limit",'
    b'"price":"68733.81","stop_price":null,"avg_price":"0.0","state":"wait","market":"btcusdc",'
    b'"created_at":"2024-05-31T09:02:00+02:00","updated_at":"2024-05-31T09:02:00+02:00",'
    b'"origin_volume":"0.0425","remaining_volume":"0.0335","executed_volume":"0.009000000000000001",'
    b'"maker_fee":"0.0004","taker_fee":"0.0004","trades_count":2,"cancel_reason":null}}'
)
_STATUS_LINES = {
    200: b"HTTP/1.1 200 OK\r\n",
    400: b"HTTP/1.1 400 Bad Request\r\n",
    401: b"HTTP/1.1 401 Unauthorized\r\n",
    404: b"HTTP/1.1 404 Not Found\r\n",
    413: b"HTTP/1.1 413 Content Too Large\r\n",
}
_COMMON_HEADERS = b"Content-Type: application/json\r\nServer: tanx-fake\r\n"


def _error_body(message: str) -> bytes:
    return json.dumps({"status": "error", "message": message, "payload": ""}).encode()


_BODY_401 = json.dumps(
    {
        "status": "error",
        "message": "Given token not valid for any token type",
        "payload": {"token_type": "access"},
    }
).encode()


def build_response(status: int, body: bytes, *, close: bool = False) -> bytes:
    """Serialise one HTTP/1.1 response."""
    conn = b"Connection: close\r\n" if close else b""
    return b"".join(
        (
            _STATUS_LINES[status],
            _COMMON_HEADERS,
            conn,
            b"Content-Length: ",
            str(len(body)).encode(),
            b"\r\n\r\n",
            body,
        )
    )


def cancel_success(order_id: bytes) -> bytes:
    """The 200 response for one cancelled order id (given as its ASCII digits)."""
    return build_response(200, _PAYLOAD_HEAD + order_id + _PAYLOAD_TAIL)


class Stats:
    """Counters shared by all connections."""

    def __init__(self) -> None:
        self.requests = 0
        self.cancels = 0
        self.connections = 0
        self.idle_closed = 0


class FakeExchangeProtocol(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; pipelined requests are answered in order."""

    def __init__(self, stats: Stats, latency: float, keep_alive: float | None = None) -> None:
        self._stats = stats
        self._latency = latency
        self._keep_alive = keep_alive
        self._hint = b"Keep-Alive: timeout=%d\r\n" % round(keep_alive) if keep_alive else b""
        self._idle_timer: asyncio.TimerHandle | None = None
        self._pending = 0  # requests read and not yet answered
        self._buf = bytearray()
        self._transport: asyncio.Transport | None = None
        self._loop = asyncio.get_running_loop()
        self._closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport
        self._stats.connections += 1
        self._arm_idle()

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        if self._idle_timer is not None:
            self._idle_timer.cancel()

    def _arm_idle(self) -> None:
        if self._keep_alive:
            if self._idle_timer is not None:
                self._idle_timer.cancel()
            self._idle_timer = self._loop.call_later(self._keep_alive, self._idle_close)

    def _idle_close(self) -> None:
        self._idle_timer = None
        if self._pending == 0 and not self._buf and self._transport is not None:
            self._stats.idle_closed += 1
            self._close_after_flush()

    def data_received(self, data: bytes) -> None:
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None
        buf = self._buf
        buf += data
        # Bounded: each iteration consumes one complete request from the buffer or returns.
        while buf and not self._closing:
            head_end = buf.find(b"\r\n\r\n")
            if head_end < 0:
                if len(buf) > _MAX_HEADER_BYTES:
                    self._send_now(build_response(413, _error_body("headers too large"), close=True))
                    self._close_after_flush()
                return
            head = bytes(buf[:head_end])
            lines = head.split(b"\r\n")
            parts = lines[0].split(b" ")
            if len(parts) != 3:
                self._send_now(build_response(400, _error_body("bad request line"), close=True))
                self._close_after_flush()
                return
            method, target, version = parts
            length = 0
            auth = b""
            close = version == b"HTTP/1.0"
            for line in lines[1:]:
                name, _, value = line.partition(b":")
                lname = name.strip().lower()
                if lname == b"content-length":
                    length = int(value.strip() or b"0")
                elif lname == b"authorization":
                    auth = value.strip()
                elif lname == b"connection":
                    token = value.strip().lower()
                    close = token == b"close" or (close and token != b"keep-alive")
            if length > _MAX_BODY_BYTES:
                self._send_now(build_response(413, _error_body("body too large"), close=True))
                self._close_after_flush()
                return
            total = head_end + 4 + length
            if len(buf) < total:
                return
            body = bytes(buf[head_end + 4 : total])
            del buf[:total]
            self._stats.requests += 1
            response = self._route(method, target, auth, body, close)
            if self._hint:
                response = response.replace(b"\r\n\r\n", b"\r\n" + self._hint + b"\r\n", 1)
            if close:
                self._closing = True
            self._respond(response, close)

    def _route(self, method: bytes, target: bytes, auth: bytes, body: bytes, close: bool) -> bytes:
        path = target.partition(b"?")[0]
        if path == CANCEL_PATH and method == b"POST":
            if not auth.startswith(b"JWT "):
                return build_response(401, _BODY_401, close=close)
            match = _ORDER_ID_RE.search(body)
            if match is None:
                return build_response(400, _error_body("order_id is a mandatory field"), close=close)
            self._stats.cancels += 1
            if close:
                return build_response(200, _PAYLOAD_HEAD + match.group(1) + _PAYLOAD_TAIL, close=True)
            return cancel_success(match.group(1))
        if path == b"/__stats" and method == b"GET":
            stats = {
                "requests": self._stats.requests,
                "cancels": self._stats.cancels,
                "connections": self._stats.connections,
                "idle_closed": self._stats.idle_closed,
            }
            return build_response(200, json.dumps(stats).encode(), close=close)
        return build_response(404, _error_body("Not found."), close=close)

    def _respond(self, response: bytes, close: bool) -> None:
        self._pending += 1
        if self._latency > 0:
            # Constant delay keeps pipelined responses in request order (timer heap is FIFO in time).
            self._loop.call_later(self._latency, self._send_later, response, close)
        else:
            self._send_now(response)
            self._sent()
            if close:
                self._close_after_flush()

    def _send_later(self, response: bytes, close: bool) -> None:
        self._send_now(response)
        self._sent()
        if close:
            self._close_after_flush()

    def _sent(self) -> None:
        self._pending -= 1
        if self._pending == 0:
            self._arm_idle()

    def _send_now(self, response: bytes) -> None:
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.write(response)

    def _close_after_flush(self) -> None:
        self._closing = True
        if self._transport is not None:
            self._transport.close()


async def serve(
    host: str,
    port: int,
    latency: float,
    max_seconds: float,
    on_ready: Callable[[int], None] | None = None,
    tls: ssl.SSLContext | None = None,
    keep_alive: float | None = None,
) -> Stats:
    """Serve until SIGTERM/SIGINT or ``max_seconds``; return the counters."""
    loop = asyncio.get_running_loop()
    stats = Stats()
    stop = asyncio.Event()
    server = await loop.create_server(
        lambda: FakeExchangeProtocol(stats, latency, keep_alive),
        host=host,
        port=port,
        ssl=tls,
        backlog=4096,
        reuse_address=True,
    )
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    sock_port = int(server.sockets[0].getsockname()[1])
    if on_ready is not None:
        on_ready(sock_port)
    try:
        await asyncio.wait_for(stop.wait(), timeout=max_seconds)
    except TimeoutError:
        print(
            f"fakeserver: --max-seconds={max_seconds} reached, stopping",
            file=sys.stderr,
        )
    finally:
        server.close()
        # Bounded: don't wait forever for idle keep-alive connections on the way out.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), timeout=1.0)
    return stats


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1", help="bind address (loopback only)")
    parser.add_argument("--port", type=int, default=0, help="0 = ephemeral")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds added to every response")
    parser.add_argument("--max-seconds", type=float, default=600.0, help="stop by itself after this")
    parser.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), help="serve HTTPS with this PEM pair")
    parser.add_argument("--keep-alive", type=float, default=None, help="close connections idle this long")
    args = parser.parse_args(argv)
    if args.host not in ("127.0.0.1", "::1", "localhost"):
        parser.error("the fake server binds to loopback only")
    tls = None
    if args.tls:
        tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        tls.load_cert_chain(*args.tls)

    def ready(port: int) -> None:
        print(
            json.dumps({"port": port, "pid": os.getpid(), "latency": args.latency}),
            flush=True,
        )

    stats = asyncio.run(
        serve(
            args.host, args.port, args.latency, args.max_seconds, ready, tls=tls, keep_alive=args.keep_alive
        )
    )
    print(
        json.dumps(
            {
                "requests": stats.requests,
                "cancels": stats.cancels,
                "connections": stats.connections,
            }
        ),
        file=sys.stderr,
    )
    return 0
