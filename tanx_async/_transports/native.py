"""``Http11Sender``: a small HTTP/1.1 keep-alive client on ``asyncio.BufferedProtocol``; the default
transport on asyncio.

Why our own: a cancel burst is a few hundred small request/response pairs on warm keep-alive
connections to one host, and there the general-purpose clients spend most of the CPU in their
own layers (``benchmarks/RESULTS.md`` compares this client with aiohttp's and httpx's). This client
does exactly what the exchange needs and nothing else:

- one request per connection at a time (no pipelining), a LIFO pool of idle connections per
  origin, bounded by ``max_connections`` (waiters queue with the pool timeout);
- answers parsed by llhttp (httptools, the parser of Node and uvicorn) with our own checks
  around it (``_Connection``): ``Content-Length``, ``chunked`` and read-until-close bodies,
  ``gzip``/``deflate`` answers, interim ``1xx`` answers skipped; anything else malformed is an
  error, never a guess, and an answer that is not exactly one message never leaves its
  connection in the pool;
- TLS through the standard ``ssl`` module (certifi's CA bundle, or ``SSL_CERT_FILE`` /
  ``SSL_CERT_DIR`` with ``trust_env``, as httpx does);
- no redirects, cookies or HTTP/2: the session never wanted them; no proxies either (where the
  environment names one for the exchange, ``make_sender`` hands the session to the httpx
  transport instead, and says so in the log).

Timeouts: ``connect`` bounds TCP + TLS set-up, ``pool`` the wait for a free connection, and
``read`` the whole exchange from the moment the request is written (one timer per request; the
request is written in one buffered call, so ``write`` needs no timer of its own).

``maybe_processed`` is honest: only failures before a byte was written say False. A connection
that dies after the request was written (reset, EOF, timeout, a malformed answer, cancellation)
is closed, never reused, and says True.
"""

from __future__ import annotations

import asyncio
import re
import socket
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import httptools

from .. import _constants as C
from .._config import ssl_context as make_ssl_context
from .._errors import APIConnectionError, APITimeoutError
from .._log import logger
from .._pace import Pacer
from .base import RawResponse, pool_closed, pool_sizes, too_large

if TYPE_CHECKING:
    from .._httpx import httpx

__all__ = ["Channel", "Http11Sender"]

_NO_BODY_STATUS = frozenset({204, 304})
_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_URL_CACHE_SIZE = 256
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


class _Origin:
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


class _Failure(Exception):
    """Why a response could not be read (turned into the library's error by the sender)."""

    def __init__(self, error: APIConnectionError) -> None:
        super().__init__(str(error))
        self.error = error


def _not_sent() -> APIConnectionError:
    return APIConnectionError("the connection closed before the request was sent", maybe_processed=False)


def _malformed(why: str) -> APIConnectionError:
    return APIConnectionError(f"malformed HTTP response: {why}", maybe_processed=True)


# Framing of the answer in flight.
_HEAD, _LENGTH, _CHUNKED, _UNTIL_CLOSE, _DONE = range(5)
#: Control characters a reason phrase may not hold (HTAB is allowed, as RFC 9112 and h11 say).
_CTL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")


