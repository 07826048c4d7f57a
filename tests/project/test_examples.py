"""The programs in examples/ run as users run them: as processes against a loopback sandbox
(the kill switch also receives real signals). examples/test_bot.py runs as part of the suite."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tanx_async.testing import TanxSandbox

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
CANCEL_PATH = "/sapi/v1/orders/cancel/"
WAIT = 60.0  # upper bound for any one wait on a child process (never reached when all is well)


def start(sandbox: TanxSandbox | None, script: str, *args: str) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    if sandbox is not None:
        env |= {"TANX_ACCESS_TOKEN": sandbox.access_token, "TANX_REFRESH_TOKEN": sandbox.refresh_token}
        args = ("--base-url", sandbox.url, *args)
    return subprocess.Popen(
        [sys.executable, str(EXAMPLES / script), *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], text: str) -> str:
    """Lines of the child's output up to the one containing ``text`` (bounded by WAIT)."""
    assert proc.stdout is not None
    seen = ""
    deadline = time.monotonic() + WAIT
    while text not in seen:
        remaining = deadline - time.monotonic()
        ready, _, _ = select.select([proc.stdout], [], [], max(remaining, 0))
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            pytest.fail(f"no {text!r} from {proc.args!r} (exit {proc.wait()}); output so far:\n{seen}")
        seen += line
    return seen


def finish(proc: subprocess.Popen[str]) -> tuple[int, str]:
    try:
        out, _ = proc.communicate(timeout=WAIT)
    finally:
        proc.kill()
    return proc.returncode, out


def states(sandbox: TanxSandbox) -> set[str]:
    return {o.state for o in sandbox.exchange.orders_of(sandbox.uid)}


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.tanx_sandbox(orders=40)
def test_kill_switch_cancels_everything_on_a_signal(
    tanx_sandbox: TanxSandbox, signum: signal.Signals
) -> None:
    assert len({o.market for o in tanx_sandbox.exchange.orders_of(tanx_sandbox.uid)}) == 3
    proc = start(tanx_sandbox, "kill_switch.py", "--poll", "0.2")
    read_until(proc, "armed")
    assert states(tanx_sandbox) == {"wait"}  # armed, has not touched anything
    proc.send_signal(signum)
    code, out = finish(proc)
    assert code == 0, out
    assert f"firing: received {signum.name}" in out
    assert "cancelled: 40 orders: 40 cancelled" in out
    assert "nothing left open" in out
    assert states(tanx_sandbox) == {"cancel"}


@pytest.mark.tanx_sandbox(orders=40)
def test_kill_switch_killed_outright_still_cancels_everything(
    tanx_sandbox: TanxSandbox, tmp_path: Path
) -> None:
    """SIGKILL leaves the kill switch no chance to act: its dead man's switch's watchdog does."""
    log = tmp_path / "watchdog.log"
    proc = start(tanx_sandbox, "kill_switch.py", "--dead-man", "2", "--watchdog-log", str(log))
    read_until(proc, "armed")
    assert states(tanx_sandbox) == {"wait"}
    proc.kill()
    finish(proc)
    deadline = time.monotonic() + WAIT
    while states(tanx_sandbox) != {"cancel"} and time.monotonic() < deadline:
        time.sleep(0.05)
    assert states(tanx_sandbox) == {"cancel"}, log.read_text()
    assert "FIRING: its pipe closed" in log.read_text()


@pytest.mark.tanx_sandbox(orders=12)
def test_kill_switch_fires_on_the_risk_trigger(tanx_sandbox: TanxSandbox) -> None:
    proc = start(tanx_sandbox, "kill_switch.py", "--poll", "0.05", "--max-open-orders", "12")
    read_until(proc, "armed")
    tanx_sandbox.exchange.seed_orders(tanx_sandbox.uid, 1)  # the 13th open order trips it
    code, out = finish(proc)
    assert code == 0, out
    assert "firing: 13 open orders > limit 12" in out
    assert states(tanx_sandbox) == {"cancel"}


