"""The warning for a session that was used and never closed, as aiohttp gives for a
``ClientSession``: ``ResourceWarning: unclosed <AsyncTanxSession https://...> created at
file.py:12``.

Where the session was created is captured cheaply on every construction: the calling frame's
file and line (one ``sys._getframe``, no traceback). In debug mode (``python -X dev``, or an
asyncio loop in debug mode: ``PYTHONASYNCIODEBUG=1``, ``asyncio.run(..., debug=True)``) the
whole creating stack is captured as well and printed with the warning, as aiohttp does for its
sessions in debug mode. The session is passed as the warning's ``source``, so under
``python -X tracemalloc=25`` Python also prints where it was allocated. The message names the
session by its repr (the base URL, which never carries a token) and nothing else.
"""

from __future__ import annotations

import asyncio
import sys
import traceback
import warnings

__all__ = ["Origin", "warn_unclosed"]


class Origin:
    """Where a session was created: the creating frame's file and line, and in debug mode the
    whole stack (formatted only if the warning is given)."""

    __slots__ = ("filename", "lineno", "stack")

    def __init__(self, depth: int) -> None:
        """``depth``: frames between the caller of ``Origin`` and the code creating the session
        (1: the caller's caller)."""
        frame = sys._getframe(depth + 1)
        self.filename = frame.f_code.co_filename
        self.lineno = frame.f_lineno
        self.stack: traceback.StackSummary | None = traceback.extract_stack(frame) if _debug_mode() else None

    def __str__(self) -> str:
        return f"{self.filename}:{self.lineno}"


def _debug_mode() -> bool:
    if sys.flags.dev_mode:
        return True
    try:
        return asyncio.get_running_loop().get_debug()
    except RuntimeError:  # no running asyncio loop (none yet, or trio)
        return False


def warn_unclosed(session: object, origin: Origin) -> None:
    """Give the ``ResourceWarning`` for ``session`` (from its ``__del__``)."""
    message = (
        f"unclosed {session!r} created at {origin}: close it with `await session.aclose()` "
        "or use `async with`"
    )
    if origin.stack is not None:
        message += "\ncreated at (most recent call last):\n" + "".join(origin.stack.format()).rstrip()
    warnings.warn(message, ResourceWarning, source=session, stacklevel=2)