class _Connection(asyncio.BufferedProtocol):
    """One keep-alive connection; reads the answer to the one request in flight.

    llhttp (through httptools) parses every byte, as it arrives; around it we keep what it does
    not do for a client: the status must be 100-599 on HTTP/1.0 or 1.1, ``Transfer-Encoding``
    exactly ``chunked``, no ``101``, no control bytes in the reason phrase, no blank lines
    before the answer, heads and bodies capped, a read-until-close body ended by the close (no
    ``finish()`` in httptools), a HEAD answer ended at its head, and the content coding checked
    to its end. An answer that is not exactly one well-formed message is an error or, when it
    was complete, returned with its connection closed, never pooled: a second message shows as
    a new ``on_message_begin``, and blank lines after the message (which llhttp skips) as more
    CR/LF bytes at the end of the stream than the message itself ends with.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, cap: int, buffer: memoryview | None = None) -> None:
        self._loop = loop
        self._cap = cap
        #: Where the loop reads into (``get_buffer``): the pool's one buffer, shared by its
        #: connections (each read is handed to ``data_received`` before the next one starts;
        #: llhttp hands out copies). No bytes object is allocated per read.
        self._buffer = buffer
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = 0.0
        self.opened_at = time.monotonic()
        #: Spreads the answers of a wave over loop iterations (``_pace``); set by the pool.
        self.pacer: Pacer | None = None
        #: The pool's one timer for every read timeout (None: a timer per request); set by the pool.
        self.deadlines: _Deadlines | None = None
        self.deadline = 0.0  # when the answer in flight times out (loop time)
        self.read_timeout = 0.0
        #: How long the server said it keeps this connection idle (``Keep-Alive: timeout=N``).
        self.server_idle: float | None = None
        self.keep_alive = False
        self._waiter: _Waiter | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._method = ""
        self._url = ""
        self._received = False
        #: One parser for the connection: llhttp starts over after each complete message. A new
        #: one after a HEAD answer (llhttp still waits for its body) or anything unexpected.
        self._parser: httptools.HttpResponseParser | None = None
        # Parse state of the answer in flight.
        self._mode = _HEAD
        self._status = 0
        self._headers: dict[str, str] = {}
        self._head_size = 0  # bytes received while the head was incomplete (interim ones too)
        self._complete = False  # the message ended (llhttp said so, or a HEAD answer's head did)
        self._extra = False  # bytes came past the end of the message
        self._crlf_run = 0  # CR/LF bytes at the end of what was received
        self._parts: list[bytes] = []
        self._size = 0
        self._error: _Failure | None = None

    # asyncio.BufferedProtocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._buffer is None:
            self._buffer = memoryview(bytearray(C.READ_BUFFER_SIZE))
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        assert self._buffer is not None
        self.data_received(self._buffer[:nbytes])

    def data_received(self, data: bytes | memoryview) -> None:
        """``nbytes`` read into the buffer (or bytes from ``anyio_sender``): parsed at once."""
        waiter = self._waiter
        # Answered already (``_DONE``: a paced answer may be held, not yet handed over), failed
        # or cancelled.
        if waiter is None or self._mode == _DONE or waiter.done():
            # Bytes nobody asked for (a server's "408 idle" notice, junk after a body): this
            # connection's framing can no longer be trusted.
            self.close()
            return
        if not self._received:
            self._received = True
            if data[0] != 72:  # "H": llhttp would skip blank lines before the status line
                self._fail(_malformed(f"bad status line {bytes(data[:40])!r}"))
                return
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
                self._fail(self._error.error)
                return
            if not self._complete:
                self._fail(_malformed(str(exc) or type(exc).__name__))
                return
            self._extra = True  # bytes past the end of the message (or after "close")
        if (
            head
            and (self._mode == _HEAD or self._head_size + len(data) > C.MAX_HEAD_BYTES)
            and self._head_too_long(len(data))
        ):
            self._fail(_malformed(f"headers longer than {C.MAX_HEAD_BYTES} bytes"))
        elif self._complete:
            self._finish(close=False)

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

    def eof_received(self) -> bool:
        self.closed = True  # half-closed by the server: never reused
        if self._mode == _UNTIL_CLOSE and self._waiter is not None and not self._waiter.done():
            self._finish(close=True)
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is None or self._mode == _DONE or waiter.done():
            return  # no request, or its answer is complete (perhaps held by the pacer)
        if self._mode == _UNTIL_CLOSE:
            self._finish(close=True)
            return
        if self._received:
            why = "the connection closed in the middle of the response"
        else:
            why = "the server closed the connection without answering"
        if exc is not None:
            why += f" ({type(exc).__name__}: {exc})" if str(exc) else f" ({type(exc).__name__})"
        self._fail(APIConnectionError(why, maybe_processed=True))

    # the request

    async def request(self, payload: bytes, method: str, url: str, read_timeout: float | None) -> RawResponse:
        """Write the request and wait for its answer (``begin``, then ``end`` whatever happens)."""
        try:
            return await self.begin(payload, method, url, read_timeout)
        finally:
            self.end()

    def begin(
        self, payload: bytes, method: str, url: str, read_timeout: float | None
    ) -> asyncio.Future[RawResponse]:
        """Write the request and return the future of its answer; ``end`` must follow, however
        the wait ends (the pool awaits the future itself: no coroutine per request). The pool
        hands over a connection it has just checked (``is_closing``); one lost since says so
        here (asyncio would drop the bytes silently)."""
        waiter: asyncio.Future[RawResponse] = self._loop.create_future()
        self.start(waiter, payload, method, url, read_timeout)
        return waiter

    def start(
        self, waiter: _Waiter, payload: bytes, method: str, url: str, read_timeout: float | None
    ) -> None:
        """Write the request; its answer goes to ``waiter`` (a future, or a ``Channel``)."""
        transport = self.transport
        if transport is None or self.closed:
            self.keep_alive = False
            raise _not_sent()
        loop = self._loop
        self._reset(method, url)
        self._waiter = waiter
        # The read timeout is armed first and the write comes last: whatever raises here, no
        # byte of the request was written (asyncio's ``write`` refuses before sending), so a
        # caller may take the request as not sent.
        if read_timeout is not None:
            deadlines = self.deadlines
            if deadlines is not None:
                deadlines.add(self, loop.time() + read_timeout, read_timeout)
            else:
                self._timer = loop.call_at(loop.time() + read_timeout, self._on_timeout, read_timeout)
        transport.write(payload)

    def end(self) -> None:
        """The request is over (answered, failed, cancelled, or ``begin`` refused it): its read
        timeout is dropped, and the connection is closed unless its answer came whole and the
        server keeps it open."""
        waiter, self._waiter = self._waiter, None
        answered = self._mode == _DONE  # ``_finish`` dropped the read timeout already
        if not answered and self.deadlines is not None:
            self.deadlines.discard(self)
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if waiter is None or not answered or waiter.cancelled() or not self.keep_alive:
            # Cancelled mid-flight, failed, or the server will not keep it: never reused.
            self.keep_alive = False
            self.close()
            if waiter is not None and waiter.done() and not waiter.cancelled():
                waiter.exception()  # failed, then we were cancelled: not "never retrieved"

    def _reset(self, method: str, url: str) -> None:
        """Ready the parser for the answer to a new request (also used by ``anyio_sender``)."""
        self.keep_alive = False
        self._method, self._url = method, url
        self._received = False
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

    def _on_timeout(self, seconds: float) -> None:
        self._timer = None
        self._fail(
            APITimeoutError(f"no complete response within {seconds:g} s (read timeout)", maybe_processed=True)
        )

    def _fail(self, error: APIConnectionError) -> None:
        """Fail the request in flight, unless its answer is complete (``_DONE``: handed over or
        held by the pacer, it stands), and close the connection."""
        waiter = self._waiter
        self.keep_alive = False
        if waiter is not None and self._mode != _DONE and not waiter.done():
            waiter.set_exception(error)
        self.close()

    def is_closing(self) -> bool:
        """Closed by us, by the server (EOF, reset) or not connected: never to be written to."""
        return self.closed or self.transport is None or self.transport.is_closing()

    def close(self) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()

    # llhttp's callbacks (called by httptools; one that raises stops the parser)

    def _reject(self, error: APIConnectionError) -> _Failure:
        self._error = _Failure(error)
        return self._error

    def on_message_begin(self) -> None:
        if self._complete:
            raise _Stop  # a second message: the answer was complete, the connection is not

    def on_status(self, reason: bytes) -> None:
        if _CTL.search(reason):
            raise self._reject(_malformed("control character in the reason phrase"))

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
            raise self._reject(_malformed(f"bad status line (HTTP/{version} {status:03d})"))
        headers = self._headers
        if status < 200:
            if status == 101:
                raise self._reject(_malformed("unexpected 101 Switching Protocols"))
            self._headers = {}  # an interim answer: skipped
            return
        self._status = status
        self.keep_alive = parser.should_keep_alive()
        hint = headers.get("keep-alive")
        if hint is not None:
            self.server_idle = _idle_timeout(hint)
        coding = headers.get("transfer-encoding")
        if coding is not None and coding.strip().lower() != "chunked":
            raise self._reject(_malformed(f"unsupported transfer-encoding {coding[:40]!r}"))
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

    def _finish(self, *, close: bool) -> None:
        waiter = self._waiter
        assert waiter is not None
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
            except _Failure as failure:
                self._fail(failure.error)
                return
        # Answered: from here on nothing fails it, and no read timeout runs, however long the
        # pacer holds the answer before handing it over.
        self._mode = _DONE
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.deadlines is not None:
            self.deadlines.discard(self)
        answer = RawResponse(self._status, headers, body, self._method, self._url)
        if self.pacer is None:
            waiter.set_result(answer)
        else:
            self.pacer.deliver(waiter, answer)


class Channel:
    """A connection held by one caller for a run of requests, each answered in a callback
    (``Http11Sender.channel``): no task waits. It stands in for the answer's future on its
    connection (``done``, ``cancelled``, ``exception``, ``set_result``, ``set_exception``: what
    the connection and the pacer ask of one) and calls ``on_answer`` with the answer or the
    connection error. Between requests it keeps its connection (no trip through the pool);
    ``release`` gives it back, ``abort`` gives up on a request in flight."""

    __slots__ = ("_conn", "_error", "_key", "_on_answer", "_origin", "_sender", "_state")

    def __init__(
        self,
        sender: Http11Sender,
        origin: _Origin,
        on_answer: Callable[[RawResponse | APIConnectionError], None],
    ) -> None:
        self._sender = sender
        self._origin = origin
        self._key = origin.key
        self._on_answer = on_answer
        self._conn: _Connection | None = None
        self._error: APIConnectionError | None = None
        self._state = 1  # 0 a request in flight, 1 none, 2 aborted

    def head(self, method: str, url: str, headers: dict[str, str]) -> bytes:
        """The head of requests with these ``headers`` (for ``send``): built once, and checked
        then (a header that cannot be sent raises here, before anything is written)."""
        return request_head(self._sender._heads, method, url, self._origin, headers)

    def send(self, method: str, url: str, head: bytes, content: bytes, timeout: httpx.Timeout) -> bool:
        """Write the request (``head`` from ``head()``, then ``content``) now, on the held
        connection or a warm idle one; False, with nothing written, when there is none (or the
        pool is closed)."""
        sender = self._sender
        payload = _WITH_BODY % (head, len(content), content)
        conn = self._conn
        if conn is None or conn.is_closing():
            if conn is not None:
                self.release()
            conn = sender._check_out_idle(self._key)
            if conn is None:
                return False
            self._conn = conn
        sender._connect_timeout = timeout
        self._state, self._error = 0, None
        try:
            conn.start(self, payload, method, url, timeout.read)
        except APIConnectionError:  # refused before writing (the connection was lost)
            self._state = 1
            self.release()
            return False
        except BaseException:  # nothing written (``start`` writes last): no request in flight
            self._state = 1
            conn.end()  # (drops the read timeout armed, closes the connection)
            self.release()
            raise
        return True

    def release(self) -> None:
        """Give the connection back to the pool (between requests), or close it if it may not
        be reused."""
        conn, self._conn = self._conn, None
        if conn is not None:
            self._sender._give_back(self._key, conn)

    def abort(self) -> None:
        """Give up on the request in flight: the connection is closed (its request may have
        been processed) and ``on_answer`` is not called for it."""
        if self._state == 0:
            self._state = 2
            conn = self._conn
            if conn is not None:
                conn.end()  # (closes it: not answered, or "cancelled")
        self.release()

    def close(self) -> None:
        """Done for good: ``abort``, and let go of ``on_answer`` (a bound method of the caller,
        which holds this channel: kept, the two would wait for the cyclic garbage collector)."""
        self.abort()
        self._on_answer = _no_answer

    def done(self) -> bool:
        return self._state != 0

    def cancelled(self) -> bool:
        return self._state == 2

    def exception(self) -> APIConnectionError | None:
        return self._error

    def set_result(self, answer: RawResponse) -> None:
        if self._state == 0:
            self._state = 1
            conn = self._conn
            assert conn is not None
            # ``conn.end()`` for an answer (``_finish`` dropped its read timeout), inlined: the
            # connection is kept open if the server keeps it, for the next request.
            conn._waiter = None
            if not conn.keep_alive:
                conn.close()
            if conn.closed:
                self.release()
            self._on_answer(answer)

    def set_exception(self, error: APIConnectionError) -> None:
        if self._state == 0:
            self._state = 1
            self._error = error
            conn = self._conn
            assert conn is not None
            conn.end()  # (closes it)
            self.release()
            self._on_answer(error)


def _no_answer(result: RawResponse | APIConnectionError) -> None:
    """A closed ``Channel``'s callback (never called: a closed channel has no request)."""


