"""The ``tanx-async`` command line, driven as a user does: a subprocess against a loopback sandbox."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import pytest

from tanx_async import BadRequestError
from tanx_async.cli import main
from tanx_async.cli._args import UsageError, build_parser, credentials_from_env
from tanx_async.cli._demo import DemoOptions, run_demo
from tanx_async.cli._output import Output, print_outcomes
from tanx_async.models import CancelOutcome, CancelStatus
from tanx_async.testing import SandboxExchange, SandboxServer

KEY = "0x" + "11" * 32
ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
TIMEOUT = 60


class Sandbox:
    def __init__(self, exchange: SandboxExchange, server: SandboxServer, uid: str) -> None:
        self.exchange = exchange
        self.server = server
        self.uid = uid
        self.access, self.refresh = exchange.issue_tokens(uid)

    @property
    def env(self) -> dict[str, str]:
        return {"TANX_ACCESS_TOKEN": self.access, "TANX_REFRESH_TOKEN": self.refresh}


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    exchange = SandboxExchange(seed=7, cancel_delay=0.01)
    uid = exchange.create_user(ADDRESS)
    with SandboxServer(exchange) as server:
        yield Sandbox(exchange, server, uid)


def run(
    *args: str, env: dict[str, str] | None = None, url: str | None = None, timeout: float = TIMEOUT
) -> subprocess.CompletedProcess[str]:
    """``python -m tanx_async [--base-url url] args...`` with only the given TANX_* variables."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    environ.update(env or {})
    argv = [sys.executable, "-m", "tanx_async", *(("--base-url", url) if url else ()), *args]
    return subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=timeout)


def json_lines(text: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in result.stderr, result.stderr


# -- cancel ----------------------------------------------------------------------------------------


def test_cancel_table_with_an_unknown_id_exits_1(sandbox: Sandbox) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 2)
    result = run("cancel", str(ids[0]), "999", str(ids[1]), env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 1, result.stderr
    assert_clean(result)
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["order", "status", "ok"]
    rows = {line.split()[0]: line.split() for line in lines[1:4]}
    assert rows[str(ids[0])][1:3] == ["queued", "yes"]
    assert rows["999"][1:3] == ["not_found", "NO"]
    assert "HTTP 404: Order not found" in result.stdout
    assert lines[-1] == "3 orders: 2 queued, 1 not_found (2 ok, 1 not ok)"
    # In input order, and really cancelled on the exchange.
    assert [line.split()[0] for line in lines[1:4]] == [str(ids[0]), "999", str(ids[1])]
    time.sleep(0.05)
    assert {sandbox.exchange.order(i).state for i in ids} == {"cancel"}


def test_cancel_json_lines(sandbox: Sandbox) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 2)
    result = run("cancel", str(ids[0]), str(ids[1]), "999", "--json", env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 1
    objs = json_lines(result.stdout)
    assert [o["order_id"] for o in objs] == [ids[0], ids[1], 999]
    assert [o["status"] for o in objs] == ["queued", "queued", "not_found"]
    assert [o["ok"] for o in objs] == [True, True, False]
    assert objs[2]["error_type"] == "NotFoundError" and "Order not found" in objs[2]["error"]
    order = objs[0]["order"]
    assert order["id"] == ids[0] and isinstance(order["origin_volume"], str)
    Decimal(order["origin_volume"])  # Decimals travel as exact strings
    assert [o["note"] for o in objs] == [None, None, None]  # the key is always there
    assert result.stderr == ""


NOTED = (
    CancelOutcome(order_id=11, status=CancelStatus.QUEUED, attempts=1, elapsed=0.01),
    CancelOutcome(
        order_id=12,
        status=CancelStatus.CANCELLED,
        attempts=2,
        elapsed=0.02,
        note="settled by look-up 1 after no answer",
    ),
    CancelOutcome(
        order_id=13,
        status=CancelStatus.FAILED,
        error=BadRequestError("Order already cancelled", status_code=400, body=None, response=None),
        attempts=1,
        elapsed=0.03,
        note="the refusal's words suggest the order is off the book, but nothing confirmed it",
    ),
)


def test_outcome_notes_in_json_lines() -> None:
    out = io.StringIO()
    print_outcomes(Output(json_mode=True, stdout=out, stderr=io.StringIO()), NOTED)
    objs = json_lines(out.getvalue())
    assert [o["note"] for o in objs] == [None, NOTED[1].note, NOTED[2].note]
    assert [o["ok"] for o in objs] == [True, True, False]


def test_outcome_notes_under_the_table() -> None:
    out = io.StringIO()
    print_outcomes(Output(json_mode=False, stdout=out, stderr=io.StringIO()), NOTED)
    lines = out.getvalue().splitlines()
    assert [line.split()[0] for line in lines[:4]] == ["order", "11", "12", "13"]
    assert "HTTP 400: Order already cancelled" in lines[3]
    # One line per noted outcome, in order, after the table and before the summary.
    assert lines[4:6] == [
        f"note on order 12: {NOTED[1].note}",
        f"note on order 13: {NOTED[2].note}",
    ]
    assert lines[6:] == ["3 orders: 1 queued, 1 cancelled, 1 failed (2 ok, 1 not ok)"]


def test_cancel_all_ok_exits_0_and_confirm_waits(sandbox: Sandbox) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 3)
    result = run(
        "cancel",
        *map(str, ids),
        "--confirm",
        "--json",
        "--concurrency",
        "2",
        env=sandbox.env,
        url=sandbox.server.url,
    )
    assert result.returncode == 0, result.stderr
    assert [o["status"] for o in json_lines(result.stdout)] == ["cancelled"] * 3


