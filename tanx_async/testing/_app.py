"""The ASGI 3 application: routing, auth, JSON envelopes, fault injection.

Socket faults (drop_before, reset, black_hole, drop_after, truncate, stall) need a
server that advertises the ``FAULT_EXTENSION`` scope extension (``SandboxServer``
does). Hosted elsewhere (``httpx.ASGITransport``, uvicorn) they degrade:
drop_before/reset/drop_after raise ``SimulatedDisconnect`` (drop_after after
processing); black_hole and stall sleep ``stall_seconds`` then raise it; truncate sends
half of the body under the full Content-Length.
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qs, parse_qsl

import anyio

from ._faults import (
    FAULT_EXTENSION,
    FAULT_MESSAGE,
    PRE_FAULTS,
    SimulatedDisconnect,
)
from ._records import RequestRecord, redact
from ._tokens import fingerprint
from ._ws import serve_stream

if TYPE_CHECKING:
    from ._state import SandboxExchange

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

try:
    import orjson

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes."""
        return orjson.dumps(obj)

    _loads: Callable[[bytes], Any] = orjson.loads
    _DecodeError: type[Exception] = orjson.JSONDecodeError
except ImportError:  # pragma: no cover - orjson is optional

    def dumps(obj: Any) -> bytes:
        """Compact JSON bytes."""
        return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()

    _loads = json.loads
    _DecodeError = ValueError


INVALID_CREDENTIALS: Final = "Invalid Credentials or Token Expired, Kindly login again."
NO_CREDENTIALS: Final = "Authentication credentials were not provided."
CANCEL_QUEUED: Final = "Order is successfully queued for cancellation"
CANCEL_LEGACY: Final = "Cancelled Order Successfully"
#: Cancel refusals: status per result (the texts are invented, see ``_wire.INVENTED_TEXTS``).
CANCEL_ERRORS: Final = {
    "not_found": 404,
    "already_cancelled": 400,
    "already_filled": 400,
    "already_queued": 400,
    "not_open": 400,
}
INVALID_MARKET: Final = "please enter a valid market"
ACCESS_INVALID_PAYLOAD: Final = {
    "token_class": "AccessToken",
    "token_type": "access",
    "message": "Token is invalid or expired",
    "code": "token_not_valid",
}

HEALTH: Final = "/sapi/v1/health/"
REFRESH: Final = "/sapi/v1/auth/token/refresh/"
ORDERS: Final = "/sapi/v1/orders/"
CANCEL: Final = "/sapi/v1/orders/cancel/"
BULK_CANCEL: Final = "/sapi/v1/user/bulkcancel/"
NONCE_PATHS: Final = frozenset({"/sapi/v2/auth/nonce/", "/sapi/v1/auth/v2/nonce/", "/sapi/v1/auth/nonce/"})
LOGIN_PATHS: Final = frozenset({"/sapi/v2/auth/login/", "/sapi/v1/auth/v2/login/", "/sapi/v1/auth/login/"})
#: path -> (method, needs auth)
ROUTES: Final[dict[str, tuple[str, bool]]] = {
    HEALTH: ("GET", False),
    REFRESH: ("POST", False),
    ORDERS: ("GET", True),
    CANCEL: ("POST", True),
    BULK_CANCEL: ("POST", True),
    **dict.fromkeys(NONCE_PATHS, ("POST", False)),
    **dict.fromkeys(LOGIN_PATHS, ("POST", False)),
}
ORDER_DETAIL: Final = re.compile(r"/sapi/v1/orders/([^/]+)/")
_REDACTED_KEYS: Final = frozenset({"refresh", "access", "user_signature", "token"})
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")

_JSON_HEADER: Final = (b"content-type", b"application/json")
_HTML_HEADER: Final = (b"content-type", b"text/html; charset=utf-8")
_DJANGO_404: Final = (
    b'<!doctype html>\n<html lang="en">\n<head>\n  <title>Not Found</title>\n'
    b"</head>\n<body>\n  <h1>Not Found</h1><p>The requested resource was not found "
    b"on this server.</p>\n</body>\n</html>\n"
)
_PROXY_REASONS: Final = {
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
}


