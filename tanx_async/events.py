"""Events a session reports to an ``on_event`` callback, for metrics and tracing.

Kinds: ``"response"`` (an answer arrived, any status), ``"retry"`` (a retry is scheduled after
``delay`` seconds), ``"error"`` (the request failed for good), ``"token_refreshed"`` and
``"login"``; for the private stream (``method`` ``"WS"``, ``path`` ``"/private"``):
``"stream_open"`` (subscribed), ``"stream_lost"`` (a drop, close or stall; ``error`` says which),
``"stream_gap"`` (updates may have been missed: after a reconnect or a buffer overflow) and
``"stream_closed"``. Events never carry headers, bodies or tokens. The callback runs inline on the event
loop: keep it cheap (append to a list, observe a histogram) and never raise.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import attrs

__all__ = ["EventCallback", "EventKind", "RequestEvent"]

EventKind = Literal[
    "response",
    "retry",
    "error",
    "token_refreshed",
    "login",
    "stream_open",
    "stream_lost",
    "stream_gap",
    "stream_closed",
]


@attrs.frozen(kw_only=True)
class RequestEvent:
    """One thing that happened to one request (see the module docstring for the kinds).

    ``elapsed`` is the attempt's time in seconds, ``attempt`` counts from 0, ``status`` is the
    HTTP status of a ``response`` event, ``delay`` the wait before a ``retry``, ``error`` a short
    description of a failure (never a token or a body).
    """

    kind: EventKind
    method: str
    path: str
    status: int | None = None
    elapsed: float = 0.0
    attempt: int = 0
    delay: float | None = None
    error: str | None = None


EventCallback = Callable[[RequestEvent], None]
