"""``session.stream()``: tanX's private order stream over WebSocket, kept alive.

The protocol is wsproto (sans-I/O, pure Python, on h11 which httpx already brings) driven over an
anyio byte stream (``anyio.connect_tcp`` with happy eyeballs, ``TLSStream`` with the session's TLS
context), so the same code runs on asyncio and trio. tanX's side (its docs, "WebSocket: private"):

- ``wss://<host>/private?auth_header=<raw access token>``; subscribe with
  ``{"event": "subscribe", "streams": [...]}``; the ack has a top-level ``success`` key, a refusal
  a top-level ``error`` string.
- ``{"order": {...}}`` and ``{"trade": {...}}`` updates, decoded into ``OrderUpdate`` and
  ``TradeUpdate`` by the session's converter.

What this module adds: reconnects with backoff and jitter after a drop, a close or a stall (a ping
after ``heartbeat`` seconds of silence, a reconnect after twice that); a connection that dies
within ``STREAM_HEALTHY_AFTER`` seconds of subscribing counts as a failed reconnect (the backoff
goes on growing, and ``max_reconnects`` of them in a row end the stream), each with the current
access token (refreshed through the session's single-flight renewal when it is about to expire or
when the handshake is refused); a ``StreamGap`` after every reconnect (updates may have been
missed meanwhile) and after a buffer overflow (a slow consumer never makes memory grow: at most
``buffer`` events wait, the rest are counted and reported). The URL carries the token, so it is
never logged, shown in a repr or put into an exception: only the URL without its query is.
"""

from __future__ import annotations

import base64
import contextlib
import random
import sys
import time
from collections import deque
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote, urlsplit

import anyio
import anyio.abc
from anyio.streams.tls import TLSStream
from wsproto import ConnectionType, WSConnection
from wsproto.events import (
    AcceptConnection,
    BytesMessage,
    CloseConnection,
    Event,
    Ping,
    RejectConnection,
    Request,
    TextMessage,
)
from wsproto.utilities import ProtocolError

if sys.version_info < (3, 11):  # pragma: no cover - (anyio brings the backport there)
    from exceptiongroup import BaseExceptionGroup

from . import _constants as C
from ._config import env_proxy, is_loopback, ssl_context
from ._convert import structure
from ._duration import duration
from ._errors import ResponseValidationError, StreamError, StreamRefusedError, TanxError, brief
from ._instrument import operation
from ._json import dumps, loads
from ._log import logger
from .models import OrderUpdate, StreamEvent, StreamGap, TradeUpdate

if TYPE_CHECKING:
    import ssl
    from types import TracebackType

    from ._pipeline import Pipeline

__all__ = ["STREAMS", "OrderStream", "checked_streams", "stream_url"]

STREAMS = ("order", "trade")
_DECODE: dict[str, type[OrderUpdate] | type[TradeUpdate]] = {"order": OrderUpdate, "trade": TradeUpdate}


def stream_url(base_url: str, override: str | None, allow_insecure: bool) -> str:
    """The stream's URL (without the token): ``override``, or ``base_url`` with ``https`` ->
    ``wss`` and ``http`` -> ``ws``, the same host and port, and the path ``/private``."""
    if override is None:
        parts = urlsplit(base_url)
        scheme = "wss" if parts.scheme == "https" else "ws"
        # Never the base URL's userinfo: the stream does not send it, and the URL is shown.
        return f"{scheme}://{parts.netloc.rpartition('@')[2]}{C.STREAM_PATH}"
    if not isinstance(override, str):
        raise TypeError("stream_url must be a string")
    parts = urlsplit(override.strip())
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"stream_url must be a ws(s) URL with a host, got {override!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        # The token goes into the query; a URL that already has one is a mistake (or a secret).
        raise ValueError("stream_url must not carry a query, fragment or credentials")
    if parts.scheme == "ws" and not is_loopback(parts.hostname) and not allow_insecure:
        raise ValueError(
            f"refusing to send the access token over plain ws to {parts.hostname}: use wss, or "
            "pass allow_insecure_http=True if you really mean it"
        )
    return override.strip()


def _now() -> datetime:
    return datetime.now(timezone.utc)


