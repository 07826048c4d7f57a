"""What a session started that outlives the call that started it, ended by ``aclose()``.

Two kinds: the private streams a caller opened (``session.stream()``), and the batches
``cancel_iter`` runs. A batch run by ``cancel_iter`` cannot live in a task group the async
generator (or iterator) enters: a generator that yields from inside a task group hands its
cancel scope to whoever iterates it, so a ``break`` would cancel the caller's task (anyio and
trio forbid it). It runs instead in a task of its own, started here, outside every cancel scope
of the caller: on asyncio a task of the running loop, on trio a system task. The iterator only
reads what the batch hands over.

``Owned.aclose`` cancels every such task and ends every stream (its consumer then gets
``SessionClosedError``), so nothing a closed session started keeps a socket or a task.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Awaitable, Callable
from typing import Protocol

import anyio
import sniffio

from ._log import logger

__all__ = ["Job", "Owned"]


class _Closable(Protocol):
    def end(self, error: BaseException) -> None: ...


class Job:
    """One task started by ``Owned.spawn``: cancel it, or wait until it has ended."""

    __slots__ = ("_scope", "cancelled", "ended")

    def __init__(self) -> None:
        self._scope: anyio.CancelScope | None = None
        self.cancelled = False
        self.ended = anyio.Event()

    def cancel(self) -> None:
        self.cancelled = True
        if self._scope is not None:
            self._scope.cancel()


class Owned:
    """The jobs and streams of one session (shared by its ``with_options`` views)."""

    def __init__(self) -> None:
        self._jobs: set[Job] = set()
        #: Held for asyncio: a task only the loop references may be collected mid-run.
        self._tasks: set[asyncio.Task[None]] = set()
        self._streams: weakref.WeakSet[_Closable] = weakref.WeakSet()

    def spawn(self, run: Callable[[], Awaitable[None]], name: str) -> Job:
        """Run ``run()`` in a task outside the caller's cancel scopes (see the module's
        docstring). It must not raise: an exception is logged, never propagated."""
        job = Job()

        async def body() -> None:
            try:
                with anyio.CancelScope() as scope:
                    job._scope = scope
                    if job.cancelled:
                        scope.cancel()
                    try:
                        await run()
                    except Exception:  # a bug: never crash the loop (trio's run would die)
                        logger.exception("%s: unexpected error", name)
            finally:
                self._jobs.discard(job)
                job.ended.set()

        self._jobs.add(job)
        if sniffio.current_async_library() == "trio":
            import trio

            trio.lowlevel.spawn_system_task(body, name=name)
        else:
            task = asyncio.get_running_loop().create_task(body(), name=name)
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return job

    def track(self, stream: _Closable) -> None:
        """``stream`` is open: end it when the session closes."""
        self._streams.add(stream)

    def untrack(self, stream: _Closable) -> None:
        self._streams.discard(stream)

    async def aclose(self, error: BaseException) -> None:
        """End every stream (with ``error``) and cancel every job, then wait (a moment at most)
        until the jobs have ended."""
        for stream in list(self._streams):
            stream.end(error)
        self._streams.clear()
        jobs = list(self._jobs)
        for job in jobs:
            job.cancel()
        with anyio.CancelScope(shield=True), anyio.move_on_after(1.0):
            for job in jobs:
                await job.ended.wait()
