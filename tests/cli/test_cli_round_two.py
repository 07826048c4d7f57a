"""What a new user hit in the CLI, round two (issue 30, items 3 to 6), each through a real
``python -m tanx_async`` subprocess against a loopback sandbox."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable

import pytest

from tests.cli.test_cli import TIMEOUT, Sandbox, assert_clean, json_lines, run, sandbox

__all__ = ["sandbox"]  # the fixture, imported for its use below

ENV_KEYS = ("TANX_ACCESS_TOKEN", "TANX_REFRESH_TOKEN", "TANX_PRIVATE_KEY", "TANX_ETH_ADDRESS")


# -- item 3: each command's help says what that command does ---------------------------------------


def option_help(command: str, flag: str) -> str | None:
    """The help text of ``flag`` in ``tanx-async COMMAND --help``, on one line; None if not listed."""
    result = run(command, "--help")
    assert result.returncode == 0, result.stderr
    match = re.search(rf"^  {re.escape(flag)}\b.*?\n(?=  \S|\Z)", result.stdout, re.MULTILINE | re.DOTALL)
    return None if match is None else " ".join(match[0].split())


@pytest.mark.parametrize(
    ("command", "bounds"),
    [
        ("cancel", "each order's cancel"),
        ("cancel-all", "each page of the listing"),
        ("orders", "reading each page of orders"),
        ("order", "reading the order"),
        ("watch", "opening the stream"),
    ],
)
def test_deadline_help_says_what_each_command_bounds(command: str, bounds: str) -> None:
    text = option_help(command, "--deadline")
    assert text is not None
    assert bounds in text, text
    # The settling pass is a cancel's: only the cancelling commands mention it.
    assert ("settling pass" in text) == command.startswith("cancel"), text


def test_login_takes_no_deadline_and_says_what_bounds_it() -> None:
    """A login is bounded by its own 10 s, never by the operation deadline: ``--deadline`` there
    was a silent no-op, now refused like every option a command would ignore."""
    assert option_help("login", "--deadline") is None
    result = run("login", "--deadline", "1", env={"TANX_ACCESS_TOKEN": "t"})
    assert result.returncode == 2
    assert "login does not use --deadline (a login is bounded by its own 10 s" in result.stderr


@pytest.mark.parametrize("command", ["cancel", "orders", "watch", "logout"])
def test_network_help_says_tanx_base_url_wins_when_set(command: str) -> None:
    network = option_help(command, "--network")
    assert network is not None and "default: mainnet" not in network
    assert "TANX_BASE_URL when set, else mainnet" in network, network
    base_url = option_help(command, "--base-url")
    assert base_url is not None and "TANX_BASE_URL" in base_url


# -- item 4: refused credentials end every command the same way ------------------------------------

REFUSED_HINT = "the exchange refused TANX_REFRESH_TOKEN"


@pytest.mark.parametrize("extra", [[], ["--json"], ["--confirm"]])
def test_cancel_with_refused_tokens_exits_3_with_the_hint_and_every_row(
    sandbox: Sandbox, extra: list[str]
) -> None:
    """With ``--confirm`` the refusal comes first while the confirmation stream opens (and is
    handled there: polling instead); the cancels then find no credentials left."""
    json_mode = "--json" in extra
    ids = sandbox.exchange.seed_orders(sandbox.uid, 2)
    sandbox.exchange.expire_access_tokens()
    env = {**sandbox.env, "TANX_REFRESH_TOKEN": "not-a-refresh-token"}
    argv = ["cancel", *map(str, ids), *extra]
    result = run(*argv, env=env, url=sandbox.server.url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert REFUSED_HINT in result.stderr and "set fresh TANX_ACCESS_TOKEN" in result.stderr
    assert "AuthenticationError" in result.stderr
    # No outcome lost: one row (or JSON line) per order, as known.
    if json_mode:
        objs = json_lines(result.stdout)
        assert [o["order_id"] for o in objs] == ids
        assert {o["error_type"] for o in objs} == {"AuthenticationError"}
        assert not any(o["ok"] for o in objs)
    else:
        rows = result.stdout.splitlines()
        assert [row.split()[0] for row in rows[1:3]] == [str(i) for i in ids]
        # (With --confirm the cancels come after the refusal: theirs says the tokens were refused.)
        assert all("HTTP 401" in row for row in rows[1:3]), rows
        assert rows[-1] == "2 orders: 2 failed (0 ok, 2 not ok)"
    assert "not-a-refresh-token" not in result.stdout + result.stderr
    assert_clean(result)
    assert {sandbox.exchange.order(i).state for i in ids} == {"wait"}


@pytest.mark.parametrize(
    "argv", [["cancel", "{oid}"], ["cancel-all", "--market", "btcusdc"], ["orders"], ["order", "{oid}"]]
)
def test_a_refused_access_token_without_renewal_gets_the_same_ending(
    sandbox: Sandbox, argv: list[str]
) -> None:
    (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1, markets=("btcusdc",))
    args = [a.format(oid=oid) for a in argv]
    result = run(*args, env={"TANX_ACCESS_TOKEN": "not-a-token"}, url=sandbox.server.url)
    assert result.returncode == 3, result.stdout + result.stderr
    assert "the exchange refused TANX_ACCESS_TOKEN (expired or revoked)" in result.stderr
    assert "set fresh TANX_ACCESS_TOKEN and TANX_REFRESH_TOKEN" in result.stderr
    assert_clean(result)


# -- item 5: SIGTERM ends a command as Ctrl-C does ----------------------------------------------------


def catches_sigterm(pid: int) -> bool:
    """Whether the process has a SIGTERM handler installed (Linux: ``SigCgt`` in /proc), so that
    a signal sent now meets the command, not the interpreter still starting. Elsewhere: True."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as f:
            caught = next(line for line in f if line.startswith("SigCgt:")).split()[1]
    except (OSError, StopIteration):
        return True
    return bool(int(caught, 16) >> (signal.SIGTERM - 1) & 1)


