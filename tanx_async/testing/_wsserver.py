"""WebSocket for ``SandboxServer``: an upgrade request becomes an ASGI ``websocket`` scope.

h11 parses the handshake request; the 101 answer carries the RFC 6455 accept token; from then on
wsproto frames the messages. Besides ``websocket.accept``/``send``/``close`` and the denial
response extension (``websocket.http.response.*``), the app may send ``FAULT_MESSAGE`` with
``"drop"`` (abort the socket, no close frame) or ``"stall"`` (stop sending and stop answering
pings, socket left open until the peer gives up or the server stops).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import h11
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Event, Ping, TextMessage
from wsproto.utilities import ProtocolError, generate_accept_token

from ._faults import FAULT_EXTENSION, FAULT_MESSAGE

if TYPE_CHECKING:
    from ._app import ASGIApp, Message

__all__ = ["is_websocket", "serve_websocket"]

_READ_SIZE = 65536


def is_websocket(request: h11.Request) -> bool:
    """A ``GET`` asking to upgrade to ``websocket``."""
    for name, value in request.headers:
        if bytes(name).lower() == b"upgrade" and bytes(value).lower() == b"websocket":
            return request.method == b"GET"
    return False


async def serve_websocket(
    app: ASGIApp,
    conn: h11.Connection,
    request: h11.Request,
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    stopping: asyncio.Event,
) -> None:
    """Run ``app`` for one websocket connection whose handshake request h11 has read."""
    headers = [(bytes(k).lower(), bytes(v)) for k, v in request.headers]
    key = dict(headers).get(b"sec-websocket-key", b"")
    raw_path, _, query = bytes(request.target).partition(b"?")
    peer = writer.get_extra_info("peername")
    sockname = writer.get_extra_info("sockname")
    scope: dict[str, Any] = {
        "type": "websocket",
        "asgi": {"version": "3.0", "spec_version": "2.3"},
        "http_version": "1.1",
        "scheme": "ws",
        "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
        "raw_path": raw_path,
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": tuple(peer[:2]) if peer else None,
        "server": tuple(sockname[:2]) if sockname else None,
        "subprotocols": [],
        "extensions": {"websocket.http.response": {}, FAULT_EXTENSION: {}},
    }
    ws: Connection | None = None
    pending: deque[Event] = deque()
    parts: list[str | bytes] = []
    connected = False
    stalled = False
    closed = False

    def write(data: bytes) -> None:
        if not writer.is_closing():
            writer.write(data)

    async def receive() -> Message:
        nonlocal connected, closed
        if not connected:
            connected = True
            return {"type": "websocket.connect"}
        while True:
            while ws is not None and pending:
                event = pending.popleft()
                if isinstance(event, TextMessage | BytesMessage):
                    parts.append(bytes(event.data) if isinstance(event, BytesMessage) else event.data)
                    if event.message_finished:
                        whole: Any = "".join(p for p in parts if isinstance(p, str)) or b"".join(
                            p for p in parts if isinstance(p, bytes)
                        )
                        parts.clear()
                        kind = "text" if isinstance(whole, str) else "bytes"
                        return {"type": "websocket.receive", kind: whole}
                elif isinstance(event, Ping) and not stalled:
                    write(ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    if not closed:
                        closed = True
                        with contextlib.suppress(ProtocolError):
                            write(ws.send(event.response()))
                    return {"type": "websocket.disconnect", "code": event.code}
            if stopping.is_set():
                return {"type": "websocket.disconnect", "code": 1001}
            read = asyncio.ensure_future(reader.read(_READ_SIZE))
            stop = asyncio.ensure_future(stopping.wait())
            try:
                await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                stop.cancel()
                if not read.done():
                    read.cancel()
                elif not read.cancelled():
                    read.exception()  # a reset seen as we are cancelled: not "never retrieved"
            data = read.result() if read.done() and not read.cancelled() and read.exception() is None else b""
            if not data or ws is None:
                return {"type": "websocket.disconnect", "code": 1006}
            try:
                ws.receive_data(data)
                pending.extend(ws.events())
            except ProtocolError:
                return {"type": "websocket.disconnect", "code": 1002}

    async def send(message: Message) -> None:
        nonlocal ws, stalled, closed
        kind = message["type"]
        if kind == "websocket.accept":
            write(
                conn.send(
                    h11.InformationalResponse(
                        status_code=101,
                        headers=[
                            (b"upgrade", b"websocket"),
                            (b"connection", b"Upgrade"),
                            (b"sec-websocket-accept", generate_accept_token(key)),
                        ],
                    )
                )
                or b""
            )
            ws = Connection(ConnectionType.SERVER, trailing_data=conn.trailing_data[0])
            pending.extend(ws.events())
        elif kind == "websocket.http.response.start":
            response = h11.Response(status_code=message["status"], headers=message.get("headers", []))
            write(conn.send(response) or b"")
        elif kind == "websocket.http.response.body":
            write(conn.send(h11.Data(data=message.get("body", b""))) or b"")
            write(conn.send(h11.EndOfMessage()) or b"")
            writer.close()
        elif kind == "websocket.send":
            if ws is not None and not stalled and not closed:
                text = message.get("text")
                event = TextMessage(data=text) if text is not None else BytesMessage(data=message["bytes"])
                write(ws.send(event))
                await writer.drain()
        elif kind == "websocket.close":
            if ws is None:  # before accept: the spec's 403
                write(conn.send(h11.Response(status_code=403, headers=[(b"content-length", b"0")])) or b"")
                writer.close()
            elif not closed:
                closed = True
                write(ws.send(CloseConnection(code=message.get("code", 1000), reason=message.get("reason"))))
        elif kind == FAULT_MESSAGE:
            if message["fault"] == "drop":
                writer.transport.abort()
            elif message["fault"] == "stall":
                stalled = True

    with contextlib.suppress(ConnectionError):
        await app(scope, receive, send)
