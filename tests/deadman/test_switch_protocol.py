"""The switch from inside one test process (its watchdog is still a real process), and the
watchdog spoken to directly over its pipe: arming twice, secrets, cancellation, the protocol."""

from __future__ import annotations

import json
import logging
import os
import select
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import anyio
import pytest

from tanx_async import AsyncTanxSession, NotAuthenticatedError
from tests.conftest import until
from tests.deadman.test_dead_man_switch import ROOT, alive
from tests.sandbox import Sandbox, running_sandbox

BOUND = 60.0


@pytest.fixture
def sb() -> Iterator[Sandbox]:
    with running_sandbox() as sandbox:
        sandbox.exchange.seed_orders(sandbox.uid, 12)
        yield sandbox


def open_states(sb: Sandbox) -> set[str]:
    return {o.state for o in sb.exchange.orders_of(sb.uid)}


def my_watchdogs() -> list[int]:
    """The watchdog processes this test process started (and has not reaped)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes()
            ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        if b"tanx_async._watchdog" in cmdline and ppid == os.getpid() and alive(int(entry.name)):
            found.append(int(entry.name))
    return found


async def test_one_watchdog_per_session(sb: Sandbox, tmp_path: Path) -> None:
    async with sb.session() as session:
        async with session.orders.dead_man_switch(log_file=tmp_path / "w.log") as switch:
            assert my_watchdogs() == [switch.pid]
            for other in (session, session.with_options(deadline=3.0)):
                with pytest.raises(RuntimeError, match="already armed for this session"):
                    async with other.orders.dead_man_switch():
                        pass  # pragma: no cover
            assert my_watchdogs() == [switch.pid]
            with pytest.raises(RuntimeError, match="arms once"):
                async with switch:
                    pass  # pragma: no cover
        assert not alive(switch.pid)
        # Disarmed, the session may arm again (a new watchdog).
        async with session.orders.dead_man_switch(log_file=tmp_path / "w.log") as again:
            assert again.pid != switch.pid
    assert open_states(sb) == {"wait"}


async def test_no_secret_in_argv_environment_or_log(
    sb: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TANX_ACCESS_TOKEN", sb.access)  # as a bot started from the shell has it
    monkeypatch.setenv("TANX_REFRESH_TOKEN", sb.refresh)
    log = tmp_path / "w.log"
    async with sb.session() as session, session.orders.dead_man_switch(log_file=log) as switch:
        await session.refresh()  # a new pair crosses the pipe
        tokens = session.tokens
        assert tokens is not None
        proc = Path(f"/proc/{switch.pid}")
        exposed = (proc / "cmdline").read_bytes() + (proc / "environ").read_bytes()
        await until(lambda: "tokens handed over" in log.read_text())
    text = log.read_text()
    assert "tokens handed over" in text
    for secret in (sb.access, sb.refresh, tokens.access, tokens.refresh or "?"):
        assert secret.encode() not in exposed
        assert secret not in text
    assert repr(switch).startswith("<DeadManSwitch timeout=2s every market")


async def test_cancellation_of_the_block_cancels_the_orders(sb: Sandbox, tmp_path: Path) -> None:
    reached = False
    async with sb.session() as session:
        with anyio.CancelScope() as scope:
            async with session.orders.dead_man_switch(log_file=tmp_path / "w.log") as switch:
                await anyio.sleep(0.3)
                scope.cancel()  # as a supervisor cancels the strategy's task
                await anyio.sleep(30)
            reached = True  # pragma: no cover - the cancellation goes on
        assert scope.cancelled_caught and not reached
        assert open_states(sb) == {"cancel"}
        assert not alive(switch.pid)  # cleared by the session itself: disarmed, exited
    assert "FIRING" not in (tmp_path / "w.log").read_text()


async def test_a_watchdog_that_dies_is_reported(
    sb: Sandbox, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.ERROR, "tanx_async.deadman")
    async with (
        sb.session() as session,
        session.orders.dead_man_switch(0.4, log_file=tmp_path / "w.log") as switch,
    ):
        assert switch.pid is not None
        os.kill(switch.pid, signal.SIGKILL)
        await until(lambda: "is gone" in caplog.text, seconds=10)
    assert f"watchdog (pid {switch.pid}) is gone" in caplog.text
    assert "orders are NOT guarded" in caplog.text


async def test_no_tokens_no_switch(sb: Sandbox) -> None:
    async with AsyncTanxSession(base_url=sb.server.url) as session:
        with pytest.raises(NotAuthenticatedError, match="hands the session's tokens"):
            async with session.orders.dead_man_switch():
                pass  # pragma: no cover
        assert my_watchdogs() == []
        # The refusal left nothing armed behind it.
        with pytest.raises(NotAuthenticatedError):
            async with session.orders.dead_man_switch():
                pass  # pragma: no cover


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"timeout": 0}, ValueError),
        ({"timeout": "2"}, TypeError),
        ({"markets": "btcusdc"}, TypeError),
        ({"markets": []}, ValueError),
        ({"markets": ["BTC-USDC"]}, ValueError),
        ({"deadline": -1}, ValueError),
    ],
)
def test_bad_arguments_are_refused_before_anything_starts(
    kwargs: dict[str, object], error: type[Exception]
) -> None:
    session = AsyncTanxSession(base_url="http://127.0.0.1:1", access_token="a", refresh_token="r")
    with pytest.raises(error):
        session.orders.dead_man_switch(**kwargs)  # type: ignore[arg-type]


# -- the watchdog over its pipe ----------------------------------------------------------------


def watchdog(sb: Sandbox, timeout: float = 2.0) -> tuple[subprocess.Popen[bytes], bytes]:
    """A watchdog process, and its ARM line (not sent yet)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tanx_async._watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        start_new_session=True,
    )
    assert proc.stdin is not None
    arm = {
        "type": "ARM",
        "base_url": sb.server.url,
        "timeout": timeout,
        "deadline": 10.0,
        "markets": None,
        "access": sb.access,
        "refresh": sb.refresh,
    }
    return proc, json.dumps(arm).encode() + b"\n"


