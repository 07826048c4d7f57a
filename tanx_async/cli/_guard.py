"""``tanx-async guard --fleet redis://host:port/db [--market M ...] [--once] [--json]``.

Runs the dead man's switch's guard (``tanx_async._guard``), meant for another machine than the
bots it guards, until stopped. Its log (every firing, every order's outcome, the fleet going away
and coming back) goes to stderr; stdout gets one line per event (``watching``, ``fired``,
``swept``, ``stale``: an expiry too old to act on, ``stopped``), or with ``--json`` one JSON
object per line, each order's ``outcome`` included. The first SIGTERM or SIGINT stops the watch
and lets a sweep in progress finish (it is bounded); a second one stops at once. Exit codes: 0
when every sweep it made left nothing open (none made included: a supervisor's stop is its
normal end), 1 when one did not, or was cut short, 2 usage. ``--once``: it exits after its first
sweep.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from typing import Any

import anyio

from .._guard import Guard
from ._args import EXIT_NOT_OK, EXIT_OK, UsageError
from ._commands import fleet_of
from ._output import Output

log = logging.getLogger("tanx_async.deadman")


def _human(event: dict[str, Any]) -> str | None:
    kind = event["event"]
    covers = "every market" if event.get("markets") is None else ", ".join(event["markets"])
    stamp = time.strftime("%H:%M:%S")
    if kind == "watching":
        return f"{stamp} guard {event['guard']} watching the fleet {event['fleet']} ({covers})"
    if kind == "fired":
        return (
            f"{stamp} FIRED switch {event['switch']} ({event['host']} pid {event['pid']}): "
            f"cancelling every open order of {covers}"
        )
    if kind == "swept":
        counts = ", ".join(f"{n} {s}" for s, n in sorted(event["outcomes"].items())) or "no cancel needed"
        if event["clear"]:
            found = "nothing open"
        elif event["open"] is None:
            found = "COULD NOT VERIFY what is open: CHECK THE ACCOUNT"
        else:
            found = f"STILL OPEN: {event['open']} orders: CHECK THE ACCOUNT"
        return f"{stamp} switch {event['switch']}: {counts}; {found}"
    if kind == "stale":
        return (
            f"{stamp} NOT SWEPT switch {event['switch']} ({event['host']} pid {event['pid']}, {covers}): "
            f"it expired {event['ago']:g} s ago, when no guard watched: CHECK THE ACCOUNT"
        )
    if kind == "stopped":
        return f"{stamp} guard stopped ({event['fired']} switch(es) fired)"
    return None  # (each outcome: in the log, and in --json)


def _log_to_stderr(verbose: bool) -> None:
    """The guard's log on stderr at INFO (``-v`` set up DEBUG already)."""
    if verbose:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    library = logging.getLogger("tanx_async")
    library.addHandler(handler)
    library.setLevel(logging.INFO)


async def cmd_guard(args: argparse.Namespace, out: Output) -> int:
    if args.fleet is None:
        raise UsageError(
            "guard needs the desk's fleet: --fleet redis://host:port/db (or TANX_FLEET), the one its "
            "bots' sessions are given"
        )
    fleet = fleet_of(args.fleet)
    if fleet.scheme == "file":
        raise UsageError(
            "guard watches heartbeat keys in Redis: --fleet redis://host:port/db (a file:// fleet is one "
            "machine, which the same-machine watchdog covers)"
        )
    _log_to_stderr(args.verbose)

    def report(event: dict[str, Any]) -> None:
        if out.json_mode:
            out.json(event)
        else:
            line = _human(event)
            if line is not None:
                out.line(line)

    guard = Guard(fleet, markets=args.market, once=args.once, report=report)
    stop = anyio.Event()
    signals: list[int] = []

    def on_signal(signum: int) -> None:
        signals.append(signum)
        name = signal.Signals(signum).name
        if len(signals) == 1:
            log.warning(
                "%s: %s: stopping once the sweeps in progress finish (again: at once)", guard.id, name
            )
            stop.set()
        else:
            log.error("%s: %s again: stopping at once", guard.id, name)
            guard.abandon()

    loop = asyncio.get_running_loop()
    installed = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signum, on_signal, signum)
            installed.append(signum)
    try:
        clear = await guard.run(stop)
    finally:
        for signum in installed:
            loop.remove_signal_handler(signum)
    return EXIT_OK if clear else EXIT_NOT_OK
