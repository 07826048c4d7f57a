"""Argument parsing, credentials from the environment, exit codes and ``UsageError``.

Everything here turns argv and the environment into checked settings before anything is sent:
a bad argument is argparse's usage error, missing or half-given credentials a ``UsageError``.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs

from .. import _constants as C
from .. import _validate as V
from .._config import pool_limits
from .._duration import duration
from ..models import OrderState

EXIT_OK = 0
EXIT_NOT_OK = 1
EXIT_USAGE = 2
EXIT_API = 3
EXIT_INTERRUPTED = 130  # 128 + SIGINT (Ctrl-C)
EXIT_TERMINATED = 143  # 128 + SIGTERM (a supervisor stopping us), as a shell reports it
EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE, what a shell reports

ENV_ACCESS = "TANX_ACCESS_TOKEN"
ENV_REFRESH = "TANX_REFRESH_TOKEN"
ENV_KEY = "TANX_PRIVATE_KEY"
ENV_ADDRESS = "TANX_ETH_ADDRESS"
ENV_BASE_URL = "TANX_BASE_URL"
ENV_FLEET = "TANX_FLEET"
#: The most orders ``demo`` seeds (its sandbox keeps every order in memory).
DEMO_MAX_ORDERS = 100_000

_MISSING_CREDENTIALS = (
    f"no credentials: set {ENV_ACCESS} (and {ENV_REFRESH}), or {ENV_KEY} and {ENV_ADDRESS}, "
    "in the environment (never on the command line, where `ps` shows them)"
)

_EPILOG = f"""\
credentials (environment only):
  {ENV_ACCESS}, {ENV_REFRESH}   JWT tokens from a previous login
  {ENV_KEY}, {ENV_ADDRESS}      wallet login (needs: pip install 'tanx-async[login]')

exchange: --network or --base-url; without either, {ENV_BASE_URL} if set (what
  `python -m tanx_async.testing` prints), else mainnet

token cache: the current token pair is kept between runs (the exchange rotates the refresh
  token), in the OS keyring if `keyring` is installed, else in tokens.json (mode 0600) in the
  user state directory, a file:// fleet that runs at the same time share; `tanx-async logout`
  deletes it, --no-token-cache skips it

fleet: --fleet URL (or {ENV_FLEET}): runs and programs of one desk share one token pair, one
  rate budget and the exchange's clock, in a folder (file:///dir) or Redis (redis://host/0);
  `tanx-async guard --fleet redis://...` on another machine cancels for a bot whose dead
  man's switch stops beating (a dead host or network link included)

exit codes: 0 ok, 1 a cancel outcome is not ok, 2 usage or credential error,
            3 API error (refused credentials included), 130 interrupted (Ctrl-C),
            143 stopped by SIGTERM

