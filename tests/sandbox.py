"""Helpers for tests that run against the sandbox exchange over a loopback socket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from tanx_async import AsyncTanxSession, CancelOutcome, CancelStatus
from tanx_async.testing import SandboxExchange, SandboxServer

from .internals import TransportName

#: Every transport a session can use on asyncio; tests that touch the wire run on each.
TRANSPORTS = ["native", "httpx"]
#: For batch tests: the same, and the built-in transport once more with the batch engine's fast
#: path (``_lane``) switched off, so that a task per cancel is tested on it too.
BATCH_TRANSPORTS = ["native", "native-tasks", "httpx"]


def transport_name(transport: str) -> TransportName:
    """``native`` is the default on asyncio (``"auto"``); the others are asked for by name."""
    names: dict[str, TransportName] = {
        "native": "auto",
        "native-tasks": "auto",
        "httpx": "httpx",
    }
    return names[transport]


@attrs.define
class Sandbox:
    exchange: SandboxExchange
    server: SandboxServer
    uid: str
    access: str = attrs.field(repr=False)
    refresh: str = attrs.field(repr=False)

    def session(self, *, transport: str = "native", **kwargs: Any) -> AsyncTanxSession:
        """A session on the sandbox; ``transport`` is one of ``BATCH_TRANSPORTS`` (or a
        ``TransportName``)."""
        kwargs.setdefault("access_token", self.access)
        kwargs.setdefault("refresh_token", self.refresh)
        name = transport_name(transport) if transport in BATCH_TRANSPORTS else transport
        session = AsyncTanxSession(base_url=self.server.url, transport=name, **kwargs)  # type: ignore[arg-type]
        if transport == "native-tasks":
            session._pipeline.immediate_enabled = False
        return session


@contextmanager
def running_sandbox(seed: int = 1, **exchange_kwargs: Any) -> Iterator[Sandbox]:
    exchange = SandboxExchange(seed=seed, **exchange_kwargs)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    with SandboxServer(exchange) as server:
        yield Sandbox(exchange, server, uid, access, refresh)


def processed_cancels(exchange: SandboxExchange) -> set[int]:
    """The orders whose cancel the exchange processed (queued)."""
    return {
        r.order_id
        for r in exchange.requests
        if r.path == "/sapi/v1/orders/cancel/" and r.result == "cancel_queued" and r.order_id is not None
    }


def mismatches(exchange: SandboxExchange, outcomes: list[CancelOutcome], before: dict[int, str]) -> list[str]:
    """Every outcome checked against the sandbox's final state of its order.

    ``before`` maps each id to its state before the batch (absent = unknown to the exchange).
    Queued/cancelled needs the order now ``cancel``; already-closed needs it closed before;
    not-found needs it unknown; failed/skipped need it still open; unknown claims nothing.
    """
    wrong: list[str] = []
    for outcome in outcomes:
        oid = outcome.order_id
        prior = before.get(oid)
        final = None if prior is None else exchange.order(oid).state
        status = outcome.status
        if status in (CancelStatus.QUEUED, CancelStatus.CANCELLED):
            ok = prior in ("wait", "pending") and final == "cancel"
        elif status is CancelStatus.ALREADY_CLOSED:
            ok = prior in ("cancel", "done") and final == prior
        elif status is CancelStatus.NOT_FOUND:
            ok = prior is None
        elif status is CancelStatus.UNKNOWN:
            ok = prior in ("wait", "pending")  # makes no claim about the order's state
        else:
            ok = prior in ("wait", "pending") and final == prior
        if not ok:
            wrong.append(f"{oid}: {status.value} but the order was {prior} and is now {final}")
    return wrong
