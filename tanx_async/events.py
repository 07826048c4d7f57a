"""Events a session reports to an ``on_event`` callback, for metrics and tracing.

Kinds: ``"response"`` (an answer arrived, any status), ``"retry"`` (a retry is scheduled after
``delay`` seconds), ``"error"`` (the request failed for good), ``"token_refreshed"`` and
``"login"``; for the private stream (``method`` ``"WS"``, ``path`` ``"/private"``):
``"stream_open"`` (subscribed), ``"stream_lost"`` (a drop, close or stall; ``error`` says which),
``"stream_gap"`` (updates may have been missed: after a reconnect or a buffer overflow) and
``"stream_closed"``; for a fleet (``method`` ``"FLEET"``, ``path`` where it lives):
``"fleet_unavailable"`` (its backend failed: the session works alone; ``error`` says how) and
``"fleet_restored"``. Events never carry headers, bodies or tokens. The callback runs inline on
the event loop (for an answer the built-in transport reads in its callbacks, on the loop's next
turn, never inside the callback): keep it cheap (append to a list, observe a histogram). What it
raises is logged (``tanx_async`` logger) and ignored: a broken hook never fails a request.
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
    "fleet_unavailable",
    "fleet_restored",
]


@attrs.frozen(kw_only=True)
class RequestEvent:
    """One thing that happened to one request (see the module docstring for the kinds).

    ``elapsed`` is the attempt's time in seconds, ``attempt`` counts from 0, ``status`` is the
    HTTP status of a ``response`` event, ``delay`` the wait before a ``retry``, ``error`` a short
    description of a failure (never a token or a body).
    """

    kind: EventKind
    """What happened: ``response``, ``retry``, ``error``, ``token_refreshed``, ``login``; on the
    private stream ``stream_open``, ``stream_lost``, ``stream_gap``, ``stream_closed``; for a
    fleet ``fleet_unavailable``, ``fleet_restored`` (each is described in the ``tanx_async.events`` module docstring)."""
    method: str
    """The request's HTTP method; ``"WS"`` for the private stream, ``"FLEET"`` for a fleet."""
    path: str
    """The request's path, without host or query (``/private`` for the stream)."""
    status: int | None = None
    """The HTTP status of a ``response`` event, or of the error answer behind an ``error`` or a
    ``retry`` (None when there was no answer)."""
    elapsed: float = 0.0
    """The attempt's time in seconds (``response`` events; 0.0 for the others)."""
    attempt: int = 0
    """Which attempt of the request this is, counting from 0; for ``stream_open``, how many times
    the stream has been subscribed (1 the first time)."""
    delay: float | None = None
    """The wait before a ``retry``, in seconds; None for the other kinds."""
    error: str | None = None
    """A short description of a failure (for ``error`` and ``retry``, the error's class name);
    never a token or a body."""


EventCallback = Callable[[RequestEvent], None]
