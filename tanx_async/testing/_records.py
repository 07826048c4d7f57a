"""The request log: its records, the count of requests in flight, and the redaction of secrets."""

from __future__ import annotations

import threading
from typing import Any

import attrs

from ._tokens import fingerprint

__all__ = ["RequestLog", "RequestRecord", "redact"]


@attrs.frozen
class RequestRecord:
    """One handled request.

    ``result`` is what the exchange did (``"cancel_queued"``, ``"refresh_ok"``,
    ``"unauthorized"``, ...) or ``"fault:<kind>"`` when a fault stopped the request
    before processing. ``fault`` names any injected fault, including those applied
    after processing (``"drop_after"``, ``"truncate"``, ``"stall"``). ``status`` is
    None when no status line reached the client. Tokens are never stored: ``token`` is
    a short fingerprint, and token/signature fields in ``body`` are redacted likewise.
    ``message`` is the answer's ``message`` text (None for answers without one).
    """

    time: float
    method: str
    path: str
    query: str
    body: Any
    status: int | None
    result: str
    fault: str | None = None
    order_id: int | None = None
    order_ids: tuple[int, ...] = ()
    uid: str | None = None
    token: str | None = None
    duration: float = 0.0
    message: str | None = None


def redact(token: str) -> str:
    """Log form of a secret."""
    return f"<redacted:{fingerprint(token)}>"


class RequestLog:
    """Every handled request, in order (``requests``, append-only), and how many are in flight.

    ``SandboxExchange`` shows ``requests``, ``in_flight`` and ``peak_in_flight`` under the same
    names; the ASGI app calls ``enter`` and ``leave`` around each request and ``record`` once it
    is answered.
    """

    def __init__(self, lock: threading.Lock) -> None:
        self.requests: list[RequestRecord] = []
        self.in_flight = 0
        self.peak_in_flight = 0
        self._lock = lock

    def enter(self) -> None:
        """A request started."""
        with self._lock:
            self.in_flight += 1
            if self.in_flight > self.peak_in_flight:
                self.peak_in_flight = self.in_flight

    def leave(self) -> None:
        """A request ended."""
        with self._lock:
            self.in_flight -= 1

    def record(self, record: RequestRecord) -> None:
        """Log a handled request (without the lock: ``list.append`` is atomic)."""
        self.requests.append(record)

    def clear(self) -> None:
        """Empty the log."""
        with self._lock:
            self.requests = []

    def reset_peak(self) -> None:
        """Restart ``peak_in_flight`` from the current ``in_flight``."""
        with self._lock:
            self.peak_in_flight = self.in_flight

    def cancel_attempts(self, order_id: int) -> list[RequestRecord]:
        """Every logged cancel request for ``order_id`` (faulted ones included)."""
        return [
            r for r in list(self.requests) if r.order_id == order_id and r.path == "/sapi/v1/orders/cancel/"
        ]
