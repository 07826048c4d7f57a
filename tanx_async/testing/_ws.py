"""The private stream ``/private`` as an ASGI websocket endpoint, with fault injection.

Shapes from tanX's docs (private WebSocket): the token arrives raw in the query (``auth_header=``),
``{"event": "subscribe", "streams": [...]}`` is acked with ``{"success": {"message": ...,
"streams": [...]}}`` or refused with ``{"error": "<text>"}``; updates are ``{"order": {...}}``
(unix-second integer ``at``/``created_at``/``updated_at``, ``kind`` ``bid``/``ask``, no uuid,
fees, ``stop_price`` or ``cancel_reason``) and ``{"trade": {...}}``.

Invented here (undocumented on tanX, labelled so): a refused token is an HTTP 401 on the
handshake with the REST 401 envelope; the ack's ``message`` texts (``"subscribed"``,
``"unsubscribed"``); the refusal texts (``"invalid streams: ..."``, ``"invalid message"``); the
close code 4001 when ``close_on_token_expiry`` is set; a trade's ``taker_type`` (the order's side).

Every order snapshot the exchange stores goes through ``StreamHub._on_change`` (an observer on
``SandboxExchange``): a state or fill change becomes an order update, a fill also a trade update,
queued for each subscribed connection of that user. Each connection's pusher applies due
cancels (``exchange.tick()``) every ``tick_interval`` seconds and sends what is queued. Updates
queued for a connection that drops are lost, as they would be on the real stream.

Socket faults need ``SandboxServer`` (it advertises ``FAULT_EXTENSION``); elsewhere (uvicorn) a
drop degrades to a close with code 1011 and a stall only stops the updates (pongs still flow).
"""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from collections import deque
from collections.abc import Callable
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs

import anyio
import attrs

from ._faults import FAULT_EXTENSION, FAULT_MESSAGE
from ._tokens import fingerprint

if TYPE_CHECKING:
    # Types only: ``_state`` creates the hub and ``_app`` calls ``serve_stream``, never the reverse.
    from ._app import Receive, Scope, Send
    from ._orders import SandboxOrder
    from ._state import SandboxExchange

#: Writes one line of the exchange's request log (``RequestRecord`` fields), given by ``_app``.
LogHandshake = Callable[..., None]

__all__ = ["StreamFaults", "StreamHub", "serve_stream"]

STREAM_PATH: Final = "/private"
KNOWN_STREAMS: Final = frozenset({"order", "trade"})
#: Invented: the close code for an expired token (``close_on_token_expiry``).
TOKEN_EXPIRED_CODE: Final = 4001
_OUTBOX_LIMIT: Final = 65536
#: The REST API's documented 401 body, reused for a refused handshake (invented).
_ACCESS_INVALID: Final = {
    "status": "error",
    "message": "Given token not valid for any token type",
    "payload": {
        "token_class": "AccessToken",
        "token_type": "access",
        "message": "Token is invalid or expired",
        "code": "token_not_valid",
    },
}


@attrs.define(eq=False)
class StreamFaults:
    """Runtime-mutable misbehaviour of ``/private`` (all off by default).

    - ``refuse_tokens``: answer every handshake with HTTP 401.
    - ``refuse_subscription``: answer subscriptions with ``{"error": <this text>}``.
    - ``drop_after`` / ``close_after`` / ``stall_after``: after that many pushed updates on a
      connection, drop its socket (no close frame), close it with ``close_code``, or go silent
      (no updates, no pongs, socket open). ``times`` bounds how many connections these strike
      in all (None: every one).
    - ``duplicate_rate`` / ``reorder_rate``: send an update twice / swap it with the next one.
    - ``close_on_token_expiry``: close with 4001 once the connection's token expires (whether
      tanX does this is undocumented; off, the socket outlives its token).
    """

    refuse_tokens: bool = False
    refuse_subscription: str | None = None
    drop_after: int | None = None
    close_after: int | None = None
    close_code: int = 1011
    stall_after: int | None = None
    times: int | None = None
    duplicate_rate: float = 0.0
    reorder_rate: float = 0.0
    close_on_token_expiry: bool = False
    seed: int | None = None
    rng: random.Random = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.rng = random.Random(self.seed)


