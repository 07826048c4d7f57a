"""HTTP/1.1 without I/O: what a URL means on the wire, the request's bytes, and the parser of its
answer. Shared by the asyncio connection (``_connection``) and the anyio transport
(``anyio_sender``), which only move bytes: they hand what they receive to ``ResponseParser.feed``
and the end of the stream to ``ResponseParser.feed_eof``.

The parser is llhttp (through httptools, the parser of Node and uvicorn) with the checks it
does not make for a client around it: the status must be 100-599 on HTTP/1.0 or 1.1,
``Transfer-Encoding`` exactly ``chunked``, no ``101``, no control bytes in the reason phrase, no
blank lines before the answer, heads and bodies capped, a read-until-close body ended by the
close (no ``finish()`` in httptools), a HEAD answer ended at its head, ``gzip``/``deflate``
decoded and checked to its end, interim ``1xx`` answers skipped. Anything else malformed is an
error, never a guess. An answer that is not exactly one message is returned with
``keep_alive`` False (its connection must not be reused): a second message shows as a new
``on_message_begin``, and blank lines after the message (which llhttp skips) as more CR/LF bytes
at the end of the stream than the message itself ends with.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Mapping
from urllib.parse import urlsplit

import httptools

from .. import _constants as C
from .._errors import APIConnectionError
from .base import Headers, RawResponse, too_large

__all__ = [
    "Origin",
    "ParseError",
    "ResponseParser",
    "idle_timeout",
    "malformed",
    "request_bytes",
    "request_head",
    "with_body",
]

_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_HEAD_CACHE_SIZE = 64
_LENGTH_FIELD = b"Content-Length: "
#: A head ending in ``Content-Length: `` (``request_head``) completed with a body: head, the
#: body's length, the blank line, the body.
_WITH_BODY = b"%b%d\r\n\r\n%b"
#: What may not appear in a header value: C0 controls but HTAB, and DEL.
_CTL_OUT = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
#: ... and in a URL, not even HTAB.
_CTL_URL = re.compile(r"[\x00-\x1f\x7f]")
#: RFC 9110 token: what a header name may be.
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_SHOW_CTL = {c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F]}
#: Header names as received -> their lower-case text, for the names servers send (a name then
#: costs one look-up instead of a decode and a lower-casing). Bounded: the first 256 kept.
_NAMES: dict[bytes, str] = {}
_NAMES_SIZE = 256
#: Control characters a reason phrase may not hold (HTAB is allowed, as RFC 9112 and h11 say).
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


# --- where a URL goes -------------------------------------------------------------------------


class Origin:
    """What a URL means on the wire: where to connect, the ``Host`` header, the request target."""

    __slots__ = ("host", "host_header", "key", "port", "target", "tls")

    def __init__(self, url: str) -> None:
        if _CTL_URL.search(url):
            # Before urlsplit, which would drop tabs and line breaks without a word.
            raise _bad_url(url.translate(_SHOW_CTL), "a control character (CR, LF, NUL, ...) in it")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise _bad_url(url, f"unsupported scheme {parts.scheme!r}")
        host = parts.hostname
        if not host:
            raise _bad_url(url, "no host")
        try:
            port = parts.port
        except ValueError as exc:
            raise _bad_url(url, str(exc)) from None
        self.tls = scheme == "https"
        default_port = 443 if self.tls else 80
        self.host = host
        self.port = port or default_port
        netloc = parts.netloc.rpartition("@")[2]
        self.host_header = netloc if port not in (None, default_port) else netloc.rsplit(":", 1)[0]
        if ":" in host and port in (None, default_port):
            self.host_header = f"[{host}]"  # an IPv6 literal keeps its brackets
        target = parts.path or "/"
        if parts.query:
            target += "?" + parts.query
        if any(c in target for c in " \r\n\0") or not target.isascii():
            raise _bad_url(url, "the path or query has characters that need percent-encoding")
        self.target = target
        self.key = (scheme, self.host, self.port)


def _bad_url(url: str, why: str) -> APIConnectionError:
    return APIConnectionError(f"invalid URL {url!r}: {why}", maybe_processed=False)


# --- the request ------------------------------------------------------------------------------

#: Methods and header names already checked to be tokens (bounded: at most 256 kept).
_TOKENS: set[str] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def request_bytes(
    method: str, url: str, origin: Origin, headers: Mapping[str, str], content: bytes | None
) -> bytes:
    """The request's bytes: its head (``request_head``) completed with the length and body."""
    head = request_head(method, url, origin, headers)
    if content is not None:
        return _WITH_BODY % (head, len(content), content)
    if method in _BODY_METHODS:
        return head + b"0\r\n\r\n"
    return head[: -len(_LENGTH_FIELD)] + b"\r\n"


