"""The ``tanx-async`` command line: cancel orders, list them, log in, run the demo.

Credentials come from the environment only (a key or token in argv shows up in ``ps``):
``TANX_ACCESS_TOKEN`` (+ ``TANX_REFRESH_TOKEN``), or ``TANX_PRIVATE_KEY`` + ``TANX_ETH_ADDRESS``.
Output is a table (rich when installed and stdout is a terminal, plain text otherwise) or, with
``--json``, JSON lines for scripts. Exit codes: 0 ok, 1 some cancel was not ok, 2 usage or
credentials, 3 an API error, 130 interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import enum
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TextIO

import attrs

from . import _constants as C
from . import _validate as V
from ._config import pool_limits
from ._errors import APIError, MissingDependencyError, NotAuthenticatedError, TanxError, brief
from .models import CancelOutcome, Order, OrderState

if TYPE_CHECKING:
    from ._session import AsyncTanxSession

__all__ = ["main"]

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_INTERRUPTED = 130
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports

#: Batches at least this long get a progress bar (when stderr is a terminal and rich is there).
PROGRESS_MIN = 50

ENV_ACCESS = "TANX_ACCESS_TOKEN"
ENV_REFRESH = "TANX_REFRESH_TOKEN"
ENV_KEY = "TANX_PRIVATE_KEY"
ENV_ADDRESS = "TANX_ETH_ADDRESS"

_MISSING_CREDENTIALS = (
    f"no credentials: set {ENV_ACCESS} (and {ENV_REFRESH}), or {ENV_KEY} and {ENV_ADDRESS}, "
    "in the environment (never on the command line, where `ps` shows them)"
)

_EPILOG = f"""\
credentials (environment only):
  {ENV_ACCESS}, {ENV_REFRESH}   JWT tokens from a previous login
  {ENV_KEY}, {ENV_ADDRESS}      wallet login (needs: pip install 'tanx-async[login]')

exit codes: 0 ok, 1 a cancel outcome is not ok, 2 usage or credential error,
            3 API error, 130 interrupted

start here:  tanx-async demo      (a sandbox exchange on localhost; no account, no network)
"""


class UsageError(Exception):
    """A usage or credential problem: printed as ``error: ...``, exit code 2."""


# -- argument parsing -----------------------------------------------------------------------


def _int_at_least(minimum: int, expected: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = minimum - 1
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text!r}")
    return value


def _non_negative_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _market(text: str) -> str:
    try:
        return V.market_name(text.lower())
    except (TypeError, ValueError) as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """The options every command takes, before or after the command name.

    On the subcommands their default is SUPPRESS, so a value given before the command is not
    overwritten by the subcommand's default.
    """

    def default(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    net = parser.add_mutually_exclusive_group()
    net.add_argument(
        "--network", choices=("mainnet", "testnet"), default=default(None), help="default: mainnet"
    )
    net.add_argument(
        "--base-url", metavar="URL", default=default(None), help="exchange URL (instead of --network)"
    )
    parser.add_argument(
        "--json", action="store_true", default=default(False), help="JSON lines on stdout, for scripts"
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        default=default(None),
        help=f"requests in flight (default {C.MAX_CONCURRENCY})",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        default=default(None),
        help=f"per-request timeout in seconds (default: read {C.READ_TIMEOUT:g}, connect {C.CONNECT_TIMEOUT:g})",
    )
    parser.add_argument(
        "-v", "--verbose", action="store_true", default=default(False), help="debug logging on stderr"
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tanx-async",
        description="Cancel and inspect tanX orders fast, and know what happened to each.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, suppress=False)
    from . import __version__

    parser.add_argument("--version", action="version", version=f"tanx-async {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    common = argparse.ArgumentParser(add_help=False)
    _global_options(common, suppress=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = command("cancel", "cancel orders by id (one outcome per order)")
    p.add_argument("ids", nargs="+", type=_positive_int, metavar="ID", help="order ids")
    p.add_argument(
        "--confirm", action="store_true", help="wait until the exchange reports each order cancelled"
    )

    p = command("cancel-all", "cancel every open order of a market")
    p.add_argument("--market", required=True, type=_market, metavar="M", help="e.g. btcusdc")
    p.add_argument("--side", choices=("buy", "sell"))
    p.add_argument(
        "--confirm", action="store_true", help="wait until the exchange reports each order cancelled"
    )

    p = command("orders", "list orders (every page, up to --limit)")
    p.add_argument("--market", type=_market, metavar="M")
    p.add_argument("--state", choices=[s.value for s in OrderState])
    p.add_argument("--side", choices=("buy", "sell"))
    p.add_argument(
        "--limit",
        type=_non_negative_int,
        default=100,
        metavar="N",
        help="at most N orders (default 100; 0: all)",
    )

    p = command("order", "show one order and its trades")
    p.add_argument("id", type=_positive_int, metavar="ID")

    p = command("login", f"log in with the wallet in {ENV_KEY}; prints the uid and token expiry")
    p.add_argument("--show-tokens", action="store_true", help="also print the tokens (they are secrets)")

    p = command("demo", "cancel thousands of orders on a local sandbox exchange (no account needed)")
    p.add_argument(
        "--orders", type=_positive_int, default=2000, metavar="N", help="open orders (default 2000)"
    )
    p.add_argument(
        "--latency",
        type=_non_negative_seconds,
        default=0.003,
        metavar="S",
        help="extra server latency per order request, seconds (default 0.003)",
    )
    p.add_argument(
        "--no-faults", action="store_true", help="no 5xx, 429, dropped connections or token expiry"
    )
    p.add_argument(
        "--seed", type=int, default=None, help="seed for the sandbox (reproducible data and faults)"
    )
    return parser


# -- output -----------------------------------------------------------------------------------


def _jsonable(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime):
        return value.isoformat()
    if attrs.has(type(value)):
        return {f.name: _jsonable(getattr(value, f.name)) for f in attrs.fields(type(value))}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value


def order_json(order: Order) -> dict[str, Any]:
    """An order as a JSON object: the API's field names, Decimals as strings."""
    result: dict[str, Any] = _jsonable(order)
    return result