class _Conn:
    __slots__ = ("action", "expires_at", "outbox", "pushed", "streams", "uid")

    def __init__(self, uid: str, expires_at: float) -> None:
        self.uid = uid
        self.expires_at = expires_at
        self.streams: set[str] = set()
        self.outbox: deque[str] = deque()
        self.pushed = 0
        #: Set from any thread by ``StreamHub.drop_all``: ``("drop" | "close", code)``.
        self.action: tuple[str, int] | None = None


class StreamHub:
    """The exchange's private stream: faults, live connections, counters (``exchange.ws``)."""

    def __init__(self, exchange: SandboxExchange) -> None:
        self.exchange = exchange
        self.faults = StreamFaults()
        self.tick_interval = 0.005
        """Seconds between a pusher's rounds (applying due cancels, sending updates)."""
        self.accepted = 0
        """Handshakes accepted (all connections)."""
        self.refused = 0
        """Handshakes refused (all connections)."""
        self.subscriptions = 0
        """Subscriptions acked (all connections)."""
        self.pushed = 0
        """Updates sent (all connections)."""
        self._lock = threading.Lock()
        self._conns: set[_Conn] = set()
        self._trade_ids = itertools.count(1)
        exchange.observers.append(self._on_change)

    @property
    def live(self) -> int:
        """Connections open right now."""
        with self._lock:
            return len(self._conns)

    def drop_all(self, how: str = "drop", code: int = 1011) -> int:
        """Drop (``"drop"``: no close frame) or close (``"close"``, with ``code``) every live
        connection at its pusher's next round; returns how many. Safe from any thread."""
        if how not in ("drop", "close"):
            raise ValueError("how must be 'drop' or 'close'")
        with self._lock:
            for conn in self._conns:
                conn.action = (how, code)
            return len(self._conns)

    def _strike(self) -> bool:
        """Whether a connection fault may strike now (``times`` budget)."""
        with self._lock:
            if self.faults.times is None:
                return True
            if self.faults.times <= 0:
                return False
            self.faults.times -= 1
            return True

    def _on_change(self, before: SandboxOrder | None, after: SandboxOrder) -> None:
        if not self._conns:  # nobody listens: no work under the exchange's lock
            return
        with self._lock:
            conns = [c for c in self._conns if c.uid == after.uid and c.streams]
        if not conns:
            return
        filled = Decimal(after.executed_volume) - Decimal(before.executed_volume if before else "0")
        if before is not None and before.state == after.state and not filled:
            return
        messages = [("order", _text(_order_message(after, self.exchange.now())))]
        if filled > 0:
            messages.append(("trade", _text(self._trade_message(after, filled))))
        for conn in conns:
            for stream, text in messages:
                if stream in conn.streams and len(conn.outbox) < _OUTBOX_LIMIT:
                    conn.outbox.append(text)

    def _trade_message(self, order: SandboxOrder, amount: Decimal) -> dict[str, Any]:
        price = Decimal(order.price or order.avg_price)
        return {
            "trade": {
                "amount": str(amount),
                "created_at": int(self.exchange.now()),
                "id": next(self._trade_ids),
                "market": order.market,
                "order_id": order.id,
                "price": str(price),
                "side": order.side,
                "taker_type": order.side,
                "total": str(price * amount),
            }
        }


def _order_message(order: SandboxOrder, now: float) -> dict[str, Any]:
    return {
        "order": {
            "at": int(now),
            "avg_price": order.avg_price,
            "created_at": int(order.created_at),
            "executed_volume": order.executed_volume,
            "id": order.id,
            "kind": "bid" if order.side == "buy" else "ask",
            "market": order.market,
            "ord_type": order.ord_type,
            "origin_volume": order.origin_volume,
            "price": order.price,
            "remaining_volume": order.remaining_volume,
            "side": order.side,
            "state": order.state,
            "trades_count": order.trades_count,
            "updated_at": int(order.updated_at),
        }
    }


def _text(message: Any) -> str:
    return json.dumps(message, separators=(",", ":"))


