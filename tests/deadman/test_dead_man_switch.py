"""The dead man's switch with real processes and real signals: a bot process (``bot.py``) arms
the switch over 60 orders in three markets of a loopback sandbox, then is killed (SIGKILL),
blocks its loop, raises, or leaves normally; the sandbox says what became of every order.

Every wait is bounded; every process a test starts (the bot, and the watchdog the bot started)
is killed at the end whatever happened. The 12 s bound is the issue's requirement (the
measured times are in benchmarks/RESULTS.md: well under a second after the watchdog notices).
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import attrs
import pytest

from tests.sandbox import Sandbox, running_sandbox

ROOT = Path(__file__).resolve().parents[2]
BOT = Path(__file__).with_name("bot.py")
ORDERS = 60
WITHIN = 12.0  # seconds from the event to every order ``cancel`` (the bound)
BOUND = 60.0  # upper bound for any other wait (never reached when all is well)


def alive(pid: int | None) -> bool:
    """The process exists and is not a zombie (an exited child nobody reaped yet)."""
    if pid is None:
        return False
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def is_watchdog(pid: int) -> bool:
    try:
        return b"tanx_async._watchdog" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def until(condition: Callable[[], bool], by: float) -> bool:
    """Poll ``condition`` until it holds or ``time.monotonic()`` passes ``by``; its last value.
    (``time.monotonic()`` is one clock for every process of a Linux machine: the bot's times
    compare with ours.)"""
    while not condition():
        if time.monotonic() > by:
            return condition()
        time.sleep(0.05)
    return True


def states(sandbox: Sandbox, ids: list[int]) -> dict[str, int]:
    found: dict[str, int] = {}
    for oid in ids:
        state = sandbox.exchange.order(oid).state
        found[state] = found.get(state, 0) + 1
    return found


@attrs.define
class Bot:
    proc: subprocess.Popen[bytes]
    watchdog: int
    log: Path
    err: Path
    out: str = ""
    unread: bytes = b""  # read from the pipe, not yet split into lines

    def read_until(self, text: str) -> str:
        """The bot's output up to the line containing ``text``; that line. (Unbuffered reads:
        a line already read off the pipe is never left waiting in a buffer select cannot see.)"""
        assert self.proc.stdout is not None
        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + BOUND
        while True:
            while b"\n" in self.unread:
                raw, self.unread = self.unread.split(b"\n", 1)
                line = raw.decode() + "\n"
                self.out += line
                if text in line:
                    return line
            ready, _, _ = select.select([fd], [], [], max(deadline - time.monotonic(), 0))
            chunk = os.read(fd, 65536) if ready else b""
            if not chunk:
                pytest.fail(f"no {text!r} from the bot; output so far:\n{self.out}\n{self.err.read_text()}")
            self.unread += chunk

    def finish(self) -> int:
        """The bot's exit code, its remaining output read (bounded)."""
        out, _ = self.proc.communicate(timeout=BOUND)
        self.out += (self.unread + out).decode()
        self.unread = b""
        return self.proc.returncode

    def watchdog_log(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


@contextmanager
def bot(sandbox: Sandbox, mode: str, tmp_path: Path, *options: str) -> Iterator[Bot]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    env |= {
        "TANX_ACCESS_TOKEN": sandbox.access,
        "TANX_REFRESH_TOKEN": sandbox.refresh,
        "PYTHONPATH": str(ROOT),
    }
    log, err = tmp_path / f"watchdog-{mode}.log", tmp_path / f"bot-{mode}.err"
    with err.open("w") as stderr:
        proc = subprocess.Popen(
            [sys.executable, str(BOT), sandbox.server.url, mode, str(log), *options],
            env=env,
            stdout=subprocess.PIPE,
            stderr=stderr,
            bufsize=0,
        )
    running = Bot(proc, 0, log, err)
    try:
        running.watchdog = int(running.read_until("armed ").split()[1])
        assert is_watchdog(running.watchdog)
        yield running
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=BOUND)
        if running.watchdog and alive(running.watchdog) and is_watchdog(running.watchdog):
            os.kill(running.watchdog, signal.SIGKILL)


