"""The dead man's switch: seconds from the event to the last order cancelled.

A bot process (``tests/deadman/bot.py``) arms ``orders.dead_man_switch(timeout=2.0)`` over N
orders in three markets of a loopback sandbox exchange (served from a thread of this process),
then meets one of three ends: it is killed with SIGKILL (``kill``: the watchdog sees its pipe
close), blocks its loop with ``time.sleep(9)`` (``stall``: the watchdog waits out the 2 s
``timeout``), or raises inside the block (``raise``: the bot cancels from its own session). The
event is taken just before the ``os.kill`` (``kill``) or printed by the bot just before it stalls
or raises (``time.monotonic()``, one clock for every process of the machine); the last order
cancelled is the end of the last cancel the sandbox queued (its request log). Short and bounded:
R runs of each, one at a time.

    .venv/bin/python benchmarks/deadman.py              # N=60, 3 runs each, ~1 minute
    .venv/bin/python benchmarks/deadman.py --write      # ... and update RESULTS.md's section
"""

from __future__ import annotations

import argparse
import os
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from _common import write_section

from tanx_async.testing import SandboxExchange, SandboxServer

ROOT = Path(__file__).resolve().parents[1]
BOT = ROOT / "tests" / "deadman" / "bot.py"
RESULTS = Path(__file__).with_name("RESULTS.md")
BEGIN, END = "<!-- deadman:begin -->", "<!-- deadman:end -->"
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=60, help="orders (three markets)")
    parser.add_argument("-r", "--runs", type=int, default=3, help="runs of each end")
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    figures: dict[str, list[float]] = {}
    for mode in MODES:
        figures[mode] = [one_run(mode, args.n, seed) for seed in range(args.runs)]
        print(mode, " ".join(f"{x:.3f}" for x in figures[mode]), flush=True)
    what = {
        "kill": "SIGKILL: the watchdog sees its pipe close",
        "stall": "`time.sleep(9)` in the loop: the watchdog waits out `timeout`",
        "raise": "an exception in the block: the bot cancels from its own session",
    }
    rows = [
        f"| {mode} | {what[mode]} | {statistics.median(xs):.2f} | {min(xs):.2f} | {max(xs):.2f} |"
        for mode, xs in figures.items()
    ]
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    section = "\n".join(
        [
            BEGIN,
            "## The dead man's switch: from the event to the last order cancelled (`benchmarks/deadman.py`)",
            "",
            f"Generated {now} by `python benchmarks/deadman.py -n {args.n} -r {args.runs}` "
            f"({args.runs} runs of each end, one at a time; load average {load}: this machine is shared, "
            "the figures are noisy). A bot process arms `orders.dead_man_switch(timeout=2.0)` over "
            f"{args.n} orders in three markets of the sandbox exchange on loopback (served from a thread "
            "of the measuring process), then meets its end; seconds from the event to the end of the last "
            "cancel the sandbox queued.",
            "",
            "| end | what notices | median (s) | min (s) | max (s) |",
            "|---|---|---|---|---|",
            *rows,
            "",
            "A stalled loop costs the whole `timeout` before the watchdog may fire (it cannot tell a "
            "stall from a slow turn sooner); a killed process is noticed at once, by its pipe closing.",
            END,
        ]
    )
    print(section)
    if args.write:
        write_section(RESULTS, section, BEGIN, END)


if __name__ == "__main__":
    main()
