"""On a terminal, say that we are waiting for the exchange, and on what.

A silent exchange used to mean a CLI that printed nothing for tens of seconds. ``Waiting`` draws
one status line on stderr (only when stderr is a terminal) once nothing has been heard for
``after`` seconds: the host, what the command is doing, how long it has been quiet, the
operation deadline, and the last retry and its reason (from the session's request events). The
line is erased when an answer arrives and when the command ends.
"""

from __future__ import annotations

import time
from typing import TextIO

import anyio

from .._duration import duration
from ..events import RequestEvent

__all__ = ["Waiting", "should_show"]

_ERASE = "\r\x1b[K"


def should_show(stderr: TextIO) -> bool:
    """The status line is for people: only when stderr is a terminal."""
    try:
        return stderr.isatty()
    except (AttributeError, ValueError):  # a closed or exotic stream
        return False


class Waiting:
    def __init__(
        self,
        stderr: TextIO,
        host: str,
        deadline: float | None,
        *,
        enabled: bool,
        after: float = 1.0,
        interval: float = 0.5,
    ) -> None:
        self._stderr = stderr
        self._host = host
        self._deadline = deadline
        self.enabled = enabled
        self._after = after
        self._interval = interval
        self.doing = "starting"
        self._quiet_since = time.monotonic()
        self._last = ""
        self._shown = False

    def on_event(self, event: RequestEvent) -> None:
        """The session's ``on_event``: any answer resets the quiet time; a retry is remembered."""
        self._quiet_since = time.monotonic()
        if event.kind == "retry":
            self._last = f"; retrying {event.method} {event.path} after {event.error or 'an error'}"
        elif event.kind == "response":
            self._last = ""
            self.clear()

    def line(self, now: float) -> str | None:
        """The status text to show now, or None while the exchange is not (yet) keeping us waiting."""
        quiet = now - self._quiet_since
        if not self.enabled or quiet < self._after:
            return None
        bound = f", deadline {duration(self._deadline)} per operation" if self._deadline else ""
        return f"waiting for {self._host} ({self.doing}): no answer for {quiet:.0f} s{bound}{self._last}"

    async def run(self) -> None:
        """Redraw the line every ``interval`` until cancelled."""
        try:
            while True:
                await anyio.sleep(self._interval)
                text = self.line(time.monotonic())
                if text is not None:
                    self._stderr.write(_ERASE + text)
                    self._stderr.flush()
                    self._shown = True
        finally:
            self.clear()

    def clear(self) -> None:
        if self._shown:
            self._stderr.write(_ERASE)
            self._stderr.flush()
            self._shown = False