def with_body(head: bytes, content: bytes) -> bytes:
    """A head from ``request_head`` completed with ``content``: the request's bytes."""
    return _WITH_BODY % (head, len(content), content)


def request_head(method: str, url: str, origin: Origin, headers: Mapping[str, str]) -> bytes:
    """The request's head through ``Content-Length: `` (its value and the blank line are added
    per request). Built once per method and URL for ``Headers`` (which cannot change) and kept
    on them: a request then costs a look-up, where building the head would cost it several
    percent of its CPU (``benchmarks/RESULTS.md``)."""
    if type(headers) is not Headers:
        return _head(method, origin, headers)
    prepared = headers.prepared
    key = (method, url)
    head = prepared.get(key)
    if head is None:
        if len(prepared) >= _HEAD_CACHE_SIZE:
            prepared.clear()
        head = prepared[key] = _head(method, origin, headers)
    return head


def _head(method: str, origin: Origin, headers: Mapping[str, str]) -> bytes:
    """The head through ``Content-Length: `` (its value and the blank line are added per
    request; a request without a length field drops it again)."""
    # Header injection: names (and the method) must be tokens, values free of control
    # characters but HTAB. The common case costs a set look-up and one isprintable() per
    # value; anything else is checked in full by ``_check_head``.
    plain = method in _TOKENS and _TOKENS.issuperset(headers)
    lines = [method, " ", origin.target, " HTTP/1.1\r\nHost: ", origin.host_header, "\r\n"]
    for name, value in headers.items():
        if not value.isprintable():
            plain = False
        lines += (name, ": ", value, "\r\n")
    if not plain:
        _check_head(method, headers)
    lines.append("Accept-Encoding: gzip, deflate\r\n")
    text = "".join(lines)
    try:
        return text.encode("latin-1") + _LENGTH_FIELD
    except UnicodeEncodeError as exc:
        raise APIConnectionError(
            f"a header is not latin-1 text ({exc.reason}); not sent", maybe_processed=False
        ) from None


def _check_head(method: str, headers: Mapping[str, str]) -> None:
    """Raise unless ``method`` and every header name are tokens and no value holds a control
    character other than HTAB; remember the names that passed."""
    if not _TOKEN.fullmatch(method):
        raise APIConnectionError(
            f"the method {method[:20].translate(_SHOW_CTL)!r} is not a token; not sent", maybe_processed=False
        )
    for name, value in headers.items():
        if not _TOKEN.fullmatch(name) or _CTL_OUT.search(value):
            raise _unsafe_header(headers)
    if len(_TOKENS) < 256:
        _TOKENS.update(headers)


def _unsafe_header(headers: Mapping[str, str]) -> APIConnectionError:
    names = [
        name.translate(_SHOW_CTL)
        for name, value in headers.items()
        if _CTL_OUT.search(name + value) or not _TOKEN.fullmatch(name)
    ]
    # The value is never quoted: it may be a token.
    return APIConnectionError(
        f"header {names[0] if names else '?'!r} has a control character (CR, LF, NUL, ...) in it"
        " or a name that is not a token; not sent",
        maybe_processed=False,
    )


# --- the answer -------------------------------------------------------------------------------


class ParseError(Exception):
    """Why an answer could not be read: ``error`` is the library's error to raise for it."""

    def __init__(self, error: APIConnectionError) -> None:
        super().__init__(str(error))
        self.error = error


def malformed(why: str) -> APIConnectionError:
    return APIConnectionError(f"malformed HTTP response: {why}", maybe_processed=True)