start here:  tanx-async demo      (a sandbox exchange on localhost; no account, no network)
"""


class UsageError(Exception):
    """A usage or credential problem: printed as ``error: ...``, exit code 2."""


# -- argument parsing -----------------------------------------------------------------------


#: Digits only (ASCII): ``int()`` would also take "+5", " 5", "1_000" and other scripts' digits.
_DIGITS = re.compile(r"[0-9]+")


def _int_at_least(minimum: int, expected: str, maximum: int | None = None) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text) if _DIGITS.fullmatch(text) else minimum - 1
        except ValueError:  # more digits than int() reads
            value = minimum - 1
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}")
        return value

    return parse


_positive_int = _int_at_least(1, "a positive integer")
_non_negative_int = _int_at_least(0, "an integer >= 0")


def _order_id(text: str) -> int:
    """An order id as the exchange has them: 1 to 2**63-1 (checked here, before anything is sent)."""
    try:
        if not _DIGITS.fullmatch(text):
            raise ValueError(text)
        return V.order_id(int(text))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected an order id, {V.ORDER_ID_RANGE}; got {text!r}") from None


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


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool, command: str | None = None) -> None:
    """The options every command takes, before or after the command name.

    On the subcommands their default is SUPPRESS, so a value given before the command is not
    overwritten by the subcommand's default. A subcommand's help lists only the options that
    ``command`` uses (``_USED_BY``); the others are still parsed, so that ``check_options`` can
    say why they do not apply instead of argparse's "unrecognized arguments".
    """
    o = _Shown(suppress=suppress, command=command)
    _exchange_options(parser, o)
    _run_options(parser, o)
    _local_options(parser, o)
    _refused_secrets(parser)


@attrs.frozen
class _Shown:
    """How a global option appears on one parser: its default and whether its help is shown."""

    suppress: bool
    command: str | None

    def default(self, value: Any) -> Any:
        return argparse.SUPPRESS if self.suppress else value

    def uses(self, dest: str) -> bool:
        return self.command is None or self.command in _USED_BY[dest]

    def shown(self, dest: str, text: str) -> str:
        return text if self.uses(dest) else argparse.SUPPRESS


def _exchange_options(parser: argparse.ArgumentParser, o: _Shown) -> None:
    """``--network`` or ``--base-url``: which exchange."""
    # (Where neither is shown, no group: argparse cannot format the usage of a group whose
    # members are all hidden. ``check_options`` refuses them there anyway.)
    net: Any = parser.add_mutually_exclusive_group() if o.uses("network") else parser
    net.add_argument(
        "--network",
        choices=("mainnet", "testnet"),
        default=o.default(None),
        help=o.shown(
            "network",
            f"the exchange; without it or --base-url: {ENV_BASE_URL} when set, else mainnet",
        ),
    )
    net.add_argument(
        "--base-url",
        metavar="URL",
        default=o.default(None),
        help=o.shown("base_url", f"the exchange's URL (instead of --network; wins over {ENV_BASE_URL})"),
    )


def _run_options(parser: argparse.ArgumentParser, o: _Shown) -> None:
    """``--json``, ``--concurrency``, ``--timeout``, ``--deadline``: the output and the bounds."""
    parser.add_argument(
        "--json",
        action="store_true",
        default=o.default(False),
        help=o.shown("json", "JSON lines on stdout, for scripts"),
    )
    parser.add_argument(
        "--concurrency",
        type=_positive_int,
        metavar="N",
        default=o.default(None),
        help=o.shown("concurrency", f"requests in flight (default {C.MAX_CONCURRENCY})"),
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        metavar="S",
        default=o.default(None),
        help=o.shown(
            "timeout",
            f"per-request timeout in seconds (default: read {C.READ_TIMEOUT:g}, connect {C.CONNECT_TIMEOUT:g})",
        ),
    )
    parser.add_argument(
        "--deadline",
        type=_seconds,
        metavar="S",
        default=o.default(None),
        help=o.shown("deadline", _DEADLINE_HELP.get(o.command or "", _DEADLINE_HELP[""])),
    )


def _local_options(parser: argparse.ArgumentParser, o: _Shown) -> None:
    """``--allow-insecure-http``, ``--fleet``, ``--no-token-cache``, ``--verbose``."""
    parser.add_argument(
        "--allow-insecure-http",
        action="store_true",
        default=o.default(False),
        help=o.shown(
            "allow_insecure_http",
            "allow a plain http:// --base-url to a remote host (tokens travel unencrypted)",
        ),
    )
    parser.add_argument(
        "--fleet",
        metavar="URL",
        default=o.default(None),
        help=o.shown(
            "fleet",
            f"share tokens, rate budget and clock with the desk's other processes: file:///dir or "
            f"redis://host:port/db (default: ${ENV_FLEET}; see docs/fleet.md)",
        ),
    )
    parser.add_argument(
        "--no-token-cache",
        action="store_true",
        default=o.default(False),
        help=o.shown("no_token_cache", "neither read nor save the cached token pair (see `logout`)"),
    )
    parser.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=o.default(False),
        help=o.shown("verbose", "debug logging on stderr"),
    )


def _refused_secrets(parser: argparse.ArgumentParser) -> None:
    """The credential options, refused with a clear message (``_RefusedSecret``)."""
    # Credentials are never taken as options (``ps`` and shell histories show them). Without
    # these, argparse took ``--access-token SECRET``'s value for the command name and printed
    # it back in "invalid choice: 'SECRET'".
    for flag, variable in _SECRET_OPTIONS.items():
        parser.add_argument(
            flag,
            nargs="?",
            action=_RefusedSecret,
            default=argparse.SUPPRESS,
            help=argparse.SUPPRESS,
            variable=variable,
        )


_CANCEL_DEADLINE = (
    f"retries and the look-up that settles it included (default {duration(C.OPERATION_DEADLINE)}; "
    f"with --confirm, plus up to {duration(C.CONFIRM_TIMEOUT)} for the confirmation); an order "
    "still unknown then gets one settling pass, as long again at most "
    f"({duration(C.SETTLE_TIMEOUT)} at most)"
)
#: What ``--deadline`` bounds, in each command that takes it ("": the top-level help).
_DEADLINE_HELP = {
    "": "overall bound in seconds on each operation of the command, retries included (default "
    f"{duration(C.OPERATION_DEADLINE)}; the command's --help says what it bounds there)",
    "cancel": f"overall bound in seconds on each order's cancel, {_CANCEL_DEADLINE}",
    "cancel-all": "overall bound in seconds on each page of the listing, retries included, and on "
    f"each order's cancel, {_CANCEL_DEADLINE}",
    "orders": "overall bound in seconds on reading each page of orders, retries included (default "
    f"{duration(C.OPERATION_DEADLINE)})",
    "order": "overall bound in seconds on reading the order, retries included (default "
    f"{duration(C.OPERATION_DEADLINE)})",
    "watch": "overall bound in seconds on opening the stream, connecting, subscribing and retries "
    f"included (default {duration(C.OPERATION_DEADLINE)}); once open it runs until stopped",
}


#: Options a user may try for credentials, and the environment variable to use instead.
_SECRET_OPTIONS = {
    "--access-token": "TANX_ACCESS_TOKEN",
    "--refresh-token": "TANX_REFRESH_TOKEN",
    "--private-key": "TANX_PRIVATE_KEY",
    "--token": "TANX_ACCESS_TOKEN",
}


class _RefusedSecret(argparse.Action):
    """A credential given as an option: a usage error that never repeats its value."""

    def __init__(self, *args: Any, variable: str, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.variable = variable

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        parser.error(
            f"{option_string}: credentials are not taken on the command line, where `ps` and the "
            f"shell's history show them; set {self.variable} in the environment"
        )


def _confirm_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--confirm", action="store_true", help="wait until the exchange reports each order cancelled"
    )
    parser.add_argument(
        "--confirm-with",
        choices=("auto", "stream", "poll"),
        default=None,
        help="how --confirm waits: the private stream, polling as a fallback (auto, the default); "
        "the stream only; or polling only",
    )


def _guard_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--market",
        action="append",
        type=_market,
        metavar="M",
        help="take only the switches armed over markets among these (repeatable; default: every switch)",
    )
    parser.add_argument(
        "--once",
        action="store_true",
        help="exit after the first sweep (exit code 0 when it left nothing open, else 1)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tanx-async",
        description="Cancel and inspect tanX orders fast, and know what happened to each.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _global_options(parser, suppress=False)
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"tanx-async {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        common = argparse.ArgumentParser(add_help=False)
        _global_options(common, suppress=True, command=name)
        return commands.add_parser(name, parents=[common], help=help_text, description=help_text)

    p = command("cancel", "cancel orders by id (one outcome per order)")
    p.add_argument("ids", nargs="+", type=_order_id, metavar="ID", help="order ids")
    _confirm_options(p)

    p = command("cancel-all", "cancel every open order of a market")
    p.add_argument("--market", required=True, type=_market, metavar="M", help="e.g. btcusdc")
    p.add_argument("--side", choices=("buy", "sell"))
    _confirm_options(p)

    p = command("watch", "print order and trade updates from the private stream until interrupted")
    p.add_argument(
        "--streams",
        choices=("order,trade", "order", "trade"),
        default="order,trade",
        metavar="{order,trade}",
        help="what to watch: order, trade, or order,trade (the default)",
    )
    p.add_argument(
        "--count",
        type=_non_negative_int,
        default=0,
        metavar="N",
        help="stop after N events (default 0: never)",
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
    p.add_argument("id", type=_order_id, metavar="ID")

    p = command(
        "guard",
        "watch a redis:// fleet's dead man's switches; cancel for each whose heartbeat expired "
        "(run it on another machine than the bots)",
    )
    _guard_options(p)

    p = command("login", f"log in with the wallet in {ENV_KEY}; prints the uid and token expiry")
    p.add_argument("--show-tokens", action="store_true", help="also print the tokens (they are secrets)")

    command("logout", "delete the token pair cached for this exchange and the identity in the environment")

    p = command("demo", "cancel thousands of orders on a local sandbox exchange (no account needed)")
    p.add_argument(
        "--orders",
        type=_int_at_least(1, f"an integer from 1 to {DEMO_MAX_ORDERS:,}", DEMO_MAX_ORDERS),
        default=2000,
        metavar="N",
        help=f"open orders (default 2000, at most {DEMO_MAX_ORDERS:,})",
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


# The options every command accepts (see _global_options) and which commands use each; a
# command given an option it would ignore is a usage error, not a silent no-op.
_EXCHANGE = frozenset({"cancel", "cancel-all", "orders", "order", "login", "watch"})
_USED_BY: dict[str, frozenset[str]] = {
    "network": _EXCHANGE | {"logout"},
    "base_url": _EXCHANGE | {"logout"},
    "json": _EXCHANGE | {"logout", "demo", "guard"},
    "concurrency": _EXCHANGE - {"login", "watch", "order", "orders"} | {"demo"},
    "timeout": _EXCHANGE,
    "deadline": _EXCHANGE - {"login"},
    "allow_insecure_http": _EXCHANGE,
    "no_token_cache": _EXCHANGE,
    "fleet": _EXCHANGE | {"guard"},
    "verbose": _EXCHANGE | {"logout", "demo", "guard"},
}
#: Why a command does not use an option, where the command's own reason (``_WHY``) is not it.
_WHY_OPTION = {
    (
        "login",
        "deadline",
    ): f"a login is bounded by its own {duration(C.AUTH_TIMEOUT)} (use --timeout per request)",
}
_WHY = {
    "demo": "the demo runs its own sandbox exchange on 127.0.0.1",
    "guard": "the guard takes the exchange, the tokens and the bounds from each switch it watches",
    "logout": "logout only deletes the cached token pair; it sends nothing",
    "login": "login sends one request at a time",
    "order": "order sends one request",
    "orders": "orders reads its pages one at a time",
    "watch": "watch reads one stream",
}


def check_options(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    """``UsageError`` for an option the command would ignore (e.g. ``demo --network``); then
    ``TANX_BASE_URL`` from ``env`` stands for ``--base-url`` where neither it nor ``--network``
    was given (``args.base_url_from`` names where the URL came from, for error messages)."""
    for dest, commands in _USED_BY.items():
        if args.command not in commands and getattr(args, dest, None) not in (None, False):
            flag = "--" + dest.replace("_", "-")
            why = _WHY_OPTION.get((args.command, dest)) or _WHY.get(args.command, "ignored")
            raise UsageError(f"{args.command} does not use {flag} ({why})")
    if getattr(args, "confirm_with", None) is not None and not args.confirm:
        raise UsageError("--confirm-with chooses how --confirm waits: pass --confirm too")
    if hasattr(args, "confirm_with") and args.confirm_with is None:
        args.confirm_with = "auto"
    args.base_url_from = "--base-url"
    if args.command in _USED_BY["base_url"] and args.base_url is None and args.network is None:
        url = env.get(ENV_BASE_URL, "").strip()
        if url:
            args.base_url, args.base_url_from = url, ENV_BASE_URL
    if args.command in _USED_BY["fleet"] and getattr(args, "fleet", None) is None:
        args.fleet = env.get(ENV_FLEET, "").strip() or None


# -- credentials and session options ----------------------------------------------------------


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


def session_options(
    concurrency: int | None, timeout: float | None = None, deadline: float | None = None
) -> dict[str, Any]:
    """``AsyncTanxSession`` keyword arguments for ``--concurrency``, ``--timeout``, ``--deadline``."""
    kwargs: dict[str, Any] = {}
    if timeout is not None:
        kwargs["timeout"] = timeout
    if deadline is not None:
        kwargs["deadline"] = deadline
    if concurrency is not None:
        kwargs["limits"] = pool_limits(concurrency)
        kwargs["max_concurrency"] = concurrency
    return kwargs
