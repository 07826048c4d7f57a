"""``Express``: a request's first attempt sent at once from a transport callback, with no task.

The batch's fast path (``_lane``) sends each cancel's first attempt through one of these; what
the attempt needs (token, flow, limiter, headers, how an answer is told) is the pipeline's, and
anything past a plain success (retries, renewal, every error) goes back to ``Pipeline.send``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from ._attempts import Attempt, Attempts
from ._envelope import decode_envelope
from ._errors import APIConnectionError
from ._transports import Immediate, RawResponse

if TYPE_CHECKING:
    from ._httpx import httpx
    from ._pipeline import Pipeline

__all__ = ["Express"]


class Express:
    """One caller's requests to one endpoint, each sent at once on a channel of the transport
    and answered in a callback, with no task (``Pipeline.express``): the first attempt of a
    request on the batch's fast path (``_lane``).

    ``send`` makes the attempt only if nothing stands in its way (``Pipeline.slot_now``, the
    gates ``Pipeline.send`` would wait at, none of them shut), and a warm idle connection is at
    hand. It is counted in the request's ``Attempts`` as ``send`` counts it
    (``Pipeline.counted``).

    ``on_answer(body, result)`` is called when the attempt ends: ``body`` is the decoded
    envelope of a success (what ``send`` would return), or None for anything else (an error
    status, a body that does not decode, an expired token, a connection error), after which
    ``send(first=express.first(), attempts=record)`` must go on from it: retries, renewal and
    every error stay ``send``'s alone."""

    __slots__ = (
        "_channel",
        "_head",
        "_method",
        "_on_answer",
        "_parent",
        "_path",
        "_pipeline",
        "_record",
        "_result",
        "_started",
        "_timeout",
        "_token",
        "_told",
        "_url",
        "_waiting",
    )

    def __init__(
        self,
        pipeline: Pipeline,
        sender: Immediate,
        method: str,
        path: str,
        timeout: httpx.Timeout,
        on_answer: Callable[[dict[str, Any] | None, RawResponse | APIConnectionError], None],
    ) -> None:
        self._pipeline = pipeline
        self._method = method
        self._path = path
        self._url = pipeline.base_url + path
        self._timeout = timeout
        self._on_answer = on_answer
        # The operation the answers belong to (they arrive in callbacks, outside its context).
        instrumentation = pipeline.instrumentation
        self._parent = None if instrumentation is None else instrumentation.parent()
        self._channel = sender.channel(self._url, self._answered)
        self._token: str | None = None
        self._head = b""
        self._record = Attempts()
        self._result: RawResponse | APIConnectionError | None = None
        self._started = 0.0
        self._told = False
        #: An attempt is in flight (it holds a limiter slot).
        self._waiting = False

    def send(self, content: bytes, record: Attempts, started: float) -> bool:
        """Make the request's first attempt now (``started``: ``time.monotonic()``); False,
        with nothing sent, when something stands in its way."""
        pipeline = self._pipeline
        token = pipeline.slot_now()
        if token is None:
            return False
        limiter = pipeline.limiter
        assert limiter is not None  # (a slot was taken)
        try:
            if token is not self._token:
                # The head for this token, built (and its headers checked) once.
                self._head = self._channel.head(self._method, self._url, pipeline.headers.get(token, True))
                self._token = token
            sent = self._channel.send(self._method, self._url, self._head, content, self._timeout)
        except BaseException:
            limiter.release()
            raise
        if not sent:
            limiter.release()
            return False
        self._record, self._started, self._waiting = record, started, True
        pipeline.counted(record)
        record.sending = True
        return True

    def first(self) -> Attempt:
        """The attempt just answered, for ``Pipeline.send(first=...)``."""
        result = self._result
        assert result is not None
        return Attempt(self._token, result, self._started, self._told)

    def release(self) -> None:
        """Between requests: the connection held goes back to the pool."""
        self._channel.release()

    def abort(self) -> None:
        """Give up on the attempt in flight (it may have been processed: its record still says
        it was being sent); its connection is closed and ``on_answer`` never called for it."""
        if self._waiting:
            self._waiting = False
            limiter = self._pipeline.limiter
            if limiter is not None:
                limiter.release()
        self._channel.abort()

    def close(self) -> None:
        """Done for good (``Lane.close``): an attempt in flight is aborted, the connection goes
        back, and the channel lets go of this express (they hold each other)."""
        self.abort()
        self._channel.close()

    def _answered(self, result: RawResponse | APIConnectionError) -> None:
        """The channel's callback: the attempt ended. Judged as ``send`` would judge it; only a
        success leaves the record's ``sending`` (whoever takes over the rest, ``send``, says
        what the attempt was). Never raises (it runs in the transport's callbacks)."""
        pipeline = self._pipeline
        self._waiting = False
        limiter = pipeline.limiter
        if limiter is not None:
            limiter.release()
        self._result = result
        self._told = False
        body = None
        if not isinstance(result, APIConnectionError):
            method, path = self._method, self._path
            try:
                pipeline._received(
                    result, method, path, time.monotonic() - self._started, 0, self._parent, deferred=True
                )
                self._told = True
                if 200 <= result.status < 300:
                    body = decode_envelope(result, method=method, path=path)
            except Exception:  # an error status: ``send`` meets it again
                body = None
        if body is not None:
            self._record.sending = False
        self._on_answer(body, result)
