"""What one logical request's attempts leave behind: the ``Attempts`` record, the ``Response``
``Pipeline.send`` returns, and the ``Attempt`` an ``Express`` made for it first.

Plain values, shared by the pipeline (``_pipeline``), its callback-driven first attempt
(``_express``) and the batches that watch a request while it runs (``_batch``, ``_lane``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._errors import APIConnectionError
    from ._transports import RawResponse

__all__ = ["Attempt", "Attempts", "Response"]


class Attempts:
    """What happened across the attempts of one logical request.

    Written by the pipeline as attempts leave and end (``Pipeline.counted``, ``sending`` around
    the transport, in ``send`` and in an ``Express``), and ``ambiguous`` by whoever meets an
    answer that may hide a processed request (the pipeline for a lost answer, the cancel engine
    for a 2xx it cannot read). A batch only reads it (``Batch.remaining``: ``sending`` or
    ``ambiguous`` make an interrupted cancel ``UNKNOWN``, never ``FAILED``)."""

    __slots__ = ("ambiguous", "count", "first_sent", "sending")

    def __init__(self) -> None:
        #: Attempts started so far.
        self.count: int = 0
        #: True while an attempt is with the transport (interrupted then, it may have arrived).
        self.sending: bool = False
        #: When the first attempt left, on the exchange's clock as far as it is known (to compare
        #: with the exchange's ``updated_at``).
        self.first_sent: float | None = None
        #: True once an attempt failed in a way that may have left it processed.
        self.ambiguous: bool = False


class Response:
    """One answered request: the decoded envelope, its raw bytes and the attempt history."""

    __slots__ = ("attempts", "body", "content")

    def __init__(self, body: dict[str, Any], content: bytes, attempts: Attempts) -> None:
        self.body: dict[str, Any] = body
        self.content: bytes = content
        self.attempts: Attempts = attempts

    @property
    def payload(self) -> Any:
        return self.body.get("payload")


class Attempt:
    """The first attempt of a request, made and answered outside ``send`` (by an ``Express``):
    ``send(first=...)`` goes on from it."""

    __slots__ = ("result", "started", "token", "told")

    def __init__(
        self, token: str | None, result: RawResponse | APIConnectionError, started: float, told: bool
    ) -> None:
        self.token = token
        self.result = result
        #: When it left (``time.monotonic``).
        self.started = started
        #: Its answer was told (clock, log line, event: ``Pipeline._received``) already.
        self.told = told