def started(sandbox: Sandbox, *args: str, ready: Callable[[], bool]) -> subprocess.Popen[str]:
    """``python -m tanx_async --base-url URL args...``, once ``ready()`` holds and the command
    handles SIGTERM (bounded). (The sandbox's own records alone are not enough: a process left
    over from another test may reach a reused port first.)"""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")} | sandbox.env
    argv = [sys.executable, "-m", "tanx_async", "--base-url", sandbox.server.url, *args]
    proc = subprocess.Popen(argv, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def going() -> bool:
        return ready() and catches_sigterm(proc.pid)

    deadline = time.monotonic() + TIMEOUT
    while not going() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    if proc.poll() is not None or not going():
        proc.kill()
        pytest.fail(f"the command never got going: {proc.communicate(timeout=TIMEOUT)}")
    return proc


def terminated(proc: subprocess.Popen[str]) -> tuple[str, str]:
    """SIGTERM, then the output. (Killed by the signal's default action, the process would have
    no word on stderr and a return code of -15, not 143.)"""
    try:
        proc.send_signal(signal.SIGTERM)
        return proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_sigterm_stops_watch_like_ctrl_c(sandbox: Sandbox) -> None:
    proc = started(sandbox, "watch", "--json", ready=lambda: sandbox.exchange.ws.subscriptions == 1)
    out, err = terminated(proc)
    assert proc.returncode == 143, err
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err
    assert out == ""


def cancelled(sandbox: Sandbox) -> set[int | None]:
    return {r.order_id for r in sandbox.exchange.requests if r.path == "/sapi/v1/orders/cancel/"}


def test_sigterm_stops_a_hanging_cancel_like_ctrl_c(sandbox: Sandbox) -> None:
    (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1)
    sandbox.exchange.faults.black_hole = True  # the cancel hangs until the signal
    proc = started(sandbox, "cancel", str(oid), ready=lambda: oid in cancelled(sandbox))
    _, err = terminated(proc)
    assert proc.returncode == 143, err
    assert err.rstrip().endswith("interrupted") and "Traceback" not in err


# -- item 6: -v shows the library's own log only -------------------------------------------------------


def test_verbose_shows_the_librarys_log_and_not_asyncios(sandbox: Sandbox) -> None:
    sandbox.exchange.seed_orders(sandbox.uid, 1)
    result = run("-v", "orders", "--json", env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert any(" DEBUG tanx_async: GET /sapi/v1/orders/ -> 200" in line for line in lines), lines
    loggers = {m[1] for line in lines if (m := re.match(r"\S+ \S+ [A-Z]+ ([\w.]+): ", line))}
    assert loggers and all(name.split(".")[0] == "tanx_async" for name in loggers), loggers
    assert "Using selector" not in result.stderr
    assert sandbox.access not in result.stderr
