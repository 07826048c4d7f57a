"""``tanx-async demo``: pull thousands of orders off a local sandbox exchange, and check the result.

A ``SandboxExchange`` is served on a loopback port and seeded with open orders (plus some already
cancelled or filled). The exchange is made to misbehave a little: a few ms of latency, a small
rate of 5xx answers and dropped connections, a burst of 429s with ``Retry-After``, and every
access token expiring half way through. A throwaway wallet logs in (nonce, EIP-191 signature,
login), then ``orders.cancel_iter(..., confirm=True)`` cancels everything, confirming each cancel by
push on the private order stream (dropped once mid-batch with faults on, so the gap is reconciled
by look-ups). The summary counts the look-ups made against the one per order polling needs.
Finally each outcome is
compared with the exchange's own final state of that order: the demo exits 0 only when none lies.
No account, no network, a few seconds.
"""

from __future__ import annotations

import contextlib
import random
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from .._errors import MissingDependencyError
from ..models import CancelOutcome, CancelStatus
from ._args import EXIT_NOT_OK, EXIT_OK, session_options
from ._output import Output, Progress

if TYPE_CHECKING:
    import argparse

    from ..testing import SandboxExchange, SandboxOrder

__all__ = ["DemoOptions", "DemoReport", "run_demo", "run_from_cli"]

DEMO_MARKETS = ("btcusdc", "ethusdc", "btcusdt", "ethusdt")
#: How long the sandbox takes to apply a queued cancel.
CANCEL_DELAY = 0.02
#: Faults apply to the order endpoints only: a refresh or a login is never replayed when it may
#: have been processed (tokens rotate), so a dropped login would only make the demo fail slowly.
FAULT_PATHS = ("/sapi/v1/orders/",)
ERROR_RATE = 0.01
DROP_BEFORE_RATE = 0.002
DROP_AFTER_RATE = 0.002
#: The 429 burst: opened when 30% of the outcomes are in, closed after a few 429s (or 100 ms).
RATE_LIMIT_AT = 0.3
RATE_LIMIT_BURST_RATE = 0.2
RATE_LIMIT_BURST_COUNT = 3
RATE_LIMIT_WINDOW = 0.1
#: Every access token is invalidated when half of the outcomes are in.
EXPIRE_AT = 0.5
#: The private stream's socket is dropped when this share of the outcomes is in.
STREAM_DROP_AT = 0.7

_OFF_BOOK = frozenset({"cancel", "done"})
_OPEN = frozenset({"wait", "pending"})


@attrs.frozen(kw_only=True)
class DemoOptions:
    orders: int = 2000
    latency: float = 0.003
    concurrency: int | None = None
    faults: bool = True
    seed: int | None = None


@attrs.frozen(kw_only=True)
class DemoReport:
    """What the demo did and whether every outcome told the truth."""

    url: str
    wallet: str | None
    uid: str | None
    note: str | None
    orders: int
    open_orders: int
    cancelled_before: int
    filled_before: int
    concurrency: int
    latency: float
    faults_on: bool
    by_status: dict[str, int]
    wall_time: float
    p50: float
    p99: float
    logins: int
    refreshes: int
    faults: dict[str, int]
    open_left: int
    mismatches: tuple[str, ...]
    #: GET look-ups of single orders (confirmation after a stream gap or a push window, and
    #: settling faulted cancels), stream connects, and the look-ups polling needs at the least.
    lookups: int = 0
    stream_connects: int = 0
    poll_floor: int = 0

    @property
    def ok(self) -> bool:
        return not self.mismatches

    def lines(self) -> list[str]:
        """The human summary."""
        rate = self.orders / self.wall_time if self.wall_time > 0 else 0.0
        statuses = ", ".join(f"{status} {n:,}" for status, n in self.by_status.items())
        faults = ", ".join(f"{name} {n:,}" for name, n in self.faults.items()) if self.faults_on else "off"
        login = (
            f"{self.wallet} logged in by signature (uid {self.uid})"
            if self.wallet
            else f"tokens issued by the sandbox (uid {self.uid})"
        )
        matched = self.orders - len(self.mismatches)
        lines = [
            f"tanx-async demo: sandbox exchange at {self.url} "
            f"(latency {self.latency * 1e3:g} ms per order request, faults {'on' if self.faults_on else 'off'})",
        ]
        if self.note:
            lines.append(f"  note        {self.note}")
        lines += [
            f"  wallet      {login}",
            f"  orders      {self.orders:,}: {self.open_orders:,} open, "
            f"{self.cancelled_before:,} already cancelled, {self.filled_before:,} already filled",
            f"  outcomes    {statuses}",
            f"  wall time   {self.wall_time:.2f} s ({rate:,.0f} cancels/s, concurrency {self.concurrency})",
            f"  latency     p50 {self.p50 * 1e3:.1f} ms, p99 {self.p99 * 1e3:.1f} ms (cancel sent -> confirmed)",
            f"  confirm     by push on the private stream ({self.stream_connects} connect"
            f"{'s' if self.stream_connects != 1 else ''}): {self.lookups:,} order look-ups in all, "
            f"where confirming by polling needs at least {self.poll_floor:,} (one per queued cancel)",
            f"  faults      {faults}",
            f"  auth        logins {self.logins}, refreshes {self.refreshes}",
            f"  check       {matched:,}/{self.orders:,} outcomes match the exchange's final state "
            f"(mismatches = {len(self.mismatches)}); {self.open_left:,} orders left open",
        ]
        lines += [f"  MISMATCH    {m}" for m in self.mismatches[:20]]
        if len(self.mismatches) > 20:
            lines.append(f"  ...         and {len(self.mismatches) - 20} more")
        return lines

    def to_json(self) -> dict[str, Any]:
        return {
            **attrs.asdict(self),
            "mismatches": list(self.mismatches),
            "ok": self.ok,
            "cancels_per_second": self.orders / self.wall_time if self.wall_time > 0 else None,
        }


