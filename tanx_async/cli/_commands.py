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
from urllib.parse import urlsplit

import anyio
import attrs

from .. import _constants as C
from .._config import is_loopback, resolve_base_url
from .._duration import duration
from .._errors import AuthenticationError, MissingDependencyError, NotAuthenticatedError
from ..events import RequestEvent
from ..fleet import Fleet
from ..models import CancelOutcome, Order, OrderState
from ._args import (
    ENV_ACCESS,
    ENV_ADDRESS,
    ENV_KEY,
    ENV_REFRESH,
    EXIT_API,
    EXIT_NOT_OK,
    EXIT_OK,
    Credentials,
    UsageError,
    credentials_from_env,
    session_options,
)
from ._output import ORDER_COLUMNS, Output, Progress, order_json, order_row, print_outcomes, text
from ._tokens import FileStore, TokenCache, identity_key, open_store
from ._waiting import Waiting, should_show
from ._watch import cmd_watch

if TYPE_CHECKING:
    from .._session import AsyncTanxSession


def make_session(
    args: argparse.Namespace,
    creds: Credentials,
    base_url: str | None = None,
    **hooks: Any,
) -> AsyncTanxSession:
    """The session the options describe (``hooks``: ``on_tokens``, ``on_event``). Bad options or
    credentials raise ``UsageError``."""
    from .._session import AsyncTanxSession

    kwargs = session_options(args.concurrency, args.timeout, getattr(args, "deadline", None))
    try:
        return AsyncTanxSession(
            base_url=base_url if base_url is not None else args.base_url,
            network=None if base_url is not None else args.network,
            access_token=creds.access_token,
            refresh_token=creds.refresh_token,
            private_key=creds.private_key,
            eth_address=creds.eth_address if creds.private_key is not None else None,
            allow_insecure_http=getattr(args, "allow_insecure_http", False),
            **kwargs,
            **hooks,
        )
    except MissingDependencyError as exc:
        raise UsageError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        # Messages built by the library and PrivateKeySigner never contain a key or a token.
        raise UsageError(str(exc)) from None


def fleet_of(url: str) -> Fleet:
    """The ``--fleet``/``TANX_FLEET`` URL as a ``Fleet``, or ``UsageError``."""
    try:
        return Fleet(url)
    except MissingDependencyError as exc:
        raise UsageError(str(exc)) from None
    except (TypeError, ValueError) as exc:
        raise UsageError(f"--fleet: {exc}") from None


def exchange_url(args: argparse.Namespace, out: Output, *, sends: bool = True) -> str:
    """The exchange's base URL from ``--network``/``--base-url``. Plain ``http://`` to a remote
    host is refused unless ``--allow-insecure-http`` (then with a warning); ``sends=False`` for
    a command that sends nothing (``logout``)."""
    try:
        url = resolve_base_url(args.base_url, args.network, allow_insecure_http=True)
    except (TypeError, ValueError) as exc:
        # The library's words name its argument; the user typed the flag (or set the variable).
        raise UsageError(str(exc).replace("base_url", getattr(args, "base_url_from", "--base-url"))) from None
    host = urlsplit(url).hostname or ""
    if sends and url.startswith("http://") and not is_loopback(host):
        if not args.allow_insecure_http:
            raise UsageError(
                f"refusing to send credentials over plain http to {host}: use https://, or pass "
                "--allow-insecure-http if you really mean it"
            )
        out.note(
            f"tanx-async: warning: --allow-insecure-http: tokens and orders travel unencrypted to {host}"
        )
    return url


