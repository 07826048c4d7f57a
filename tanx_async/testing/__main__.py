"""``python -m tanx_async.testing``: serve a seeded sandbox exchange on loopback until Ctrl-C.

At start it prints the URL, ``export`` lines for a user's tokens (the ``tanx-async`` CLI and
``AsyncTanxSession`` users read them from the environment) and a few of the seeded order ids,
so the CLI or a bot can be pointed at it in one step. The tokens are throwaway secrets of
this sandbox only; they go to stdout because that is the point of the command.
"""

from __future__ import annotations

import argparse
import contextlib
import shlex
import threading
from collections.abc import Sequence

from .._config import is_loopback
from ._server import SandboxServer
from ._state import SandboxExchange
from ._wire import PROFILES, TEXTS

SHOWN_IDS = 5


def _non_negative_float(text: str) -> float:
    value = float(text)
    if not value >= 0:
        raise argparse.ArgumentTypeError(f"must be a number >= 0, got {text!r}")
    return value


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {text!r}")
    return value


def _port(text: str) -> int:
    value = int(text)
    if not 0 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port number (0-65535), got {text!r}")
    return value


def _share(text: str) -> float:
    value = float(text)
    if not 0.0 <= value <= 1.0:  # (also refuses nan)
        raise argparse.ArgumentTypeError(f"must be a share from 0 to 1, got {text!r}")
    return value


def _loopback(text: str) -> str:
    if not is_loopback(text):
        raise argparse.ArgumentTypeError(
            f"must be a loopback address (the sandbox is for local tests), got {text!r}"
        )
    return text


def build_parser() -> argparse.ArgumentParser:
    """The command line (every option documented in ``--help``)."""
    parser = argparse.ArgumentParser(
        prog="python -m tanx_async.testing",
        description=(
            "Serve a fake tanX exchange on a loopback port, with one user and seeded open orders. "
            "Prints the URL, export lines for the user's tokens and a few order ids, then runs "
            "until Ctrl-C."
        ),
    )
    parser.add_argument(
        "--host", type=_loopback, default="127.0.0.1", help="loopback address to bind (default: %(default)s)"
    )
    parser.add_argument(
        "--port", type=_port, default=0, help="port to listen on (default: 0, a free port chosen by the OS)"
    )
    parser.add_argument(
        "--seed", type=int, default=None, help="random seed for orders, tokens and faults (default: random)"
    )
    parser.add_argument(
        "--orders", type=_count, default=100, help="open orders to seed for the user (default: %(default)s)"
    )
    parser.add_argument(
        "--market",
        action="append",
        dest="markets",
        metavar="MARKET",
        help="market of the seeded orders, repeatable (default: btcusdc, ethusdc, btcusdt in turn)",
    )
    parser.add_argument(
        "--profile",
        choices=PROFILES,
        default="docs",
        help="shapes of the answers: docs (2024 documented), full, brine (2022-23), ack (cancel "
        "payload {}), or mixed (one of them per answer) (default: %(default)s)",
    )
    parser.add_argument(
        "--texts",
        choices=TEXTS,
        default="fixed",
        help="random: replace every error text the sandbox invents with a random sentence per "
        "answer (default: %(default)s)",
    )
    parser.add_argument(
        "--latency",
        type=_non_negative_float,
        default=0.0,
        help="seconds the exchange spends on each request (default: %(default)s)",
    )
    parser.add_argument(
        "--cancel-delay",
        type=_non_negative_float,
        default=0.05,
        help="seconds until a queued cancel takes effect (default: %(default)s)",
    )
    parser.add_argument(
        "--error-rate",
        type=_share,
        default=0.0,
        help="share of requests answered with a 500/502/503 instead (0-1, default: %(default)s)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Serve a seeded sandbox on loopback and print how to reach it."""
    parser = build_parser()
    args = parser.parse_args(argv)
    exchange = SandboxExchange(
        seed=args.seed, cancel_delay=args.cancel_delay, profile=args.profile, texts=args.texts
    )
    exchange.faults.latency = args.latency
    exchange.faults.error_rate = args.error_rate
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid, access_ttl=86400, refresh_ttl=7 * 86400)
    markets = tuple(args.markets or ("btcusdc", "ethusdc", "btcusdt"))
    ids = exchange.seed_orders(uid, args.orders, markets=markets)
    server = SandboxServer(exchange, host=args.host, port=args.port)
    try:
        server.start()
    except OSError as exc:  # the port is taken (or not ours to bind): a usage error, no traceback
        parser.error(f"--port {args.port}: cannot listen on {args.host}: {exc.strerror or exc}")
    try:
        shown = " ".join(str(i) for i in ids[:SHOWN_IDS]) + (" ..." if len(ids) > SHOWN_IDS else "")
        print(f"tanX sandbox on {server.url} (profile {args.profile}, texts {args.texts}); Ctrl-C stops it")
        print(f"export TANX_BASE_URL={shlex.quote(server.url)}")
        print(f"export TANX_ACCESS_TOKEN={shlex.quote(access)}")
        print(f"export TANX_REFRESH_TOKEN={shlex.quote(refresh)}")
        print(f'# then: tanx-async --base-url "$TANX_BASE_URL" cancel {ids[0] if ids else "<order id>"}')
        print(
            f"# user {uid}: {len(ids)} open orders in {', '.join(markets)}; ids {shown or '(none)'}",
            flush=True,
        )
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()
    finally:
        server.stop()


if __name__ == "__main__":
    main()
