"""A scripted loopback HTTP/1.1 exchange written on anyio: it runs inside the test's own event
loop under asyncio and trio alike, so one scenario covers every transport (the built-in one on
asyncio, the anyio one under trio, and httpx).

``answer(method, path, body, headers)`` (header names in lower case) returns ``(status, headers, body)`` for each request; every
answer is sent with ``Content-Length`` (or chunked, when its headers say
``transfer-encoding: chunked``) on a kept-alive connection. ``requests`` records what
arrived (method, path, JSON body or None), ``connections`` how many connections were accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import TracebackType
from typing import Any, TypeVar

import anyio
import anyio.abc

Answer = Callable[[str, str, Any, dict[str, str]], tuple[int, dict[str, str], bytes]]


def reply(status: int, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """An answer with a JSON body (header names with ``_`` for ``-``: ``retry_after=...``)."""
    return status, {k.replace("_", "-"): v for k, v in headers.items()}, json.dumps(body).encode()


_L = TypeVar("_L", bound="_Loopback")


class _Loopback:
    """A listener on a free 127.0.0.1 port, serving each connection with ``_serve`` inside the
    test's own event loop (asyncio or trio) until the ``async with`` block is left."""

    def __init__(self) -> None:
        self.connections = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self.port = 0

    async def __aenter__(self: _L) -> _L:
        self._listener = listener = await anyio.create_tcp_listener(local_host="127.0.0.1")
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(listener.serve, self._serve)
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        assert self._tg is not None
        self._tg.cancel_scope.cancel()
        try:
            await self._tg.__aexit__(None, None, None)
        finally:
            if self._listener is not None:
                await self._listener.aclose()

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        raise NotImplementedError


class Stub(_Loopback):
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, Any]] = []
        super().__init__()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path, _ in self.requests if method is None or m == method]

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        self.connections += 1
        buffer = b""
        async with stream:
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        buffer += await stream.receive()
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    lines = head.decode("latin-1").split("\r\n")
                    method, target = lines[0].split(" ")[:2]
                    fields = {}
                    for line in lines[1:]:
                        name, _, value = line.partition(":")
                        fields[name.strip().lower()] = value.strip()
                    length = int(fields.get("content-length", "0"))
                    while len(buffer) < length:
                        buffer += await stream.receive()
                    content, buffer = buffer[:length], buffer[length:]
                    body = json.loads(content) if content else None
                    path = target.split("?")[0]
                    self.requests.append((method, path, body))
                    status, headers, answer = self.answer(method, path, body, fields)
                    out = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
                    for name, value in headers.items():
                        out += f"{name}: {value}\r\n"
                    if headers.get("transfer-encoding") == "chunked":
                        # (no length announced: in 1 KiB chunks)
                        parts = [answer[i : i + 1024] for i in range(0, len(answer), 1024)]
                        framed = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in parts) + b"0\r\n\r\n"
                        await stream.send(out.encode("latin-1") + b"\r\n" + framed)
                        continue
                    out += f"Content-Length: {len(answer)}\r\n\r\n"
                    await stream.send(out.encode("latin-1") + answer)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass


class WsConnection:
    """One accepted and subscribed stream connection of ``WsStub``, for its script."""

    def __init__(self, stream: anyio.abc.SocketStream, ws: Any, number: int) -> None:
        self._stream = stream
        self._ws = ws
        #: 1 for the first connection, 2 for the next...
        self.number = number

    async def push(self, message: Any) -> None:
        from wsproto.events import TextMessage

        await self._stream.send(self._ws.send(TextMessage(data=json.dumps(message))))

    async def close(self, code: int = 1011) -> None:
        from wsproto.events import CloseConnection

        await self._stream.send(self._ws.send(CloseConnection(code=code)))


Script = Callable[[WsConnection], Any]


class WsStub(_Loopback):
    """A loopback private stream (``/private``) on anyio and wsproto: it accepts every
    handshake, acks the subscription, then runs ``script(connection)`` (a coroutine function);
    when the script returns, the connection is closed. Counts ``connections`` (accepted)."""

    def __init__(self, script: Script) -> None:
        self.script = script
        super().__init__()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/private"

    async def _serve(self, stream: anyio.abc.SocketStream) -> None:
        from wsproto import ConnectionType, WSConnection
        from wsproto.events import AcceptConnection, Ping, Request, TextMessage

        ws = WSConnection(ConnectionType.SERVER)
        async with stream:
            try:
                subscribed = False
                while not subscribed:
                    ws.receive_data(await stream.receive())
                    for event in ws.events():
                        if isinstance(event, Request):
                            await stream.send(ws.send(AcceptConnection()))
                        elif isinstance(event, TextMessage):
                            streams = json.loads(event.data).get("streams", [])
                            ack = {"success": {"message": "subscribed", "streams": streams}}
                            await stream.send(ws.send(TextMessage(data=json.dumps(ack))))
                            subscribed = True
                self.connections += 1
                connection = WsConnection(stream, ws, self.connections)
                async with anyio.create_task_group() as tg:

                    async def pongs() -> None:
                        while True:
                            ws.receive_data(await stream.receive())
                            for event in ws.events():
                                if isinstance(event, Ping):
                                    await stream.send(ws.send(event.response()))

                    tg.start_soon(pongs)
                    await self.script(connection)
                    tg.cancel_scope.cancel()
                await connection.close()
            except Exception:  # the client went away (or closed first): this connection is over
                pass
