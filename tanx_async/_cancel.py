"""One order's cancel settled into a truthful outcome: the evidence rule.

``cancel_one`` turns whatever happened into a ``CancelOutcome``, by one rule: an outcome is ok
only on positive evidence. That is a 2xx answer to the cancel (``QUEUED``), a look-up showing
the order ``cancel`` or ``done`` (``CANCELLED``/``ALREADY_CLOSED``), or this session's own 2xx
cancel of the same order moments earlier (``QUEUED``, said in ``note``; see ``CancelMemory``).
The words of a refusal never decide an outcome: they may only annotate it (``note``). When the
exchange refused or no answer came, the order is looked up (``resolve``).

``settle`` is the settling pass for one ``UNKNOWN`` outcome: the order looked up again with
backoff, within a deadline. The fan-out that runs these for many orders is ``_batch.Batch``; a queued cancel's
confirmation (``confirm=True``) is ``_confirm.Confirmer``'s.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from . import _constants as C
from ._attempts import Attempt, Attempts
from ._confirm import closed_before
from ._convert import CancelEcho, cancel_echo, structure_order
from ._duration import duration
from ._errors import (
    APIConnectionError,
    APIStatusError,
    AuthenticationError,
    CancelNotConfirmedError,
    NotFoundError,
    PermissionDeniedError,
    RateLimitError,
    ResponseValidationError,
    SessionClosedError,
    TanxError,
    brief,
)
from ._outcomes import Outcomes
from .models import CancelOutcome, CancelStatus, Order, OrderState, queued_outcome

if TYPE_CHECKING:
    from ._session import AsyncTanxSession

__all__ = ["cancel_body", "cancel_one", "fetch_order", "queued", "settle"]

#: Words in a refusal that *suggest* the order is off the book. They only annotate an outcome.
_CLOSED_WORDS = re.compile(r"queued|pending|cancel+ed|filled|executed|closed|done", re.IGNORECASE)


async def fetch_order(session: AsyncTanxSession, oid: int) -> Order:
    path = f"{C.ORDERS_PATH}{oid}/"
    response = await session._send("GET", path, idempotent=True)
    order = structure_order(response.payload, raw=response.content, method="GET", endpoint=path)
    if order.id != oid:  # never evidence about order ``oid``
        raise ResponseValidationError(
            f"a look-up of order {oid} answered with order {order.id}",
            body=response.content,
            errors=(f"expected {oid} @ $.payload.id, got {order.id}",),
            method="GET",
            path=path,
        )
    return order


async def cancel_one(
    session: AsyncTanxSession,
    oid: int,
    *,
    resolve: bool = True,
    record: Attempts | None = None,
    first: Attempt | None = None,
    started: float | None = None,
) -> CancelOutcome:
    """Cancel one (already validated) order id and settle what happened. Never raises a
    ``TanxError``: it is in the outcome. ``first``: an attempt already made (the batch's fast
    path, ``_lane``) to go on from, with its ``record``; ``started``: when the cancel began."""
    record = record or Attempts()
    if started is None:
        started = time.monotonic()
    try:
        response = await session._send(
            "POST", C.CANCEL_PATH, content=cancel_body(oid), idempotent=True, attempts=record, first=first
        )
        return queued(session, oid, record, started, response.body, response.content)
    except NotFoundError as exc:
        return Outcomes(oid, record, started)(CancelStatus.NOT_FOUND, error=exc)
    except APIStatusError as exc:
        outcome = Outcomes(oid, record, started)
        if isinstance(exc, AuthenticationError | PermissionDeniedError | RateLimitError) or not resolve:
            return _unsettled(session, outcome, exc)
        return await _look_up(session, exc, outcome)
    except APIConnectionError as exc:
        outcome = Outcomes(oid, record, started)
        if not record.ambiguous or not resolve:
            return _unsettled(session, outcome, exc)
        return await _look_up(session, exc, outcome)
    except ResponseValidationError as exc:
        outcome = Outcomes(oid, record, started)
        if exc.method == "POST" and exc.path == C.CANCEL_PATH:
            # The exchange answered the cancel 2xx in a shape we do not know: it may well have
            # been processed. Never ok on that; a look-up says what is true.
            record.ambiguous = True
            if resolve:
                return await _look_up(session, exc, outcome)
        return _unsettled(session, outcome, exc)
    except TanxError as exc:
        return _unsettled(session, Outcomes(oid, record, started), exc)


def queued(
    session: AsyncTanxSession,
    oid: int,
    record: Attempts,
    started: float,
    body: dict[str, Any],
    content: bytes,
) -> CancelOutcome:
    """The outcome of a cancel the exchange answered with a 2xx success (``body``, the decoded
    envelope; ``content``, its bytes), remembered as evidence (``CancelMemory``). The echo is
    decoded only if the caller reads ``outcome.order``."""
    echo = cancel_echo(oid, body.get("payload"), content)  # (raises on a payload we do not know)
    session.orders._cancels.accepted(oid)
    # (Not decoded for the bare ``{}`` acknowledgement.)
    return queued_outcome(
        oid, record.count, time.monotonic() - started, CancelEcho(content) if echo else None
    )


_Make = Callable[..., CancelOutcome]


def cancel_body(oid: int) -> bytes:
    """The body of the cancel of order ``oid`` (an int, checked before): the one every cancel
    sends, from a worker task or from the batch's fast path (``_lane``)."""
    return b'{"order_id":%d}' % oid


async def _look_up(session: AsyncTanxSession, cause: TanxError, outcome: Outcomes) -> CancelOutcome:
    """The cancel was refused or unanswered: look the order up and say what is true."""
    try:
        order = await fetch_order(session, outcome.oid)
    except NotFoundError:
        return outcome(CancelStatus.NOT_FOUND, None, cause)
    except TanxError as exc:
        return _unsettled(session, outcome, cause, lookup_error=exc)
    return _closed(session, order, cause, outcome) or _unsettled(session, outcome, cause, order)


