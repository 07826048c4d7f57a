"""A scripted loopback HTTP/1.1 exchange written on anyio: it runs inside the test's own event
loop under asyncio and trio alike, so one scenario covers every transport (the built-in one on
asyncio, the anyio one under trio, aiohttp and httpx).

``answer(method, path, body, headers)`` (header names in lower case) returns ``(status, headers, body)`` for each request; every
answer is sent with ``Content-Length`` on a kept-alive connection. ``requests`` records what
arrived (method, path, JSON body or None), ``connections`` how many connections were accepted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from types import TracebackType
from typing import Any

import anyio
import anyio.abc

Answer = Callable[[str, str, Any, dict[str, str]], tuple[int, dict[str, str], bytes]]


def reply(status: int, body: Any, **headers: str) -> tuple[int, dict[str, str], bytes]:
    """An answer with a JSON body (header names with ``_`` for ``-``: ``retry_after=...``)."""
    return status, {k.replace("_", "-"): v for k, v in headers.items()}, json.dumps(body).encode()


class Stub:
    def __init__(self, answer: Answer) -> None:
        self.answer = answer
        self.requests: list[tuple[str, str, Any]] = []
        self.connections = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._listener: anyio.abc.Listener[anyio.abc.SocketStream] | None = None
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def paths(self, method: str | None = None) -> list[str]:
        return [path for m, path, _ in self.requests if method is None or m == method]

    async def __aenter__(self) -> Stub:
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
                    out += f"Content-Length: {len(answer)}\r\n\r\n"
                    await stream.send(out.encode("latin-1") + answer)
            except (anyio.EndOfStream, anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
                pass
