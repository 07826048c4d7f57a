"""The commands that talk to the exchange: cancel, cancel-all, orders, order, login, watch.

``run_command`` reads the credentials, opens the session the options describe and runs one
command in it; each ``cmd_*`` prints through ``Output`` and returns the exit code.
"""

from __future__ import annotations

import argparse
import contextlib
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import attrs

from .. import _constants as C
from .._errors import MissingDependencyError
from ..models import CancelOutcome, Order, OrderState
from ._args import (
    ENV_ACCESS,
    ENV_ADDRESS,
    ENV_KEY,
    ENV_REFRESH,
    EXIT_NOT_OK,
    EXIT_OK,
    Credentials,
    UsageError,
    credentials_from_env,
    session_options,
)
from ._output import ORDER_COLUMNS, Output, Progress, order_json, order_row, print_outcomes, text
from ._watch import cmd_watch

if TYPE_CHECKING:
    from .._session import AsyncTanxSession


def make_session(args: argparse.Namespace, creds: Credentials) -> AsyncTanxSession:
    """The session the options describe. Bad options or credentials raise ``UsageError``."""
    from .._session import AsyncTanxSession

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


async def _cancel_ids(
    session: AsyncTanxSession, ids: Sequence[int], args: argparse.Namespace, out: Output
) -> list[CancelOutcome]:
    progress = Progress(len(ids), "cancelling", stderr=out.stderr)
    if not progress.enabled:
        return await session.orders.cancel_many(
            ids, concurrency=args.concurrency, confirm=args.confirm, confirm_with=args.confirm_with
        )
    results: dict[int, CancelOutcome] = {}
    with progress:
        # An async generator: closed at once if we stop early (Ctrl-C), winding up in-flight cancels.
        batch = session.orders.cancel_iter(
            ids, concurrency=args.concurrency, confirm=args.confirm, confirm_with=args.confirm_with
        )
        async with contextlib.aclosing(batch) as outcomes:
            async for outcome in outcomes:
                results[outcome.order_id] = outcome
                progress.update(len(results))
    return [results[oid] for oid in dict.fromkeys(ids)]


async def cmd_cancel(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    outcomes = await _cancel_ids(session, args.ids, args, out)
    print_outcomes(out, outcomes)
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
    print_outcomes(out, outcomes)
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
                rows.append(order_row(order))
            count += 1
            if limit and count >= limit:
                break
    if not out.json_mode:
        if rows:
            out.table(ORDER_COLUMNS, rows)
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
    fields = [(f.name, text(getattr(order, f.name))) for f in attrs.fields(Order) if f.name != "trades"]
    out.table((("field", "l"), ("value", "l")), fields)
    if order.trades:
        out.line()
        out.table(
            (("trade", "r"), ("side", "l"), ("price", "r"), ("amount", "r"), ("fee", "r"), ("at (UTC)", "l")),
            [
                [
                    str(t.id),
                    text(t.side),
                    text(t.price),
                    text(t.amount),
                    text(t.fee_amount),
                    text(t.created_at),
                ]
                for t in order.trades
            ],
        )
    return EXIT_OK


async def cmd_login(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    tokens = await session.login()
    uid = session.uid
    address = session.eth_address
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
        out.line(f"access token expires {text(expires)} UTC (in {_duration(left)})")
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


_COMMANDS: dict[str, Callable[[AsyncTanxSession, argparse.Namespace, Output], Awaitable[int]]] = {
    "cancel": cmd_cancel,
    "cancel-all": cmd_cancel_all,
    "orders": cmd_orders,
    "order": cmd_order,
    "login": cmd_login,
    "watch": cmd_watch,
}


async def run_command(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    """Run ``args.command`` (one of the exchange commands) with the credentials in ``env``."""
    creds = credentials_from_env(env)
    if args.command == "login":
        if creds.private_key is None:
            raise UsageError(f"login needs a wallet: set {ENV_KEY} and {ENV_ADDRESS} in the environment")
        # A real login, not a refresh of tokens that may also be set.
        creds = Credentials(private_key=creds.private_key, eth_address=creds.eth_address)
    session = make_session(args, creds)
    async with session:
        return await _COMMANDS[args.command](session, args, out)
