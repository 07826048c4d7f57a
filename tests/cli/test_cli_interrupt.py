"""Ctrl-C or SIGTERM in the middle of ``tanx-async cancel`` (issue 28, item 4): a real process, a
real signal. The command prints one row (or JSON line) for every id given, each as known: the
cancels the exchange processed ``queued``, the ones under way ``unknown``, the ones never sent
``skipped``; then it says ``interrupted`` and exits 130 (SIGINT) or 143 (SIGTERM)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator

import pytest

from tests.cli.test_cli import TIMEOUT
from tests.cli.test_cli_round_two import catches_sigterm
from tests.sandbox import Sandbox, processed_cancels, running_sandbox


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=5, cancel_delay=0.0) as sb:
        yield sb


def env_of(sandbox: Sandbox) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    return environ | {"TANX_ACCESS_TOKEN": sandbox.access, "TANX_REFRESH_TOKEN": sandbox.refresh}


def interrupted(sandbox: Sandbox, ids: list[int], sig: signal.Signals, *extra: str) -> tuple[int, str, str]:
    """``tanx-async cancel IDS... --json`` with ``sig`` sent once 50 cancels reached the exchange."""
    # The shell running the tests may ignore SIGINT in children; restore Python's handler first.
    code = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['tanx-async', '--base-url', {sandbox.server.url!r}, 'cancel', *sys.argv[1:]]; "
        "runpy.run_module('tanx_async', run_name='__main__')"
    )
    environ = env_of(sandbox)
    argv = [sys.executable, "-c", code, *map(str, ids), "--json", "--concurrency", "8", *extra]
    proc = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline and proc.poll() is None:
            if len(processed_cancels(sandbox.exchange)) >= 50 and catches_sigterm(proc.pid):
                break
            time.sleep(0.01)
        assert proc.poll() is None, proc.communicate()
        proc.send_signal(sig)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    return proc.returncode, out, err


@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_cancel_prints_every_id_as_known(
    sandbox: Sandbox, sig: signal.Signals, code: int
) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 1000)
    sandbox.exchange.faults.latency = 0.02  # 8 at a time: about 400 cancels a second
    returncode, out, err = interrupted(sandbox, ids, sig)
    assert returncode == code, err
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err
    lines = [json.loads(line) for line in out.splitlines()]
    assert [line["order_id"] for line in lines] == ids  # every id, once, in the order given
    processed = processed_cancels(sandbox.exchange)
    by_status = Counter(line["status"] for line in lines)
    assert by_status["queued"] >= 50 and by_status["skipped"] >= 1, by_status
    assert set(by_status) <= {"queued", "unknown", "skipped"}, by_status
    for line in lines:
        if line["status"] == "queued":
            assert line["order_id"] in processed
        elif line["status"] == "skipped":
            assert line["order_id"] not in processed  # never sent
    assert by_status["unknown"] <= 8


def test_an_interrupted_cancel_prints_the_table_too(sandbox: Sandbox) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 400)
    sandbox.exchange.faults.latency = 0.02
    code = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['tanx-async', '--base-url', {sandbox.server.url!r}, 'cancel', *sys.argv[1:]]; "
        "runpy.run_module('tanx_async', run_name='__main__')"
    )
    environ = env_of(sandbox)
    proc = subprocess.Popen(
        [sys.executable, "-c", code, *map(str, ids), "--concurrency", "4"],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while len(processed_cancels(sandbox.exchange)) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    rows = out.splitlines()
    assert rows[0].split()[:2] == ["order", "status"]
    assert [int(row.split()[0]) for row in rows[1 : 1 + len(ids)]] == ids
    assert rows[-1].startswith(f"{len(ids)} orders: ")
