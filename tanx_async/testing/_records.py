"""The request log's record type and the redaction of secrets it relies on."""

from __future__ import annotations

from typing import Any

import attrs

from ._tokens import fingerprint

__all__ = ["RequestRecord", "redact"]


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
