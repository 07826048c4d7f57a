"""What a new user hit (issue 13, items 3, 5, 6, 7): checked input, bounded waits, clear errors.

CLI items run as real subprocesses against loopback servers (the sandbox, or a one-route stub
that answers like the real exchange where the sandbox does not yet).
"""

from __future__ import annotations

import argparse
import contextlib
import http.server
import io
import json
import os
import pty
import re
import select
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import respx
from hypothesis import given, settings
from hypothesis import strategies as st

from tanx_async import InvalidOrderIdError
from tanx_async.cli import main
from tanx_async.cli._args import _USED_BY, UsageError, build_parser
from tanx_async.cli._commands import exchange_url
from tanx_async.cli._output import Output
from tanx_async.cli._waiting import Waiting, should_show
from tanx_async.events import RequestEvent
from tanx_async.testing import SandboxExchange, SandboxServer
from tests.conftest import open_session

TOP = 2**63 - 1


class Served:
    def __init__(self, exchange: SandboxExchange, url: str, env: dict[str, str], ids: list[int]) -> None:
        self.exchange, self.url, self.env, self.ids = exchange, url, env, ids


@pytest.fixture
def served() -> Iterator[Served]:
    exchange = SandboxExchange(seed=13)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 3)
    with SandboxServer(exchange) as server:
        yield Served(exchange, server.url, {"TANX_ACCESS_TOKEN": access, "TANX_REFRESH_TOKEN": refresh}, ids)


def cli(*args: str, env: dict[str, str] | None = None, **popen: Any) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
    environ.update(env or {})
    result = subprocess.run(
        [sys.executable, "-m", "tanx_async", *args],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        **popen,
    )
    assert "Traceback" not in result.stderr, result.stderr
    return result


# -- item 3: order ids are 64-bit ---------------------------------------------------------------


@pytest.mark.parametrize("command", ["cancel", "order"])
@pytest.mark.parametrize("oid", [2**70, 2**63, 0])
def test_cli_order_id_out_of_range_is_a_usage_error(served: Served, command: str, oid: int) -> None:
    result = cli("--base-url", served.url, command, str(oid), env=served.env)
    assert result.returncode == 2
    assert "2**63-1 (9223372036854775807)" in result.stderr
    assert served.exchange.requests == []  # nothing was sent


def test_cli_the_largest_order_id_is_sent(served: Served) -> None:
    result = cli("--base-url", served.url, "cancel", str(TOP), "--json", env=served.env)
    assert result.returncode == 1  # sent, and the exchange does not know it
    assert json.loads(result.stdout)["status"] == "not_found"


async def test_api_order_id_range(router: respx.Router) -> None:
    route = router.post("https://api.tanx.fi/sapi/v1/orders/cancel/")
    async with open_session(router) as session:
        for bad in (2**63, 2**70):
            with pytest.raises(InvalidOrderIdError, match=r"1 to 2\*\*63-1"):
                await session.orders.cancel(bad)
            with pytest.raises(InvalidOrderIdError, match=r"1 to 2\*\*63-1"):
                await session.orders.cancel_many([1, bad])
            with pytest.raises(ValueError, match=r"1 to 2\*\*63-1"):
                await session.orders.get(bad)
    assert route.call_count == 0


# -- item 5: a silent exchange is answered within the deadline, and the CLI says it waits -----


def test_cli_against_a_silent_exchange_reports_unknown_within_the_deadline(served: Served) -> None:
    served.exchange.faults.black_hole = True
    started = time.monotonic()
    result = cli("--base-url", served.url, "--deadline", "1.5", "cancel", str(served.ids[0]), env=served.env)
    assert time.monotonic() - started < 20  # a subprocess start included; was 41 s
    assert result.returncode == 1
    row = result.stdout.splitlines()[1].split()
    assert row[:3] == [str(served.ids[0]), "unknown", "NO"]
    assert "deadline of 1.5 s" in result.stdout
    assert "waiting" not in result.stderr  # stderr is a pipe here, not a terminal


def test_cli_on_a_terminal_says_what_it_waits_for(served: Served) -> None:
    served.exchange.faults.black_hole = True
    argv = [sys.executable, "-m", "tanx_async", "--base-url", served.url, "--deadline", "2.5"]
    argv += ["cancel", str(served.ids[0])]
    primary, secondary = pty.openpty()
    try:
        with subprocess.Popen(
            argv,
            env={**{k: v for k, v in os.environ.items() if not k.startswith("TANX_")}, **served.env},
            stdout=subprocess.PIPE,
            stderr=secondary,
        ) as proc:
            os.close(secondary)
            secondary = -1
            seen = b""
            end = time.monotonic() + 30
            while time.monotonic() < end:
                ready, _, _ = select.select([primary], [], [], 0.5)
                if ready:
                    try:
                        chunk = os.read(primary, 4096)
                    except OSError:  # the child closed its end
                        break
                    if not chunk:
                        break
                    seen += chunk
                elif proc.poll() is not None:
                    break
            assert proc.wait(timeout=30) == 1
    finally:
        os.close(primary)
        if secondary >= 0:
            os.close(secondary)
    text = seen.decode(errors="replace")
    host = served.url.split("://", 1)[1]
    assert f"waiting for {host} (cancelling 1 order): no answer for" in text
    assert "deadline 2.5 s per operation" in text
    assert text.rstrip().endswith("\x1b[K") or "\r\x1b[K" in text  # the line is erased