@pytest.mark.tanx_sandbox(orders=5)
def test_kill_switch_fires_on_the_trigger_file(tanx_sandbox: TanxSandbox, tmp_path: Path) -> None:
    trigger = tmp_path / "panic"
    proc = start(tanx_sandbox, "kill_switch.py", "--poll", "0.05", "--trigger-file", str(trigger))
    read_until(proc, "armed")
    trigger.touch()
    code, out = finish(proc)
    assert (code, states(tanx_sandbox)) == (0, {"cancel"}), out
    assert f"firing: trigger file {trigger} exists" in out


@pytest.mark.tanx_sandbox(orders=8, faults={"black_hole": True, "only_paths": (CANCEL_PATH,)})
def test_kill_switch_exits_non_zero_when_orders_stay_open(tanx_sandbox: TanxSandbox) -> None:
    proc = start(tanx_sandbox, "kill_switch.py", "--now", "--deadline", "0.5")
    code, out = finish(proc)
    assert code == 1, out
    assert "firing: --now" in out
    assert "cancelled: 8 orders: 8 unknown" in out
    assert "STILL OPEN: 8 orders (btcusdc: 3, btcusdt: 2, ethusdc: 3)" in out
    assert states(tanx_sandbox) == {"wait"}


@pytest.mark.tanx_sandbox(orders=4, faults={"error_rate": 1.0, "only_paths": ("/sapi/v1/orders/",)})
def test_kill_switch_exits_non_zero_when_it_cannot_check(tanx_sandbox: TanxSandbox) -> None:
    code, out = finish(start(tanx_sandbox, "kill_switch.py", "--now", "--deadline", "5"))
    assert code == 1, out
    assert "listing the open orders failed: HTTP 5" in out
    assert "COULD NOT VERIFY what is still open" in out
    assert "nothing left open" not in out
    assert states(tanx_sandbox) == {"wait"}


@pytest.mark.tanx_sandbox(orders=600)
def test_kill_switch_stopped_while_firing_still_reports_every_order(tanx_sandbox: TanxSandbox) -> None:
    """A second signal while cancelling stops it (exit 130): one line per order, each true."""
    tanx_sandbox.exchange.faults.latency = 0.05
    ids = {o.id for o in tanx_sandbox.exchange.orders_of(tanx_sandbox.uid)}
    proc = start(tanx_sandbox, "kill_switch.py", "--now", "--dead-man", "0")
    read_until(proc, "cancelling 600 open orders")
    deadline = time.monotonic() + WAIT
    while (
        not any(r.path == CANCEL_PATH for r in tanx_sandbox.exchange.requests) and time.monotonic() < deadline
    ):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    code, out = finish(proc)
    assert code == 130, out
    lines = [line.split() for line in out.splitlines() if line.startswith("  order ")]
    assert {int(words[1].rstrip(":")) for words in lines} == ids and len(lines) == len(ids)
    queued = {
        r.order_id
        for r in tanx_sandbox.exchange.requests
        if r.path == CANCEL_PATH and r.result == "cancel_queued"
    }
    for words in lines:
        oid, status = int(words[1].rstrip(":")), words[2].rstrip(":")
        assert status in {"queued", "cancelled", "already_closed", "unknown", "skipped"}, words
        if status == "skipped":
            assert oid not in queued
        elif status in {"queued", "cancelled"}:
            assert oid in queued
    assert "interrupted by SIGINT" in out and "COULD NOT VERIFY" in out


def test_kill_switch_wants_a_token() -> None:
    code, out = finish(start(None, "kill_switch.py", "--now"))
    assert (code, out.strip()) == (2, "set TANX_ACCESS_TOKEN (and TANX_REFRESH_TOKEN) in the environment")


def test_quoting_loop_program() -> None:
    proc = start(
        None, "quoting_loop.py", "--ticks", "3", "--tick", "0.05", "--deadline", "5", "--fail-rate", "0.3"
    )
    code, out = finish(proc)
    assert code == 0, out
    assert [line.split(":")[0] for line in out.splitlines()[:3]] == ["tick 0", "tick 1", "tick 2"]
    assert "3 ticks, 18 quotes placed, 18 pulled, " in out
    assert out.rstrip().endswith("cancels failed and retried, 0 left open")