class _Stop(Exception):
    """Raised in a callback to stop llhttp (at a second message)."""


# Framing of the answer in flight; then answered (or none asked for yet), or failed.
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE, _FAILED = range(6)


class ResponseParser:
    """Reads the answers on one connection, one request at a time: ``start`` before each
    request, then ``feed`` every byte received as it arrives and ``feed_eof`` at the end of the
    stream. ``feed`` returns the answer once it is complete (None until then), ``feed_eof`` the
    answer a close ends; both raise ``ParseError`` for anything else (after which nothing more
    may be fed: the connection is to be closed).

    After an answer, ``keep_alive`` says whether the connection may carry another request (the
    server keeps it, and nothing came past the message); ``done`` is True until the next
    ``start``: a byte received then is one nobody asked for, and the connection's framing can
    no longer be trusted (its owner closes it)."""

    __slots__ = (
        "_cap",
        "_complete",
        "_crlf_run",
        "_error",
        "_extra",
        "_head_size",
        "_headers",
        "_method",
        "_mode",
        "_parser",
        "_parts",
        "_size",
        "_status",
        "_url",
        "keep_alive",
        "received",
        "server_idle",
    )

    def __init__(self, cap: int) -> None:
        self._cap = cap
        #: One llhttp parser for the connection: it starts over after each complete message. A
        #: new one after a HEAD answer (llhttp still waits for its body) or anything unexpected.
        self._parser: httptools.HttpResponseParser | None = None
        self._method = ""
        self._url = ""
        #: The answer's framing; ``_DONE`` before the first request and once it is answered.
        self._mode = _DONE
        self._status = 0
        self._headers: dict[str, str] = {}
        self._head_size = 0  # bytes received while the head was incomplete (interim ones too)
        self._complete = False  # the message ended (llhttp said so, or a HEAD answer's head did)
        self._extra = False  # bytes came past the end of the message
        self._crlf_run = 0  # CR/LF bytes at the end of what was received
        self._parts: list[bytes] = []
        self._size = 0
        self._error: ParseError | None = None
        #: The answer so far lets the connection carry another request.
        self.keep_alive = False
        #: A byte of the answer to the current request was received.
        self.received = False
        #: How long the server said it keeps the connection idle (``Keep-Alive: timeout=N``).
        self.server_idle: float | None = None

    @property
    def done(self) -> bool:
        """The answer was returned (or none was asked for yet): a byte received now is one
        nobody asked for."""
        return self._mode == _DONE

    @property
    def reading(self) -> bool:
        """An answer is awaited: started, neither returned nor failed."""
        return self._mode < _DONE

    @property
    def until_close(self) -> bool:
        """The answer in flight is read until the server closes the connection."""
        return self._mode == _UNTIL_CLOSE

    def start(self, method: str, url: str) -> None:
        """Ready for the answer to a new request (``method`` and ``url`` go into the answer)."""
        self.keep_alive = False
        self._method, self._url = method, url
        self.received = False
        if self._parser is None:
            self._parser = httptools.HttpResponseParser(self)
        self._mode = _HEAD
        self._headers = {}
        self._head_size = 0
        self._complete = False
        self._extra = False
        self._crlf_run = 0
        self._parts = []
        self._size = 0
        self._error = None

    def feed(self, data: bytes | memoryview) -> RawResponse | None:
        """Bytes received (never empty, never after ``done``): the answer once it is complete."""
        if not self.received:
            self.received = True
            if data[0] != 72:  # "H": llhttp would skip blank lines before the status line
                raise self._failed(malformed(f"bad status line {bytes(data[:40])!r}"))
        last = data[-1]
        if last == 10 or last == 13:
            run = _crlf_tail(data)
            self._crlf_run = run if run < len(data) else self._crlf_run + run
        else:
            self._crlf_run = 0
        head = self._mode == _HEAD
        parser = self._parser
        assert parser is not None
        try:
            parser.feed_data(data)
        except httptools.HttpParserError as exc:
            if self._error is not None:
                raise self._failed(self._error.error) from None
            if not self._complete:
                raise self._failed(malformed(str(exc) or type(exc).__name__)) from None
            self._extra = True  # bytes past the end of the message (or after "close")
        if (
            head
            and (self._mode == _HEAD or self._head_size + len(data) > C.MAX_HEAD_BYTES)
            and self._head_too_long(len(data))
        ):
            raise self._failed(malformed(f"headers longer than {C.MAX_HEAD_BYTES} bytes"))
        if self._complete:
            return self._finish(close=False)
        return None

    def feed_eof(self, exc: BaseException | None = None) -> RawResponse:
        """The stream ended (``exc``: why, if it broke): the answer it completes (one read until
        close), else ``ParseError``: the answer was cut short, or never came."""
        if self._mode == _UNTIL_CLOSE:
            return self._finish(close=True)
        if self.received:
            why = "the connection closed in the middle of the response"
        else:
            why = "the server closed the connection without answering"
        if exc is not None:
            why += f" ({type(exc).__name__}: {exc})" if str(exc) else f" ({type(exc).__name__})"
        raise self._failed(APIConnectionError(why, maybe_processed=True))

    def _failed(self, error: APIConnectionError) -> ParseError:
        """The answer failed: nothing more is read on this connection (its owner closes it)."""
        self.keep_alive = False
        self._mode = _FAILED
        self._parser = None
        return ParseError(error)

    def _head_too_long(self, size: int) -> bool:
        """Over 64 KiB of head, counting a read of ``size`` bytes that began in the head."""
        if self._mode == _HEAD:  # all of it head, still incomplete (interim heads included)
            self._head_size += size
            return self._head_size > C.MAX_HEAD_BYTES
        if self._head_size + size <= C.MAX_HEAD_BYTES:
            return False
        # The head ended in this long read: count its lines ("name: value\r\n").
        lines = sum(len(name) + len(value) + 4 for name, value in self._headers.items())
        return self._head_size + lines > C.MAX_HEAD_BYTES

    def _finish(self, *, close: bool) -> RawResponse:
        headers = self._headers
        parts = self._parts
        body = parts[0] if len(parts) == 1 else b"".join(parts)
        if self._crlf_run and not close and not self._extra:
            mode = self._mode
            # Blank lines after the message, which llhttp skips: the stream ends with more CR/LF
            # than the message does ("0\r\n\r\n" or trailers for chunked; the head's blank line
            # and the body's own trailing CR/LF otherwise). (A stream that does not end in CR/LF,
            # as a JSON body's does not, has none.)
            ends = 4 if mode == _CHUNKED else _crlf_tail(body) if body[-1:] in (b"\n", b"\r") else 0
            if mode != _CHUNKED and ends == len(body):
                ends += 4  # the body is empty or all CR/LF: the head's blank line too
            self._extra = self._crlf_run > ends
        if close or self._extra:
            # Read until close, or bytes beyond the message: not reusable.
            self.keep_alive = False
        if "content-encoding" in headers:
            try:
                body = _decode(headers, body, self._cap)
            except ParseError as failure:
                raise self._failed(failure.error) from None
        self._mode = _DONE
        return RawResponse(self._status, headers, body, self._method, self._url)

    # llhttp's callbacks (called by httptools; one that raises stops the parser)

    def _reject(self, error: APIConnectionError) -> ParseError:
        self._error = ParseError(error)
        return self._error

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Stop  # a second message: the answer was complete, the connection is not

    def on_status(self, reason: bytes) -> None:
        if _CTL.search(reason):
            raise self._reject(malformed("control character in the reason phrase"))

    def on_header(self, name: bytes, value: bytes) -> None:
        headers = self._headers
        key = _NAMES.get(name)
        if key is None:
            key = name.decode("latin-1").lower()
            if len(_NAMES) < _NAMES_SIZE:
                _NAMES[name] = key
        text = value.decode("utf-8", "surrogateescape")
        if key in headers:
            headers[key] += ", " + text
        else:
            headers[key] = text

    def on_headers_complete(self) -> None:
        parser = self._parser
        assert parser is not None
        status = parser.get_status_code()
        version = parser.get_http_version()
        if version not in ("1.1", "1.0") or not 100 <= status <= 599:
            raise self._reject(malformed(f"bad status line (HTTP/{version} {status:03d})"))
        headers = self._headers
        if status < 200:
            if status == 101:
                raise self._reject(malformed("unexpected 101 Switching Protocols"))
            self._headers = {}  # an interim answer: skipped
            return
        self._status = status
        self.keep_alive = parser.should_keep_alive()
        hint = headers.get("keep-alive")
        if hint is not None:
            self.server_idle = idle_timeout(hint)
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            raise self._reject(malformed(f"unsupported transfer-encoding {coding[:40]!r}"))
        if self._method == "HEAD":
            # llhttp would wait for the body a HEAD answer never has: the message ends here, and
            # this parser is left mid-message (a new one for the next request).
            self._mode, self._complete, self._parser = _LENGTH, True, None
            return
        if coding is not None:
            self._mode = _CHUNKED
            return
        length = headers.get("content-length")
        if length is not None or status in _NO_BODY_STATUS:
            if length is not None and int(length) > self._cap:  # llhttp checked: one number
                raise self._reject(too_large(int(length), self._cap))
            self._mode = _LENGTH
            return
        self._mode = _UNTIL_CLOSE
        self.keep_alive = False

    def on_body(self, body: bytes) -> None:
        if self._complete:  # bytes after a HEAD answer's head
            raise _Stop
        size = self._size + len(body)
        if size > self._cap:
            raise self._reject(too_large(None, self._cap))
        self._size = size
        self._parts.append(body)

    def on_message_complete(self) -> None:
        if self._mode != _HEAD:  # not the end of an interim answer
            self._complete = True


