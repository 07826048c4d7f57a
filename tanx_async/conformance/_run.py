"""The exchanges the conformance check makes, read-only, and what each is checked against.

Order of play: list orders (two pages, then three filters), get an order from that list, look
up and then cancel an id that cannot exist (a refusal expected), cancel ``--cancel ID`` only
when asked, the private stream for a few seconds, and a token refresh only with ``--refresh``
(last: it rotates the tokens the other steps use).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import IO, Any

import anyio

from .. import _constants as C
from .._config import env_proxy, ssl_context
from .._convert import cancel_echo, structure
from .._envelope import decode_envelope
from .._errors import APIStatusError, ResponseValidationError, TanxError
from .._httpx import httpx
from .._stream import STREAMS, _Lost, _Socket, stream_url
from .._transports import RawResponse
from ..models import Order
from ._redact import Redactor
from ._shapes import Finding, check_envelope, check_order, check_stream_message, describe, profile_of

__all__ = ["NO_SUCH_ORDER", "Conformance"]

#: An order id that cannot exist (2**53 - 1: no exchange numbers its orders this high, and any
#: backend, JavaScript's too, reads it exactly). Looked up first: a cancel is sent only when the
#: look-up finds nothing.
NO_SUCH_ORDER = 2**53 - 1
PAGE = 5


class Conformance:
    """One run against one exchange: ``findings`` grows as the checks go."""

    def __init__(
        self,
        base_url: str,
        access_token: str,
        *,
        refresh_token: str | None = None,
        record: IO[str] | None = None,
        redactor: Redactor,
        allow_insecure_http: bool = False,
        timeout: float = 10.0,
        on_tokens: Callable[[str, str], None] | None = None,
    ) -> None:
        self.base_url = base_url
        self._access = access_token
        self._refresh = refresh_token
        self._record = record
        self._redact = redactor
        self._allow_insecure = allow_insecure_http
        self._timeout = timeout
        self._on_tokens = on_tokens
        self.findings: list[Finding] = []
        self._client: httpx.AsyncClient | None = None

    # -- plumbing ---------------------------------------------------------------------------

    def _add(self, findings: list[Finding], check: str, matched: str) -> bool:
        """Keep ``findings``; when there are none, one ``ok`` line saying what matched."""
        self.findings.extend(findings)
        if not findings:
            self.findings.append(Finding(check, "", True, matched))
        return not findings

    async def _exchange(
        self,
        check: str,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: dict[str, Any] | None = None,
        private: bool = True,
    ) -> tuple[RawResponse, Any] | None:
        """One request and its answer: recorded, the body parsed (None, with a finding, when
        there was no answer or it is not JSON)."""
        assert self._client is not None
        headers = {"Accept": "application/json", "User-Agent": C.USER_AGENT}
        if private:
            headers["Authorization"] = "JWT " + self._access
        started = time.monotonic()
        try:
            response = await self._client.request(method, path, params=params, json=body, headers=headers)
        except httpx.HTTPError as exc:
            # The exception's text may quote the URL: its type only.
            self.findings.append(Finding(check, "", False, f"no answer ({type(exc).__name__})"))
            self._write(check, method, path, params, body, None, None, time.monotonic() - started)
            return None
        content = response.content
        raw = RawResponse(response.status_code, response.headers, content, method, str(response.url))
        try:
            parsed: Any = json.loads(content)
        except ValueError:
            parsed = None
            self.findings.append(
                Finding(check, "$", False, f"HTTP {response.status_code} with a body that is not JSON")
            )
        self._write(check, method, path, params, body, response, parsed, time.monotonic() - started)
        return (raw, parsed) if parsed is not None else None

    def _write(
        self,
        check: str,
        method: str,
        path: str,
        params: dict[str, Any] | None,
        body: dict[str, Any] | None,
        response: httpx.Response | None,
        parsed: Any,
        elapsed: float,
    ) -> None:
        if self._record is None:
            return
        redact = self._redact.value
        line: dict[str, Any] = {
            "check": check,
            "request": {"method": method, "path": path, "params": redact(params or {}), "body": redact(body)},
            "elapsed": round(elapsed, 4),
        }
        if response is not None:
            kept = ("content-type", "retry-after", "date", "server")
            line["response"] = {
                "status": response.status_code,
                "headers": {k: redact(v) for k, v in response.headers.items() if k.lower() in kept},
                "body": redact(parsed) if parsed is not None else redact(response.text[:2000]),
            }
        self._record.write(json.dumps(line, sort_keys=True) + "\n")

    def _decoded(self, check: str, raw: RawResponse, method: str, path: str) -> dict[str, Any] | None:
        """The library's own envelope decoder on the answer (its error as a finding)."""
        try:
            return decode_envelope(raw, method=method, path=path)
        except (APIStatusError, ResponseValidationError) as exc:
            self.findings.append(Finding(check, "$", False, f"the library's decoder refused it: {exc}"))
            return None

    def _structured(self, check: str, payload: Any, cls: Any) -> Any:
        try:
            return structure(payload, cls)
        except ResponseValidationError as exc:
            errors = "; ".join(exc.errors[:3]) or str(exc)
            self.findings.append(
                Finding(check, "$.payload", False, f"the library's decoder refused it: {errors}")
            )
            return None

    # -- the run ----------------------------------------------------------------------------

    async def run(self, *, cancel_id: int | None, refresh: bool, stream_seconds: float) -> list[Finding]:
        verify = ssl_context(True)
        async with httpx.AsyncClient(
            base_url=self.base_url, timeout=self._timeout, follow_redirects=False, verify=verify
        ) as self._client:
            listed = await self._list_pages()
            await self._filters(listed)
            await self._get(listed)
            await self._no_such_order()
            if cancel_id is not None:
                await self._cancel(cancel_id)
            if stream_seconds > 0:
                await self._stream(stream_seconds)
            if refresh:
                await self._refresh_tokens()
        return self.findings

    async def _list(self, check: str, params: dict[str, Any]) -> list[dict[str, Any]] | None:
        answer = await self._exchange(check, "GET", C.ORDERS_PATH, params=params)
        if answer is None:
            return None
        raw, body = answer
        found = check_envelope(check, raw.status, body, success=True)
        payload = body.get("payload") if isinstance(body, dict) else None
        if not isinstance(payload, list):
            found.append(Finding(check, "$.payload", False, f"expected an array, got {describe(payload)}"))
            self._add(found, check, "")
            return None
        limit = params.get("limit")
        if isinstance(limit, int) and len(payload) > limit:
            found.append(Finding(check, "$.payload", False, f"{len(payload)} orders for limit={limit}"))
        for index, order in enumerate(payload):
            found += check_order(check, f"$.payload[{index}]", order, "list")
        self.findings.extend(found)
        if self._decoded(check, raw, "GET", C.ORDERS_PATH) is not None:
            self._structured(check, payload, list[Order])
        if not found:
            message = body.get("message") if isinstance(body, dict) else None
            shapes = ", ".join(sorted({profile_of(o, "list") or "?" for o in payload})) or "none"
            self.findings.append(
                Finding(
                    check,
                    "",
                    True,
                    f"{len(payload)} order(s) (profile {shapes}), message {describe(message, show=True)}",
                )
            )
        return [o for o in payload if isinstance(o, dict)]

    async def _list_pages(self) -> list[dict[str, Any]]:
        first = await self._list("list page 1", {"limit": PAGE, "page": 1})
        if first is None:
            return []
        second = await self._list("list page 2", {"limit": PAGE, "page": 2})
        if second is not None and len(first) == PAGE:
            repeated = {o.get("id") for o in first} & {o.get("id") for o in second}
            self._add(
                [
                    Finding(
                        "list pages",
                        "$.payload[*].id",
                        False,
                        f"page 2 repeats {len(repeated)} id(s) of page 1",
                    )
                ]
                if repeated
                else [],
                "list pages",
                "page 2 repeats no order of page 1",
            )
        return first + (second or [])

    async def _filters(self, listed: list[dict[str, Any]]) -> None:
        market = next((o["market"] for o in listed if isinstance(o.get("market"), str)), None)
        filters: list[tuple[str, str]] = [("state", "wait"), ("side", "buy")]
        if market is not None:
            filters.append(("market", market))
        for name, value in filters:
            check = f"list filter {name}"
            orders = await self._list(check, {name: value, "limit": PAGE})
            if orders is None:
                continue
            wrong = [o for o in orders if o.get(name) != value]
            self._add(
                [
                    Finding(
                        check,
                        f"$.payload[*].{name}",
                        False,
                        f"{len(wrong)} order(s) do not match {name}={value}",
                    )
                ]
                if wrong
                else [],
                check,
                f"every order listed has {name}={value}",
            )

    async def _get(self, listed: list[dict[str, Any]]) -> None:
        check = "get order"
        oid = next((o["id"] for o in listed if isinstance(o.get("id"), int)), None)
        if oid is None:
            self.findings.append(Finding(check, "", True, "skipped: the list had no order to look up"))
            return
        path = f"{C.ORDERS_PATH}{oid}/"
        answer = await self._exchange(check, "GET", path)
        if answer is None:
            return
        raw, body = answer
        found = check_envelope(check, raw.status, body, success=True)
        payload = body.get("payload") if isinstance(body, dict) else None
        found += check_order(check, "$.payload", payload, "get")
        if isinstance(payload, dict) and payload.get("id") != oid:
            found.append(
                Finding(check, "$.payload.id", False, f"another order's id ({describe(payload.get('id'))})")
            )
        self.findings.extend(found)
        if self._decoded(check, raw, "GET", path) is not None:
            self._structured(check, payload, Order)
        if not found:
            assert isinstance(payload, dict)
            shape = profile_of(payload, "get")
            trades = describe(payload.get("trades"))
            self.findings.append(
                Finding(check, "", True, f"order of the list (profile {shape}), trades: {trades}")
            )

    async def _refusal(self, check: str, method: str, path: str, body: dict[str, Any] | None) -> bool:
        """A request that must be refused; True when it was (as the library reads refusals)."""
        answer = await self._exchange(check, method, path, body=body)
        if answer is None:
            return False
        raw, parsed = answer
        found = check_envelope(check, raw.status, parsed, success=False)
        refused = not 200 <= raw.status < 300 or (
            isinstance(parsed, dict) and parsed.get("status") == "error"
        )
        if not refused:
            found.append(
                Finding(check, "HTTP status", False, f"accepted with HTTP {raw.status}: expected a refusal")
            )
        self._add(
            found,
            check,
            f"refused with HTTP {raw.status}, message {describe(parsed.get('message'), show=True) if isinstance(parsed, dict) else ''}",
        )
        return refused

    async def _no_such_order(self) -> None:
        path = f"{C.ORDERS_PATH}{NO_SUCH_ORDER}/"
        if not await self._refusal("get unknown order", "GET", path, None):
            # The look-up did not refuse: never send a cancel for an id that may exist.
            self.findings.append(
                Finding(
                    "cancel unknown order", "", False, "not sent: the look-up of the id did not refuse it"
                )
            )
            return
        await self._refusal("cancel unknown order", "POST", C.CANCEL_PATH, {"order_id": NO_SUCH_ORDER})

    async def _cancel(self, oid: int) -> None:
        check = f"cancel {oid}"
        answer = await self._exchange(check, "POST", C.CANCEL_PATH, body={"order_id": oid})
        if answer is None:
            return
        raw, body = answer
        if not 200 <= raw.status < 300 or (isinstance(body, dict) and body.get("status") == "error"):
            # A refusal (the order closed meanwhile): its envelope is still checked.
            self._add(
                check_envelope(check, raw.status, body, success=False),
                check,
                f"refused with HTTP {raw.status}",
            )
            return
        found = check_envelope(check, raw.status, body, success=True)
        payload = body.get("payload") if isinstance(body, dict) else None
        variant = "payload {} (ack)"
        if isinstance(payload, dict) and payload:
            found += check_order(check, "$.payload", payload, "cancel")
            variant = "Brine echo (order_id)" if "id" not in payload else "order echo (id)"
        self.findings.extend(found)
        if self._decoded(check, raw, "POST", C.CANCEL_PATH) is not None:
            try:
                cancel_echo(oid, payload, raw.content)
            except ResponseValidationError as exc:
                self.findings.append(
                    Finding(check, "$.payload", False, f"the library's decoder refused it: {exc}")
                )
                return
        if not found:
            self.findings.append(Finding(check, "", True, f"queued, {variant}"))

    async def _stream(self, seconds: float) -> None:
        check = "stream"
        url = stream_url(self.base_url, None, self._allow_insecure)
        tls = ssl_context(True) if url.startswith("wss:") else None
        proxy = env_proxy("http" + url[2:])
        messages: list[Any] = []
        found: list[Finding] = []
        try:
            sock = await _Socket.connect(url, self._access, tls=tls, within=self._timeout, proxy=proxy)
        except _Lost as exc:
            self._add([Finding(check, "", False, f"could not connect: {exc.reason}")], check, "")
            self._write_stream(messages)
            return
        acked = False
        try:
            await sock.send_text(json.dumps({"event": "subscribe", "streams": list(STREAMS)}))
            with anyio.move_on_after(seconds):
                while True:
                    text = await sock.receive()
                    try:
                        message = json.loads(text)
                    except ValueError:
                        found.append(
                            Finding(check, "$", False, f"a message that is not JSON ({len(text)} chars)")
                        )
                        continue
                    messages.append(message)
                    if isinstance(message, dict) and "error" in message:
                        found.append(Finding(check, "$.error", False, "the subscription was refused"))
                        break
                    acked = acked or (isinstance(message, dict) and "success" in message)
                    found += check_stream_message(check, message)
        except (_Lost, TanxError) as exc:
            reason = exc.reason if isinstance(exc, _Lost) else type(exc).__name__
            found.append(Finding(check, "", False, f"lost: {reason}"))
        finally:
            await sock.aclose()
        if not acked:
            found.append(Finding(check, "$.success", False, f"no subscription ack within {seconds:g} s"))
        self._write_stream(messages)
        self._add(found, check, f"subscribed; {len(messages)} message(s) in {seconds:g} s")

    def _write_stream(self, messages: list[Any]) -> None:
        if self._record is not None:
            line = {"check": "stream", "request": {"method": "WS", "path": C.STREAM_PATH}}
            line["messages"] = self._redact.value(messages)
            self._record.write(json.dumps(line, sort_keys=True) + "\n")

    async def _refresh_tokens(self) -> None:
        check = "refresh"
        if self._refresh is None:
            self.findings.append(Finding(check, "", False, "no refresh token to refresh with"))
            return
        answer = await self._exchange(
            check, "POST", C.REFRESH_PATH, body={"refresh": self._refresh}, private=False
        )
        if answer is None:
            return
        raw, body = answer
        found = check_envelope(check, raw.status, body, success=True)
        payload = body.get("payload") if isinstance(body, dict) else None
        pair = None
        if not isinstance(payload, dict):
            found.append(Finding(check, "$.payload", False, f"expected an object, got {describe(payload)}"))
        else:
            for name in ("access", "refresh"):
                if not isinstance(payload.get(name), str):
                    found.append(
                        Finding(
                            check,
                            f"$.payload.{name}",
                            False,
                            f"expected a string, got {describe(payload.get(name))}",
                        )
                    )
            for name in payload:
                if name not in ("access", "refresh"):
                    found.append(
                        Finding(
                            check, f"$.payload.{name}", False, f"unknown field ({describe(payload[name])})"
                        )
                    )
            if isinstance(payload.get("access"), str) and isinstance(payload.get("refresh"), str):
                pair = (payload["access"], payload["refresh"])
                self._redact.learn(*pair)
        if pair is not None and self._on_tokens is not None:
            self._on_tokens(*pair)
        self._add(
            found,
            check,
            "a new access/refresh pair (saved to the token cache)"
            if self._on_tokens
            else "a new access/refresh pair",
        )