async def _cancel_ids(
    session: AsyncTanxSession, ids: Sequence[int], args: argparse.Namespace, out: Output
) -> int:
    """Cancel ``ids``, print one row (or JSON line) per id, return the exit code. Interrupted
    (Ctrl-C, SIGTERM: the main task is cancelled), it prints a row for every id all the same,
    each outcome as known (``cancel_many``'s ``on_outcome`` is told every one before the
    cancellation goes on: the unanswered ``unknown``, the unsent ``skipped``), then lets the
    interruption end the command."""
    results: dict[int, CancelOutcome] = {}
    progress = Progress(len(ids), "cancelling", stderr=out.stderr)
    waiting: Waiting | None = getattr(args, "waiting", None)
    if waiting is not None:
        waiting.doing = f"cancelling {len(ids)} order{'s' if len(ids) != 1 else ''}"
        waiting.enabled = waiting.enabled and not progress.enabled  # the bar shows progress itself

    def told(outcome: CancelOutcome) -> None:
        results[outcome.order_id] = outcome
        progress.update(len(results))

    def show() -> None:
        print_outcomes(out, [results[oid] for oid in dict.fromkeys(ids) if oid in results])

    try:
        with progress:
            await session.orders.cancel_many(
                ids,
                concurrency=args.concurrency,
                confirm=args.confirm,
                confirm_with=args.confirm_with,
                on_outcome=told,
            )
    except BaseException:
        if results:  # interrupted: no outcome already known goes unsaid
            show()
        raise
    show()
    return _exit_code(list(results.values()))


_RENEWAL_PATHS = (C.REFRESH_PATH, C.NONCE_PATH, C.LOGIN_PATH)


def _exit_code(outcomes: Sequence[CancelOutcome]) -> int:
    """The exit code of printed outcomes: 1 when one is not ok. When the exchange refused the
    credentials (an outcome's ``AuthenticationError``, or ``NotAuthenticatedError`` once none are
    left), that error is raised instead, after every outcome was printed: ``run_command`` adds the
    hint and exits 3, as for any command."""
    refused = [o.error for o in outcomes if isinstance(o.error, AuthenticationError | NotAuthenticatedError)]
    if refused:
        # The renewal's own refusal, where one is there, says best which credential was refused.
        raise min(refused, key=lambda e: 0 if getattr(e, "path", None) in _RENEWAL_PATHS else 1)
    return EXIT_OK if all(o.ok for o in outcomes) else EXIT_NOT_OK