def test_waiting_line_decision() -> None:
    assert should_show(io.StringIO()) is False

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    assert should_show(Terminal()) is True
    waiting = Waiting(io.StringIO(), "api.tanx.fi", 10.0, enabled=True, after=1.0)
    waiting.doing = "reading order 5"
    start = time.monotonic()
    assert waiting.line(start) is None  # not quiet for long yet
    later = waiting.line(start + 3.2)
    assert later is not None
    assert later.startswith("waiting for api.tanx.fi (reading order 5): no answer for 3 s, deadline 10 s")
    waiting.on_event(
        RequestEvent(kind="retry", method="GET", path="/sapi/v1/orders/5/", error="APITimeoutError")
    )
    retried = waiting.line(time.monotonic() + 2)
    assert retried is not None and retried.endswith("retrying GET /sapi/v1/orders/5/ after APITimeoutError")
    waiting.enabled = False
    assert waiting.line(time.monotonic() + 60) is None


# -- item 6: plain http to a remote host -------------------------------------------------------


def test_cli_refuses_plain_http_to_a_remote_host_in_cli_words() -> None:
    result = cli("--base-url", "http://exchange.example", "cancel", "1", env={"TANX_ACCESS_TOKEN": "t"})
    assert result.returncode == 2
    assert "--allow-insecure-http" in result.stderr
    assert "allow_insecure_http=True" not in result.stderr


def test_cli_refuses_credentials_in_the_base_url_without_echoing_them() -> None:
    result = cli(
        "--base-url", "https://user:s3cret@exchange.example", "cancel", "1", env={"TANX_ACCESS_TOKEN": "t"}
    )
    assert result.returncode == 2
    assert "--base-url must not carry a user name or password" in result.stderr
    assert "s3cret" not in result.stderr + result.stdout


@pytest.mark.parametrize(
    ("argv", "variable"),
    [
        (["--access-token", "s3cret", "orders"], "TANX_ACCESS_TOKEN"),
        (["orders", "--access-token=s3cret"], "TANX_ACCESS_TOKEN"),
        (["--token", "s3cret", "cancel", "1"], "TANX_ACCESS_TOKEN"),
        (["cancel", "1", "--refresh-token", "s3cret"], "TANX_REFRESH_TOKEN"),
        (["--private-key", "s3cret", "login"], "TANX_PRIVATE_KEY"),
        (["watch", "--private-key"], "TANX_PRIVATE_KEY"),
    ],
)
def test_cli_refuses_credentials_as_options_without_echoing_them(
    argv: list[str], variable: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # argparse took "--access-token s3cret orders"'s value for the command and printed
    # "invalid choice: 's3cret'".
    assert main(argv) == 2
    out, err = capsys.readouterr()
    assert f"set {variable} in the environment" in err
    assert "s3cret" not in out + err
    assert "--access-token" not in build_parser().format_help()


def test_allow_insecure_http_warns() -> None:
    # In-process: following the flag would send packets to a remote host.
    args = argparse.Namespace(base_url="http://exchange.example/", network=None, allow_insecure_http=True)
    err = io.StringIO()
    url = exchange_url(args, Output(json_mode=False, stdout=io.StringIO(), stderr=err))
    assert url == "http://exchange.example"
    assert "warning: --allow-insecure-http" in err.getvalue() and "unencrypted" in err.getvalue()
    args.allow_insecure_http = False
    with pytest.raises(UsageError, match="--allow-insecure-http"):
        exchange_url(args, Output(json_mode=False, stdout=io.StringIO(), stderr=err))


# -- item 7: the same validation everywhere ---------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["demo", "--network", "testnet"], "demo does not use --network"),
        (["--base-url", "http://127.0.0.1:9", "demo"], "demo does not use --base-url"),
        (["demo", "--timeout", "3"], "demo does not use --timeout"),
        (["logout", "--concurrency", "3"], "logout does not use --concurrency"),
        (["logout", "--no-token-cache"], "logout does not use --no-token-cache"),
        (["login", "--concurrency", "3"], "login does not use --concurrency"),
        (["orders", "--state", "bogus"], "invalid choice: 'bogus'"),
        (["cancel", "--confirm-with", "poll", "5"], "--confirm-with chooses how --confirm waits"),
        (["cancel", "--", "+5"], "expected an order id"),
        (["cancel", "1_000"], "expected an order id"),
        (["cancel", "--", " 5"], "expected an order id"),
        (["cancel", "\u0665"], "expected an order id"),  # ARABIC-INDIC DIGIT FIVE
        (["--concurrency", "1_0", "cancel", "5"], "expected a positive integer"),
        (["demo", "--orders", "100001"], "expected an integer from 1 to 100,000"),
        (["--base-url", "http://127.0.0.1:99999", "order", "5"], "port from 1 to 65535"),
        (["--base-url", "http://127.0.0.1:abc", "cancel", "5"], "port from 1 to 65535"),
    ],
)
def test_cli_rejects_what_it_would_ignore(argv: list[str], message: str) -> None:
    result = cli(*argv, env={"TANX_ACCESS_TOKEN": "t"})
    assert result.returncode == 2
    assert message in result.stderr


