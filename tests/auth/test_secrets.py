"""No secret leaves the session: not in logs, errors, outcomes, events or reprs; and no
plaintext or unverified TLS unless asked for explicitly."""

from __future__ import annotations

import asyncio
import logging
import ssl
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest
import respx

from tanx_async import (
    APIConnectionError,
    APIStatusError,
    AsyncTanxSession,
    AuthenticationError,
    NotFoundError,
    RequestEvent,
    TokenPair,
)
from tests.conftest import CANCEL_URL
from tests.internals import (
    Http11Sender,
    HttpxSender,
    PrivateKeySigner,
    TransportName,
    auth_of,
    random_wallet,
    start_transport,
)
from tests.sandbox import TRANSPORTS, running_sandbox, transport_name


class Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def texts(self) -> list[str]:
        out: list[str] = []
        for record in self.records:
            out += [self.format(record), repr(record.msg), repr(record.args)]
        return out


@pytest.fixture
def captured() -> Iterator[Capture]:
    """Everything logged anywhere (the library's logger and root, at DEBUG)."""
    handler = Capture()
    root = logging.getLogger()
    ours = logging.getLogger("tanx_async")
    levels = root.level, ours.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    ours.setLevel(logging.DEBUG)
    try:
        yield handler
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        ours.setLevel(levels[1])


class RecordingSigner:
    """A ``PrivateKeySigner`` that also remembers what it signed (to look for it later)."""

    def __init__(self, inner: PrivateKeySigner) -> None:
        self._inner = inner
        self.signatures: list[str] = []

    @property
    def address(self) -> str:
        return self._inner.address

    async def sign(self, message: str) -> str:
        signature = await self._inner.sign(message)
        self.signatures.append(signature)
        return signature


def error_texts(exc: BaseException) -> list[str]:
    """str/repr of an error and of everything chained to it, its traceback and its body."""
    out: list[str] = []
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        out += [str(e), repr(e), "".join(traceback.format_exception_only(type(e), e))]
        out.append(repr(getattr(e, "body", None)))
        out.append(repr(getattr(e, "response", None)))
        todo += [e.__cause__, e.__context__, getattr(e, "cause", None)]
    return out


def leaks(secrets: list[str], texts: list[str]) -> list[str]:
    """Each secret, whole or as any distinctive 16-character slice, found in any text."""
    haystack = "\n".join(texts)
    lowered = haystack.lower()
    found: list[str] = []
    for secret in secrets:
        bare = secret[2:] if secret.lower().startswith("0x") else secret
        is_hex = all(c in "0123456789abcdefABCDEF" for c in bare)
        text, needle = (lowered, bare.lower()) if is_hex else (haystack, bare)
        pieces = [needle] + [needle[i : i + 16] for i in range(0, max(len(needle) - 15, 1), 8)]
        for piece in pieces:
            if piece in text:
                found.append(f"{secret[:6]}... as {piece!r}")
                break
    return found


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_no_secret_in_logs_errors_outcomes_events_or_reprs(captured: Capture, transport: str) -> None:
    key, address = random_wallet()
    signer = RecordingSigner(PrivateKeySigner(key, eth_address=address))
    pairs: list[TokenPair] = []
    events: list[RequestEvent] = []
    texts: list[str] = []
    with running_sandbox(seed=21, cancel_delay=0.0) as sb:
        exchange = sb.exchange
        uid = exchange.create_user(address)
        ids = exchange.seed_orders(uid, 120)
        async with AsyncTanxSession(
            base_url=sb.server.url,
            signer=signer,
            on_tokens=pairs.append,
            on_event=events.append,
            max_retries=1,
            transport=transport_name(transport),
        ) as session:
            texts += [repr(session), str(session), repr(session.tokens), repr(auth_of(session))]
            await session.login()
            texts += [repr(session.tokens), str(session.tokens)]
            exchange.expire_access_tokens()  # -> one refresh
            order = await session.orders.get(ids[0])
            texts += [repr(order), str(order)]
            exchange.revoke_refresh_tokens()
            exchange.expire_access_tokens()  # -> refresh refused -> a second login
            texts.append(repr(await session.orders.get(ids[1])))

            faults = exchange.faults
            faults.only_paths = ("/sapi/v1/orders",)
            faults.error_rate, faults.drop_after_rate, faults.truncate_rate = 0.1, 0.1, 0.05
            faults.reset_rate, faults.rate_limit_rate, faults.retry_after = 0.05, 0.02, None
            outcomes = await session.orders.cancel_many(ids[2:], concurrency=16)
            faults.reset()
            for outcome in outcomes:
                texts += [repr(outcome), str(outcome), str(outcome.note)]
                if outcome.error is not None:
                    texts += error_texts(outcome.error)
            # The faults left some marks (errors, or notes of the settling pass).
            assert any(o.error is not None or o.note is not None for o in outcomes)

            with pytest.raises(NotFoundError) as not_found:
                await session.orders.get(99_999_999)
            texts += error_texts(not_found.value)
            with pytest.raises(NotFoundError) as not_found_cancel:
                await session.orders.cancel(99_999_999)
            texts += error_texts(not_found_cancel.value)
            texts += [repr(session), repr(session.tokens), repr(auth_of(session))]

        # A session holding only tokens: a rotated-away refresh token fails in the open.
        stale = pairs[-1]
        exchange.revoke_refresh_tokens()
        exchange.expire_access_tokens()
        async with AsyncTanxSession(
            base_url=sb.server.url,
            access_token=stale.access,
            refresh_token=stale.refresh,
            transport=transport_name(transport),
        ) as bare:
            with pytest.raises(AuthenticationError) as refused:
                await bare.orders.get(ids[0])
            texts += [*error_texts(refused.value), repr(bare)]
        texts += [repr(r) for r in exchange.requests]  # the sandbox's own log redacts too

    texts += [repr(e) for e in events] + [repr(p) for p in pairs] + [repr(signer._inner)]
    texts += captured.texts()
    # refresh ok; refresh refused -> login; the bare session's refresh refused
    assert (exchange.refresh_count, exchange.refresh_failures, exchange.login_count) == (3, 2, 2)
    assert len(signer.signatures) == 2
    secrets = [key, *signer.signatures]
    for pair in pairs:
        secrets += [pair.access, *([pair.refresh] if pair.refresh else [])]
    assert len(pairs) == 3  # login, refresh, login
    assert len(captured.records) > 100  # DEBUG really was on (one line per request at least)
    assert leaks(secrets, texts) == []