@pytest.fixture
def sandbox() -> Iterator[tuple[Sandbox, list[int]]]:
    with running_sandbox() as sb:
        ids = sb.exchange.seed_orders(sb.uid, ORDERS)  # btcusdc, ethusdc, btcusdt in turn
        assert len({sb.exchange.order(i).market for i in ids}) == 3
        yield sb, ids


def assert_clean_log(running: Bot, sb: Sandbox) -> str:
    """The watchdog's log, which never carries a token."""
    text = running.watchdog_log()
    assert text, "the watchdog logged nothing"
    for secret in (sb.access, sb.refresh):
        assert secret not in text
        assert secret not in running.err.read_text()
    return text


def all_cancelled_within(sb: Sandbox, ids: list[int], event: float) -> None:
    done = until(lambda: states(sb, ids) == {"cancel": ORDERS}, by=event + WITHIN)
    assert done, f"{WITHIN:g} s after the event: {states(sb, ids)}"


def watchdog_exits(running: Bot) -> None:
    assert until(lambda: not alive(running.watchdog), by=time.monotonic() + BOUND), (
        "the watchdog is still running"
    )


def test_sigkill_of_the_bot_fires_the_watchdog(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    sb, ids = sandbox
    with bot(sb, "kill", tmp_path) as running:
        time.sleep(0.5)  # armed for a while: heartbeats flow, nothing fires
        assert states(sb, ids) == {"wait": ORDERS}
        event = time.monotonic()
        os.kill(running.proc.pid, signal.SIGKILL)
        all_cancelled_within(sb, ids, event)
        watchdog_exits(running)
        assert running.finish() == -signal.SIGKILL
    log = assert_clean_log(running, sb)
    assert "FIRING: its pipe closed" in log
    assert "nothing the switch covers is open after 1 round(s); outcomes: 60 cancelled" in log
    assert sum(f"order {oid} (" in log for oid in ids) == ORDERS  # every outcome logged


def test_sigkill_with_the_pipe_held_open_fires_on_silence(
    sandbox: tuple[Sandbox, list[int]], tmp_path: Path
) -> None:
    """A forked child keeps the pipe open: no EOF reaches the watchdog when the bot is killed,
    the missing heartbeats fire it."""
    sb, ids = sandbox
    child = 0
    try:
        with bot(sb, "kill-forked", tmp_path) as running:
            child = int(running.read_until("forked ").split()[1])
            event = time.monotonic()
            os.kill(running.proc.pid, signal.SIGKILL)
            all_cancelled_within(sb, ids, event)
            watchdog_exits(running)
            assert alive(child)  # the pipe was open all along
    finally:
        if child and alive(child):
            os.kill(child, signal.SIGKILL)
    assert "FIRING: no heartbeat for 2 s" in assert_clean_log(running, sb)


def test_a_stalled_loop_fires_the_watchdog(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    sb, ids = sandbox
    with bot(sb, "stall", tmp_path) as running:
        event = float(running.read_until("stalling ").split()[1])
        all_cancelled_within(sb, ids, event)
        watchdog_exits(running)
        # The loop wakes up 9 s later: it learns that the switch fired, leaves the block normally.
        assert running.read_until("resumed ").strip() == "resumed fired=True"
        assert running.finish() == 0
    log = assert_clean_log(running, sb)
    assert "FIRING: no heartbeat for 2 s" in log
    assert "the dead man's switch FIRED (no heartbeat for 2 s)" in running.err.read_text()


def test_an_exception_in_the_block_cancels_from_the_bot(
    sandbox: tuple[Sandbox, list[int]], tmp_path: Path
) -> None:
    sb, ids = sandbox
    with bot(sb, "raise", tmp_path) as running:
        event = float(running.read_until("raising ").split()[1])
        all_cancelled_within(sb, ids, event)
        watchdog_exits(running)
        assert running.finish() == 1  # the exception went on
    err = running.err.read_text()
    assert "Boom: the strategy failed" in err
    assert "leaving the dead man's switch's block by Boom" in err
    assert "session: nothing the switch covers is open" in err
    assert "left" not in running.out.split()
    log = assert_clean_log(running, sb)
    assert "disarmed: exiting without cancelling" in log  # the bot cleared it: no second sweep
    assert "FIRING" not in log


def test_leaving_normally_disarms(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    sb, ids = sandbox
    with bot(sb, "normal", tmp_path) as running:
        running.read_until("left")
        assert running.finish() == 0
        left = time.monotonic()
        assert not alive(running.watchdog)  # reaped by the bot before it went on
        until(lambda: False, by=left + 4.0)  # 4 s later ...
        assert states(sb, ids) == {"wait": ORDERS}
        assert not alive(running.watchdog)
    log = assert_clean_log(running, sb)
    assert "disarmed: exiting without cancelling" in log
    assert "FIRING" not in log
    assert f"its watchdog (pid {running.watchdog}) exited without cancelling" in running.err.read_text()
    assert not [r for r in sb.exchange.requests if r.path.startswith("/sapi/v1/orders")]


def test_only_the_markets_it_covers(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    sb, ids = sandbox
    covered = [i for i in ids if sb.exchange.order(i).market != "btcusdt"]
    with bot(sb, "kill", tmp_path, "--markets", "btcusdc,ethusdc") as running:
        event = time.monotonic()
        os.kill(running.proc.pid, signal.SIGKILL)
        assert until(lambda: states(sb, covered) == {"cancel": len(covered)}, by=event + WITHIN)
        watchdog_exits(running)
    assert {sb.exchange.order(i).state for i in ids if i not in covered} == {"wait"}
    assert "covering btcusdc, ethusdc" in assert_clean_log(running, sb)


def test_rotated_tokens_reach_the_watchdog(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    """The bot refreshes (the first refresh token is now dead), every access token is then
    revoked: only the pair handed over lets the watchdog refresh and cancel."""
    sb, ids = sandbox
    with bot(sb, "refresh", tmp_path) as running:
        running.read_until("refreshed")
        time.sleep(0.2)
        sb.exchange.expire_access_tokens()
        os.kill(running.proc.pid, signal.SIGKILL)
        all_cancelled_within(sb, ids, time.monotonic())
        watchdog_exits(running)
    assert (sb.exchange.refresh_count, sb.exchange.refresh_failures) == (2, 0)
    assert "tokens handed over" in assert_clean_log(running, sb)


def test_a_slow_and_failing_exchange(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    """Latency and 5xx answers while the switch fires: every order is taken off, or the
    watchdog's log names it with what it is."""
    sb, ids = sandbox
    with bot(sb, "kill", tmp_path, "--deadline", "20") as running:
        faults = sb.exchange.faults
        faults.latency, faults.latency_jitter, faults.error_rate = 0.2, 0.3, 0.5
        os.kill(running.proc.pid, signal.SIGKILL)
        watchdog_exits(running)
    log = assert_clean_log(running, sb)
    assert "FIRING" in log
    assert [r for r in sb.exchange.requests if r.result.startswith("fault:5xx")], "no 5xx was injected"
    open_ = [i for i in ids if sb.exchange.order(i).state != "cancel"]
    unverified = "COULD NOT VERIFY" in log
    for oid in open_:
        # Named with what it is; or, when no listing got through at the end, the log says that
        # nothing could be verified (an order no listing returned cannot be named).
        assert f"order {oid} (" in log or unverified, (
            f"order {oid} is {sb.exchange.order(oid).state}, not in the log"
        )
    if open_:
        assert "STILL OPEN" in log or unverified
    else:
        # Every order is off: the log says so, or (its last listing lost to the 5xx) that it
        # could not verify it; never that something is open.
        assert "nothing the switch covers is open" in log or unverified
        assert "STILL OPEN" not in log


def test_an_exchange_that_never_answers_a_cancel(sandbox: tuple[Sandbox, list[int]], tmp_path: Path) -> None:
    """Cancels vanish (a black hole): nothing is taken off, the watchdog says so of every order
    and exits within its deadline and the last listing."""
    sb, ids = sandbox
    with bot(sb, "kill", tmp_path, "--deadline", "3") as running:
        faults = sb.exchange.faults
        faults.black_hole, faults.only_paths = True, ("/sapi/v1/orders/cancel/",)
        os.kill(running.proc.pid, signal.SIGKILL)
        watchdog_exits(running)
    assert states(sb, ids) == {"wait": ORDERS}
    log = assert_clean_log(running, sb)
    assert "STILL OPEN after 1 round(s): 60 orders (btcusdc: 20, btcusdt: 20, ethusdc: 20)" in log
    for oid in ids:
        assert f"order {oid} (" in log
