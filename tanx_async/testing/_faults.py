"""Fault injection knobs for the sandbox exchange.

All knobs may be changed at any time from any thread; each request reads them once
when it arrives. At most one of the ``*_rate`` faults hits a given request: a single
uniform draw is compared against the rates stacked in the order listed below, so the
rates should sum to at most 1. Draws come from one seeded ``random.Random`` so a
sequential run is reproducible.
"""

from __future__ import annotations

import random
from typing import Final, Literal

import attrs

FaultKind = Literal[
    "5xx",
    "429",
    "drop_before",
    "reset",
    "black_hole",
    "drop_after",
    "truncate",
    "stall",
    "status_error",
    "bare_error",
    "403",
    "object_error",
]

#: Faults that stop the request before the exchange processes it.
PRE_FAULTS: Final = frozenset(
    {"5xx", "429", "drop_before", "reset", "black_hole", "status_error", "bare_error", "403", "object_error"}
)
#: Faults applied to the response of a request that *was* processed.
POST_FAULTS: Final = frozenset({"drop_after", "truncate", "stall"})
#: Faults that need a real socket (see ``_server``); in-process they degrade.
SOCKET_FAULTS: Final = frozenset({"drop_before", "reset", "black_hole", "drop_after", "truncate", "stall"})


@attrs.define(eq=False)
class Faults:
    """Runtime-mutable misbehaviour of the sandbox (all off by default).

    - ``latency`` (+ uniform ``latency_jitter``): seconds slept inside every request.
    - ``error_rate``: answer 500 (JSON envelope) / 502 / 503 (HTML) without processing;
      the status is drawn from ``error_statuses``.
    - ``rate_limit_rate``: answer 429 with ``Retry-After`` (``retry_after`` seconds,
      rounded up, at least 1; an HTTP date if ``retry_after_http_date``; no header if
      ``retry_after`` is None).
    - ``drop_before_rate``: close the connection without processing or answering.
    - ``reset_rate``: abortive close (RST) without processing or answering.
    - ``drop_after_rate``: process the request (state changes!), then close without
      answering.
    - ``truncate_rate``: process, send headers with the full Content-Length and half
      of the body, then close.
    - ``stall_rate``: process, send headers, then stall ``stall_seconds`` and close.
    - ``status_error_rate``: answer HTTP 200 with ``"status": "error"`` (``payload: ""``)
      without processing, as real fixtures do for some refusals.
    - ``bare_error_rate``: answer 400 ``{"status": "error", "message": "Bad Request"}``, an
      error envelope with no ``payload`` key (the Go connector's mock), without processing.
    - ``forbidden_rate``: answer 403 ``Invalid organization key`` without processing.
    - ``object_error_rate``: answer 400 ``User does not exist`` whose ``payload`` is an object
      (``{"destination_address": ..., "exists": false}``), without processing.
    - ``black_hole``: read requests and never answer (until the server stops).
    - ``close_keepalive``: answer normally with ``Connection: close`` and close.
    - ``huge_body_bytes``: pad every JSON answer with whitespace to this many bytes.
    - ``only_paths``: if set, all of the above (latency included) only apply to
      requests whose path starts with one of these prefixes.
    """

    seed: int | None = None
    latency: float = 0.0
    latency_jitter: float = 0.0
    error_rate: float = 0.0
    error_statuses: tuple[int, ...] = (500, 502, 503)
    rate_limit_rate: float = 0.0
    retry_after: float | None = 1.0
    retry_after_http_date: bool = False
    drop_before_rate: float = 0.0
    reset_rate: float = 0.0
    drop_after_rate: float = 0.0
    truncate_rate: float = 0.0
    stall_rate: float = 0.0
    stall_seconds: float = 5.0
    status_error_rate: float = 0.0
    bare_error_rate: float = 0.0
    forbidden_rate: float = 0.0
    object_error_rate: float = 0.0
    black_hole: bool = False
    close_keepalive: bool = False
    huge_body_bytes: int | None = None
    only_paths: tuple[str, ...] | None = None
    rng: random.Random = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def reset(self) -> None:
        """Switch every fault off (keeps the random stream)."""
        rng = self.rng
        fresh = Faults(seed=self.seed)
        for field in attrs.fields(Faults):
            if field.name not in ("rng", "seed"):
                setattr(self, field.name, getattr(fresh, field.name))
        self.rng = rng

    def applies_to(self, path: str) -> bool:
        """Whether faults apply to a request for ``path``."""
        only = self.only_paths
        return only is None or path.startswith(only)

    def draw(self) -> FaultKind | None:
        """Pick the fault for one request (caller checked ``applies_to()``)."""
        if self.black_hole:
            return "black_hole"
        bands: tuple[tuple[float, FaultKind], ...] = (
            (self.error_rate, "5xx"),
            (self.rate_limit_rate, "429"),
            (self.drop_before_rate, "drop_before"),
            (self.reset_rate, "reset"),
            (self.drop_after_rate, "drop_after"),
            (self.truncate_rate, "truncate"),
            (self.stall_rate, "stall"),
            (self.status_error_rate, "status_error"),
            (self.bare_error_rate, "bare_error"),
            (self.forbidden_rate, "403"),
            (self.object_error_rate, "object_error"),
        )
        if not any(rate > 0 for rate, _ in bands):
            return None
        u = self.rng.random()
        acc = 0.0
        for rate, kind in bands:
            acc += rate
            if u < acc:
                return kind
        return None

    def delay(self) -> float:
        """Latency for one request, in seconds."""
        if self.latency_jitter > 0:
            return max(0.0, self.latency + self.rng.uniform(0, self.latency_jitter))
        return max(0.0, self.latency)

    def error_status(self) -> int:
        """Status code for a ``5xx`` fault."""
        return self.rng.choice(self.error_statuses or (500,))


#: ASGI scope extension a server advertises when it can misbehave on the socket.
#: The app then sends ``{"type": FAULT_MESSAGE, "fault": kind, "stall_seconds": s}``
#: instead of (drop_before/reset/black_hole/drop_after) or before (truncate/stall)
#: its response, and the server acts it out.
FAULT_EXTENSION: Final = "tanx.sandbox.socket_faults"
FAULT_MESSAGE: Final = "tanx.sandbox.socket_fault"


class SimulatedDisconnect(ConnectionResetError):
    """Raised by the app for a socket fault when no socket-capable server hosts it."""