def outcome_json(outcome: CancelOutcome) -> dict[str, Any]:
    """One cancel outcome as a JSON object."""
    error = outcome.error
    return {
        "order_id": outcome.order_id,
        "status": outcome.status.value,
        "ok": outcome.ok,
        "state": outcome.order.state.value if outcome.order is not None else None,
        "attempts": outcome.attempts,
        "elapsed": round(outcome.elapsed, 6),
        "error": str(error) if error is not None else None,
        "error_type": type(error).__name__ if error is not None else None,
        "order": order_json(outcome.order) if outcome.order is not None else None,
    }


def _text(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, enum.Enum):
        return str(value.value)
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
    return str(value)


class Output:
    """Tables (rich on a terminal, plain text otherwise), JSON lines, messages on stderr."""

    def __init__(self, *, json_mode: bool, stdout: TextIO, stderr: TextIO) -> None:
        self.json_mode = json_mode
        self.stdout = stdout
        self.stderr = stderr
        self._console: Any = None
        if not json_mode and _isatty(stdout):
            try:
                from rich.console import Console
            except ImportError:
                pass
            else:
                self._console = Console(file=stdout, highlight=False)

    def json(self, obj: Mapping[str, Any]) -> None:
        self.stdout.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")) + "\n")

    def line(self, text: str = "") -> None:
        self.stdout.write(text + "\n")

    def note(self, text: str) -> None:
        self.stderr.write(text + "\n")

    def table(self, columns: Sequence[tuple[str, str]], rows: Sequence[Sequence[str]]) -> None:
        """``columns``: (title, "l" or "r")."""
        if self._console is not None:
            from rich import box
            from rich.table import Table

            table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False, header_style="bold")
            last = len(columns) - 1
            for i, (title, align) in enumerate(columns):
                # Every column keeps its width; only the last (free text) gives way on a narrow
                # terminal, folding its text.
                width = max([len(title), *(len(row[i]) for row in rows)])
                table.add_column(
                    title,
                    justify="right" if align == "r" else "left",
                    no_wrap=i != last,
                    min_width=width if i != last else min(width, 12),
                    overflow="fold",
                )
            for row in rows:
                table.add_row(*row)
            self._console.print(table)
            return
        widths = [len(title) for title, _ in columns]
        for row in rows:
            widths = [max(w, len(cell)) for w, cell in zip(widths, row, strict=True)]

        def fmt(cells: Sequence[str]) -> str:
            parts = [
                cell.rjust(w) if align == "r" else cell.ljust(w)
                for cell, w, (_, align) in zip(cells, widths, columns, strict=True)
            ]
            return "  ".join(parts).rstrip()

        self.line(fmt([title for title, _ in columns]))
        for row in rows:
            self.line(fmt(row))


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """A rich progress bar on stderr, or nothing (stderr not a terminal, rich missing, short batch)."""

    def __init__(self, total: int, description: str, *, stderr: TextIO, enabled: bool = True) -> None:
        self.total = total
        self._description = description
        self._bar: Any = None
        self._task: Any = None
        if enabled and total >= PROGRESS_MIN and _isatty(stderr):
            try:
                from rich.console import Console
                from rich.progress import (
                    BarColumn,
                    MofNCompleteColumn,
                    TextColumn,
                    TimeElapsedColumn,
                )
                from rich.progress import Progress as RichProgress
            except ImportError:
                return
            self._bar = RichProgress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=Console(file=stderr),
                transient=True,
            )

    @property
    def enabled(self) -> bool:
        return self._bar is not None

    def __enter__(self) -> Progress:
        if self._bar is not None:
            self._bar.start()
            self._task = self._bar.add_task(self._description, total=self.total)
        return self

    def update(self, done: int, total: int | None = None) -> None:
        if self._bar is not None:
            self._bar.update(self._task, completed=done, total=total if total is not None else self.total)

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.stop()