#: What waits for a connection's answer: a task's future, or a ``Channel``.
_Waiter = asyncio.Future[RawResponse] | Channel


class _Stop(Exception):
    """Raised in a callback to stop llhttp (at a second message)."""


def idle_life(expiry: float, server_idle: float | None) -> float:
    """How long a connection may sit idle and still be reused: our ``expiry``, and a margin
    under what the server said it keeps idle connections (``Keep-Alive: timeout=N``)."""
    if server_idle is None:
        return expiry
    return min(expiry, server_idle - C.SERVER_IDLE_MARGIN)


def _crlf_tail(data: bytes | memoryview) -> int:
    """How many CR and LF bytes ``data`` ends with."""
    i = len(data)
    while i and data[i - 1] in (10, 13):
        i -= 1
    return len(data) - i


class _Deadlines:
    """The read timeouts of a pool's requests in flight, kept by one timer instead of one timer
    per request (a timer costs a heap push, a cancel and a heap pop per request).

    The timer is armed for the earliest deadline; when it fires it fails the requests whose
    deadline passed and re-arms for the earliest one left, so every timeout fires on time."""

    __slots__ = ("_at", "_conns", "_handle", "_loop", "discard")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._conns: set[_Connection] = set()
        self._handle: asyncio.TimerHandle | None = None
        self._at = float("inf")
        #: Forget a connection's deadline (answered or given up): the set's own method, called
        #: once per request (the timer re-arms itself from what is left when it fires).
        self.discard: Callable[[_Connection], None] = self._conns.discard

    def add(self, conn: _Connection, deadline: float, seconds: float) -> None:
        conn.deadline, conn.read_timeout = deadline, seconds
        self._conns.add(conn)
        if deadline < self._at:
            self._arm(deadline)

    def _arm(self, at: float) -> None:
        # The new timer first: if scheduling it raised, the old one would still run (and
        # re-arm from what is left), never a cancelled handle with no timer behind it.
        handle = self._loop.call_at(at, self._fire)
        if self._handle is not None:
            self._handle.cancel()
        self._handle, self._at = handle, at

    def _fire(self) -> None:
        self._handle, self._at = None, float("inf")
        now = self._loop.time()
        due = [conn for conn in self._conns if conn.deadline <= now]
        for conn in due:
            self._conns.discard(conn)
            conn._on_timeout(conn.read_timeout)
        if self._conns:
            self._arm(min(conn.deadline for conn in self._conns))

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle, self._at = None, float("inf")