def _percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (0 for no values)."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 1))  # ceil(n * q)
    return ordered[min(len(ordered), int(rank)) - 1]


def check_outcome(outcome: CancelOutcome, before: str | None, order: SandboxOrder | None) -> str | None:
    """Why ``outcome`` disagrees with the exchange, or None when it tells the truth.

    ``before`` is the order's state before the batch (None: unknown to the exchange), ``order``
    its final snapshot. ``queued``/``cancelled`` need an open order that is now ``cancel``;
    ``already_closed`` one that was closed before and is unchanged; ``not_found`` no order;
    ``failed``/``skipped`` (nothing happened) an order still open with no cancel queued;
    ``unknown`` admits it does not know, which is true whatever the state.
    """
    status = outcome.status
    final = order.state if order is not None else None
    if status in (CancelStatus.QUEUED, CancelStatus.CANCELLED):
        good = before in _OPEN and final == "cancel"
    elif status == CancelStatus.ALREADY_CLOSED:
        good = before in _OFF_BOOK and final == before
    elif status == CancelStatus.NOT_FOUND:
        good = order is None
    elif status in (CancelStatus.FAILED, CancelStatus.SKIPPED):
        good = order is not None and final == before and final in _OPEN and not order.cancel_queued
    else:
        good = order is not None
    if good:
        return None
    return (
        f"order {outcome.order_id}: outcome {status.value}, but the order was {before or 'unknown'} "
        f"and is now {final or 'unknown'}"
    )


async def run_demo(
    options: DemoOptions | None = None,
    *,
    on_progress: Callable[[int, int], None] | None = None,
) -> DemoReport:
    """Run the demo; ``on_progress(done, total)`` is called after every outcome."""
    options = options or DemoOptions()
    # Imported here: the sandbox is needed only when the demo runs.
    from ..testing import SandboxExchange

    exchange = SandboxExchange(seed=options.seed, cancel_delay=CANCEL_DELAY)
    key, address, note = _wallet()
    book = _seed(exchange, options, address)
    _set_faults(exchange, options)
    credentials = _credentials(exchange, book.uid, key, address)
    run = await _cancel_all(exchange, options, book, credentials, on_progress)
    # Let the cancels queued by the last outcomes take effect before reading the final state.
    await anyio.sleep(CANCEL_DELAY * 2)
    final = {o.id: o for o in exchange.orders_of(book.uid)}
    outcomes = run.outcomes
    mismatches = tuple(
        m
        for o in outcomes
        if (m := check_outcome(o, book.before.get(o.order_id), final.get(o.order_id))) is not None
    )
    by_status = _by_status(outcomes)
    elapsed = [o.elapsed for o in outcomes if o.elapsed > 0]
    return DemoReport(
        url=run.url,
        wallet=address,
        uid=run.uid,
        note=note,
        orders=len(book.ids),
        open_orders=len(book.open_ids),
        cancelled_before=book.cancelled,
        filled_before=book.filled,
        concurrency=run.concurrency,
        latency=options.latency,
        faults_on=options.faults,
        by_status=by_status,
        wall_time=run.wall_time,
        p50=_percentile(elapsed, 0.50),
        p99=_percentile(elapsed, 0.99),
        logins=exchange.login_count,
        refreshes=exchange.refresh_count,
        faults=_injected(exchange, options.faults),
        open_left=sum(1 for o in final.values() if o.state in _OPEN),
        mismatches=mismatches,
        lookups=_lookups(exchange),
        stream_connects=exchange.ws.accepted,
        poll_floor=by_status.get(CancelStatus.CANCELLED.value, 0),
    )