_OUTCOME_COLUMNS = (
    ("order", "r"),
    ("status", "l"),
    ("ok", "l"),
    ("market", "l"),
    ("side", "l"),
    ("state", "l"),
    ("tries", "r"),
    ("ms", "r"),
    ("error", "l"),
)

_ORDER_COLUMNS = (
    ("id", "r"),
    ("market", "l"),
    ("side", "l"),
    ("type", "l"),
    ("state", "l"),
    ("price", "r"),
    ("volume", "r"),
    ("remaining", "r"),
    ("executed", "r"),
    ("created (UTC)", "l"),
)


def _outcome_row(outcome: CancelOutcome) -> list[str]:
    order = outcome.order
    error = outcome.error
    return [
        str(outcome.order_id),
        outcome.status.value,
        "yes" if outcome.ok else "NO",
        _text(order.market if order else None),
        _text(order.side if order else None),
        _text(order.state if order else None),
        str(outcome.attempts),
        f"{outcome.elapsed * 1e3:.0f}",
        brief(error) if error is not None else "",
    ]


def _order_row(order: Order) -> list[str]:
    return [
        str(order.id),
        order.market,
        _text(order.side),
        _text(order.ord_type),
        _text(order.state),
        _text(order.price),
        _text(order.origin_volume),
        _text(order.remaining_volume),
        _text(order.executed_volume),
        _text(order.created_at),
    ]


def _print_outcomes(out: Output, outcomes: Sequence[CancelOutcome]) -> None:
    if out.json_mode:
        for outcome in outcomes:
            out.json(outcome_json(outcome))
        return
    out.table(_OUTCOME_COLUMNS, [_outcome_row(o) for o in outcomes])
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
    ok = sum(o.ok for o in outcomes)
    summary = ", ".join(f"{n} {status}" for status, n in counts.items())
    n = len(outcomes)
    out.line(f"{n} order{'s' if n != 1 else ''}: {summary} ({ok} ok, {n - ok} not ok)")


# -- credentials and the session --------------------------------------------------------------


@attrs.frozen
class Credentials:
    access_token: str | None = attrs.field(default=None, repr=False)
    refresh_token: str | None = attrs.field(default=None, repr=False)
    private_key: str | None = attrs.field(default=None, repr=False)
    eth_address: str | None = None