@pytest.mark.parametrize(
    "command", ["cancel", "cancel-all", "watch", "orders", "order", "login", "logout", "demo"]
)
def test_a_commands_help_lists_only_the_options_it_uses(command: str) -> None:
    """``demo --help`` listed ``--base-url``, ``--deadline`` and others that ``demo`` then
    refused; each command's help now shows exactly the global options it takes."""
    (commands_action,) = [a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction)]
    text = commands_action.choices[command].format_help()
    for dest, commands in _USED_BY.items():
        flag = "--" + dest.replace("_", "-")
        listed = re.search(rf"^\s+(-\w, )?{re.escape(flag)}\b", text, re.MULTILINE) is not None
        assert listed == (command in commands), (command, flag)


async def test_api_filters_reject_unknown_values_with_the_known_ones(router: respx.Router) -> None:
    route = router.get("https://api.tanx.fi/sapi/v1/orders/")
    async with open_session(router) as session:
        filter_cases: list[tuple[dict[str, Any], str]] = [
            ({"state": "bogus"}, "pending, wait, done, cancel"),
            ({"ord_type": "iceberg"}, "limit, market, stop_limit, limit_maker"),
            ({"side": "BUY"}, "'buy' or 'sell'"),
            ({"order_by": "up"}, "asc, desc"),
        ]
        for filters, known in filter_cases:
            with pytest.raises(ValueError, match=known):
                await session.orders.list(**filters)
            with pytest.raises(ValueError, match=known):
                await anext(session.orders.iter(**filters))
    assert route.call_count == 0


class _InvalidMarket(http.server.BaseHTTPRequestHandler):
    """The real exchange's answer to an unknown market (its documented errors)."""

    def do_GET(self) -> None:
        body = json.dumps(
            {"status": "error", "message": "please enter a valid market", "payload": ""}
        ).encode()
        self.send_response(400)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_cli_cancel_all_reports_the_exchanges_400_for_an_unknown_market() -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _InvalidMarket)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli(
            "--base-url", url, "cancel-all", "--market", "doesnotexist", env={"TANX_ACCESS_TOKEN": "t"}
        )
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    assert result.returncode == 3
    assert "BadRequestError" in result.stderr and "please enter a valid market" in result.stderr
    assert "no open orders" not in result.stdout


@given(st.integers(min_value=-(2**70), max_value=2**70) | st.sampled_from([0, 1, TOP, TOP + 1, -1]))
@settings(max_examples=200)
def test_cli_order_id_parser_accepts_exactly_the_64_bit_range(value: int) -> None:
    parser = build_parser()
    if 1 <= value <= TOP:
        assert parser.parse_args(["order", str(value)]).id == value
    else:
        with pytest.raises(SystemExit), contextlib.redirect_stderr(io.StringIO()) as err:
            parser.parse_args(["order", "--", str(value)])
        assert "2**63-1" in err.getvalue()


def test_cli_takes_the_exchange_from_tanx_base_url(served: Served) -> None:
    """What ``python -m tanx_async.testing`` prints to paste: without ``--base-url`` or
    ``--network``, ``TANX_BASE_URL`` is the exchange (it was ignored: the cancel went to
    mainnet)."""
    oid = served.ids[0]
    result = cli("--json", "cancel", str(oid), env={**served.env, "TANX_BASE_URL": served.url})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["status"] == "queued"
    assert served.exchange.order(oid).cancel_queued or served.exchange.order(oid).state == "cancel"


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["order", "5"], 2, "TANX_BASE_URL must be an http(s) URL"),  # named as the user set it
        (
            ["--base-url", "http://127.0.0.1:9", "--deadline", "1", "order", "5"],
            3,
            "127.0.0.1:9",
        ),  # flag wins
    ],
)
def test_cli_names_tanx_base_url_and_lets_the_flag_win(argv: list[str], code: int, message: str) -> None:
    result = cli(*argv, env={"TANX_ACCESS_TOKEN": "t", "TANX_BASE_URL": "ftp://x"})
    assert result.returncode == code
    assert message in result.stderr


def test_cli_demo_ignores_tanx_base_url() -> None:
    result = cli("demo", "--orders", "5", "--json", env={"TANX_BASE_URL": "https://api.tanx.fi"})
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[-1])["url"].startswith("http://127.0.0.1:")