def _closed(
    session: AsyncTanxSession, order: Order, cause: TanxError | None, outcome: Outcomes
) -> CancelOutcome | None:
    """The outcome a look-up showing the order ``cancel`` or ``done`` proves, else None."""
    if order.state == OrderState.DONE:
        # Filled: the exchange's refusal (if any) stays on the outcome, for the record.
        return outcome(CancelStatus.ALREADY_CLOSED, order, cause)
    if order.state != OrderState.CANCEL:
        return None
    record = outcome.record
    if session.orders._cancels.age(outcome.oid) is not None:
        return outcome(CancelStatus.CANCELLED, order, None, "cancelled after this session's own 2xx cancel")
    if record.ambiguous and not _closed_before(order, record):
        # One of our attempts may have been processed before its answer was lost.
        return outcome(CancelStatus.CANCELLED, order, None)
    return outcome(CancelStatus.ALREADY_CLOSED, order, cause)


def _unsettled(
    session: AsyncTanxSession,
    outcome: Outcomes,
    cause: TanxError,
    order: Order | None = None,
    *,
    lookup_error: TanxError | None = None,
) -> CancelOutcome:
    """No answer or look-up proved the order closed: ``FAILED`` when the cancel cannot have been
    processed, ``UNKNOWN`` when it may have been; ``QUEUED`` only on this session's own 2xx."""
    seen = "" if order is None else f"; a look-up shows it {order.state.value}"
    if lookup_error is not None:
        seen = f"; the look-up failed ({brief(lookup_error)})"
    age = session.orders._cancels.age(outcome.oid)
    if age is not None:
        return outcome(
            CancelStatus.QUEUED,
            order,
            None,
            f"queued: this session got a 2xx for this order's cancel {duration(age)} earlier; "
            f"this cancel got {brief(cause)}{seen}",
        )
    note = None
    if isinstance(cause, APIStatusError) and _CLOSED_WORDS.search(cause.message):
        note = f"the refusal's words suggest the order is off the book, but nothing confirmed it{seen}"
    status = CancelStatus.UNKNOWN if outcome.record.ambiguous else CancelStatus.FAILED
    return outcome(status, order, cause, note)


def _closed_before(order: Order, record: Attempts) -> bool:
    """The exchange last touched the order clearly before our first attempt left."""
    return closed_before(order.updated_at, record.first_sent)


async def settle(
    session: AsyncTanxSession,
    unknown: CancelOutcome,
    record: Attempts,
    until: float,
    *,
    confirm: bool = False,
) -> CancelOutcome:
    """The settling pass for one ``UNKNOWN`` outcome: look the order up with backoff until the
    exchange answers, until ``until`` (monotonic) or ``SETTLE_MAX_LOOKUPS`` look-ups.

    A look-up showing ``cancel``/``done`` settles it. One showing the order still open means our
    cancel never arrived or is queued and not yet applied: the cancel is sent once more (a 2xx is
    evidence; with ``confirm`` the look-ups then go on until ``cancel``). Anything else leaves
    it ``UNKNOWN``, with a note."""
    oid = unknown.order_id
    outcome = Outcomes(oid, record, time.monotonic() - unknown.elapsed)
    delay = C.CONFIRM_POLL_INITIAL
    last: str = brief(unknown.error) if unknown.error is not None else "no answer"
    order = unknown.order
    resent = False
    queued: CancelOutcome | None = None
    lookups = 0
    while lookups < C.SETTLE_MAX_LOOKUPS and (remaining := until - time.monotonic()) > 0:
        if lookups:
            await anyio.sleep(min(delay, remaining))
            delay = min(delay * 2, C.SETTLE_POLL_CAP)
        lookups += 1
        try:
            with anyio.fail_after(max(until - time.monotonic(), 0.001)):
                order = await fetch_order(session, oid)
        except NotFoundError as exc:
            return outcome(CancelStatus.NOT_FOUND, None, exc, "settled by a later look-up")
        except SessionClosedError:
            break
        except (TanxError, TimeoutError) as exc:
            last = f"the last look-up failed ({brief(exc)})"
            continue
        closed = _closed(session, order, unknown.error, outcome)
        if closed is not None:
            return attrs.evolve(closed, note=closed.note or f"settled by look-up {lookups} after {last}")
        last = f"the last look-up shows it {order.state.value}"
        if not resent:
            resent = True
            with anyio.move_on_after(max(until - time.monotonic(), 0.001)):
                again = await cancel_one(session, oid, resolve=False, record=record)
                if again.ok or again.status is CancelStatus.NOT_FOUND:
                    again = attrs.evolve(
                        again,
                        elapsed=time.monotonic() - outcome.started,
                        note=again.note or "settled: the cancel was sent again once the exchange answered",
                    )
                    if not (confirm and again.status is CancelStatus.QUEUED):
                        return again
                    queued = again
                last = f"sent again: {brief(again.error) if again.error else again.status.value}"
    if queued is not None:
        # Queued by the cancel sent again, but not seen ``cancel`` in time (confirm=True).
        error = CancelNotConfirmedError(
            f"order {oid}: cancel queued but not confirmed in time ({last})", order_id=oid, order=order
        )
        return attrs.evolve(queued, order=order, error=error, elapsed=time.monotonic() - outcome.started)
    return outcome(
        CancelStatus.UNKNOWN,
        order,
        unknown.error,
        f"still unknown after the settling pass ({lookups} look-up{'s' if lookups != 1 else ''}; {last})",
    )