def test_leak_detector_finds_slices() -> None:
    """The detector itself: a slice of a token or a key in another case is found."""
    token = "eyJhbGciOiJIUzI1NiJ9.eyJ0b2tlbl90eXBlIjoiYWNjZXNzIn0.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    key = "0x" + "ab" * 32
    assert leaks([token], [f"header {token[20:40]} end"]) != []
    assert leaks([key], [f"key {key[10:30].upper()}"]) != []
    assert leaks([token, key], ["nothing here"]) == []


# -- transport security -------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://api.tanx.fi",
        "http://10.0.0.5:8000",
        "http://localhost.evil.example",
        "http://127.0.0.1.nip.io",
    ],
)
def test_plain_http_to_a_remote_host_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match="plain http"):
        AsyncTanxSession(base_url=url, access_token="t")
    assert AsyncTanxSession(base_url=url, access_token="t", allow_insecure_http=True).base_url == url


@pytest.mark.parametrize("url", ["http://127.0.0.1:9", "http://localhost:9", "http://[::1]:9"])
def test_plain_http_to_loopback_is_allowed(url: str) -> None:
    assert AsyncTanxSession(base_url=url).base_url == url


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_tls_verification_is_on_unless_switched_off(transport: str) -> None:
    name = transport_name(transport)
    for verify, expected in ((True, ssl.CERT_REQUIRED), (False, ssl.CERT_NONE)):
        kwargs: dict[str, Any] = {} if verify else {"verify": False}
        session = AsyncTanxSession(access_token="t", transport=name, **kwargs)
        try:
            sender = start_transport(session)
            if isinstance(sender, Http11Sender):
                assert transport == "native"
                context = sender.ssl_context()
                assert context.verify_mode == expected
                assert context.check_hostname is verify
            else:
                assert isinstance(sender, HttpxSender)
                context = sender.client._transport._pool._ssl_context  # type: ignore[attr-defined]
                assert context.verify_mode == expected
                assert context.check_hostname is verify
        finally:
            await session.aclose()


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_untrusted_certificate_is_refused_by_default(
    self_signed: tuple[Path, Path], transport: str
) -> None:
    await tls_round_trip(self_signed, transport_name(transport))


async def tls_round_trip(self_signed: tuple[Path, Path], name: TransportName) -> None:
    """A real TLS handshake on loopback with a self-signed certificate: refused by default, and
    answered with ``verify=False``."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*self_signed)
    body = b'{"status":"success","message":"Working fine!","payload":""}'

    async def answer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            await reader.readuntil(b"\r\n\r\n")
            writer.write(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                + f"content-length: {len(body)}\r\n\r\n".encode()
                + body
            )
            await writer.drain()
        except (OSError, asyncio.IncompleteReadError, ssl.SSLError):
            pass
        finally:
            writer.close()

    server = await asyncio.start_server(answer, "127.0.0.1", 0, ssl=context)
    port = server.sockets[0].getsockname()[1]
    try:
        with anyio.fail_after(10):
            async with AsyncTanxSession(
                base_url=f"https://127.0.0.1:{port}", transport=name, max_retries=0
            ) as s:
                with pytest.raises(APIConnectionError) as refused:
                    await s.health()
                assert "certificate" in str(refused.value).lower() or "ssl" in str(refused.value).lower()
                assert refused.value.maybe_processed is False  # nothing was sent
            async with AsyncTanxSession(
                base_url=f"https://127.0.0.1:{port}", transport=name, verify=False, max_retries=0
            ) as s:
                assert await s.health() is True
    finally:
        server.close()
        await server.wait_closed()


async def test_error_response_does_not_carry_the_live_token(router: respx.Router, access_token: str) -> None:
    """``APIStatusError.response.request`` is reachable by error reporters: no token in it."""
    router.post(CANCEL_URL).mock(return_value=httpx.Response(400, json={"status": "error", "message": "no"}))
    async with (
        httpx.AsyncClient(transport=httpx.MockTransport(router.handler)) as client,
        AsyncTanxSession(access_token=access_token, http_client=client, max_retries=0) as session,
    ):
        with pytest.raises(APIStatusError) as info:
            await session.request("POST", "/sapi/v1/orders/cancel/", json={"order_id": 1}, idempotent=True)
    sent = router.calls.last.request
    assert sent.headers["authorization"] == f"JWT {access_token}"  # it was sent...
    response = info.value.response
    assert response is not None
    assert "authorization" not in response.request.headers  # ...but is not kept on the error
    assert access_token not in repr(vars(info.value))