def credentials_from_env(env: Mapping[str, str]) -> Credentials:
    """Read the credentials from the environment; ``UsageError`` when there are none."""

    def get(name: str) -> str | None:
        value = env.get(name, "").strip()
        return value or None

    creds = Credentials(
        access_token=get(ENV_ACCESS),
        refresh_token=get(ENV_REFRESH),
        private_key=get(ENV_KEY),
        eth_address=get(ENV_ADDRESS),
    )
    if creds.eth_address is not None and creds.private_key is None and creds.access_token is None:
        raise UsageError(f"{ENV_ADDRESS} is set but {ENV_KEY} is not: both are needed for a wallet login")
    if creds.access_token is None and creds.refresh_token is None and creds.private_key is None:
        raise UsageError(_MISSING_CREDENTIALS)
    return creds


def session_options(concurrency: int | None, timeout: float | None = None) -> dict[str, Any]:
    """``AsyncTanxSession`` keyword arguments for ``--concurrency`` and ``--timeout``."""
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    if concurrency is not None:
        kwargs["limits"] = pool_limits(concurrency)
        kwargs["max_concurrency"] = concurrency
    return kwargs


def make_session(args: argparse.Namespace, creds: Credentials) -> AsyncTanxSession:
    """The session the options describe. Bad options or credentials raise ``UsageError``."""
    from ._session import AsyncTanxSession

    kwargs = session_options(args.concurrency, args.timeout)
    try:
        return AsyncTanxSession(
            base_url=args.base_url,
            network=args.network,
            access_token=creds.access_token,
            refresh_token=creds.refresh_token,
            private_key=creds.private_key,
            eth_address=creds.eth_address if creds.private_key is not None else None,
            **kwargs,
        )
    except MissingDependencyError as exc:
        raise UsageError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        # Messages built by the library and PrivateKeySigner never contain a key or a token.
        raise UsageError(str(exc)) from None


# -- commands -----------------------------------------------------------------------------------


async def _cancel_ids(
    session: AsyncTanxSession, ids: Sequence[int], args: argparse.Namespace, out: Output
) -> list[CancelOutcome]:
    progress = Progress(len(ids), "cancelling", stderr=out.stderr)
    if not progress.enabled:
        return await session.orders.cancel_many(ids, concurrency=args.concurrency, confirm=args.confirm)
    results: dict[int, CancelOutcome] = {}
    with progress:
        # An async generator: closed at once if we stop early (Ctrl-C), winding up in-flight cancels.
        batch = session.orders.cancel_iter(ids, concurrency=args.concurrency, confirm=args.confirm)
        async with contextlib.aclosing(batch) as outcomes:
            async for outcome in outcomes:
                results[outcome.order_id] = outcome
                progress.update(len(results))
    return [results[oid] for oid in dict.fromkeys(ids)]


