"""A loopback HTTP/1.1 server (asyncio streams + h11) hosting an ASGI app in a thread.

It advertises the ``FAULT_EXTENSION`` scope extension; when the app sends a
``FAULT_MESSAGE`` the server misbehaves on the socket:

- ``drop_before`` / ``drop_after``: close the connection (FIN) without answering;
- ``reset``: abortive close (``SO_LINGER`` 0, so the peer sees RST);
- ``black_hole``: never answer; the connection stays open until ``stop()``;
- ``truncate``: status line, headers (full Content-Length) and half the body, close;
- ``stall``: status line and headers, then nothing for ``stall_seconds``, close.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from http import HTTPStatus
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote_to_bytes

import anyio.to_thread
import h11

from .._config import is_loopback
from ._faults import FAULT_EXTENSION, FAULT_MESSAGE
from ._state import SandboxExchange
from ._wsserver import is_websocket, serve_websocket

if TYPE_CHECKING:
    from ._app import ASGIApp, Message

_READ_SIZE = 65536
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class _Exchange:
    """What the app sent for one request."""

    __slots__ = ("body", "fault", "headers", "stall_seconds", "status")

    def __init__(self) -> None:
        self.status: int | None = None
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.fault: str | None = None
        self.stall_seconds = 0.0


class SandboxServer:
    """Serve a ``SandboxExchange`` (or any ASGI app) on a loopback port.

    Use as ``with SandboxServer(ex) as srv:`` or ``async with`` (asyncio or trio);
    ``url`` is then ``http://127.0.0.1:<port>``. ``stop()`` closes the listening
    socket and every connection and joins the thread, waiting at most ``stop_timeout``.
    """

    def __init__(
        self,
        exchange: SandboxExchange | ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        allow_non_loopback: bool = False,
        stop_timeout: float = 5.0,
    ) -> None:
        if not allow_non_loopback and not is_loopback(host):
            raise ValueError(f"refusing to bind non-loopback host {host!r} (pass allow_non_loopback=True)")
        if isinstance(exchange, SandboxExchange):
            self.exchange: SandboxExchange | None = exchange
            self.app: ASGIApp = exchange.app
        else:
            self.exchange = None
            self.app = exchange
        host = host.strip("[]")
        self.host: str = "127.0.0.1" if host == "localhost" or host.endswith(".localhost") else host
        self.port: int = port
        self.stop_timeout = stop_timeout
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        #: The connection tasks running, with their streams' writers (aborted if need be at stop).
        self._connections: dict[asyncio.Task[None], asyncio.StreamWriter] = {}
        self.connections_accepted: int = 0
        self.errors: list[BaseException] = []
        """Unexpected exceptions raised while serving connections."""

    # -- lifecycle ------------------------------------------------------------------

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:54321``."""
        if self._thread is None:
            raise RuntimeError("server not started")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    @property
    def running(self) -> bool:
        """Whether the server thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    @property
    def thread(self) -> threading.Thread | None:
        """The server thread (None before ``start()``)."""
        return self._thread

    def start(self) -> SandboxServer:
        """Bind and start serving; no-op if already running."""
        if self._thread is not None:
            return self
        self._ready.clear()
        self._error = None
        thread = threading.Thread(target=self._run, name=f"tanx-sandbox-{id(self):x}", daemon=True)
        self._thread = thread
        thread.start()
        if not self._ready.wait(self.stop_timeout) or self._error is not None:
            error = self._error
            self.stop()
            if error is not None:
                raise error
            raise RuntimeError("sandbox server did not start in time")
        return self

    def stop(self) -> None:
        """Close everything and join the thread (bounded by ``stop_timeout``)."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None:
            with contextlib.suppress(RuntimeError):  # loop already closed
                loop.call_soon_threadsafe(stopping.set)
        thread.join(self.stop_timeout)
        if thread.is_alive():
            raise RuntimeError("sandbox server thread did not stop in time")
        self._thread = None
        self._loop = None
        self._stopping = None

    def __enter__(self) -> SandboxServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> SandboxServer:
        return await anyio.to_thread.run_sync(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await anyio.to_thread.run_sync(self.stop)

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self._main())
        except BaseException as exc:
            self._error = exc
        finally:
            try:
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()
                self._ready.set()

    async def _main(self) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(
            self._on_connect, self.host, self.port, backlog=1024, limit=_READ_SIZE
        )
        try:
            self.port = int(server.sockets[0].getsockname()[1])
            self._ready.set()
            await self._stopping.wait()
        finally:
            await self._shut(server)

    async def _shut(self, server: asyncio.Server) -> None:
        """Stop listening and end every connection within half of ``stop_timeout``, whatever
        the peers do (``stop()`` joins the thread within all of it).

        A cancelled connection closes its writer and waits for the close, which never comes while
        the peer reads nothing (what was written cannot be flushed): a connection still there
        after a grace period is aborted. Connections accepted while stopping are ended too."""
        loop = asyncio.get_running_loop()
        end = loop.time() + self.stop_timeout / 2
        grace = self.stop_timeout / 4
        server.close()
        await asyncio.sleep(0)  # connections accepted just before: their tasks start
        while self._connections and (left := end - loop.time()) > 0:
            tasks = list(self._connections)
            for task in tasks:
                task.cancel()
            _, pending = await asyncio.wait(tasks, timeout=min(grace, left))
            for task in pending:
                self._connections[task].transport.abort()
        # Python >= 3.12 waits here for every connection to be closed: bounded as well.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), max(end - loop.time(), 0.1))

    # -- connections ----------------------------------------------------------------

    def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        # A task of our own: asyncio's wrapper task logs an error when cancelled.
        task = asyncio.get_running_loop().create_task(self._connection(reader, writer))
        self._connections[task] = writer
        task.add_done_callback(self._connection_done)
        self.connections_accepted += 1

    def _connection_done(self, task: asyncio.Task[None]) -> None:
        """Forget a finished connection task; an exception it ended with (a bug) is kept in
        ``errors``, never left for asyncio to log as "Task exception was never retrieved"."""
        self._connections.pop(task, None)
        if not task.cancelled() and (exc := task.exception()) is not None:
            self.errors.append(exc)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await self._serve(reader, writer)
        except (ConnectionError, h11.ProtocolError):
            pass
        except Exception as exc:  # a bug; keep it for the test to see
            self.errors.append(exc)
        finally:
            if not writer.is_closing():
                writer.close()
            # The peer may have reset the connection or gone away mid-answer: then waiting for the
            # close raises that error (BrokenPipeError, ConnectionResetError), which is expected.
            # A cancel (``stop()``) ends the task, as it should; anything else is a bug.
            try:
                with contextlib.suppress(ConnectionError):
                    await writer.wait_closed()
            except asyncio.CancelledError:
                # Stopping while the close waits for a peer that reads nothing: not waited for.
                writer.transport.abort()
                raise

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = h11.Connection(h11.SERVER)
        peer = writer.get_extra_info("peername")
        sockname = writer.get_extra_info("sockname")
        while True:
            event = await self._next_event(conn, reader)
            if not isinstance(event, h11.Request):
                return
            chunks = []
            while True:
                part = await self._next_event(conn, reader)
                if isinstance(part, h11.Data):
                    chunks.append(bytes(part.data))
                elif isinstance(part, h11.EndOfMessage):
                    break
                else:
                    return
            if is_websocket(event):
                assert self._stopping is not None
                await serve_websocket(self.app, conn, event, reader, writer, self._stopping)
                return
            result = await self._call_app(event, b"".join(chunks), peer, sockname)
            if not await self._respond(conn, writer, result):
                return
            if conn.our_state is not h11.DONE or conn.their_state is not h11.DONE:
                return
            conn.start_next_cycle()

    @staticmethod
    async def _next_event(conn: h11.Connection, reader: asyncio.StreamReader) -> Any:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                conn.receive_data(await reader.read(_READ_SIZE))
                continue
            return event

    async def _call_app(
        self,
        request: h11.Request,
        body: bytes,
        peer: Any,
        sockname: Any,
    ) -> _Exchange:
        target = bytes(request.target)
        raw_path, _, query = target.partition(b"?")
        scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": request.http_version.decode(),
            "method": request.method.decode(),
            "scheme": "http",
            "path": unquote_to_bytes(raw_path).decode("utf-8", "replace"),
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": [(bytes(k), bytes(v)) for k, v in request.headers],
            "client": tuple(peer[:2]) if peer else None,
            "server": tuple(sockname[:2]) if sockname else None,
            "extensions": {FAULT_EXTENSION: {}},
        }
        out = _Exchange()
        sent_body = False
        stopping = self._stopping
        assert stopping is not None

        async def receive() -> Message:
            nonlocal sent_body
            if not sent_body:
                sent_body = True
                return {"type": "http.request", "body": body, "more_body": False}
            await stopping.wait()
            return {"type": "http.disconnect"}

        async def send(message: Message) -> None:
            kind = message["type"]
            if kind == "http.response.start":
                out.status = message["status"]
                out.headers = list(message.get("headers", ()))
            elif kind == "http.response.body":
                out.body.append(message.get("body", b""))
            elif kind == FAULT_MESSAGE:
                out.fault = message["fault"]
                out.stall_seconds = float(message.get("stall_seconds", 0.0))

        try:
            await self.app(scope, receive, send)
        except Exception:
            if out.status is None and out.fault is None:
                out.status = 500
                out.headers = [(b"content-type", b"text/plain; charset=utf-8")]
                out.body = [b"Internal Server Error"]
                out.fault = "close"
        return out

    async def _respond(self, conn: h11.Connection, writer: asyncio.StreamWriter, out: _Exchange) -> bool:
        """Write the app's answer (or act out its fault); False closes."""
        fault = out.fault
        stopping = self._stopping
        assert stopping is not None
        if fault == "reset":
            sock = writer.get_extra_info("socket")
            if sock is not None:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()
            return False
        if fault == "black_hole":
            await stopping.wait()
            return False
        if out.status is None or fault in ("drop_before", "drop_after"):
            return False
        status = out.status
        head = conn.send(
            h11.Response(
                status_code=status,
                headers=out.headers,
                reason=_REASONS.get(status, b""),
            )
        )
        body = b"".join(out.body)
        if fault == "truncate":
            writer.write(head + body[: len(body) // 2])
            await writer.drain()
            return False
        if fault == "stall":
            writer.write(head)
            await writer.drain()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stopping.wait(), out.stall_seconds)
            return False
        data = head
        if body:
            data += conn.send(h11.Data(data=body))
        data += conn.send(h11.EndOfMessage())
        writer.write(data)
        await writer.drain()
        return fault != "close"


def serve(
    exchange: SandboxExchange | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    allow_non_loopback: bool = False,
) -> SandboxServer:
    """Start a server (fresh exchange if None); stop it with ``.stop()`` or ``with``."""
    server = SandboxServer(
        exchange if exchange is not None else SandboxExchange(),
        host,
        port,
        allow_non_loopback=allow_non_loopback,
    )
    return server.start()