def test_cancel_all_of_a_market(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    btc = ex.seed_orders(sandbox.uid, 6, markets=("btcusdc",))
    eth = ex.seed_orders(sandbox.uid, 2, markets=("ethusdc",))
    result = run(
        "cancel-all", "--market", "btcusdc", "--confirm", "--json", env=sandbox.env, url=sandbox.server.url
    )
    assert result.returncode == 0, result.stderr
    objs = json_lines(result.stdout)
    assert sorted(o["order_id"] for o in objs) == sorted(btc)
    assert {o["status"] for o in objs} == {"cancelled"}
    assert {ex.order(i).state for i in btc} == {"cancel"}
    assert {ex.order(i).state for i in eth} == {"wait"}
    # Nothing left: a friendly line and exit 0.
    again = run("cancel-all", "--market", "btcusdc", env=sandbox.env, url=sandbox.server.url)
    assert again.returncode == 0 and "no open orders in btcusdc" in again.stdout


# -- orders and order ------------------------------------------------------------------------------


def test_orders_json_and_limit(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    ids = ex.seed_orders(sandbox.uid, 7, markets=("btcusdc", "ethusdc"))
    result = run("orders", "--json", env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 0, result.stderr
    objs = json_lines(result.stdout)
    assert sorted(o["id"] for o in objs) == sorted(ids)
    for obj in objs:
        assert isinstance(obj["price"], str) and Decimal(obj["price"]) > 0
        assert obj["state"] == "wait" and obj["created_at"].endswith("+00:00")
    limited = run(
        "orders", "--json", "--limit", "3", "--market", "btcusdc", env=sandbox.env, url=sandbox.server.url
    )
    objs = json_lines(limited.stdout)
    assert len(objs) == 3 and {o["market"] for o in objs} == {"btcusdc"}
    table = run("orders", "--state", "wait", env=sandbox.env, url=sandbox.server.url)
    assert table.returncode == 0
    assert table.stdout.splitlines()[0].split()[:3] == ["id", "market", "side"]
    assert table.stdout.splitlines()[-1] == "7 orders"


def test_order_shows_one_order(sandbox: Sandbox) -> None:
    (oid,) = sandbox.exchange.seed_orders(sandbox.uid, 1, markets=("ethusdc",))
    result = run("order", str(oid), env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 0, result.stderr
    fields = dict(line.split(None, 1) for line in result.stdout.splitlines()[1:] if " " in line.strip())
    assert fields["id"].strip() == str(oid) and fields["market"].strip() == "ethusdc"
    as_json = run("order", str(oid), "--json", env=sandbox.env, url=sandbox.server.url)
    (obj,) = json_lines(as_json.stdout)
    assert obj["id"] == oid and len(obj["trades"]) == sandbox.exchange.order(oid).trades_count


def test_an_api_error_exits_3(sandbox: Sandbox) -> None:
    result = run("order", "12345", env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 3
    assert "NotFoundError" in result.stderr and "Order not found" in result.stderr
    assert_clean(result)


def test_an_expired_access_token_is_refreshed(sandbox: Sandbox) -> None:
    sandbox.exchange.seed_orders(sandbox.uid, 1)
    sandbox.exchange.expire_access_tokens()
    result = run("orders", "--json", env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 0, result.stderr
    assert sandbox.exchange.refresh_count == 1


def test_a_refused_refresh_token_says_what_to_set(sandbox: Sandbox) -> None:
    sandbox.exchange.expire_access_tokens()
    env = {**sandbox.env, "TANX_REFRESH_TOKEN": "not-a-refresh-token"}
    result = run("orders", env=env, url=sandbox.server.url)
    assert result.returncode == 3
    assert "AuthenticationError" in result.stderr
    assert "refused TANX_REFRESH_TOKEN" in result.stderr and "set fresh TANX_ACCESS_TOKEN" in result.stderr
    assert "not-a-refresh-token" not in result.stderr
    assert_clean(result)


# -- login -----------------------------------------------------------------------------------------


def test_login_prints_uid_and_expiry_not_tokens(sandbox: Sandbox) -> None:
    env = {"TANX_PRIVATE_KEY": KEY, "TANX_ETH_ADDRESS": ADDRESS}
    result = run("login", env=env, url=sandbox.server.url)
    assert result.returncode == 0, result.stderr
    assert sandbox.uid in result.stdout and ADDRESS in result.stdout
    assert "access token expires" in result.stdout
    assert "eyJ" not in result.stdout  # no JWT
    assert sandbox.exchange.login_count == 1
    shown = run("login", "--show-tokens", env=env, url=sandbox.server.url)
    assert shown.returncode == 0
    tokens = dict(line.split("=", 1) for line in shown.stdout.splitlines() if line.startswith("TANX_"))
    assert sandbox.exchange.decode_token(tokens["TANX_ACCESS_TOKEN"]) is not None
    assert sandbox.exchange.decode_token(tokens["TANX_REFRESH_TOKEN"]) is not None
    as_json = run("login", "--json", env=env, url=sandbox.server.url)
    (obj,) = json_lines(as_json.stdout)
    assert obj["uid"] == sandbox.uid and obj["access_expires_at"] and "access_token" not in obj
    for r in (result, shown, as_json):
        assert "11" * 32 not in r.stdout + r.stderr


def test_login_needs_a_wallet(sandbox: Sandbox) -> None:
    result = run("login", env=sandbox.env, url=sandbox.server.url)
    assert result.returncode == 2 and "TANX_PRIVATE_KEY" in result.stderr


def test_a_bad_key_is_a_usage_error_that_does_not_echo_it(sandbox: Sandbox) -> None:
    bad = "0x" + "ab" * 31
    result = run("orders", env={"TANX_PRIVATE_KEY": bad}, url=sandbox.server.url)
    assert result.returncode == 2 and "private_key" in result.stderr
    assert "ab" * 31 not in result.stderr + result.stdout
    wrong = run(
        "orders", env={"TANX_PRIVATE_KEY": KEY, "TANX_ETH_ADDRESS": "0x" + "22" * 20}, url=sandbox.server.url
    )
    assert wrong.returncode == 2 and "does not match" in wrong.stderr
    assert sandbox.exchange.requests == []


# -- usage and credentials -------------------------------------------------------------------------


def test_missing_credentials_exit_2_and_send_nothing(sandbox: Sandbox) -> None:
    result = run("cancel", "1", url=sandbox.server.url)
    assert result.returncode == 2
    assert "no credentials" in result.stderr and "TANX_ACCESS_TOKEN" in result.stderr
    assert result.stdout == ""
    assert_clean(result)
    assert sandbox.exchange.requests == []


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["cancel"],
        ["cancel", "abc"],
        ["cancel", "0"],
        ["orders", "--limit", "-1"],
        ["orders", "--state", "nope"],
        ["cancel-all"],
        ["cancel-all", "--market", "BTC-USDC!"],
        ["--network", "devnet", "orders"],
        ["--network", "testnet", "--base-url", "http://127.0.0.1:1", "orders"],
        ["frobnicate"],
        ["orders", "--timeout", "0"],
    ],
)
def test_bad_arguments_are_usage_errors(args: list[str]) -> None:
    result = run(*args, env={"TANX_ACCESS_TOKEN": "x"})
    assert result.returncode == 2, result.stdout + result.stderr
    assert "usage:" in result.stderr
    assert_clean(result)


def test_options_work_after_the_command_too() -> None:
    parser = build_parser()
    before = parser.parse_args(["--json", "--concurrency", "8", "cancel", "1"])
    after = parser.parse_args(["cancel", "1", "--json", "--concurrency", "8"])
    assert (before.json, before.concurrency) == (after.json, after.concurrency) == (True, 8)
    assert parser.parse_args(["cancel", "1"]).json is False


def test_main_returns_exit_codes_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    assert "credentials (environment only)" in capsys.readouterr().out
    assert main(["cancel"]) == 2


def test_credentials_come_from_the_environment_only() -> None:
    with pytest.raises(UsageError, match="no credentials"):
        credentials_from_env({})
    with pytest.raises(UsageError, match="TANX_PRIVATE_KEY is not"):
        credentials_from_env({"TANX_ETH_ADDRESS": ADDRESS})
    creds = credentials_from_env({"TANX_PRIVATE_KEY": f" {KEY}\n", "TANX_ETH_ADDRESS": ADDRESS})
    assert creds.private_key == KEY and "11" * 32 not in repr(creds)
    assert credentials_from_env({"TANX_REFRESH_TOKEN": "r"}).refresh_token == "r"


def test_plain_table_is_aligned() -> None:
    out = io.StringIO()
    Output(json_mode=False, stdout=out, stderr=io.StringIO()).table(
        [("id", "r"), ("name", "l")], [["1", "alpha"], ["100", "b"]]
    )
    assert out.getvalue().splitlines() == [" id  name", "  1  alpha", "100  b"]


# -- Ctrl-C and the demo ---------------------------------------------------------------------------


def test_ctrl_c_exits_130_without_a_traceback(sandbox: Sandbox) -> None:
    sandbox.exchange.faults.black_hole = True  # the request hangs until we press Ctrl-C
    # The shell running the tests may ignore SIGINT in children; restore Python's handler first.
    code = (
        "import runpy, signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        f"sys.argv = ['tanx-async', '--base-url', {sandbox.server.url!r}, 'orders']; "
        "runpy.run_module('tanx_async', run_name='__main__')"
    )
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")} | sandbox.env
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        # The request is logged when the app hands it to the server to black-hole.
        while not sandbox.exchange.requests and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        assert sandbox.exchange.requests, "the command never reached the exchange"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err
    assert out == ""


def test_demo_exits_0_and_prints_the_summary() -> None:
    result = run("demo", "--orders", "200", "--seed", "3", timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    for label in ("orders", "outcomes", "wall time", "latency", "faults", "auth", "check"):
        assert f"  {label} " in out, out
    assert "mismatches = 0" in out and "0 orders left open" in out
    assert "logins 1, refreshes 1" in out and "logged in by signature" in out
    assert "cancelled 200" in out
    assert_clean(result)


def test_demo_json_without_faults() -> None:
    result = run("demo", "--orders", "60", "--no-faults", "--latency", "0", "--json", timeout=120)
    assert result.returncode == 0, result.stderr
    (report,) = json_lines(result.stdout)
    assert report["ok"] is True and report["mismatches"] == []
    assert report["by_status"]["cancelled"] == 60 and report["refreshes"] == 0 and report["logins"] == 1


async def test_demo_without_eth_account_uses_issued_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "eth_account", None)
    seen: list[int] = []
    report = await run_demo(
        DemoOptions(orders=40, latency=0.0, faults=False, seed=1),
        on_progress=lambda done, _: seen.append(done),
    )
    assert report.ok and report.wallet is None and report.logins == 0
    assert report.note is not None and "tanx-async[login]" in report.note
    assert seen[-1] == report.orders == 44  # 40 open + 2 cancelled + 2 filled
