"""The dead man's switch's watchdog: a process of its own (``python -m tanx_async._watchdog``).

Started by ``DeadManSwitch`` (``_deadman.py``), which writes the protocol to its stdin (one JSON
object per line; the tokens travel only there). It reads ``ARM`` (its configuration and the
tokens), opens its own session to the exchange, says ``ready`` on its stdout and then waits:

- ``HEARTBEAT`` restarts the ``timeout`` countdown; ``TOKENS`` replaces the pair it holds;
- ``DISARM`` ends it without cancelling anything (exit 0);
- ``timeout`` seconds without a heartbeat, its stdin closing (the parent died, SIGKILL included,
  or handed over), a line it cannot read, SIGTERM, SIGINT or SIGHUP: it **fires**: says
  ``fired <reason>``, cancels every open order the switch covers (``_sweep``), logs every outcome
  and exits (0 when a listing found nothing open afterwards, 1 otherwise).

It logs to its stderr (the file the parent named) and never a token. A SIGALRM set when it fires
ends it, whatever it waits on, ``deadline + DEADMAN_GRACE`` seconds later.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import sys
from typing import Any

from . import _constants as C
from ._session import AsyncTanxSession
from ._sweep import sweep

log = logging.getLogger("tanx_async.deadman")

#: The exit codes: disarmed or swept clear; not seen clear; no (valid) ARM.
EXIT_OK, EXIT_NOT_CLEAR, EXIT_NO_ARM = 0, 1, 3
#: The longest protocol line read (two tokens and the settings are far below).
MAX_LINE = 64 * 1024


def _say(text: str) -> None:
    """A line to the parent (ignored when it is gone)."""
    with contextlib.suppress(OSError):
        os.write(1, text.encode("utf-8", "replace") + b"\n")


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s watchdog[{os.getpid()}] %(levelname)s %(name)s: %(message)s")
    )
    root = logging.getLogger("tanx_async")
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def _arm(line: bytes) -> dict[str, Any] | None:
    try:
        config = json.loads(line)
    except ValueError:
        return None
    if not isinstance(config, dict) or config.get("type") != "ARM":
        return None
    if not isinstance(config.get("base_url"), str) or not isinstance(config.get("access"), str):
        return None
    if not isinstance(config.get("timeout"), int | float) or not isinstance(
        config.get("deadline"), int | float
    ):
        return None
    return config


async def _next_line(reader: asyncio.StreamReader, wait: float, fire: asyncio.Event) -> bytes | str:
    """The next line; or why to fire: ``"timeout"``, ``"signal"`` (as a str)."""
    read = asyncio.ensure_future(reader.readline())
    woken = asyncio.ensure_future(fire.wait())
    try:
        done, _ = await asyncio.wait({read, woken}, timeout=max(wait, 0), return_when=asyncio.FIRST_COMPLETED)
    finally:
        woken.cancel()
    if read in done and not fire.is_set():
        return read.result()  # (a ValueError for an over-long line goes up: it fires)
    read.cancel()
    with contextlib.suppress(asyncio.CancelledError, ValueError):
        await read
    return "signal" if fire.is_set() else "timeout"


async def run() -> int:
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=MAX_LINE)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    fire = asyncio.Event()
    signalled: list[str] = []

    def on_signal(signum: int) -> None:
        signalled.append(signal.Signals(signum).name)
        fire.set()

    for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        loop.add_signal_handler(signum, on_signal, signum)

    try:
        first = await asyncio.wait_for(reader.readline(), C.DEADMAN_START_TIMEOUT)
    except (TimeoutError, asyncio.TimeoutError, ValueError):
        first = b""
    config = _arm(first)
    if config is None:
        log.error("no valid ARM message on stdin: exiting without guarding anything")
        return EXIT_NO_ARM
    timeout = float(config["timeout"])
    deadline = float(config["deadline"])
    markets = config.get("markets")
    covers = "every market" if markets is None else ", ".join(markets)
    session = AsyncTanxSession(
        base_url=config["base_url"],
        access_token=config["access"],
        refresh_token=config.get("refresh"),
        allow_insecure_http=bool(config.get("allow_insecure_http")),
        trust_env=bool(config.get("trust_env", True)),
        verify=bool(config.get("verify", True)),
    )
    del first, config  # no token kept beyond the session's own
    async with session:
        log.info("guarding pid %s: timeout %g s, covering %s", os.getppid(), timeout, covers)
        _say("ready")
        reason = await _guard(session, reader, timeout, fire, signalled)
        if reason is None:
            log.info("disarmed: exiting without cancelling")
            _say("disarmed")
            return EXIT_OK
        log.error("FIRING: %s; cancelling every open order of %s", reason, covers)
        _say(f"fired {reason}")
        signal.signal(signal.SIGALRM, _give_up)
        signal.alarm(int(deadline + C.DEADMAN_GRACE))  # the bound on everything from here on
        result = await sweep(session, markets, deadline, "watchdog")
    return EXIT_OK if result.clear else EXIT_NOT_CLEAR


async def _guard(
    session: AsyncTanxSession,
    reader: asyncio.StreamReader,
    timeout: float,
    fire: asyncio.Event,
    signalled: list[str],
) -> str | None:
    """Wait for heartbeats; None on DISARM, else the reason to fire."""
    loop = asyncio.get_running_loop()
    due = loop.time() + timeout
    while True:
        try:
            line = await _next_line(reader, due - loop.time(), fire)
        except ValueError:
            return "a protocol line too long to read"
        if line == "signal":
            return f"received {signalled[0] if signalled else 'a signal'}"
        if line == "timeout":
            return f"no heartbeat for {timeout:g} s"
        if not isinstance(line, bytes) or not line:
            return "its pipe closed (the guarded process is gone or handed over)"
        try:
            msg = json.loads(line)
            kind = msg.get("type") if isinstance(msg, dict) else None
        except ValueError:
            kind = None
        if kind == "HEARTBEAT":
            due = loop.time() + timeout
        elif kind == "TOKENS" and isinstance(msg.get("access"), str):
            refresh = msg.get("refresh")
            session._pipeline.auth.adopt(msg["access"], refresh if isinstance(refresh, str) else None)
            log.info("tokens handed over")
        elif kind == "DISARM":
            return None
        else:
            return "a protocol line it could not read"


def _give_up(signum: int, frame: object) -> None:
    log.error("still cancelling %g s past the deadline: giving up; CHECK THE ACCOUNT", C.DEADMAN_GRACE)
    logging.shutdown()
    os._exit(EXIT_NOT_CLEAR)


def main() -> int:
    _setup_logging()
    try:
        return asyncio.run(run())
    except Exception:
        log.exception("the watchdog failed")
        return EXIT_NOT_CLEAR


if __name__ == "__main__":
    sys.exit(main())