def _crlf_tail(data: bytes | memoryview) -> int:
    """How many CR and LF bytes ``data`` ends with."""
    i = len(data)
    while i and data[i - 1] in (10, 13):
        i -= 1
    return len(data) - i


def idle_timeout(hint: str) -> float | None:
    """``timeout=N`` of a ``Keep-Alive`` header (RFC 2068 19.7.1.1), or None."""
    for part in hint.split(","):
        name, _, value = part.partition("=")
        if name.strip().lower() == "timeout":
            try:
                seconds = float(value.strip().strip('"'))
            except ValueError:
                return None
            return seconds if seconds >= 0 and seconds == seconds else None
    return None


def _decode(headers: dict[str, str], body: bytes, cap: int) -> bytes:
    coding = headers.get("content-encoding")
    if coding is None:
        return body
    coding = coding.strip().lower()
    if coding in ("", "identity"):
        return body
    if coding in ("gzip", "x-gzip"):
        wbits = 16 + zlib.MAX_WBITS
    elif coding == "deflate":
        # "deflate" is zlib-wrapped by the RFC and raw by some servers: accept both.
        wbits = zlib.MAX_WBITS if body[:1] and (body[0] & 0x0F) == 8 else -zlib.MAX_WBITS
    else:
        raise ParseError(malformed(f"unsupported content-encoding {coding!r}"))
    out = _inflate(body, wbits, coding, cap) if body else body  # HEAD, 204, 304: nothing to decode
    del headers["content-encoding"]
    headers.pop("content-length", None)
    return out


def _inflate(data: bytes, wbits: int, coding: str, cap: int) -> bytes:
    """The whole decoded body: every gzip member (RFC 1952 allows several), each checked to
    its end (a body cut short is an error, never a shorter answer), at most ``cap`` bytes."""
    parts: list[bytes] = []
    size = 0
    while True:
        decoder = zlib.decompressobj(wbits)
        try:
            part = decoder.decompress(data, cap + 1 - size)
        except zlib.error as exc:
            raise ParseError(malformed(f"cannot decode {coding} body: {exc}")) from None
        size += len(part)
        if size > cap or decoder.unconsumed_tail:
            raise ParseError(too_large(None, cap))
        parts.append(part)
        if not decoder.eof:
            raise ParseError(malformed(f"the {coding} body is cut short"))
        data = decoder.unused_data
        if not data or wbits != 16 + zlib.MAX_WBITS:
            break
    if data:
        raise ParseError(malformed(f"bytes after the end of the {coding} body"))
    return parts[0] if len(parts) == 1 else b"".join(parts)
