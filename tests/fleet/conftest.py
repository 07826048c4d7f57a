"""Fixtures of the fleet tests: a sandbox with short-lived tokens, a real redis-server, and
member processes (``child.py``) started with ``sys.executable``."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from tanx_async.testing import SandboxExchange, SandboxServer

CHILD = Path(__file__).with_name("child.py")
ROOT = Path(__file__).resolve().parents[2]
#: Any member run longer than this is killed and the test fails (bounded in time).
CHILD_TIMEOUT = 90.0
ADDRESS = "0x1563915e194D8CfBA1943570603F7606A3115508"


@attrs.define
class Desk:
    """A sandbox exchange on loopback with one account and its seeded open orders."""

    exchange: SandboxExchange
    server: SandboxServer
    uid: str
    access: str = attrs.field(repr=False)
    refresh: str = attrs.field(repr=False)
    ids: list[int]
    #: When the exchange issued ``access``: on its clock, and on ``time.monotonic`` (the clock
    #: of its request log).
    issued_at: float
    issued_mono: float

    def wall(self, mono: float) -> float:
        """A request log time on the exchange's clock."""
        return self.issued_at + (mono - self.issued_mono)

    def spec(self, **changes: Any) -> dict[str, Any]:
        return {"url": self.server.url, "access": self.access, "refresh": self.refresh, **changes}

    def rounds(self, members: int, rounds: int, per_round: int) -> list[list[list[int]]]:
        """Each member's rounds of distinct order ids (no id cancelled twice)."""
        need = members * rounds * per_round
        assert need <= len(self.ids)
        ids = iter(self.ids)
        return [[[next(ids) for _ in range(per_round)] for _ in range(rounds)] for _ in range(members)]

    def refreshes(self, result: str) -> int:
        return sum(1 for r in list(self.exchange.requests) if r.result == result)


@contextlib.contextmanager
def desk(orders: int, **exchange_kwargs: Any) -> Iterator[Desk]:
    exchange = SandboxExchange(seed=31, cancel_delay=0.0, **exchange_kwargs)
    exchange.verify_signatures = False
    uid = exchange.create_user(ADDRESS)
    ids = exchange.seed_orders(uid, orders)
    issued_at, issued_mono = exchange.now(), time.monotonic()
    access, refresh = exchange.issue_tokens(uid)
    with SandboxServer(exchange) as server:
        yield Desk(exchange, server, uid, access, refresh, ids, issued_at, issued_mono)


def start(spec: dict[str, Any]) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, str(CHILD), json.dumps(spec)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


@attrs.frozen
class Result:
    returncode: int
    report: dict[str, Any]
    stderr: str


def finish(process: subprocess.Popen[str]) -> Result:
    try:
        out, err = process.communicate(timeout=CHILD_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        pytest.fail(f"a member ran longer than {CHILD_TIMEOUT} s; stderr: {err[-2000:]}")
    assert "Traceback" not in err, err
    lines = out.strip().splitlines()
    report = json.loads(lines[-1]) if lines else {}
    return Result(process.returncode, report, err)


def run_members(specs: list[dict[str, Any]]) -> list[Result]:
    """Start every member at once (real processes) and wait for all of them."""
    processes = [start(spec) for spec in specs]
    return [finish(p) for p in processes]


# -- a real redis-server -------------------------------------------------------------------------


def redis_binary() -> str | None:
    found = shutil.which("redis-server")
    if found is None and os.access("/usr/bin/redis-server", os.X_OK):
        found = "/usr/bin/redis-server"
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@attrs.define
class RedisServer:
    binary: str
    port: int
    folder: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                self.binary,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.folder),
                "--protected-mode",
                "yes",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(500):  # up to 5 s for it to answer
            if self.process.poll() is not None:
                pytest.fail(f"redis-server exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.01)
        pytest.fail("redis-server did not answer PING within 5 s")

    def freeze(self) -> None:
        """SIGSTOP: the server keeps its connections and answers nothing."""
        assert self.process is not None
        self.process.send_signal(signal.SIGSTOP)

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGCONT)  # (a frozen server would not see SIGTERM)
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def running_redis(folder: Path) -> Iterator[RedisServer]:
    """A redis-server from Debian's package on a free 127.0.0.1 port, stopped at the end
    (``scripts/test.py`` installs it as root with apt-get; the test is skipped, saying why,
    without it or without redis-py)."""
    pytest.importorskip("redis", reason="redis-py is not installed (the `redis` extra)")
    binary = redis_binary()
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/test.py installs Debian's redis-server as root)")
    server = RedisServer(binary, free_port(), folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """``running_redis`` for the test."""
    with running_redis(tmp_path) as server:
        yield server
