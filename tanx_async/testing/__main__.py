"""``python -m tanx_async.testing``: run a sandbox exchange until Ctrl-C."""

from __future__ import annotations

import argparse
import contextlib
import threading

from ._server import SandboxServer
from ._state import SandboxExchange


def main(argv: list[str] | None = None) -> None:
    """Serve a seeded sandbox on loopback and print a user's tokens."""
    parser = argparse.ArgumentParser(prog="python -m tanx_async.testing")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--orders", type=int, default=100, help="open orders to seed")
    parser.add_argument("--latency", type=float, default=0.0, help="seconds per request")
    parser.add_argument("--cancel-delay", type=float, default=0.05)
    args = parser.parse_args(argv)

    exchange = SandboxExchange(seed=args.seed, cancel_delay=args.cancel_delay)
    exchange.faults.latency = args.latency
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    exchange.seed_orders(uid, args.orders)
    with SandboxServer(exchange, port=args.port) as server:
        print(f"url:     {server.url}")
        print(f"uid:     {uid}")
        print(f"access:  {access}")
        print(f"refresh: {refresh}", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