def _pool_timeout(waiter: asyncio.Future[_Connection | None], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(
            APITimeoutError(f"no free connection within {seconds:g} s (pool timeout)", maybe_processed=False)
        )


def _idle_timeout(hint: str) -> float | None:
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
        raise _Failure(_malformed(f"unsupported content-encoding {coding!r}"))
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
            raise _Failure(_malformed(f"cannot decode {coding} body: {exc}")) from None
        size += len(part)
        if size > cap or decoder.unconsumed_tail:
            raise _Failure(too_large(None, cap))
        parts.append(part)
        if not decoder.eof:
            raise _Failure(_malformed(f"the {coding} body is cut short"))
        data = decoder.unused_data
        if not data or wbits != 16 + zlib.MAX_WBITS:
            break
    if data:
        raise _Failure(_malformed(f"bytes after the end of the {coding} body"))
    return parts[0] if len(parts) == 1 else b"".join(parts)


#: Methods and header names already checked to be tokens (bounded: at most 256 kept).
_TOKENS: set[str] = {"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"}


def _check_head(method: str, headers: dict[str, str]) -> None:
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


def _unsafe_header(headers: dict[str, str]) -> APIConnectionError:
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


#: A request head cache: (method, URL, id(headers)) -> (the headers dict, its head bytes).
Heads = dict[tuple[str, str, int], tuple[dict[str, str], bytes]]


def request_bytes(
    heads: Heads, method: str, url: str, origin: _Origin, headers: dict[str, str], content: bytes | None
) -> bytes:
    """The request's bytes. The head up to ``Content-Length`` is built once per method, URL and
    headers object and kept in ``heads`` (the pipeline shares one headers dict per token and never
    changes it; the entry holds the dict, so its identity cannot be reused): a cancel then costs
    one look-up and one formatting of the length and body."""
    head = request_head(heads, method, url, origin, headers)
    if content is not None:
        return _WITH_BODY % (head, len(content), content)
    if method in _BODY_METHODS:
        return head + b"0\r\n\r\n"
    return head[: -len(_LENGTH_FIELD)] + b"\r\n"


def request_head(heads: Heads, method: str, url: str, origin: _Origin, headers: dict[str, str]) -> bytes:
    """The request's head through ``Content-Length: `` (see ``request_bytes``), from ``heads``."""
    key = (method, url, id(headers))
    cached = heads.get(key)
    if cached is None or cached[0] is not headers:
        if len(heads) >= _HEAD_CACHE_SIZE:
            heads.clear()
        cached = heads[key] = (headers, _head(method, origin, headers))
    return cached[1]


def _head(method: str, origin: _Origin, headers: dict[str, str]) -> bytes:
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


class Http11Sender:
    """The pool: idle connections per origin (LIFO), at most ``max_connections`` open."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: bool | ssl.SSLContext,
        max_response_bytes: int,
        trust_env: bool = True,
        keep_warm: bool = False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._cap = max_response_bytes
        self._verify = verify
        self._trust_env = trust_env
        self._ssl: ssl.SSLContext | None = None
        self._max, self._max_idle, self._expiry = pool_sizes(limits)
        self._idle: dict[tuple[str, str, int], list[_Connection]] = {}
        self._open = 0  # connections opening, in use or idle
        self._in_use = 0
        #: Requests queued for a connection, oldest first, with the origin each wants.
        self._waiters: deque[tuple[asyncio.Future[_Connection | None], tuple[str, str, int]]] = deque()
        self._origins: dict[str, _Origin] = {}
        #: Request heads by (method, URL, id(headers)), with the headers dict they were built from.
        self._heads: Heads = {}
        self._closed = False
        self._busy: set[_Connection] = set()
        #: Per origin: the ``_Origin`` (to reconnect it) and the server's last ``Keep-Alive`` hint.
        self._known: dict[tuple[str, str, int], _Origin] = {}
        self._server_idle: dict[tuple[str, str, int], float] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._keep_warm = keep_warm
        self._pacer = Pacer(self._loop, C.ANSWERS_PER_TURN)
        #: The one buffer every connection of the pool reads into (see ``_Connection``).
        self._read_buffer = memoryview(bytearray(C.READ_BUFFER_SIZE))
        self._deadlines = _Deadlines(self._loop)
        #: The timeouts of the last request or warm-up: keep-warm connects within them.
        self._connect_timeout: httpx.Timeout | None = None

    # public (the Sender protocol)

    async def send(
        self,
        method: str,
        url: str,
        headers: dict[str, str],
        content: bytes | None,
        timeout: httpx.Timeout,
    ) -> RawResponse:
        if self._closed:
            raise pool_closed()
        origin = self._origins.get(url) or self._origin(url)
        payload = request_bytes(self._heads, method, url, origin, headers, content)
        self._connect_timeout = timeout
        conn = self._pop_idle(origin.key)
        if conn is not None:  # the usual case: a warm connection, no coroutine to wait on
            self._in_use += 1
        else:
            conn = await self._acquire(origin, timeout)
            if self.closed:  # closed while we queued or connected: nothing sent
                self._release(origin.key, conn)
                raise pool_closed()
            if conn.is_closing():  # lost while this task waited to run again
                conn.keep_alive = False
                self._release(origin.key, conn)
                raise _not_sent()
        self._busy.add(conn)
        try:
            return await conn.begin(payload, method, url, timeout.read)
        finally:
            conn.end()
            self._give_back(origin.key, conn)

    def channel(self, url: str, on_answer: Callable[[RawResponse | APIConnectionError], None]) -> Channel:
        """A ``Channel`` to ``url``'s origin: requests written at once on a warm connection it
        holds, each answer handed to ``on_answer`` from the transport's callbacks (through the
        pacer, as a task's answer would be). It holds no connection until its first ``send``."""
        return Channel(self, self._origins.get(url) or self._origin(url), on_answer)

    @property
    def closed(self) -> bool:
        return self._closed

    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (a leak shows as a count that stays up)."""
        return self._in_use

    async def aclose(self) -> None:
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn._fail(
                APIConnectionError("the connection pool was closed during the request", maybe_processed=True)
            )
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(pool_closed())
        self._deadlines.cancel()
        # Let the transports run their close callbacks before the loop may go away.
        await asyncio.sleep(0)

    async def warm_up(self, url: str, connections: int, timeout: httpx.Timeout) -> int:
        """Open connections to ``url``'s origin ahead of need until ``connections`` are idle and
        ready (TCP connected, TLS handshake done and the certificate verified), within
        ``max_connections`` and ``max_keepalive_connections``. Sends no request. Returns how
        many idle connections are ready now; raises the connect error when none could be opened
        and none were ready."""
        if self._closed:
            raise pool_closed()
        origin = self._origin(url)
        key = origin.key
        self._connect_timeout = timeout
        ready = self._ready_count(key)
        want = min(connections, self._max_idle if self._max_idle is not None else connections) - ready
        room = want if self._max is None else min(want, self._max - self._open)
        if room <= 0:
            return ready
        self._open += room  # reserved now: requests arriving meanwhile see the slots taken
        results = await asyncio.gather(*(self._open_ahead(origin, timeout) for _ in range(room)))
        ready = self._ready_count(key)
        errors = [r for r in results if r is not None]
        if errors and ready == 0:
            raise errors[0]
        if errors:
            logger.info("warm_up: %d of %d connections failed to open (%s)", len(errors), room, errors[0])
        return ready

    def _origin(self, url: str) -> _Origin:
        origin = self._origins.get(url)
        if origin is None:
            origin = _Origin(url)
            if len(self._origins) >= _URL_CACHE_SIZE:
                self._origins.clear()
            self._origins[url] = origin
            self._known.setdefault(origin.key, origin)
        return origin

    def _ready_count(self, key: tuple[str, str, int]) -> int:
        now = time.monotonic()
        return sum(
            1
            for conn in self._idle.get(key, ())
            if not conn.is_closing() and now - conn.idle_since < self._life(conn)
        )

    def _life(self, conn: _Connection) -> float:
        """How long ``conn`` may sit idle and still be reused (``idle_life``)."""
        return idle_life(self._expiry, conn.server_idle)

    async def _open_ahead(self, origin: _Origin, timeout: httpx.Timeout) -> APIConnectionError | None:
        """Fill a slot already counted in ``_open`` with a new idle connection (or hand it to a
        waiting request). Never raises a connect error: returns it (and frees the slot)."""
        try:
            conn = await self._connect(origin, timeout)
        except APIConnectionError as exc:
            self._free_slot()
            return exc
        except BaseException:
            self._free_slot()
            raise
        if self._closed:
            self._discard(conn)
            return pool_closed()
        conn.keep_alive = True  # fresh, nothing asked of it yet
        conn.server_idle = self._server_idle.get(origin.key)
        conn.opened_at = time.monotonic()
        self._in_use += 1
        self._release(origin.key, conn)
        return None

    # keep-warm: replace idle connections before they lapse, without sending anything

    def _start_keeper(self) -> None:
        if self._keep_warm and self._keeper is None and not self._closed:
            self._keeper = self._loop.create_task(self._keep_warm_loop())

    async def _keep_warm_loop(self) -> None:
        """Every tick (at most ``KEEP_WARM_POLL`` apart, sooner when a connection is due):
        idle connections that will lapse within the lead time (our expiry, the server's
        ``Keep-Alive: timeout``) or that the server closed are replaced by new ones."""
        while not self._closed:
            await asyncio.sleep(self._next_tick())
            stale = self._take_stale()
            if stale and self._connect_timeout is not None:
                timeout = self._connect_timeout
                await asyncio.gather(*(self._open_ahead(self._known[key], timeout) for key in stale))

    def _lead(self, life: float) -> float:
        return min(C.KEEP_WARM_LEAD, life / 2)

    def _next_tick(self) -> float:
        now = time.monotonic()
        tick = C.KEEP_WARM_POLL
        for idle in self._idle.values():
            for conn in idle:
                life = self._life(conn)
                tick = min(tick, conn.idle_since + life - self._lead(life) - now)
        return max(tick, C.KEEP_WARM_MIN_TICK)

    def _take_stale(self) -> list[tuple[str, str, int]]:
        """Close the idle connections due for replacement (their slots stay reserved) and
        return the origin of each one to reopen. A connection the server closed within
        ``KEEP_WARM_MIN_LIFE`` of opening, or whose life is shorter than that, is let go:
        reconnecting it would only churn."""
        now = time.monotonic()
        stale: list[tuple[str, str, int]] = []
        for key, idle in self._idle.items():
            if key not in self._known:
                continue
            keep: list[_Connection] = []
            for conn in idle:
                life = self._life(conn)
                closed = conn.is_closing()
                if not closed and now - conn.idle_since < life - self._lead(life):
                    keep.append(conn)
                elif life < C.KEEP_WARM_MIN_LIFE or (closed and now - conn.opened_at < C.KEEP_WARM_MIN_LIFE):
                    self._discard(conn)
                else:
                    conn.close()
                    stale.append(key)
            idle[:] = keep
        return stale

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``https`` origins (built on first use: it loads the CA bundle)."""
        if self._ssl is None:
            self._ssl = make_ssl_context(self._verify, trust_env=self._trust_env)
        return self._ssl

    # internals

    async def _acquire(self, origin: _Origin, timeout: httpx.Timeout) -> _Connection:
        """A live idle connection, else a new one within ``max_connections``, else a place in
        the queue (first come, first served: a freed connection or slot is handed to the
        longest waiter, never left for a newcomer to take)."""
        conn = self._pop_idle(origin.key)
        if conn is not None:
            self._in_use += 1
            return conn
        if self._max is None or self._open < self._max:
            self._open += 1
        elif self._reuse_idle_slot():
            pass  # the slot of an idle connection to another origin, closed for us
        else:
            got = await self._wait_for_room(origin.key, timeout)
            if got is not None:
                return got  # handed over, already counted in use
            # else: a slot was reserved for us (counted in _open)
        self._in_use += 1
        try:
            return await self._connect(origin, timeout)
        except BaseException:
            self._in_use -= 1
            self._free_slot()
            raise

    def _pop_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.is_closing() or now - conn.idle_since > self._life(conn):
                self._discard(conn)
                continue
            return conn
        return None

    async def _wait_for_room(self, key: tuple[str, str, int], timeout: httpx.Timeout) -> _Connection | None:
        """Queue for a connection of ``key`` (returned, counted in use) or a reserved slot (None).

        The pool timeout is a timer that fails the future, not ``asyncio.wait_for``: on Python
        <= 3.11 that returns a result that arrived together with a cancellation, swallowing
        the cancellation.
        """
        waiter: asyncio.Future[_Connection | None] = self._loop.create_future()
        entry = (waiter, key)
        self._waiters.append(entry)
        timer = None
        if timeout.pool is not None:
            timer = self._loop.call_later(timeout.pool, _pool_timeout, waiter, timeout.pool)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot, then cancelled: pass it on, never lose it.
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(key, handed)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _reuse_idle_slot(self) -> bool:
        """At the limit: close one idle connection (of another origin) and take its slot."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return True
        return False

    async def _connect(self, origin: _Origin, timeout: httpx.Timeout) -> _Connection:
        from anyio import fail_after  # imported here, as in _transport (only new connections)

        loop = self._loop
        context = None
        if origin.tls:
            context = self.ssl_context()
        conn = _Connection(loop, self._cap, self._read_buffer)
        conn.pacer = self._pacer
        conn.deadlines = self._deadlines
        try:
            # anyio's deadline, not ``asyncio.wait_for`` (which, on Python <= 3.11, can drop a
            # cancellation that arrives as the connection completes).
            with fail_after(timeout.connect):
                await self._dial(origin, conn, context)
        except TimeoutError:  # our deadline, or the kernel's ETIMEDOUT
            conn.close()
            raise APITimeoutError(
                f"could not connect to {origin.host}:{origin.port} within {timeout.connect:g} s",
                maybe_processed=False,
            ) from None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, DNS, TLS verification
            conn.close()
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise APIConnectionError(
                f"could not connect to {origin.host}:{origin.port}: {text}", maybe_processed=False
            ) from exc
        except BaseException:
            # Cancelled: ``connection_made`` may already have handed us the transport.
            conn.close()
            raise
        return conn

    async def _dial(self, origin: _Origin, conn: _Connection, context: ssl.SSLContext | None) -> None:
        """Resolve, connect (happy eyeballs, RFC 8305: a dead IPv6 route must not eat the whole
        connect timeout) and wrap the socket in a transport whose protocol is ``conn``.

        ``aiohappyeyeballs`` (aio-libs) rather than ``create_connection(happy_eyeballs_delay=)``:
        the standard library's race leaks a socket when cancelled mid-connect (3.11), and
        uvloop's ``create_connection`` does not take the option at all.
        """
        import aiohappyeyeballs

        loop = self._loop
        infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        if not infos:  # pragma: no cover - getaddrinfo raises rather than answer nothing
            raise OSError(f"no address for {origin.host}")
        sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=C.HAPPY_EYEBALLS_DELAY)
        try:
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        except BaseException:
            if conn.transport is None:
                sock.close()  # never handed to a transport (which would close it itself)
            raise

    def _check_out_idle(self, key: tuple[str, str, int]) -> _Connection | None:
        """A warm idle connection of ``key``, checked out for requests (``_give_back`` returns
        it), or None: none is idle, or the pool is closed."""
        if self._closed:
            return None
        conn = self._pop_idle(key)
        if conn is not None:
            self._in_use += 1
            self._busy.add(conn)
        return conn

    def _give_back(self, key: tuple[str, str, int], conn: _Connection) -> None:
        """A connection checked out for requests (``_busy``) is done with: back to the pool."""
        self._busy.discard(conn)
        self._release(key, conn)

    def _release(self, key: tuple[str, str, int], conn: _Connection) -> None:
        self._in_use -= 1
        if not conn.keep_alive or conn.is_closing() or self._closed:
            self._discard(conn)
            return
        waiter = self._next_waiter() if self._waiters else None
        if waiter is not None:
            future, wanted = waiter
            if wanted == key:
                self._in_use += 1
                future.set_result(conn)  # straight to the longest waiter
            else:
                conn.close()
                future.set_result(None)  # its slot goes to a waiter for another origin
            return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if self._max_idle is not None and len(idle) >= self._max_idle:
            self._discard(conn)
            return
        if conn.server_idle is not None:
            self._server_idle[key] = conn.server_idle
        conn.idle_since = time.monotonic()
        idle.append(conn)
        if self._keeper is None and self._keep_warm:
            self._start_keeper()

    def _discard(self, conn: _Connection) -> None:
        conn.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """A connection's slot is free: reserve it for the longest waiter, or give it back."""
        waiter = self._next_waiter()
        if waiter is None:
            self._open -= 1
        else:
            waiter[0].set_result(None)

    def _next_waiter(self) -> tuple[asyncio.Future[_Connection | None], tuple[str, str, int]] | None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter[0].done():
                return waiter
        return None