async def cmd_cancel(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    return await _cancel_ids(session, args.ids, args, out)


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
    return await _cancel_ids(session, ids, args, out)


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
        out.line(f"access token expires {text(expires)} UTC (in {duration(max(left, 0))})")
    else:
        out.line("access token expiry unknown (the token carries no exp claim)")
    if args.show_tokens:
        out.line(f"{ENV_ACCESS}={tokens.access}")
        out.line(f"{ENV_REFRESH}={tokens.refresh or ''}")
    else:
        out.line("(tokens not shown; pass --show-tokens to print them)")
    return EXIT_OK


_COMMANDS: dict[str, Callable[[AsyncTanxSession, argparse.Namespace, Output], Awaitable[int]]] = {
    "cancel": cmd_cancel,
    "cancel-all": cmd_cancel_all,
    "orders": cmd_orders,
    "order": cmd_order,
    "login": cmd_login,
    "watch": cmd_watch,
}


def _doing(args: argparse.Namespace) -> str:
    """What a command waits on, for the status line."""
    if args.command == "cancel-all":
        return f"listing the open orders of {args.market}"
    if args.command == "orders":
        return "listing orders"
    if args.command == "order":
        return f"reading order {args.id}"
    return "logging in" if args.command == "login" else args.command


def cmd_logout(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    """Delete the cached pair of this exchange and the identity in the environment."""
    url = exchange_url(args, out, sends=False)
    creds = Credentials(
        refresh_token=env.get(ENV_REFRESH, "").strip() or None,
        private_key=env.get(ENV_KEY, "").strip() or None,
        eth_address=env.get(ENV_ADDRESS, "").strip() or None,
    )
    key = identity_key(url, creds)
    if key is None:
        raise UsageError(
            f"logout needs the identity the pair was cached for: set {ENV_REFRESH} (as in the run "
            f"that cached it), or {ENV_ETH_OR_KEY}"
        )
    store = open_store()
    removed = store.delete(key)
    if out.json_mode:
        out.json({"base_url": url, "removed": removed, "store": store.where})
    elif removed:
        out.line(f"deleted the token pair cached for {url} (from the {store.where})")
    else:
        out.line(f"no token pair cached for {url} and this identity (in the {store.where})")
    return EXIT_OK


ENV_ETH_OR_KEY = f"{ENV_ADDRESS} (or {ENV_KEY})"


async def run_command(args: argparse.Namespace, out: Output, env: Mapping[str, str]) -> int:
    """Run ``args.command`` (one of the exchange commands) with the credentials in ``env``."""
    if args.command == "logout":
        return cmd_logout(args, out, env)
    url = exchange_url(args, out)
    creds = credentials_from_env(env)
    if args.command == "login":
        if creds.private_key is None:
            raise UsageError(f"login needs a wallet: set {ENV_KEY} and {ENV_ADDRESS} in the environment")
        # A real login, not a refresh of tokens that may also be set.
        creds = Credentials(private_key=creds.private_key, eth_address=creds.eth_address)
    cache: TokenCache | None = None
    fleet: Fleet | None = None
    if args.fleet is not None:
        fleet = fleet_of(args.fleet)  # it holds the pair: no token cache
    elif not args.no_token_cache:
        key = identity_key(url, creds)
        if key is not None:
            cache = TokenCache(open_store(), key, out.note)
            if isinstance(cache.store, FileStore):
                # The cache file is a file:// fleet's: runs at the same time share one pair
                # (one refresh per expiry for all of them), and a run takes the newest pair.
                cache.used = cache.store.load(key) is not None and args.command != "login"
                fleet = Fleet(cache.store.path.parent.as_uri())
            elif args.command != "login":
                creds = cache.apply(creds)
    deadline = args.deadline if args.deadline is not None else C.OPERATION_DEADLINE
    # (watch waits for pushes by design: no "waiting for the exchange" line there)
    shown = should_show(out.stderr) and args.command != "watch"
    waiting = Waiting(out.stderr, urlsplit(url).netloc, deadline, enabled=shown)
    waiting.doing = _doing(args)
    args.waiting = waiting
    refusal: list[RequestEvent] = []  # the exchange's first 401 in this run, if any

    def on_event(event: RequestEvent) -> None:
        waiting.on_event(event)
        if event.kind == "error" and event.status == 401 and not refusal:
            refusal.append(event)

    session = make_session(
        args,
        creds,
        url,
        on_tokens=cache.save if cache and fleet is None else None,
        on_event=on_event,
        fleet=fleet,
    )
    try:
        return await _run_watched(session, args, out, waiting)
    except AuthenticationError as exc:
        out.note(f"tanx-async: {_refused(exc.path, cache)}")
        raise
    except NotAuthenticatedError as exc:
        if not refusal:
            raise  # no credential was refused: a usage problem found here (exit 2)
        # The exchange refused the credentials earlier in this run (a renewal while the
        # confirmation stream opened, say); what failed later found none left.
        first = refusal[0]
        out.note(f"tanx-async: {_refused(first.path, cache)}")
        out.note(
            f"tanx-async: API error: AuthenticationError: HTTP 401 ({first.method} {first.path}); then: {exc}"
        )
        return EXIT_API


_FRESH = f"set fresh {ENV_ACCESS} and {ENV_REFRESH}, or {ENV_KEY} and {ENV_ADDRESS} to log in"


def _refused(path: str | None, cache: TokenCache | None) -> str:
    """The hint for credentials the exchange refused (HTTP 401): which ones, and what to set."""
    if cache is not None and cache.used:
        return (
            f"the token pair cached by an earlier run (in the {cache.store.where}) was refused; "
            "`tanx-async logout` deletes it, then set fresh tokens"
        )
    if path == C.REFRESH_PATH:
        return f"the exchange refused {ENV_REFRESH} (expired, or already used: a renewal may replace it); {_FRESH}"
    if path in _RENEWAL_PATHS[1:]:
        return f"the exchange refused the wallet login of {ENV_ADDRESS} (signed with {ENV_KEY})"
    return f"the exchange refused {ENV_ACCESS} (expired or revoked) and nothing could renew it; {_FRESH}"


async def _run_watched(
    session: AsyncTanxSession, args: argparse.Namespace, out: Output, waiting: Waiting
) -> int:
    """The command, with the waiting line drawn beside it; its error raised as itself (not in a
    task group's exception group)."""
    error: Exception | None = None
    code = EXIT_OK
    async with session, anyio.create_task_group() as tg:
        tg.start_soon(waiting.run)
        try:
            code = await _COMMANDS[args.command](session, args, out)
        except Exception as exc:
            error = exc
        finally:
            tg.cancel_scope.cancel()
    if error is not None:
        raise error
    return code