async def cmd_cancel(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    outcomes = await _cancel_ids(session, args.ids, args, out)
    _print_outcomes(out, outcomes)
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_NOT_OK


async def cmd_cancel_all(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    # Listed first, then cancelled one by one (as ``orders.cancel_all`` does), so that a long
    # batch can drive the progress bar.
    ids: list[int] = []
    for state in (OrderState.WAIT, OrderState.PENDING):
        async for order in session.orders.iter(market=args.market, side=args.side, state=state):
            ids.append(order.id)
    if not ids:
        if not out.json_mode:
            out.line(f"no open orders in {args.market}{f' ({args.side})' if args.side else ''}")
        return EXIT_OK
    outcomes = await _cancel_ids(session, ids, args, out)
    _print_outcomes(out, outcomes)
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_NOT_OK


async def cmd_orders(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    limit: int = args.limit
    page_size = min(limit, C.LIST_MAX_LIMIT) if limit else C.LIST_PAGE_LIMIT
    rows: list[list[str]] = []
    count = 0
    listing = session.orders.iter(market=args.market, state=args.state, side=args.side, page_size=page_size)
    async with contextlib.aclosing(listing) as orders:
        async for order in orders:
            if out.json_mode:
                out.json(order_json(order))  # streamed: a script sees the first page at once
            else:
                rows.append(_order_row(order))
            count += 1
            if limit and count >= limit:
                break
    if not out.json_mode:
        if rows:
            out.table(_ORDER_COLUMNS, rows)
        out.line(
            f"{count} order{'s' if count != 1 else ''}"
            + (f" (limit {limit})" if limit and count >= limit else "")
        )
    return EXIT_OK


async def cmd_order(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    order = await session.orders.get(args.id)
    if out.json_mode:
        out.json(order_json(order))
        return EXIT_OK
    fields = [(f.name, _text(getattr(order, f.name))) for f in attrs.fields(Order) if f.name != "trades"]
    out.table((("field", "l"), ("value", "l")), fields)
    if order.trades:
        out.line()
        out.table(
            (("trade", "r"), ("side", "l"), ("price", "r"), ("amount", "r"), ("fee", "r"), ("at (UTC)", "l")),
            [
                [
                    str(t.id),
                    _text(t.side),
                    _text(t.price),
                    _text(t.amount),
                    _text(t.fee_amount),
                    _text(t.created_at),
                ]
                for t in order.trades
            ],
        )
    return EXIT_OK


async def cmd_login(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    tokens = await session.login()
    auth = session._core.auth
    uid = auth.uid
    signer = auth._signer
    address = signer.address if signer is not None else None
    expires = tokens.access_expires_at
    if out.json_mode:
        obj: dict[str, Any] = {
            "eth_address": address,
            "uid": uid,
            "access_expires_at": expires.isoformat() if expires else None,
        }
        if args.show_tokens:
            obj["access_token"] = tokens.access
            obj["refresh_token"] = tokens.refresh
        out.json(obj)
        return EXIT_OK
    out.line(f"logged in as {address} (uid {uid or 'unknown'})")
    if expires is not None:
        left = expires.timestamp() - time.time()
        out.line(f"access token expires {_text(expires)} UTC (in {_duration(left)})")
    else:
        out.line("access token expiry unknown (the token carries no exp claim)")
    if args.show_tokens:
        out.line(f"{ENV_ACCESS}={tokens.access}")
        out.line(f"{ENV_REFRESH}={tokens.refresh or ''}")
    else:
        out.line("(tokens not shown; pass --show-tokens to print them)")
    return EXIT_OK


def _duration(seconds: float) -> str:
    seconds = max(0, round(seconds))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 7200:
        return f"{seconds // 60} min"
    return f"{seconds / 3600:.1f} h"


_COMMANDS: dict[str, Callable[[AsyncTanxSession, argparse.Namespace, Output], Any]] = {
    "cancel": cmd_cancel,
    "cancel-all": cmd_cancel_all,
    "orders": cmd_orders,
    "order": cmd_order,
    "login": cmd_login,
}


async def _run(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    if args.command == "demo":
        from ._demo import run_from_cli

        return await run_from_cli(args, out)
    creds = credentials_from_env(env)
    if args.command == "login":
        if creds.private_key is None:
            raise UsageError(f"login needs a wallet: set {ENV_KEY} and {ENV_ADDRESS} in the environment")
        # A real login, not a refresh of tokens that may also be set.
        creds = Credentials(private_key=creds.private_key, eth_address=creds.eth_address)
    session = make_session(args, creds)
    async with session:
        result: int = await _COMMANDS[args.command](session, args, out)
        return result


def _configure_logging(verbose: bool) -> None:
    if verbose:
        logging.basicConfig(
            level=logging.DEBUG,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        )


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code (see the module docstring)."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error (argparse printed it)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    _configure_logging(args.verbose)
    out = Output(json_mode=args.json, stdout=sys.stdout, stderr=sys.stderr)
    try:
        return asyncio.run(_run(args, out, os.environ))
    except KeyboardInterrupt:
        out.note("interrupted")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        out.note(f"tanx-async: error: {exc}")
        return EXIT_USAGE
    except (NotAuthenticatedError, MissingDependencyError) as exc:
        out.note(f"tanx-async: error: {exc}")
        return EXIT_USAGE
    except APIError as exc:
        out.note(f"tanx-async: API error: {type(exc).__name__}: {exc}")
        return EXIT_API
    except TanxError as exc:
        out.note(f"tanx-async: error: {type(exc).__name__}: {exc}")
        return EXIT_API
    except BrokenPipeError:
        # `tanx-async orders --json | head`: the reader left; not worth a traceback. Point stdout
        # at /dev/null so the interpreter's final flush does not fail again.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
