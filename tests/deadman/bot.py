"""A bot that arms the dead man's switch, then meets its end as the test asks (run as a process
by test_dead_man_switch.py and benchmarks' scenario deadman, benchmarks/scenarios/deadman.py).

    TANX_ACCESS_TOKEN=... TANX_REFRESH_TOKEN=... python tests/deadman/bot.py URL MODE LOG [options]

It prints ``armed <watchdog pid or 0> <switch id in the fleet or None>`` once armed, then per MODE: ``kill`` waits to be killed;
``stall`` prints ``stalling <time.monotonic()>`` and blocks its loop with ``time.sleep(9)``; ``raise``
prints ``raising <time.monotonic()>`` and raises inside the block; ``normal`` leaves the block, prints
``left`` and exits; ``refresh`` refreshes the session's tokens inside the block, prints
``refreshed`` and waits to be killed; ``kill-forked`` forks a child that keeps the watchdog's
pipe open for 30 s, prints ``forked <pid>`` and waits to be killed; ``frozen`` prints ``waiting``,
waits (60 s at most) until the switch says it fired (a guard claimed it while the bot was
SIGSTOPped) and prints ``fired=<switch.fired>``. ``--fleet URL`` gives the session a fleet, ``--no-local``
arms with ``local=False``. Its own log (the library's, with the parent's side of the
switch) goes to stderr.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time

import anyio

from tanx_async import AsyncTanxSession, Fleet


class Boom(RuntimeError):
    pass


async def main(args: argparse.Namespace) -> int:
    session = AsyncTanxSession(
        base_url=args.url,
        access_token=os.environ["TANX_ACCESS_TOKEN"],
        refresh_token=os.environ["TANX_REFRESH_TOKEN"],
        fleet=Fleet(args.fleet) if args.fleet else None,
    )
    markets = args.markets.split(",") if args.markets else None
    async with session:
        switch = session.orders.dead_man_switch(
            args.timeout, markets=markets, deadline=args.deadline, log_file=args.log, local=not args.no_local
        )
        async with switch:
            print(f"armed {switch.pid or 0} {switch.switch_id}", flush=True)
            if args.mode == "stall":
                print(f"stalling {time.monotonic():.6f}", flush=True)
                time.sleep(9)  # noqa: ASYNC251 - the point: the loop is blocked, no heartbeat leaves
                print(f"resumed fired={switch.fired}", flush=True)
            elif args.mode == "raise":
                await anyio.sleep(1.0)  # a few heartbeats first
                print(f"raising {time.monotonic():.6f}", flush=True)
                raise Boom("the strategy failed")
            elif args.mode == "normal":
                await anyio.sleep(1.0)
            elif args.mode == "frozen":
                print("waiting", flush=True)
                for _ in range(600):  # 60 s at most
                    if switch.fired:  # (SIGSTOPped, then SIGCONTed: the next heartbeat tells it)
                        break
                    await anyio.sleep(0.1)
                print(f"fired={switch.fired}", flush=True)
            elif args.mode == "kill-forked":
                child = os.fork()  # holds our end of the watchdog's pipe: no EOF when we die
                if child == 0:
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, 1)  # not the test's pipes: they close when the bot dies
                    os.dup2(devnull, 2)
                    time.sleep(30)  # noqa: ASYNC251 - a forked child, no loop of its own
                    os._exit(0)
                print(f"forked {child}", flush=True)
                await anyio.sleep(60)
            elif args.mode == "refresh":
                await session.refresh()
                print("refreshed", flush=True)
                await anyio.sleep(60)
            else:
                await anyio.sleep(60)
        print("left", flush=True)
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument(
        "mode", choices=["kill", "kill-forked", "stall", "raise", "normal", "refresh", "frozen"]
    )
    parser.add_argument("log")
    parser.add_argument("--timeout", type=float, default=2.0)
    parser.add_argument("--deadline", type=float, default=30.0)
    parser.add_argument("--markets", default="")
    parser.add_argument("--fleet", default="", help="a fleet URL (a redis:// one keeps a heartbeat key)")
    parser.add_argument("--no-local", action="store_true", help="local=False: no same-machine watchdog")
    logging.basicConfig(
        level=logging.INFO, stream=sys.stderr, format="%(asctime)s bot %(levelname)s %(message)s"
    )
    sys.exit(anyio.run(main, parser.parse_args()))
