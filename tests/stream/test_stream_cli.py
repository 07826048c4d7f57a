"""``tanx-async watch`` and ``--confirm`` by push, driven as a subprocess against the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

from tanx_async.cli import main
from tests.cli.test_cli import TIMEOUT, Sandbox, assert_clean, json_lines, run, sandbox

__all__ = ["sandbox"]  # the fixture, imported for its use below


def lookups(sandbox: Sandbox) -> int:
    return sum(
        1
        for r in sandbox.exchange.requests
        if r.method == "GET" and r.path.startswith("/sapi/v1/orders/") and r.path != "/sapi/v1/orders/"
    )


def watch(sandbox: Sandbox, *args: str) -> subprocess.Popen[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    environ.update(sandbox.env)
    argv = [sys.executable, "-m", "tanx_async", "--base-url", sandbox.server.url, "watch", *args]
    proc = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    hub = sandbox.exchange.ws
    for _ in range(int(TIMEOUT / 0.05)):  # bounded: until the subscription is acked
        if hub.subscriptions or proc.poll() is not None:
            break
        time.sleep(0.05)
    if hub.subscriptions != 1:
        proc.kill()
        pytest.fail(f"watch did not subscribe: {proc.communicate(timeout=TIMEOUT)[1]}")
    return proc


def test_watch_prints_order_and_trade_updates_as_json_lines(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    ids = ex.seed_orders(sandbox.uid, 3)
    proc = watch(sandbox, "--json", "--count", "4")
    ex.update_order(ids[0], state="cancel")
    ex.update_order(ids[1], state="cancel")
    order = ex.order(ids[2])
    ex.update_order(ids[2], state="done", executed_volume=order.origin_volume, remaining_volume="0.0")
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    events = json_lines(stdout)
    assert [e["event"] for e in events] == ["order", "order", "order", "trade"]
    assert [e["id"] for e in events[:3]] == ids and events[3]["order_id"] == ids[2]
    assert events[2]["state"] == "done" and isinstance(events[3]["amount"], str)
    assert "watching order,trade updates on ws://127.0.0.1" in stderr
    assert sandbox.access not in stdout + stderr


def test_watch_table_and_a_gap(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    (oid,) = ex.seed_orders(sandbox.uid, 1)
    proc = watch(sandbox, "--streams", "order", "--count", "2")
    ex.ws.drop_all()
    for _ in range(int(TIMEOUT / 0.05)):  # bounded: until the client has reconnected
        if ex.ws.subscriptions == 2:
            break
        time.sleep(0.05)
    ex.update_order(oid, state="cancel")
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, stderr
    header, gap, update = stdout.splitlines()
    assert header.split()[:3] == ["event", "id", "order"]
    assert gap.startswith("gap") and "reconnect" in gap
    assert update.split()[:3] == ["order", str(oid), str(oid)] and "cancel" in update


@pytest.mark.parametrize(("mode", "polls"), [("auto", False), ("poll", True)])
def test_cancel_confirm_uses_the_stream_unless_told_to_poll(sandbox: Sandbox, mode: str, polls: bool) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 5)
    result = run(
        "cancel", *map(str, ids), "--confirm", "--confirm-with", mode, "--json",
        env=sandbox.env, url=sandbox.server.url,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert_clean(result)
    assert [o["status"] for o in json_lines(result.stdout)] == ["cancelled"] * 5
    assert (lookups(sandbox) >= 5) is polls
    assert (sandbox.exchange.ws.accepted == 1) is not polls


@pytest.mark.parametrize("json_mode", [False, True])
def test_watch_in_process(
    sandbox: Sandbox, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], json_mode: bool
) -> None:
    for name, value in sandbox.env.items():
        monkeypatch.setenv(name, value)
    ex = sandbox.exchange
    (oid,) = ex.seed_orders(sandbox.uid, 1)

    def fill_once_subscribed() -> None:
        for _ in range(int(TIMEOUT / 0.05)):  # bounded: until the subscription is acked
            if ex.ws.subscriptions:
                break
            time.sleep(0.05)
        order = ex.order(oid)
        ex.update_order(oid, state="done", executed_volume=order.origin_volume, remaining_volume="0.0")

    thread = threading.Thread(target=fill_once_subscribed)
    thread.start()
    args = ["--base-url", sandbox.server.url, *(["--json"] if json_mode else []), "watch", "--count", "2"]
    code = main(args)
    thread.join(TIMEOUT)
    out = capsys.readouterr().out
    assert code == 0
    if json_mode:
        events = json_lines(out)
        assert [e["event"] for e in events] == ["order", "trade"] and events[1]["order_id"] == oid
    else:
        lines = out.splitlines()
        assert lines[1].split()[:3] == ["order", str(oid), str(oid)] and "done" in lines[1]
        assert lines[2].split()[0] == "trade" and lines[2].split()[2] == str(oid)
