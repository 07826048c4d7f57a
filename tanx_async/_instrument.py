"""The hook an instrumentation (``tanx_async.telemetry``) plugs into: one optional object the
pipeline holds (``Pipeline.instrumentation``), called at a few named points.

- ``operation(name, attributes)``: around one user-level operation (``cancel``, ``cancel_many``,
  ``get``, ``list``, ``renewal``, ``stream.connect``); the requests made inside it are its children.
- ``parent()``: the current operation, captured where a request's answer will arrive in a
  transport callback (``Express``), which runs outside the caller's context.
- ``attempt(...)``: one HTTP attempt ended (answered, or failed to connect).
- ``waited(kind, seconds)``: a request waited for the concurrency limiter or the rate limit.
- ``event(event)``: every ``RequestEvent`` the pipeline emits (retries, errors, the stream's).

Nothing here imports a telemetry library; when no instrumentation is set each point costs one
attribute check (``operation`` hands back a shared null context).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from ._pipeline import Pipeline
    from .events import RequestEvent
    from .models import CancelOutcome

__all__ = ["Instrumentation", "Operation", "operation"]


class Operation(Protocol):
    """What an operation's context manager gives: more attributes, and the outcomes it had."""

    def set(self, key: str, value: str | int | float | bool) -> None: ...

    def outcomes(self, outcomes: Iterable[CancelOutcome]) -> None: ...


class Instrumentation(Protocol):
    """The points the library calls (see the module docstring). Never raises into the library."""

    def operation(self, name: str, attributes: dict[str, Any]) -> AbstractContextManager[Operation]: ...

    def parent(self) -> object: ...

    def attempt(
        self,
        method: str,
        path: str,
        status: int | None,
        elapsed: float,
        attempt: int,
        error: str | None,
        parent: object,
    ) -> None: ...

    def waited(self, kind: str, seconds: float) -> None: ...

    def event(self, event: RequestEvent) -> None: ...


_NULL: AbstractContextManager[None] = contextlib.nullcontext()


def operation(pipeline: Pipeline, name: str, **attributes: Any) -> AbstractContextManager[Operation | None]:
    """The operation ``name`` as a context manager (a shared null one when not instrumented)."""
    instrumentation = pipeline.instrumentation
    if instrumentation is None:
        return _NULL
    return instrumentation.operation(name, attributes)