def _proxy_page(status: int) -> bytes:
    title = f"{status} {_PROXY_REASONS.get(status, 'Error')}"
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n<hr><center>nginx</center>\r\n"
        "</body>\r\n</html>\r\n"
    ).encode()


class _Reply:
    """What a handler produced, plus the log annotations."""

    __slots__ = ("body", "headers", "message", "order_ids", "result", "status")

    def __init__(
        self,
        status: int,
        body: bytes,
        result: str,
        headers: tuple[tuple[bytes, bytes], ...] = (_JSON_HEADER,),
    ) -> None:
        self.status = status
        self.body = body
        self.result = result
        self.headers = headers
        self.order_ids: tuple[int, ...] = ()
        self.message: str | None = None


def _envelope(status: int, message: str, payload: Any, result: str, **top: Any) -> _Reply:
    body = {"status": "success", "message": message, "payload": payload, **top}
    return _json_reply(status, body, result)


def _error(status: int, message: str, result: str, payload: Any = "") -> _Reply:
    """An error envelope (HTTP 200 too: the real API refuses some requests that way)."""
    return _json_reply(status, {"status": "error", "message": message, "payload": payload}, result)


def _json_reply(status: int, body: dict[str, Any], result: str) -> _Reply:
    reply = _Reply(status, dumps(body), result)
    reply.message = body.get("message")
    return reply


def valid_address(eth_address: str) -> bool:
    """``0x`` + 40 hex digits."""
    return _ADDRESS_RE.fullmatch(eth_address) is not None


def _sanitize(body: Any) -> Any:
    if isinstance(body, dict):
        return {k: redact(v) if k in _REDACTED_KEYS and isinstance(v, str) else v for k, v in body.items()}
    return body


def _positive_int(value: Any) -> int | None:
    """JSON ints only (no bools, floats or strings)."""
    if type(value) is int and value > 0:
        return value
    return None


def _int_param(value: Any) -> int | None:
    """An int or an all-digit string (DRF IntegerField leniency)."""
    if type(value) is int:
        return value
    if isinstance(value, str):
        value = value.strip()
        if value.isdecimal() and len(value) <= 18:
            return int(value)
    return None


class _Request:
    __slots__ = ("auth", "body", "body_error", "method", "path", "query", "uid")

    def __init__(self, method: str, path: str, query: str) -> None:
        self.method = method
        self.path = path
        self.query = query
        self.auth: str | None = None
        self.body: Any = None
        self.body_error: str | None = None
        self.uid: str | None = None


