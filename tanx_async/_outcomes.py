"""``Outcomes``: the ``CancelOutcome`` of one order's cancel, built with its id, its attempts and
the time since it began, whoever decides it (``_cancel`` from an answer or a look-up,
``_confirm`` from a push or a confirming look-up)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from .models import CancelOutcome, CancelStatus, Order

if TYPE_CHECKING:
    from ._attempts import Attempts
    from ._errors import TanxError

__all__ = ["Outcomes"]


class Outcomes:
    """Builds the outcomes of one order's cancel (its id, attempts and elapsed time)."""

    __slots__ = ("oid", "record", "started")

    def __init__(self, oid: int, record: Attempts, started: float) -> None:
        self.oid = oid
        self.record = record
        #: When the cancel began (``time.monotonic``).
        self.started = started

    def __call__(
        self,
        status: CancelStatus,
        order: Order | None = None,
        error: TanxError | None = None,
        note: str | None = None,
    ) -> CancelOutcome:
        return CancelOutcome(
            order_id=self.oid,
            status=status,
            order=order,
            error=error,
            attempts=self.record.count,
            elapsed=time.monotonic() - self.started,
            note=note,
        )