class _Lost(Exception):
    """The socket is gone or unusable (drop, close frame, stall, refused handshake status,
    protocol error); the text says which and never holds the URL."""

    def __init__(self, reason: str, *, status_code: int | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status_code = status_code


async def _tunnel(proxy: str, host: str, port: int) -> anyio.abc.ByteStream:
    """A TCP stream to ``host:port`` through an HTTP proxy's ``CONNECT`` (as httpx tunnels REST
    requests); the proxy's answer head is read up to 64 KiB and must be a 2xx."""
    parts = urlsplit(proxy)
    if parts.scheme != "http" or not parts.hostname:
        # The text names only the scheme: a proxy URL may carry credentials.
        raise _Lost(f"the stream supports http:// proxies only, not {parts.scheme or '?'}://")
    stream = await anyio.connect_tcp(parts.hostname, parts.port or 80)
    try:
        authority = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        head = f"CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n"
        if parts.username is not None:
            credentials = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
            head += f"Proxy-Authorization: Basic {base64.b64encode(credentials).decode()}\r\n"
        await stream.send((head + "\r\n").encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            if len(answer) > C.MAX_HEAD_BYTES:
                raise _Lost("the proxy's answer to CONNECT is too large")
            answer += await stream.receive()
        status_line = answer.split(b"\r\n", 1)[0].split(b" ")
        if len(status_line) < 2 or not status_line[1].startswith(b"2"):
            raise _Lost(f"the proxy refused the tunnel ({status_line[1:2] or b'?'!r})")
        # Nothing may follow the head before our TLS/WebSocket handshake: a proxy that sent more
        # would desynchronise the stream.
        if not answer.endswith(b"\r\n\r\n"):
            raise _Lost("the proxy sent data after its answer to CONNECT")
    except BaseException:
        await _close_quietly(stream)
        raise
    return stream


class _Socket:
    """One WebSocket connection: wsproto over an anyio byte stream, used by one task at a time."""

    def __init__(self, stream: anyio.abc.ByteStream, ws: WSConnection) -> None:
        self._stream = stream
        self._ws = ws
        self._events: deque[Event] = deque()
        self._parts: list[str] = []
        self._size = 0
        self.last_data = time.monotonic()

    @classmethod
    async def connect(
        cls, url: str, token: str, *, tls: ssl.SSLContext | None, within: float, proxy: str | None = None
    ) -> _Socket:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = parts.port or (443 if parts.scheme == "wss" else 80)
        target = f"{parts.path or '/'}?auth_header={quote(token, safe='')}"
        stream: anyio.abc.ByteStream | None = None
        try:
            with anyio.fail_after(within):
                if proxy is None:
                    stream = await anyio.connect_tcp(host, port)
                else:
                    stream = await _tunnel(proxy, host, port)
                if tls is not None:
                    stream = await TLSStream.wrap(
                        stream, hostname=host, ssl_context=tls, standard_compatible=False
                    )
                ws = WSConnection(ConnectionType.CLIENT)
                host_header = parts.netloc.rpartition("@")[2]  # never userinfo
                await stream.send(ws.send(Request(host=host_header, target=target)))
                sock = cls(stream, ws)
                status = await sock._handshake()
        except TimeoutError:
            await _close_quietly(stream)
            raise _Lost(f"no handshake within {duration(within)}") from None
        except (OSError, anyio.BrokenResourceError, anyio.EndOfStream, ProtocolError) as exc:
            await _close_quietly(stream)
            # The exception's own text may quote the request target: keep only its type.
            raise _Lost(f"connect failed ({type(exc).__name__})") from None
        except BaseException:
            await _close_quietly(stream)
            raise
        if status is not None:
            await _close_quietly(stream)
            raise _Lost(f"handshake refused with HTTP {status}", status_code=status)
        return sock

    async def _handshake(self) -> int | None:
        """None once accepted, else the refusal's HTTP status."""
        while True:
            await self._fill()
            while self._events:
                event = self._events.popleft()
                if isinstance(event, AcceptConnection):
                    return None
                if isinstance(event, RejectConnection):
                    return event.status_code

    async def _fill(self) -> None:
        try:
            data = await self._stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            raise _Lost("dropped by the server") from None
        self.last_data = time.monotonic()
        try:
            self._ws.receive_data(data)
            self._events.extend(self._ws.events())
        except ProtocolError as exc:
            raise _Lost(f"protocol error ({type(exc).__name__})") from None

    async def _send(self, data: bytes) -> None:
        try:
            await self._stream.send(data)
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, OSError):
            raise _Lost("dropped while sending") from None

    async def send_text(self, text: str) -> None:
        await self._send(self._ws.send(TextMessage(data=text)))

    async def ping(self) -> None:
        await self._send(self._ws.send(Ping(payload=b"tanx")))

    async def receive(self) -> str:
        """The next whole message (pings answered on the way); raises ``_Lost``."""
        while True:
            while self._events:
                event = self._events.popleft()
                if isinstance(event, TextMessage | BytesMessage):
                    data = (
                        event.data if isinstance(event.data, str) else event.data.decode("utf-8", "replace")
                    )
                    self._size += len(data)
                    if self._size > C.STREAM_MAX_MESSAGE:
                        raise _Lost(f"a message exceeded {C.STREAM_MAX_MESSAGE} bytes")
                    self._parts.append(data)
                    if event.message_finished:
                        text = "".join(self._parts)
                        self._parts.clear()
                        self._size = 0
                        return text
                elif isinstance(event, Ping):
                    await self._send(self._ws.send(event.response()))
                elif isinstance(event, CloseConnection):
                    with contextlib.suppress(_Lost, ProtocolError):
                        await self._send(self._ws.send(event.response()))
                    raise _Lost(f"closed by the server (code {event.code})", status_code=event.code)
            await self._fill()

    async def aclose(self) -> None:
        await _close_quietly(self._stream)


async def _close_quietly(stream: anyio.abc.ByteStream | None) -> None:
    if stream is None:
        return
    with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
        try:
            await stream.aclose()
        except Exception:  # already broken: nothing left to close cleanly
            logger.debug("stream: socket close failed", exc_info=True)


class _Buffer:
    """At most ``capacity`` events wait for the consumer; on overflow new events are counted,
    not kept, and a ``StreamGap("overflow")`` takes their place once there is room."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: deque[StreamEvent] = deque()
        self._wake = anyio.Event()
        self._dropped = 0
        self._dropped_since: datetime | None = None
        self._error: BaseException | None = None
        self._closed = False
        self.overflows = 0

    def put(self, item: StreamEvent) -> None:
        if self._dropped and len(self._items) < self.capacity - 1:
            self._flush_gap()
        if self._dropped or len(self._items) >= self.capacity:
            if not self._dropped:
                self._dropped_since = _now()
                self.overflows += 1
                logger.warning(
                    "stream: consumer too slow, buffer of %d full; dropping updates", self.capacity
                )
            self._dropped += 1
            return
        self._items.append(item)
        self._wake.set()

    def _flush_gap(self) -> None:
        started = self._dropped_since or _now()
        self._items.append(StreamGap(reason="overflow", started=started, ended=_now(), dropped=self._dropped))
        self._dropped = 0
        self._dropped_since = None
        self._wake.set()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._wake.set()

    def close(self) -> None:
        self._closed = True
        self._wake.set()

    async def get(self) -> StreamEvent:
        while True:
            if self._items:
                return self._items.popleft()
            if self._dropped:
                self._flush_gap()
                continue
            if self._error is not None:
                raise self._error
            if self._closed:
                raise StopAsyncIteration
            self._wake = anyio.Event()
            await self._wake.wait()


class OrderStream:
    """The private order/trade stream of a session, kept alive: what
    [`AsyncTanxSession.stream()`][tanx_async.AsyncTanxSession.stream] returns (not built directly).

    ```python
    async with session.stream() as events:
        async for event in events:
            if isinstance(event, StreamGap):
                ...  # updates may have been missed: look the orders you care about up
            elif isinstance(event, OrderUpdate) and event.state == OrderState.CANCEL:
                ...
    ```

    Entering the ``async with`` block connects and subscribes (or raises); leaving it closes the
    socket. A stream can be entered once. Iterating yields ``OrderUpdate``, ``TradeUpdate``
    and ``StreamGap`` events (``StreamEvent``) until the block is left.

    It reconnects on its own after a drop, a close or a stall (with backoff and jitter, and the
    session's current access token), and yields a ``StreamGap`` after every reconnect and after
    a buffer overflow (a slow consumer: at most ``buffer`` events wait, the rest are counted and
    dropped). Iteration raises ``StreamRefusedError`` when the server refuses the token (after
    one renewal) or the subscription, and ``StreamError`` when ``max_reconnects`` consecutive
    reconnects failed (a connection that dies within ``STREAM_HEALTHY_AFTER`` seconds of
    subscribing is a failed one) or a message cannot be decoded.

    The socket's URL carries the access token in its query; ``url``, the repr, log lines and
    exceptions show only the URL without it (and without any credentials of the base URL).
    """

    def __init__(
        self,
        pipeline: Pipeline,
        url: str,
        *,
        streams: tuple[str, ...],
        buffer: int,
        heartbeat: float,
        max_reconnects: int,
        connect_timeout: float,
        open_attempts: int | None = None,
        open_within: float | None = None,
    ) -> None:
        self._pipeline = pipeline
        self._url = url
        self._streams = streams
        self._heartbeat = heartbeat
        self._max_reconnects = max_reconnects
        self._open_attempts = max_reconnects + 1 if open_attempts is None else open_attempts
        #: Seconds opening the stream may take in all, attempts and backoff included (the
        #: session's ``deadline``), or None: ``open_attempts`` alone bounds it.
        self._open_within = open_within
        self._connect_timeout = connect_timeout
        self._buffer = _Buffer(buffer)
        self._tg: anyio.abc.TaskGroup | None = None
        self._run_scope: anyio.CancelScope | None = None
        self._tls = (
            ssl_context(pipeline.verify, trust_env=pipeline.trust_env) if url.startswith("wss:") else None
        )
        #: The proxy the environment names for the stream (``ws``/``wss`` judged as
        #: ``http``/``https``, by httpx's rules), like the REST transports; None with trust_env=False.
        self._proxy = env_proxy("http" + url[2:]) if pipeline.trust_env else None
        self.connected = False
        """Whether a subscribed socket is open right now (False while reconnecting)."""
        self.connects = 0
        """Connections opened and subscribed so far, the first one included (a reconnect adds
        one)."""
        self.gaps = 0
        """``StreamGap`` events reported so far (reconnects and overflows)."""

    @property
    def url(self) -> str:
        """The stream's URL without the token (safe to show), e.g.
        ``wss://api.tanx.fi/private``: the session's ``stream_url``, or its ``base_url`` with
        ``https`` -> ``wss``, ``http`` -> ``ws``."""
        return self._url

    def __repr__(self) -> str:
        state = "connected" if self.connected else "not connected"
        return f"<OrderStream {self._url} {state}>"

    # -- lifecycle ----------------------------------------------------------------------------

    async def __aenter__(self) -> OrderStream:
        if self._tg is not None:
            raise RuntimeError("an OrderStream can be entered once")
        sock = await self._retrying(self._open_attempts, "could not open the stream", self._open_within)
        self._run_scope = anyio.CancelScope()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._run, sock)
        self._pipeline.owned.track(self)
        return self

    def end(self, error: BaseException) -> None:
        """The session is closing: the connection ends now (its task and socket) and iterating
        raises ``error``."""
        self._buffer.fail(error)
        if self._run_scope is not None:
            self._run_scope.cancel()  # (only the connection's task: the consumer's own scope is the
        # task group's, and the consumer learns it from ``error``)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        tg = self._tg
        if tg is None:
            return None
        self._pipeline.owned.untrack(self)
        tg.cancel_scope.cancel()
        self._buffer.close()
        # The block's own exception is not handed to the task group, which would wrap it in an
        # exception group (``except StreamError`` or ``except ValueError`` around the block
        # would then miss it): it leaves the block as itself. A cancellation is handed over (the
        # group may have caused it, and absorbs its own); what the stream's task raised comes
        # out unwrapped when it is alone.
        cancelled = exc is not None and isinstance(exc, anyio.get_cancelled_exc_class())
        try:
            if cancelled:
                return await tg.__aexit__(exc_type, exc, tb)
            await tg.__aexit__(None, None, None)
        except BaseExceptionGroup as group:
            leaves = _leaves(group)
            if len(leaves) != 1:
                raise
            raise leaves[0] from leaves[0].__cause__
        return None

    def __aiter__(self) -> OrderStream:
        return self

    async def __anext__(self) -> StreamEvent:
        return await self._buffer.get()

    # -- the connection loop ------------------------------------------------------------------

    async def _run(self, sock: _Socket) -> None:
        assert self._run_scope is not None
        with self._run_scope:
            await self._connected(sock)

    async def _connected(self, sock: _Socket) -> None:
        young = 0  # connections in a row that died before they lived STREAM_HEALTHY_AFTER
        try:
            while True:
                lost_at = _now()
                opened = time.monotonic()
                reason = "closed"
                try:
                    await self._read(sock)
                except _Lost as exc:
                    lost_at = _now()
                    self.connected = False
                    reason = exc.reason
                    logger.warning("stream %s lost: %s; reconnecting", self._url, exc.reason)
                    self._pipeline.emit("stream_lost", "WS", C.STREAM_PATH, error=exc.reason)
                finally:
                    self.connected = False
                    await sock.aclose()
                # A connection that subscribed and died young was no success: the backoff goes on
                # growing from where it was, and such deaths spend the reconnects (a server that
                # accepts and drops at once would otherwise be redialled without pause).
                young = young + 1 if time.monotonic() - opened < C.STREAM_HEALTHY_AFTER else 0
                sock = await self._retrying(
                    max(1, self._max_reconnects) + (1 if young else 0),  # (the first to die was no reconnect)
                    "stream lost and reconnects failed",
                    spent=young,
                    reason=reason,
                )
                self._gap(StreamGap(reason="reconnect", started=lost_at, ended=_now()))
        except TanxError as exc:
            logger.error("stream %s closed: %s", self._url, brief(exc))
            self._pipeline.emit("stream_closed", "WS", C.STREAM_PATH, error=type(exc).__name__)
            self._buffer.fail(exc)
        except Exception as exc:  # a bug must end the iteration loudly, not hang it
            logger.exception("stream %s: unexpected error", self._url)
            self._buffer.fail(StreamError(f"stream failed: unexpected {type(exc).__name__}"))

    def _gap(self, gap: StreamGap) -> None:
        self.gaps += 1
        logger.warning("stream %s: updates may have been missed (%s)", self._url, gap.reason)
        self._pipeline.emit("stream_gap", "WS", C.STREAM_PATH, error=gap.reason)
        self._buffer.put(gap)

    async def _read(self, sock: _Socket) -> None:
        heartbeat = self._heartbeat
        while True:
            with anyio.move_on_after(heartbeat):
                self._dispatch(await sock.receive())
                continue
            idle = time.monotonic() - sock.last_data
            if idle >= 2 * heartbeat:
                raise _Lost(f"stalled: nothing received for {duration(idle)}")
            if idle >= heartbeat:
                await sock.ping()

    def _dispatch(self, text: str) -> bool | None:
        """Decode one message into the buffer. True for a subscription ack; a refusal raises."""
        try:
            message = loads(text)
        except ValueError:
            raise StreamError(f"the stream sent a message that is not JSON ({len(text)} chars)") from None
        if not isinstance(message, dict):
            raise StreamError(f"the stream sent a JSON {type(message).__name__}, expected an object")
        if "success" in message:
            return True
        if "error" in message:
            raise StreamRefusedError(f"the server refused the subscription: {message['error']!s:.200}")
        for key, cls in _DECODE.items():
            if key in message:
                try:
                    event: OrderUpdate | TradeUpdate = structure(
                        message[key], cls, path=f"$.{key}", raw=text.encode()
                    )
                except ResponseValidationError as exc:
                    raise StreamError(f"an undecodable {key} update on the stream: {exc}") from exc
                self._buffer.put(event)
                return None
        logger.debug("stream: ignoring a message with keys %s", sorted(message)[:5])
        return None

    # -- connecting ---------------------------------------------------------------------------

    async def _retrying(
        self,
        attempts: int,
        failure: str,
        within: float | None = None,
        *,
        spent: int = 0,
        reason: str = "no attempt",
    ) -> _Socket:
        """A subscribed socket, trying up to ``attempts`` times with backoff and jitter, and
        for at most ``within`` seconds in all (None: no bound but the attempts). ``spent``:
        attempts already used up (connections that subscribed and died young), which the
        backoff goes on from and the attempts count; ``reason``: why the last one ended."""
        until = None if within is None else anyio.current_time() + within
        made = 0
        for attempt in range(spent, max(1, attempts)):
            if attempt:
                delay = min(C.STREAM_BACKOFF_CAP, C.STREAM_BACKOFF_BASE * 2 ** (attempt - 1))
                pause = delay / 2 + random.uniform(0, delay / 2)
                if until is not None and anyio.current_time() + pause >= until:
                    break  # the next attempt would begin after the deadline
                await anyio.sleep(pause)
            made += 1
            try:
                if until is None:
                    with operation(self._pipeline, "stream.connect", attempt=attempt):
                        sock = await self._subscribed()
                else:
                    with (
                        anyio.move_on_after(until - anyio.current_time()) as scope,
                        operation(self._pipeline, "stream.connect", attempt=attempt),
                    ):
                        sock = await self._subscribed()
                    if scope.cancelled_caught:
                        reason = "no subscription before the deadline"
                        break
            except _Lost as exc:
                reason = exc.reason
                logger.info("stream %s: attempt %d failed: %s", self._url, attempt + 1, reason)
                continue
            self.connects += 1
            self.connected = True
            logger.info("stream %s: subscribed to %s", self._url, ", ".join(self._streams))
            self._pipeline.emit("stream_open", "WS", C.STREAM_PATH, attempt=self.connects)
            return sock
        bound = "" if within is None else f" within {duration(within)}"
        tried = f" after {made} attempt{'' if made == 1 else 's'}"
        if spent:
            tried = f"{tried if made else ''} ({spent} connection{'' if spent == 1 else 's'} in a row died "
            tried += f"within {duration(C.STREAM_HEALTHY_AFTER)} of subscribing)"
        raise StreamError(f"{failure}{bound}{tried} (last: {reason})")

    async def _subscribed(self) -> _Socket:
        pipeline = self._pipeline
        token = await pipeline.token()
        try:
            sock = await _Socket.connect(
                self._url, token, tls=self._tls, within=self._connect_timeout, proxy=self._proxy
            )
        except _Lost as exc:
            if exc.status_code not in (401, 403):
                raise
            # The token was refused: renew it (single flight with every request) and try once more.
            logger.info("stream %s: token refused (HTTP %d); renewing it", self._url, exc.status_code)
            await pipeline.renew(token)
            token = await pipeline.token()
            try:
                sock = await _Socket.connect(
                    self._url, token, tls=self._tls, within=self._connect_timeout, proxy=self._proxy
                )
            except _Lost as again:
                if again.status_code in (401, 403):
                    raise StreamRefusedError(
                        f"the server refused the stream's token (HTTP {again.status_code}) after a renewal",
                        status_code=again.status_code,
                    ) from None
                raise
        try:
            await sock.send_text(dumps({"event": "subscribe", "streams": list(self._streams)}).decode())
            with anyio.fail_after(self._connect_timeout):
                while self._dispatch(await sock.receive()) is not True:
                    pass
        except TimeoutError:
            await sock.aclose()
            raise _Lost(f"no subscription ack within {duration(self._connect_timeout)}") from None
        except BaseException:
            await sock.aclose()
            raise
        return sock


def checked_streams(streams: Any) -> tuple[str, ...]:
    """``streams`` checked: a non-empty collection of ``"order"``/``"trade"``."""
    if isinstance(streams, str):
        streams = (streams,)
    try:
        chosen = tuple(dict.fromkeys(streams))
    except TypeError:
        raise TypeError("streams must be a collection of 'order' and 'trade'") from None
    if not chosen or any(s not in STREAMS for s in chosen):
        raise ValueError(f"streams must be a non-empty collection of 'order' and 'trade', got {streams!r}")
    return chosen


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions in ``group`` and the groups within it."""
    found: list[BaseException] = []
    for inner in group.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            found.extend(_leaves(inner))
        else:
            found.append(inner)
    return found