def make_app(exchange: SandboxExchange) -> ASGIApp:
    """Build the ASGI callable for ``exchange``."""

    async def app(scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await _lifespan(receive, send)
            return
        if kind == "websocket":
            await serve_stream(
                exchange, scope, receive, send, lambda **f: exchange.log.record(RequestRecord(**f))
            )
            return
        if kind != "http":
            return
        started = time.monotonic()
        req = _Request(scope["method"], scope["path"], scope.get("query_string", b"").decode())
        raw_body, content_type = await _read(scope, receive, req)
        socket_faults = FAULT_EXTENSION in (scope.get("extensions") or {})
        faults = exchange.faults
        exchange.log.enter()
        if raw_body:
            _parse_body(req, raw_body, content_type)
        fault: str | None = None
        reply: _Reply | None = None
        status: int | None = None
        token_tag: str | None = None
        try:
            applies = faults.applies_to(req.path)
            if applies:
                delay = faults.delay()
                if delay > 0:
                    await anyio.sleep(delay)
                fault = faults.draw()
            if fault is not None and fault in PRE_FAULTS:
                reply = _pre_fault(exchange, fault)
                if reply is None:
                    await _socket_fault(send, fault, socket_faults, faults.stall_seconds)
                    return
            else:
                reply, token_tag = _dispatch(exchange, req)
                if fault is None and applies:
                    if faults.close_keepalive:
                        reply.headers = (*reply.headers, (b"connection", b"close"))
                    pad = faults.huge_body_bytes
                    if pad and reply.headers[0] == _JSON_HEADER:
                        reply.body = reply.body.ljust(pad)
                elif fault == "drop_after":
                    await _socket_fault(send, fault, socket_faults, faults.stall_seconds)
                    return
                elif fault == "stall" and not socket_faults:
                    await anyio.sleep(faults.stall_seconds)
                    raise SimulatedDisconnect("sandbox fault: stall")
                elif socket_faults:  # truncate / stall, acted out by the server
                    await send(
                        {
                            "type": FAULT_MESSAGE,
                            "fault": fault,
                            "stall_seconds": faults.stall_seconds,
                        }
                    )
            status = reply.status
            body = reply.body
            headers = [
                *reply.headers,
                (b"content-length", str(len(body)).encode()),
                # On the exchange's clock (RFC 9110 Date: origin servers with a clock send it).
                (b"date", formatdate(exchange.now(), usegmt=True).encode()),
            ]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            if fault == "truncate" and not socket_faults:
                body = body[: len(body) // 2]
            await send({"type": "http.response.body", "body": body})
        finally:
            exchange.log.leave()
            exchange.log.record(
                RequestRecord(
                    time=started,
                    method=req.method,
                    path=req.path,
                    query=req.query,
                    body=_sanitize(req.body),
                    status=status,
                    result=reply.result if reply is not None else f"fault:{fault}",
                    fault=fault,
                    order_id=_positive_int(_body_field(req, "order_id")) if req.path == CANCEL else None,
                    order_ids=reply.order_ids if reply is not None else (),
                    uid=req.uid,
                    token=token_tag,
                    duration=time.monotonic() - started,
                    message=reply.message if reply is not None else None,
                )
            )

    return app


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def _read(scope: Scope, receive: Receive, req: _Request) -> tuple[bytes, str]:
    content_type = ""
    for name, value in scope["headers"]:
        if name == b"authorization":
            req.auth = value.decode("latin-1")
        elif name == b"content-type":
            content_type = value.decode("latin-1")
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks), content_type


def _parse_body(req: _Request, raw: bytes, content_type: str) -> None:
    if "application/x-www-form-urlencoded" in content_type:
        req.body = dict(parse_qsl(raw.decode("latin-1"), keep_blank_values=True))
        return
    try:
        req.body = _loads(raw)
    except _DecodeError as exc:
        req.body_error = str(exc)


async def _socket_fault(send: Send, fault: str, socket_faults: bool, stall_seconds: float) -> None:
    if socket_faults:
        await send({"type": FAULT_MESSAGE, "fault": fault, "stall_seconds": stall_seconds})
        return
    if fault == "black_hole":
        await anyio.sleep(stall_seconds)
    raise SimulatedDisconnect(f"sandbox fault: {fault}")


def _pre_fault(exchange: SandboxExchange, fault: str) -> _Reply | None:
    """The reply for an HTTP-level fault; None for socket faults."""
    faults = exchange.faults
    if fault == "5xx":
        status = faults.error_status()
        if status == 500:
            return _error(500, exchange.answers.text("server_error"), "fault:5xx")
        return _Reply(status, _proxy_page(status), "fault:5xx", (_HTML_HEADER,))
    if fault == "status_error":
        return _error(200, exchange.answers.text("status_error"), "fault:status_error")
    if fault == "bare_error":
        return _json_reply(
            400, {"status": "error", "message": exchange.answers.text("bad_request")}, "fault:bare_error"
        )
    if fault == "403":
        return _error(403, "Invalid organization key", "fault:403")
    if fault == "object_error":
        payload = {"destination_address": "0x" + "0" * 40, "exists": False}
        return _error(400, "User does not exist", "fault:object_error", payload)
    if fault == "429":
        reply = _error(429, exchange.answers.text("rate_limited"), "fault:429")
        if faults.retry_after is not None:
            seconds = max(1, math.ceil(faults.retry_after))
            value = (
                formatdate(exchange.now() + seconds, usegmt=True)
                if faults.retry_after_http_date
                else str(seconds)
            )
            reply.headers = (*reply.headers, (b"retry-after", value.encode()))
        return reply
    return None


def _dispatch(exchange: SandboxExchange, req: _Request) -> tuple[_Reply, str | None]:
    """Route and run one request; also returns the token fingerprint for the log."""
    path = req.path
    route = ROUTES.get(path)
    detail = None
    if route is None:
        detail = ORDER_DETAIL.fullmatch(path)
        if detail is None:
            slashed = path + "/"
            if not path.endswith("/") and (slashed in ROUTES or ORDER_DETAIL.fullmatch(slashed)):
                location = slashed + (f"?{req.query}" if req.query else "")
                headers = (_HTML_HEADER, (b"location", location.encode()))
                return _Reply(301, b"", "redirect", headers), None
            return _Reply(404, _DJANGO_404, "not_found", (_HTML_HEADER,)), None
        route = ("GET", True)
    method, private = route
    token_tag = None
    if private:
        scheme, _, token = (req.auth or "").partition(" ")
        if scheme != "JWT" or not token:
            return _error(401, NO_CREDENTIALS, "no_credentials"), None
        token = token.strip()
        token_tag = fingerprint(token)
        entry = exchange.accounts.authenticate(token)
        if entry is None:
            reply = _error(
                401,
                "Given token not valid for any token type",
                "unauthorized",
                ACCESS_INVALID_PAYLOAD,
            )
            return reply, token_tag
        req.uid = entry.uid
    if req.method != method:
        return _error(405, exchange.answers.text("bad_method", method=req.method), "bad_method"), token_tag
    if req.body_error is not None:
        return _error(400, exchange.answers.text("bad_json", detail=req.body_error), "bad_json"), token_tag
    if detail is not None:
        return _get_order(exchange, req, detail.group(1)), token_tag
    if path == ORDERS:
        return _list_orders(exchange, req), token_tag
    if path == CANCEL:
        return _cancel(exchange, req), token_tag
    if path == BULK_CANCEL:
        return _bulk_cancel(exchange, req), token_tag
    if path == HEALTH:
        return _envelope(200, "Working fine!", "", "health"), None
    if path == REFRESH:
        return _refresh(exchange, req), None
    if path in NONCE_PATHS:
        return _nonce(exchange, req), None
    return _login(exchange, req), None


def _body_field(req: _Request, name: str) -> Any:
    return req.body.get(name) if isinstance(req.body, dict) else None


def _nonce(exchange: SandboxExchange, req: _Request) -> _Reply:
    address = _body_field(req, "eth_address")
    if not isinstance(address, str) or not address:
        return _error(400, exchange.answers.text("address_required"), "nonce_rejected")
    if len(address) < 30:
        return _error(400, "Ensure eth_address has at least 30 characters.", "nonce_rejected")
    if not valid_address(address):
        return _error(400, exchange.answers.text("address_invalid"), "nonce_rejected")
    nonce, cached = exchange.accounts.nonce(address)
    message = "Cached Nonce Acquired" if cached else "Nonce Acquired"
    return _envelope(200, message, nonce, "nonce_cached" if cached else "nonce")


def _login(exchange: SandboxExchange, req: _Request) -> _Reply:
    address = _body_field(req, "eth_address")
    signature = _body_field(req, "user_signature")
    result = exchange.accounts.login(address, signature)
    if result is None:
        return _error(400, INVALID_CREDENTIALS, "login_failed")
    uid, access, refresh = result
    req.uid = uid
    return _envelope(
        200,
        "Login Successful",
        {"uid": uid, "signature": ""},
        "login_ok",
        token={"refresh": refresh, "access": access},
    )


def _refresh(exchange: SandboxExchange, req: _Request) -> _Reply:
    token = _body_field(req, "refresh")
    if not isinstance(token, str) or not token:
        return _error(400, exchange.answers.text("refresh_required"), "refresh_rejected")
    pair = exchange.accounts.rotate(token)
    if pair is None:
        return _error(
            401,
            "Token is invalid or expired",
            "refresh_failed",
            {"code": "token_not_valid"},
        )
    access, refresh = pair
    return _envelope(200, "", {"access": access, "refresh": refresh}, "refresh_ok")


def _get_order(exchange: SandboxExchange, req: _Request, raw_id: str) -> _Reply:
    order_id = _int_param(raw_id)
    if not order_id:
        return _error(400, exchange.answers.text("bad_order_id"), "bad_request")
    order = exchange.book.find(req.uid or "", order_id)
    if order is None:
        return _error(404, exchange.answers.text("not_found"), "order_not_found")
    shape = exchange.answers.shape()
    payload = order.to_payload(newer_fields=shape.order_fields("get"), trades=True, offset=shape.offset)
    return _envelope(200, "Order Retrieved Successfully", payload, "order")


_LIST_FILTERS: Final = (
    "market",
    "state",
    "side",
    "ord_type",
    "base_unit",
    "quote_unit",
)


def _list_orders(exchange: SandboxExchange, req: _Request) -> _Reply:
    params = {k: v[0] for k, v in parse_qs(req.query).items()}
    filters = {k: params[k] for k in _LIST_FILTERS if params.get(k)}
    if "market" in filters and filters["market"] not in exchange.markets:
        return _error(400, INVALID_MARKET, "bad_request")
    ints: dict[str, int | None] = {}
    for name in ("limit", "page", "start_time", "end_time"):
        raw = params.get(name)
        if not raw:
            ints[name] = None
            continue
        value = _int_param(raw)
        if value is None or (name in ("limit", "page") and value < 1):
            return _error(400, exchange.answers.text(f"bad_{name}"), "bad_request")
        ints[name] = value
    order_by = params.get("order_by", "desc")
    if order_by not in ("asc", "desc"):
        return _error(400, exchange.answers.text("bad_order_by"), "bad_request")
    orders = exchange.book.list_orders(
        req.uid or "",
        filters,
        ints["start_time"],
        ints["end_time"],
        min(ints["limit"] or 50, 100),
        ints["page"] or 1,
        order_by == "desc",
    )
    shape = exchange.answers.shape()
    newer = shape.order_fields("list")
    payload = [o.to_payload(newer_fields=newer, offset=shape.offset) for o in orders]
    return _envelope(200, "Orders Retrieved Successfully", payload, "orders")


def _cancel(exchange: SandboxExchange, req: _Request) -> _Reply:
    order_id = _positive_int(_body_field(req, "order_id"))
    if order_id is None:
        return _error(400, exchange.answers.text("bad_order_id"), "cancel_rejected:bad_request")
    result, order = exchange.book.cancel(req.uid or "", order_id)
    if result != "queued" or order is None:
        return _error(CANCEL_ERRORS[result], exchange.answers.text(result), f"cancel_rejected:{result}")
    shape = exchange.answers.shape()
    legacy = exchange.answers.legacy_cancel_response or shape.legacy_cancel
    payload: Any = {}
    if not (exchange.answers.empty_cancel_payload or shape.empty_cancel):
        payload = order.to_payload(
            legacy=legacy, newer_fields=shape.order_fields("cancel"), offset=shape.offset
        )
    return _envelope(200, CANCEL_LEGACY if legacy else CANCEL_QUEUED, payload, "cancel_queued")


def _bulk_cancel(exchange: SandboxExchange, req: _Request) -> _Reply:
    market = _body_field(req, "market")
    if not market:
        return _error(400, "please provide market, market is a mandatory field", "bulk_rejected")
    if not isinstance(market, str) or market not in exchange.markets:
        return _error(400, INVALID_MARKET, "bulk_rejected")
    raw_limit = _body_field(req, "limit")
    limit = 100 if raw_limit is None else _int_param(raw_limit)
    if limit is None or limit < 1:
        return _error(400, exchange.answers.text("bad_limit"), "bulk_rejected")
    side = _body_field(req, "side")
    if side is not None and side not in ("buy", "sell"):
        return _error(400, exchange.answers.text("bad_side"), "bulk_rejected")
    ids = exchange.book.bulk_cancel(req.uid or "", market, limit, side)
    reply = _envelope(200, "Orders are successfully queued for cancellation", {}, "bulk_cancel_queued")
    reply.order_ids = ids
    return reply