async def serve_stream(
    exchange: SandboxExchange, scope: Scope, receive: Receive, send: Send, log: LogHandshake
) -> None:
    """The ASGI ``websocket`` scope: ``/private`` only. ``log`` records the handshake."""
    if (await receive())["type"] != "websocket.connect":
        return
    hub = exchange.ws
    started = time.monotonic()
    query = parse_qs(scope.get("query_string", b"").decode("latin-1"))
    token = (query.get("auth_header") or [""])[0]
    entry = exchange.accounts.authenticate(token) if token else None
    refused = scope["path"] != STREAM_PATH or entry is None or hub.faults.refuse_tokens
    log(
        time=started,
        method="GET",
        path=scope["path"],
        query="auth_header=<redacted>" if token else "",
        body=None,
        status=401 if refused else 101,
        result="ws_refused" if refused else "ws_open",
        uid=entry.uid if entry is not None else None,
        token=fingerprint(token) if token else None,
    )
    if refused or entry is None:
        with hub._lock:
            hub.refused += 1
        await _deny(scope, send)
        return
    await send({"type": "websocket.accept"})
    conn = _Conn(entry.uid, entry.expires_at)
    with hub._lock:
        hub.accepted += 1
        hub._conns.add(conn)
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(_push, hub, conn, scope, send)
            await _listen(hub, conn, receive, send)
            tg.cancel_scope.cancel()
    finally:
        with hub._lock:
            hub._conns.discard(conn)


async def _deny(scope: Scope, send: Send) -> None:
    if "websocket.http.response" not in (scope.get("extensions") or {}):
        await send({"type": "websocket.close", "code": 1008})
        return
    body = _text(_ACCESS_INVALID).encode()
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "websocket.http.response.start", "status": 401, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body})


async def _listen(hub: StreamHub, conn: _Conn, receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] != "websocket.receive":
            return
        try:
            request = json.loads(message.get("text") or message.get("bytes") or b"")
        except ValueError:
            request = None
        event = request.get("event") if isinstance(request, dict) else None
        streams = request.get("streams") if isinstance(request, dict) else None
        if event not in ("subscribe", "unsubscribe") or not isinstance(streams, list):
            reply: dict[str, Any] = {"error": "invalid message"}
        elif any(s not in KNOWN_STREAMS for s in streams):
            reply = {"error": f"invalid streams: {', '.join(map(str, streams))}"}
        elif hub.faults.refuse_subscription is not None:
            reply = {"error": hub.faults.refuse_subscription}
        else:
            if event == "subscribe":
                conn.streams.update(streams)
                with hub._lock:
                    hub.subscriptions += 1
            else:
                conn.streams.difference_update(streams)
            reply = {"success": {"message": f"{event}d", "streams": sorted(conn.streams)}}
        await send({"type": "websocket.send", "text": _text(reply)})


async def _push(hub: StreamHub, conn: _Conn, scope: Scope, send: Send) -> None:
    exchange = hub.exchange
    faults = hub.faults
    socket_faults = FAULT_EXTENSION in (scope.get("extensions") or {})

    async def fault(kind: str, code: int) -> None:
        if kind == "close" or (kind == "drop" and not socket_faults):
            await send({"type": "websocket.close", "code": code})
        elif socket_faults:
            await send({"type": FAULT_MESSAGE, "fault": kind})
        await anyio.sleep_forever()  # the listener ends the connection

    while True:
        if conn.action is not None:
            await fault(*conn.action)
        exchange.tick()
        if faults.close_on_token_expiry and exchange.now() >= conn.expires_at:
            await fault("close", TOKEN_EXPIRED_CODE)
        batch = [conn.outbox.popleft() for _ in range(len(conn.outbox))]
        rng = faults.rng
        for i in range(len(batch) - 1):
            if faults.reorder_rate and rng.random() < faults.reorder_rate:
                batch[i], batch[i + 1] = batch[i + 1], batch[i]
        for text in batch:
            for kind, limit in (
                ("drop", faults.drop_after),
                ("close", faults.close_after),
                ("stall", faults.stall_after),
            ):
                if limit is not None and conn.pushed >= limit and hub._strike():
                    await fault(kind, faults.close_code)
            copies = 2 if faults.duplicate_rate and rng.random() < faults.duplicate_rate else 1
            for _ in range(copies):
                await send({"type": "websocket.send", "text": text})
            conn.pushed += 1
            with hub._lock:
                hub.pushed += copies
        await anyio.sleep(hub.tick_interval)