@attrs.frozen(kw_only=True)
class _Book:
    """The orders seeded for the demo: ``ids`` (shuffled) to cancel, and each one's state before."""

    uid: str
    open_ids: list[int]
    cancelled: int
    filled: int
    ids: list[int]
    before: dict[int, str]


@attrs.frozen(kw_only=True)
class _Run:
    """What the cancelling itself gave: the outcomes, and what the session saw."""

    url: str
    outcomes: list[CancelOutcome]
    wall_time: float
    concurrency: int
    uid: str | None


def _wallet() -> tuple[str | None, str | None, str | None]:
    """A throwaway wallet (its key, its address), or none and a note why (no eth-account)."""
    try:
        from .._signer import random_wallet

        key, address = random_wallet()
    except MissingDependencyError:
        return (
            None,
            None,
            "eth-account is not installed, so no wallet login: using tokens issued by the sandbox "
            "(pip install 'tanx-async[login]' to exercise the login)",
        )
    return key, address, None


def _seed(exchange: SandboxExchange, options: DemoOptions, address: str | None) -> _Book:
    """A user with ``options.orders`` open orders and a few already cancelled or filled."""
    rng = random.Random(options.seed)
    uid = exchange.create_user(address)
    n = options.orders
    open_ids = exchange.seed_orders(uid, n, markets=DEMO_MARKETS)
    n_closed = max(2, n // 40)
    # Closed a while ago (as in real life): an order the exchange touched just before our cancel
    # could have been closed by it, and the engine rightly says "cancelled" for it then.
    long_ago = exchange.now() - 86_400

    def closed(state: str, i: int) -> int:
        created = long_ago + i * 60
        return exchange.add_order(
            uid,
            market=DEMO_MARKETS[i % len(DEMO_MARKETS)],
            state=state,
            created_at=created,
            updated_at=created + 30,
        )

    cancelled_ids = [closed("cancel", i) for i in range(n_closed)]
    filled_ids = [closed("done", i) for i in range(n_closed)]
    ids = open_ids + cancelled_ids + filled_ids
    before = {o.id: o.state for o in exchange.orders_of(uid)}
    rng.shuffle(ids)
    return _Book(
        uid=uid,
        open_ids=open_ids,
        cancelled=len(cancelled_ids),
        filled=len(filled_ids),
        ids=ids,
        before=before,
    )


def _set_faults(exchange: SandboxExchange, options: DemoOptions) -> None:
    """Latency on the order endpoints, and (``options.faults``) 5xx answers and dropped connections."""
    faults = exchange.faults
    faults.only_paths = FAULT_PATHS
    faults.latency = options.latency
    faults.latency_jitter = options.latency
    if options.faults:
        faults.error_rate = ERROR_RATE
        faults.drop_before_rate = DROP_BEFORE_RATE
        faults.drop_after_rate = DROP_AFTER_RATE
        faults.retry_after = 1.0


def _credentials(exchange: SandboxExchange, uid: str, key: str | None, address: str | None) -> dict[str, Any]:
    """The session's credentials: the wallet (a login by signature), else tokens the sandbox issues."""
    if key is not None:
        return {"private_key": key, "eth_address": address}
    access, refresh = exchange.issue_tokens(uid)
    return {"access_token": access, "refresh_token": refresh}


async def _cancel_all(
    exchange: SandboxExchange,
    options: DemoOptions,
    book: _Book,
    credentials: dict[str, Any],
    on_progress: Callable[[int, int], None] | None,
) -> _Run:
    """Serve the sandbox and cancel every id with ``cancel_iter(confirm=True)``, the faults struck
    (a 429 burst, every access token expired, the stream dropped) as the outcomes come in."""
    # Imported here: the sandbox (and the session) are needed only when the demo runs.
    from .._session import AsyncTanxSession
    from ..testing import SandboxServer

    ids, total = book.ids, len(book.ids)
    outcomes: list[CancelOutcome] = []
    async with SandboxServer(exchange) as server:
        url = server.url
        session = AsyncTanxSession(base_url=server.url, **credentials, **session_options(options.concurrency))
        async with session, anyio.create_task_group() as tg:
            started = time.monotonic()
            rate_limited = expired = dropped = False
            batch = session.orders.cancel_iter(ids, concurrency=options.concurrency, confirm=True)
            async with contextlib.aclosing(batch) as results:
                async for outcome in results:
                    outcomes.append(outcome)
                    done = len(outcomes)
                    if options.faults and not rate_limited and done >= total * RATE_LIMIT_AT:
                        rate_limited = True
                        tg.start_soon(_rate_limit_burst, exchange)
                    if options.faults and not expired and done >= total * EXPIRE_AT:
                        expired = True
                        exchange.expire_access_tokens()
                    if options.faults and not dropped and done >= total * STREAM_DROP_AT:
                        dropped = True
                        exchange.ws.drop_all()  # updates pushed meanwhile are lost: a gap
                    if on_progress is not None:
                        on_progress(done, total)
            wall_time = time.monotonic() - started
            concurrency = min(options.concurrency or session.max_concurrency, session.max_concurrency)
            uid_seen = session.uid or book.uid
            tg.cancel_scope.cancel()  # the 429 burst task, if still running
    return _Run(url=url, outcomes=outcomes, wall_time=wall_time, concurrency=concurrency, uid=uid_seen)


def _by_status(outcomes: list[CancelOutcome]) -> dict[str, int]:
    """How many outcomes of each status, in ``CancelStatus`` order."""
    by_status: dict[str, int] = {}
    for outcome in sorted(outcomes, key=lambda o: list(CancelStatus).index(o.status)):
        by_status[outcome.status.value] = by_status.get(outcome.status.value, 0) + 1
    return by_status


def _injected(exchange: SandboxExchange, faults_on: bool) -> dict[str, int]:
    """The faults the sandbox injected, by kind."""
    injected: dict[str, int] = {"5xx": 0, "429": 0, "dropped connections": 0}
    for record in list(exchange.requests):
        if record.fault == "5xx":
            injected["5xx"] += 1
        elif record.fault == "429":
            injected["429"] += 1
        elif record.fault in ("drop_before", "drop_after"):
            injected["dropped connections"] += 1
    injected["access-token expiries"] = 1 if faults_on else 0
    injected["stream drops"] = 1 if faults_on else 0
    return injected


def _lookups(exchange: SandboxExchange) -> int:
    """The GET look-ups of single orders the sandbox answered."""
    return sum(
        1
        for r in list(exchange.requests)
        if r.method == "GET" and r.path.startswith("/sapi/v1/orders/") and r.path != "/sapi/v1/orders/"
    )


async def _rate_limit_burst(exchange: SandboxExchange) -> None:
    """Answer 429 (``Retry-After: 1``) to a few requests, then stop."""
    faults = exchange.faults
    seen = len(exchange.requests)
    count = 0
    faults.rate_limit_rate = RATE_LIMIT_BURST_RATE
    try:
        with anyio.move_on_after(RATE_LIMIT_WINDOW):
            while count < RATE_LIMIT_BURST_COUNT:
                await anyio.sleep(0.002)
                records = exchange.requests[seen:]
                seen += len(records)
                count += sum(1 for r in records if r.fault == "429")
    finally:
        faults.rate_limit_rate = 0.0


async def run_from_cli(args: argparse.Namespace, out: Output) -> int:
    """``tanx-async demo``: run, print the summary (or one JSON object), 0 when nothing lied."""
    options = DemoOptions(
        orders=args.orders,
        latency=args.latency,
        concurrency=args.concurrency,
        faults=not args.no_faults,
        seed=args.seed,
    )
    with Progress(options.orders, "cancelling", stderr=out.stderr) as progress:
        report = await run_demo(options, on_progress=progress.update)
    if out.json_mode:
        out.json(report.to_json())
    else:
        for line in report.lines():
            out.line(line)
    return EXIT_OK if report.ok else EXIT_NOT_OK
