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
    socket = _Socket(conn, dict(headers).get(b"sec-websocket-key", b""), reader, writer, stopping)
    with contextlib.suppress(ConnectionError):
        await app(scope, socket.receive, socket.send)


class _Socket:
    """One websocket connection as the ASGI app sees it: ``receive`` and ``send``.

    h11 (``conn``) writes the handshake's answer; wsproto (``ws``, from ``websocket.accept`` on)
    frames the messages. ``stalled``: a ``stall`` fault stopped sends and pongs."""

    def __init__(
        self,
        conn: h11.Connection,
        key: bytes,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        stopping: asyncio.Event,
    ) -> None:
        self._conn = conn
        self._key = key
        self._reader = reader
        self._writer = writer
        self._stopping = stopping
        self._ws: Connection | None = None
        self._pending: deque[Event] = deque()
        self._parts: list[str | bytes] = []
        self._connected = False
        self._stalled = False
        self._closed = False

    def _write(self, data: bytes) -> None:
        if not self._writer.is_closing():
            self._writer.write(data)

    async def receive(self) -> Message:
        """The next ASGI message from the client."""
        if not self._connected:
            self._connected = True
            return {"type": "websocket.connect"}
        while True:
            message = self._next_event()
            if message is not None:
                return message
            if self._stopping.is_set():
                return {"type": "websocket.disconnect", "code": 1001}
            data = await self._read()
            if not data or self._ws is None:
                return {"type": "websocket.disconnect", "code": 1006}
            try:
                self._ws.receive_data(data)
                self._pending.extend(self._ws.events())
            except ProtocolError:
                return {"type": "websocket.disconnect", "code": 1002}

    def _next_event(self) -> Message | None:
        """The message the pending wsproto events make, if they make one (answering pings and a
        close on the way)."""
        ws, pending, parts = self._ws, self._pending, self._parts
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
            elif isinstance(event, Ping) and not self._stalled:
                self._write(ws.send(event.response()))
            elif isinstance(event, CloseConnection):
                if not self._closed:
                    self._closed = True
                    with contextlib.suppress(ProtocolError):
                        self._write(ws.send(event.response()))
                return {"type": "websocket.disconnect", "code": event.code}
        return None

    async def _read(self) -> bytes:
        """The next bytes from the socket; b"" at its end, or when the server stops."""
        read = asyncio.ensure_future(self._reader.read(_READ_SIZE))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stop.cancel()
            if not read.done():
                read.cancel()
            elif not read.cancelled():
                read.exception()  # a reset seen as we are cancelled: not "never retrieved"
        return read.result() if read.done() and not read.cancelled() and read.exception() is None else b""

    async def send(self, message: Message) -> None:
        """Carry out one ASGI message from the app."""
        kind = message["type"]
        conn, writer, write = self._conn, self._writer, self._write
        if kind == "websocket.accept":
            self._accept()
        elif kind == "websocket.http.response.start":
            response = h11.Response(status_code=message["status"], headers=message.get("headers", []))
            write(conn.send(response) or b"")
        elif kind == "websocket.http.response.body":
            write(conn.send(h11.Data(data=message.get("body", b""))) or b"")
            write(conn.send(h11.EndOfMessage()) or b"")
            writer.close()
        elif kind == "websocket.send":
            if self._ws is not None and not self._stalled and not self._closed:
                text = message.get("text")
                event = TextMessage(data=text) if text is not None else BytesMessage(data=message["bytes"])
                write(self._ws.send(event))
                await writer.drain()
        elif kind == "websocket.close":
            if self._ws is None:  # before accept: the spec's 403
                write(conn.send(h11.Response(status_code=403, headers=[(b"content-length", b"0")])) or b"")
                writer.close()
            elif not self._closed:
                self._closed = True
                code, reason = message.get("code", 1000), message.get("reason")
                write(self._ws.send(CloseConnection(code=code, reason=reason)))
        elif kind == FAULT_MESSAGE:
            if message["fault"] == "drop":
                writer.transport.abort()
            elif message["fault"] == "stall":
                self._stalled = True

    def _accept(self) -> None:
        """The 101 answer, and wsproto from there on (with any bytes h11 read past the request)."""
        accept = h11.InformationalResponse(
            status_code=101,
            headers=[
                (b"upgrade", b"websocket"),
                (b"connection", b"Upgrade"),
                (b"sec-websocket-accept", generate_accept_token(self._key)),
            ],
        )
        self._write(self._conn.send(accept) or b"")
        self._ws = Connection(ConnectionType.SERVER, trailing_data=self._conn.trailing_data[0])
        self._pending.extend(self._ws.events())
