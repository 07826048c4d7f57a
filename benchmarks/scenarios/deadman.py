"""Scenario ``deadman``: the dead man's switch, seconds from the event to the last order cancelled.

A bot process (``tests/deadman/bot.py``) arms ``orders.dead_man_switch(timeout=2.0)`` over N
orders in three markets of a loopback sandbox exchange (served from a thread of this process),
then meets one of three ends: it is killed with SIGKILL (``kill``: the watchdog sees its pipe
close), blocks its loop with ``time.sleep(9)`` (``stall``: the watchdog waits out the 2 s
``timeout``), or raises inside the block (``raise``: the bot cancels from its own session). The
event is taken just before the ``os.kill`` (``kill``) or printed by the bot just before it stalls
or raises (``time.monotonic()``, one clock for every process of the machine); the last order
cancelled is the end of the last cancel the sandbox queued (its request log). Short and bounded:
R runs of each (3, or ``-r``), one at a time.
"""

from __future__ import annotations

import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from scenarios._base import Context, Measured, section, stamp
from tanx_async.testing import SandboxExchange, SandboxServer

ROOT = Path(__file__).resolve().parents[2]
BOT = ROOT / "tests" / "deadman" / "bot.py"
N_ORDERS = 60
BOUND = 60.0
MODES = ("kill", "stall", "raise")


class Lines:
    """A child's stdout, line by line, unbuffered (a line already read off the pipe never waits
    in a buffer that ``select`` cannot see), each wait bounded."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        self.fd = proc.stdout.fileno()
        self.unread = b""

    def next(self, prefix: str) -> str:
        until = time.monotonic() + BOUND
        while True:
            while b"\n" in self.unread:
                raw, self.unread = self.unread.split(b"\n", 1)
                if raw.decode().startswith(prefix):
                    return raw.decode()
            ready, _, _ = select.select([self.fd], [], [], max(until - time.monotonic(), 0))
            chunk = os.read(self.fd, 65536) if ready else b""
            if not chunk:
                raise RuntimeError(f"no {prefix!r} from the bot")
            self.unread += chunk


def one_run(mode: str, n: int, seed: int) -> float:
    exchange = SandboxExchange(seed=seed)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, n)
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    env |= {"TANX_ACCESS_TOKEN": access, "TANX_REFRESH_TOKEN": refresh, "PYTHONPATH": str(ROOT)}
    with SandboxServer(exchange) as server, tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.Popen(
            [sys.executable, str(BOT), server.url, mode, str(Path(tmp) / "w.log")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            bufsize=0,
        )
        lines = Lines(proc)
        watchdog = 0
        try:
            watchdog = int(lines.next("armed ").split()[1])
            if mode == "kill":
                time.sleep(0.5)
                event = time.monotonic()
                os.kill(proc.pid, signal.SIGKILL)
            else:
                event = float(lines.next("stalling " if mode == "stall" else "raising ").split()[1])
            until = time.monotonic() + BOUND
            while {exchange.order(i).state for i in ids} != {"cancel"}:
                if time.monotonic() > until:
                    raise RuntimeError(f"{mode}: not every order was cancelled")
                time.sleep(0.05)
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.communicate(timeout=BOUND)
            if watchdog:
                with_cmdline = Path(f"/proc/{watchdog}/cmdline")
                if with_cmdline.exists() and b"_watchdog" in with_cmdline.read_bytes():
                    os.kill(watchdog, signal.SIGKILL)
    last = max(
        r.time + r.duration
        for r in exchange.requests
        if r.path == "/sapi/v1/orders/cancel/" and r.result == "cancel_queued"
    )
    return last - event


def measure(ctx: Context) -> Measured:
    n, runs = (30 if ctx.quick else N_ORDERS), ctx.rounds(3)
    figures: dict[str, list[float]] = {}
    for mode in MODES:
        figures[mode] = [one_run(mode, n, seed) for seed in range(runs)]
        ctx.log(f"  deadman {mode}: " + " ".join(f"{x:.3f}" for x in figures[mode]))
    what = {
        "kill": "SIGKILL: the watchdog sees its pipe close",
        "stall": "`time.sleep(9)` in the loop: the watchdog waits out `timeout`",
        "raise": "an exception in the block: the bot cancels from its own session",
    }
    rows = [
        f"| {mode} | {what[mode]} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} |"
        for mode, xs in figures.items()
    ]
    lines = [
        "## The dead man's switch: from the event to the last order cancelled (`run.py --scenarios deadman`)",
        "",
        f"{stamp()}; {runs} runs of each end, one at a time (this machine is shared, "
        "the figures are noisy). A bot process arms `orders.dead_man_switch(timeout=2.0)` over "
        f"{n} orders in three markets of the sandbox exchange on loopback (served from a thread "
        "of the measuring process), then meets its end; seconds from the event to the end of the last "
        "cancel the sandbox queued.",
        "",
        "| end | what notices | median (s) | min (s) | max (s) |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "A stalled loop costs the whole `timeout` before the watchdog may fire (it cannot tell a "
        "stall from a slow turn sooner); a killed process is noticed at once, by its pipe closing.",
    ]
    return Measured(section("deadman", lines), raw=figures)