def finish(proc: subprocess.Popen[bytes], lines: bytes | None = None) -> tuple[int, str, str]:
    """Write ``lines``, close the pipe, wait for the exit (bounded): code, stdout, stderr."""
    try:
        out, err = proc.communicate(lines, timeout=BOUND)
    finally:
        proc.kill()
        proc.wait()
    return proc.returncode, out.decode(), err.decode()


def test_disarm_exits_without_cancelling(sb: Sandbox) -> None:
    proc, arm = watchdog(sb)
    code, out, err = finish(proc, arm + b'{"type":"HEARTBEAT"}\n{"type":"DISARM"}\n')
    assert (code, out.split("\n")) == (0, ["ready", "disarmed", ""]), err
    assert open_states(sb) == {"wait"}
    assert not sb.exchange.requests


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        (b"HEARTBEAT\n", "a protocol line it could not read"),
        (b'{"type":"HEARTBEAT","x":' + b"1" * 70_000 + b"}\n", "a protocol line too long to read"),
        (b"", "its pipe closed"),
    ],
    ids=["garbage", "too-long", "eof"],
)
def test_a_broken_pipe_fires(sb: Sandbox, line: bytes, reason: str) -> None:
    proc, arm = watchdog(sb)
    code, out, err = finish(proc, arm + b'{"type":"HEARTBEAT"}\n' + line)
    assert code == 0, err
    assert out.startswith("ready\nfired " + reason), out
    assert open_states(sb) == {"cancel"}
    assert "nothing the switch covers is open" in err


def test_sigterm_fires(sb: Sandbox) -> None:
    proc, arm = watchdog(sb, timeout=30.0)
    assert proc.stdin is not None and proc.stdout is not None
    try:
        proc.stdin.write(arm)
        proc.stdin.flush()
        ready, _, _ = select.select([proc.stdout], [], [], BOUND)
        assert ready and proc.stdout.readline() == b"ready\n"
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    proc.send_signal(signal.SIGTERM)
    code, out, err = finish(proc)
    assert (code, out.strip()) == (0, "fired received SIGTERM"), err
    assert open_states(sb) == {"cancel"}


def test_no_arm_no_watchdog(sb: Sandbox) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tanx_async._watchdog"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    code, out, err = finish(proc, b'{"type":"HEARTBEAT"}\n')
    assert (code, out) == (3, ""), err
    assert "no valid ARM message" in err
    assert open_states(sb) == {"wait"}


def test_under_trio(sb: Sandbox, tmp_path: Path) -> None:
    """Heartbeats, disarm and the exception path on trio's loop as on asyncio's."""
    pytest.importorskip("trio")
    log = tmp_path / "w.log"

    async def main() -> None:
        async with sb.session() as session:
            async with session.orders.dead_man_switch(0.4, log_file=log) as switch:
                await anyio.sleep(1.0)  # 2.5 timeouts: only the heartbeats keep it quiet
                assert not switch.fired
            assert not alive(switch.pid)
            assert open_states(sb) == {"wait"}
            with pytest.raises(ZeroDivisionError):
                async with session.orders.dead_man_switch(0.4, log_file=log) as switch:
                    1 / 0  # noqa: B018
            assert open_states(sb) == {"cancel"}
            assert not alive(switch.pid)

    anyio.run(main, backend="trio")
    text = log.read_text()
    assert text.count("disarmed: exiting without cancelling") == 2
    assert "FIRING" not in text
