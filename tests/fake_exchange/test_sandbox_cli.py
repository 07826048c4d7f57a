"""``python -m tanx_async.testing`` in a real subprocess, and the sandbox package's import graph."""

from __future__ import annotations

import argparse
import ast
import os
import queue
import shlex
import signal
import subprocess
import sys
import threading
from pathlib import Path

import anyio
import httpx
import pytest

import tanx_async.testing
from tanx_async import AsyncTanxSession, CancelStatus
from tanx_async.testing.__main__ import build_parser, main
from tests.cli.test_cli import run
from tests.sandbox import running_sandbox

PACKAGE = Path(tanx_async.testing.__file__).parent
START_TIMEOUT = 20.0
STOP_TIMEOUT = 30.0


def test_help_documents_every_option(capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser()
    options = [a for a in parser._actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
    assert {o.dest for o in options} >= {"host", "port", "seed", "orders", "profile", "texts", "latency"}
    for action in options:
        assert action.help and len(action.help) > 15, action.option_strings
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    for action in options:
        assert action.option_strings[0] in out
    assert "mixed" in out and "random" in out


@pytest.mark.parametrize(
    "argv",
    [
        ["--host", "0.0.0.0"],
        ["--port", "70000"],
        ["--orders", "-1"],
        ["--profile", "new"],
        ["--latency", "-1"],
    ],
)
def test_bad_options_are_refused_before_anything_starts(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main(argv)
    assert done.value.code == 2
    assert "error:" in capsys.readouterr().err


def _reader(stream: object, lines: queue.Queue[str | None]) -> None:
    for line in stream:  # type: ignore[attr-defined]
        lines.put(line.rstrip("\n"))
    lines.put(None)


async def _point_a_bot_at(url: str, access: str, refresh: str, ids: list[int]) -> None:
    """What a user does with the printed lines: raw HTTP, then the library."""
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        health = await client.get("/sapi/v1/health/")
        assert health.json()["message"] == "Working fine!"
        order = await client.get(f"/sapi/v1/orders/{ids[0]}/", headers={"Authorization": f"JWT {access}"})
        assert order.status_code == 200 and order.json()["payload"]["state"] == "wait"
    async with AsyncTanxSession(base_url=url, access_token=access, refresh_token=refresh) as session:
        outcomes = await session.orders.cancel_many(ids, confirm=True, confirm_timeout=5)
    assert {o.status for o in outcomes} == {CancelStatus.CANCELLED}


@pytest.mark.skipif(sys.platform == "win32", reason="stops the server with SIGINT")
def test_serves_a_seeded_sandbox_and_prints_how_to_reach_it() -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    # A shell that starts the tests in the background (``nohup ... &``) has its children ignore
    # SIGINT, and Python keeps an ignored SIGINT ignored: restore Python's handler first.
    args = ["--seed", "4", "--orders", "12", "--profile", "mixed"]
    program = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['tanx_async.testing', *{args!r}]; "
        "runpy.run_module('tanx_async.testing', run_name='__main__', alter_sys=True)"
    )
    argv = [sys.executable, "-c", program]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_reader, args=(proc.stdout, lines), daemon=True).start()
    try:
        head: list[str] = []
        while len(head) < 6:
            line = lines.get(timeout=START_TIMEOUT)
            assert line is not None, (head, proc.stderr.read() if proc.stderr else "")
            head.append(line)
        exports = dict(
            shlex.split(line.removeprefix("export "))[0].split("=", 1)
            for line in head
            if line.startswith("export ")
        )
        url = exports["TANX_BASE_URL"]
        assert url.startswith("http://127.0.0.1:") and url in head[0]
        assert set(exports) == {"TANX_BASE_URL", "TANX_ACCESS_TOKEN", "TANX_REFRESH_TOKEN"}
        assert '--base-url "$TANX_BASE_URL"' in head[4]
        ids = [int(word) for word in head[5].split("ids ", 1)[1].split() if word.isdigit()]
        assert len(ids) == 5 and "12 open orders" in head[5]

        anyio.run(_point_a_bot_at, url, exports["TANX_ACCESS_TOKEN"], exports["TANX_REFRESH_TOKEN"], ids)
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            # It exits within a second: the bound is for a hang, and says what it saw.
            code = proc.wait(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
            said = proc.stderr.read()[-2000:] if proc.stderr else ""
            raise AssertionError(f"no exit within {STOP_TIMEOUT} s of SIGINT; stderr: {said!r}") from None
        finally:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()
    assert code == 0


def test_cancel_all_for_a_market_the_exchange_does_not_list_is_an_error() -> None:
    """It used to read as "no open orders" (the sandbox answered an empty list)."""
    with running_sandbox(seed=2) as sandbox:
        ids = sandbox.exchange.seed_orders(sandbox.uid, 3, markets=("btcusdc",))
        env = {"TANX_ACCESS_TOKEN": sandbox.access, "TANX_REFRESH_TOKEN": sandbox.refresh}
        result = run("cancel-all", "--market", "btcusdx", env=env, url=sandbox.server.url)
        assert result.returncode == 3, (result.stdout, result.stderr)
        assert "please enter a valid market" in result.stderr
        assert "no open orders" not in result.stdout
        assert {sandbox.exchange.order(i).state for i in ids} == {"wait"}


def _runtime_imports(path: Path) -> set[str]:
    """Modules of ``tanx_async.testing`` that ``path`` imports at runtime (function-level
    imports included, ``if TYPE_CHECKING:`` blocks excluded)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    visit(other)
                continue
            if isinstance(child, ast.ImportFrom) and child.level == 1:
                if child.module:
                    found.add(child.module.split(".")[0])
                else:
                    found.update(alias.name for alias in child.names)
            elif (
                isinstance(child, ast.ImportFrom)
                and child.module
                and child.module.startswith("tanx_async.testing.")
            ):
                found.add(child.module.split(".")[2])
            visit(child)

    visit(ast.parse(path.read_text(encoding="utf-8")))
    return found


def test_the_sandbox_package_has_no_import_cycle() -> None:
    modules = {p.stem: p for p in PACKAGE.glob("*.py")}
    graph = {name: _runtime_imports(path) & set(modules) for name, path in modules.items()}
    assert graph["_state"] >= {"_app"}  # the edge that used to close a cycle (it is real)
    cycles: list[list[str]] = []

    def walk(name: str, stack: list[str]) -> None:
        if name in stack:
            cycles.append([*stack[stack.index(name) :], name])
            return
        for nxt in sorted(graph[name]):
            walk(nxt, [*stack, name])

    for name in sorted(graph):
        walk(name, [])
    assert cycles == []


@pytest.mark.parametrize("rate", ["2", "-0.1", "nan"])
def test_a_rate_outside_0_to_1_is_a_usage_error(rate: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--error-rate", rate])
    assert exited.value.code == 2
    assert "must be a share from 0 to 1" in capsys.readouterr().err


def test_a_port_in_use_is_one_line_not_a_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit) as exited:
            main(["--port", str(port)])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert f"--port {port}: cannot listen on 127.0.0.1" in err and "Traceback" not in err
