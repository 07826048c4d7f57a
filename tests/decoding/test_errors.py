"""Error shapes: every body the exchange (or a proxy in front of it) may answer with."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx

from tanx_async import (
    APIConnectionError,
    APIError,
    APIStatusError,
    APITimeoutError,
    AsyncTanxSession,
    AuthenticationError,
    BadRequestError,
    CancelOutcomeUnknownError,
    InternalServerError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    TanxError,
)
from tests.conftest import ACCESS_401, BASE, REFRESH_URL, FakeClock, envelope, json_response, open_session
from tests.internals import RawResponse, decode_envelope, is_access_token_error, status_error_class

PATH = "/sapi/v1/orders/7/"
URL = BASE + PATH
HTML_502 = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n</body>\r\n</html>\r\n"
)
HTML_503 = (
    b"<!DOCTYPE html><html><head><meta charset='utf-8'><TITLE>\n  Service Temporarily Unavailable\n"
    b"</TITLE></head><body>down for maintenance</body></html>"
)
NO_CREDENTIALS = {
    "status": "error",
    "message": "Authentication credentials were not provided.",
    "payload": "",
}
REFRESH_401 = {
    "status": "error",
    "message": "Token is invalid or expired",
    "payload": {"code": "token_not_valid"},
}


async def _fail(session: AsyncTanxSession) -> APIError:
    with pytest.raises(APIError) as info:
        await session.with_options(max_retries=0).request("GET", PATH, idempotent=True)
    return info.value


def _check_response(err: APIStatusError, status: int, content: bytes) -> None:
    assert isinstance(err.response, httpx.Response)
    assert err.response.status_code == status
    assert err.response.content == content
    assert err.response.request.method == "GET"
    assert str(err.response.request.url) == URL


@pytest.mark.parametrize(
    ("status", "body", "cls", "message"),
    [
        (
            400,
            envelope("", "please enter a valid market", "error"),
            BadRequestError,
            "please enter a valid market",
        ),
        (
            400,
            envelope({"destination_address": "0x1", "exists": False}, "User does not exist", "error"),
            BadRequestError,
            "User does not exist",
        ),
        (
            200,
            envelope("", "Invalid Credentials or Token Expired, Kindly login again.", "error"),
            BadRequestError,
            "Invalid Credentials or Token Expired, Kindly login again.",
        ),
        (201, {"status": "error", "message": "nope"}, BadRequestError, "nope"),
        (401, REFRESH_401, AuthenticationError, "Token is invalid or expired"),
        (401, NO_CREDENTIALS, AuthenticationError, "Authentication credentials were not provided."),
        (403, NO_CREDENTIALS, PermissionDeniedError, "Authentication credentials were not provided."),
        (
            403,
            envelope("", "Invalid organization key", "error"),
            PermissionDeniedError,
            "Invalid organization key",
        ),
        (404, {"detail": "Not found."}, NotFoundError, "Not found."),
        (404, {"status": "error", "message": "Not found"}, NotFoundError, "Not found"),
        (
            429,
            {"detail": "Request was throttled. Expected available in 3 seconds."},
            RateLimitError,
            "Request was throttled. Expected available in 3 seconds.",
        ),
        (
            500,
            {"status": "error", "message": "Internal Server Error"},
            InternalServerError,
            "Internal Server Error",
        ),
        (500, {"status": "error", "payload": {"message": "inner text"}}, InternalServerError, "inner text"),
        (422, {"error": "unprocessable"}, APIStatusError, "unprocessable"),
        (400, {"status": "error", "message": "", "payload": ""}, BadRequestError, "HTTP 400 error"),
        (400, {"status": "error"}, BadRequestError, "HTTP 400 error"),
    ],
)
async def test_json_error_shapes(
    session: AsyncTanxSession,
    router: respx.Router,
    status: int,
    body: dict[str, Any],
    cls: type[APIStatusError],
    message: str,
) -> None:
    route = router.get(URL).mock(return_value=json_response(status, body))
    err = await _fail(session)
    assert type(err) is cls
    assert isinstance(err, APIStatusError)
    assert route.call_count == 1
    assert err.status_code == status
    assert err.message == message
    assert err.body == body
    assert err.payload == body.get("payload")
    assert (err.method, err.path) == ("GET", PATH)
    _check_response(err, status, route.calls.last.response.content)
    text = str(err)
    assert text.startswith(f"HTTP {status}: {message}")
    assert PATH in text


async def test_401_refresh_shape_does_not_refresh(session: AsyncTanxSession, router: respx.Router) -> None:
    refresh = router.post(REFRESH_URL)
    router.get(URL).mock(return_value=json_response(401, REFRESH_401))
    err = await _fail(session)
    assert isinstance(err, AuthenticationError)
    assert refresh.call_count == 0


@pytest.mark.parametrize("status", [401, 403])
async def test_no_credentials_payload_string_does_not_refresh(
    session: AsyncTanxSession, router: respx.Router, status: int
) -> None:
    # The Python connector crashes here with AttributeError ('str' has no .get).
    refresh = router.post(REFRESH_URL)
    router.get(URL).mock(return_value=json_response(status, NO_CREDENTIALS))
    err = await _fail(session)
    assert isinstance(err, AuthenticationError if status == 401 else PermissionDeniedError)
    assert err.payload == ""
    assert refresh.call_count == 0


async def test_401_access_shape_that_survives_a_refresh(
    session: AsyncTanxSession, router: respx.Router
) -> None:
    refresh = router.post(REFRESH_URL).mock(
        return_value=json_response(200, envelope({"access": "new-access", "refresh": "refresh-2"}))
    )
    route = router.get(URL).mock(return_value=json_response(401, ACCESS_401))
    err = await _fail(session)
    assert isinstance(err, AuthenticationError)
    assert err.message == "Given token not valid for any token type"
    assert err.payload == ACCESS_401["payload"]
    assert refresh.call_count == 1
    assert route.call_count == 2


@pytest.mark.parametrize(
    ("status", "content", "message"),
    [
        (502, HTML_502, "502 Bad Gateway"),
        (503, HTML_503, "Service Temporarily Unavailable"),
        (504, b"upstream request timeout", "upstream request timeout"),
        (500, b"", "empty body (HTTP 500)"),
        (502, b"\r\n", "empty body (HTTP 502)"),
        (502, b"<html><title> </title><body>Bad gateway</body></html>", None),
        (500, b"\xff\xfe\x00garbage", None),
        (400, b"Bad Request (400)", "Bad Request (400)"),
        (404, b"<h1>Not Found</h1><p>The requested resource was not found.</p>", None),
    ],
)
async def test_non_json_error_bodies(
    session: AsyncTanxSession, router: respx.Router, status: int, content: bytes, message: str | None
) -> None:
    router.get(URL).mock(
        return_value=httpx.Response(status, content=content, headers={"Content-Type": "text/html"})
    )
    err = await _fail(session)
    assert isinstance(err, status_error_class(status))
    assert isinstance(err, APIStatusError)
    assert err.status_code == status
    if message is not None:
        assert err.message == message
    assert err.message  # never empty
    assert "\n" not in err.message
    assert err.body == content.decode("utf-8", "replace")
    _check_response(err, status, content)
    assert str(err).startswith(f"HTTP {status}: ")


async def test_long_html_body_is_summarised(session: AsyncTanxSession, router: respx.Router) -> None:
    router.get(URL).mock(return_value=httpx.Response(500, content=b"x" * 50_000))
    err = await _fail(session)
    assert len(err.message) <= 200
    assert err.message.endswith("...")


@pytest.mark.parametrize("content", [b"[]", b'"x"', b"null", b"42", b"[1, 2]", b"true", b'""', b'"   "'])
async def test_non_dict_json_error_bodies(
    session: AsyncTanxSession, router: respx.Router, content: bytes
) -> None:
    router.get(URL).mock(return_value=httpx.Response(400, content=content))
    err = await _fail(session)
    assert isinstance(err, BadRequestError)
    assert err.status_code == 400
    assert err.message
    assert err.payload is None
    _check_response(err, 400, content)


@pytest.mark.parametrize("content", [b"[]", b'"x"', b"null", b"42", b""])
async def test_non_dict_json_success_bodies(
    session: AsyncTanxSession, router: respx.Router, content: bytes
) -> None:
    router.get(URL).mock(return_value=httpx.Response(200, content=content))
    err = await _fail(session)
    assert isinstance(err, ResponseValidationError)
    assert err.body == content
    assert err.errors and err.errors[0].endswith("@ $")


@pytest.mark.parametrize("payload", ["", None, {}, {"a": 1}, [], "text"])
async def test_success_payload_shapes(
    session: AsyncTanxSession, router: respx.Router, payload: object
) -> None:
    body: dict[str, Any] = {"status": "success", "message": "ok"}
    if payload is not None:
        body["payload"] = payload
    router.get(URL).mock(return_value=json_response(200, body))
    assert await session.request("GET", PATH, idempotent=True) == body


@pytest.mark.parametrize("payload", ["", {}, {"code": "x"}, [1], None])
async def test_error_payload_shapes(session: AsyncTanxSession, router: respx.Router, payload: object) -> None:
    body: dict[str, Any] = {"status": "error", "message": "Order is already cancelled"}
    if payload is not None:
        body["payload"] = payload
    router.get(URL).mock(return_value=json_response(400, body))
    err = await _fail(session)
    assert isinstance(err, BadRequestError)
    assert err.message == "Order is already cancelled"
    assert err.payload == payload


async def test_429_retry_after_seconds_and_date(router: respx.Router, clock: FakeClock) -> None:
    # No operation deadline: with one, a request behind a 30 s pause fails at once (test_deadline).
    async with open_session(router, deadline=None) as session:
        await _429_retry_after_seconds_and_date(session, router, clock)


async def _429_retry_after_seconds_and_date(
    session: AsyncTanxSession, router: respx.Router, clock: FakeClock
) -> None:
    router.get(URL).mock(
        side_effect=[
            httpx.Response(429, json=envelope("", "slow down", "error"), headers={"Retry-After": "120"}),
            httpx.Response(429, content=b"", headers={"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}),
            httpx.Response(429, content=b"{}"),
        ]
    )
    first = await _fail(session)
    assert isinstance(first, RateLimitError)
    assert first.retry_after == 120.0
    assert first.message == "slow down"
    second = await _fail(session)
    assert isinstance(second, RateLimitError)
    assert second.retry_after == 0.0  # a date in the past
    assert second.message == "empty body (HTTP 429)"
    third = await _fail(session)
    assert isinstance(third, RateLimitError)
    assert third.retry_after is None
    # Not retried (max_retries=0), but each 429 paused the session: 120 s capped at 30 s.
    assert clock.sleeps[0] == 30.0


# -- the classifier alone ----------------------------------------------------------------------


def _raw(status: int, content: bytes, headers: dict[str, str] | None = None) -> RawResponse:
    return RawResponse(status, headers or {}, content, method="POST", url=URL)


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequestError),
        (401, AuthenticationError),
        (403, PermissionDeniedError),
        (404, NotFoundError),
        (405, APIStatusError),
        (409, APIStatusError),
        (429, RateLimitError),
        (500, InternalServerError),
        (502, InternalServerError),
        (503, InternalServerError),
        (599, InternalServerError),
        (200, BadRequestError),
        (204, BadRequestError),
        (301, APIStatusError),
        (302, APIStatusError),
        (101, APIStatusError),
    ],
)
def test_status_error_class(status: int, cls: type[APIStatusError]) -> None:
    assert status_error_class(status) is cls
    body = json.dumps(envelope("", "bad", "error")).encode()
    with pytest.raises(APIStatusError) as info:
        decode_envelope(_raw(status, body), method="POST", path="/x")
    assert type(info.value) is cls


def test_decode_success_returns_the_envelope() -> None:
    body = envelope({"id": 1}, "Order is successfully queued for cancellation")
    assert decode_envelope(_raw(200, json.dumps(body).encode()), method="POST", path="/x") == body


@pytest.mark.parametrize(
    "body",
    [
        {"status": "queued", "payload": {}},
        {"status": "fail", "message": "Order not found", "payload": ""},
        {"status": "Error", "message": "x"},
        {"status": 1},
        {"payload": {"id": 1}},
        {},
        {"detail": "Not found."},
    ],
)
def test_a_2xx_is_a_success_only_when_its_status_says_success(body: dict[str, object]) -> None:
    # Every documented answer says "success" or "error"; any other status (or none) is a shape
    # we do not know, never a success (it was taken as one: a cancel answered 200
    # {"status": "fail"} came back queued and ok).
    raw = json.dumps(body).encode()
    with pytest.raises(ResponseValidationError) as info:
        decode_envelope(_raw(200, raw), method="POST", path="/x")
    assert info.value.body == raw
    assert any("$.status" in e for e in info.value.errors)


@pytest.mark.parametrize(
    ("status", "content", "expected"),
    [
        (401, json.dumps(ACCESS_401).encode(), True),
        (401, json.dumps(REFRESH_401).encode(), False),
        (401, json.dumps(NO_CREDENTIALS).encode(), False),
        (401, b"[]", False),
        (401, b"<html></html>", False),
        (401, b"", False),
        (403, json.dumps(ACCESS_401).encode(), False),
        (200, json.dumps(ACCESS_401).encode(), False),
    ],
)
def test_is_access_token_error(status: int, content: bytes, expected: bool) -> None:
    assert is_access_token_error(_raw(status, content)) is expected


def test_error_tree() -> None:
    for cls in (BadRequestError, AuthenticationError, PermissionDeniedError, NotFoundError, RateLimitError):
        assert issubclass(cls, APIStatusError)
    assert issubclass(APIStatusError, APIError)
    assert issubclass(APITimeoutError, APIConnectionError)
    assert issubclass(ResponseValidationError, APIError)
    assert issubclass(APIError, TanxError)
    # Its cause may be a connection error or an error answer: it is neither.
    assert issubclass(CancelOutcomeUnknownError, APIError)
    assert not issubclass(CancelOutcomeUnknownError, APIConnectionError | APIStatusError)


def test_str_of_errors_without_a_request() -> None:
    err = BadRequestError("bad", status_code=400, body=None, response=None)
    assert str(err) == "HTTP 400: bad"
    conn = APITimeoutError("ReadTimeout", maybe_processed=True, method="POST", path="/c/")
    assert str(conn) == "ReadTimeout (POST /c/)"


async def test_a_redirect_is_an_error_not_a_success(session: AsyncTanxSession, router: respx.Router) -> None:
    """We never follow redirects; a 3xx with a success-looking body must not pass as success."""
    route = router.get(f"{BASE}/sapi/v1/orders/5/").mock(
        return_value=httpx.Response(
            301, headers={"Location": "/elsewhere/"}, json={"status": "success", "payload": {}}
        )
    )
    with pytest.raises(APIStatusError) as info:
        await session.orders.get(5)
    assert type(info.value) is APIStatusError
    assert info.value.status_code == 301
    assert route.call_count == 1  # not retried, not followed


def test_the_tree_drawn_in_the_errors_docstring_is_the_real_hierarchy() -> None:
    """The drawing at the top of ``_errors.py`` (and docs/errors.md's copy) cannot drift from the
    classes: each drawn child's first tanx_async base is the drawn parent, and every exported
    error is drawn."""
    import tanx_async
    from tanx_async import _errors

    doc = _errors.__doc__ or ""
    drawn: dict[str, str | None] = {}
    stack: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^[ │├└─]*([A-Z]\w+Error)\b", line)
        if not match or not line.startswith("    "):
            continue
        depth = line.index(match.group(1)) // 4
        while stack and stack[-1][0] >= depth:
            stack.pop()
        drawn[match.group(1)] = stack[-1][1] if stack else None
        stack.append((depth, match.group(1)))
    exported = {n for n in tanx_async.__all__ if n.endswith("Error")}
    assert set(drawn) == exported
    for name, parent in drawn.items():
        cls = getattr(tanx_async, name)
        ours = [b.__name__ for b in cls.__bases__ if b.__module__.startswith("tanx_async")]
        assert ours[:1] == ([parent] if parent else []), (name, ours, parent)
    # The docs site shows the same drawing, line for line.
    drawing = "\n".join(line[4:] for line in doc.splitlines() if line.startswith("    ") and "Error" in line)
    root = Path(__file__).resolve().parents[2]
    for copy in ("docs/errors.md",):
        blocks = re.findall(r"```text\n(.*?)```", (root / copy).read_text(encoding="utf-8"), re.DOTALL)
        assert drawing + "\n" in blocks, f"{copy}: the error tree differs from _errors.py's drawing"
