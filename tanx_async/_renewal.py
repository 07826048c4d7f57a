"""A token renewal as the requests that wait on it see it.

``Flight``: the one refresh or login in progress (single flight: ``Pipeline.renew``), which the
other requests that noticed the expiry wait on. ``renewing``: around such a wait, the error a
request raises when the renewal fails after an earlier attempt of its own may have arrived.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import anyio

from ._errors import APIConnectionError, APITimeoutError, brief

if TYPE_CHECKING:
    from ._attempts import Attempts

__all__ = ["Flight", "renewing"]


@contextlib.contextmanager
def renewing(record: Attempts, method: str, path: str) -> Iterator[None]:
    """Around a token renewal a request waits on: when it fails to connect after an earlier
    attempt of the request may have arrived, the request raises its own error, saying so. (The
    renewal's error, shared by every request waiting on it, is never changed: the cause.)"""
    try:
        yield
    except APIConnectionError as exc:
        if not record.ambiguous or exc.maybe_processed:
            raise
        cls = APITimeoutError if isinstance(exc, APITimeoutError) else APIConnectionError
        raise cls(
            f"token renewal failed ({brief(exc)}); an earlier attempt may have been processed",
            maybe_processed=True,
            method=method,
            path=path,
        ) from exc


class Flight:
    """One refresh or login in progress; other requests wait on it."""

    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: BaseException | None = None
