"""Scenario ``panic``: the panic path whatever the caller does (issue 28), how long until every
cancel is on the wire.

Against the sandbox exchange (the only server here that applies cancels after a delay and speaks
the private stream), served on a loopback socket from a thread of ``run.py``'s process:

- ``confirm``: 500 cancels, each applied 0.5 s after it is queued, without ``confirm``, with
  ``confirm=True`` (by push, the default) and with ``confirm_with="poll"``, in rounds whose
  order rotates (5, or ``-r``): the seconds from the first cancel's arrival at the exchange to
  the last's (from its request log), and the ratios.
- ``consumer``: ``cancel_iter`` of 1,000 ids with ``deadline=3`` read by a consumer that spends
  5 ms per outcome: how many were ``skipped`` (must be none: the run is invalid otherwise), and
  the seconds until the last cancel arrived.

Wall times on a shared machine drift; the rounds are paired so that both variants of a round
see the same machine.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import statistics
from collections import Counter

from scenarios._base import Context, Measured, commit, section
from tanx_async import AsyncTanxSession, CancelStatus
from tanx_async.testing import SandboxExchange, SandboxServer

CANCEL_PATH = "/sapi/v1/orders/cancel/"


def on_the_wire(exchange: SandboxExchange) -> float:
    """Seconds from the first cancel's arrival at the exchange to the last's (its request log)."""
    times = [r.time for r in exchange.requests if r.path == CANCEL_PATH and r.result == "cancel_queued"]
    return max(times) - min(times)


#: The variants of a round: no confirmation, by push (``auto``), by polling.
VARIANTS: tuple[str | None, ...] = (None, "auto", "poll")


async def confirm_round(confirm_with: str | None, n: int) -> tuple[float, Counter[str]]:
    exchange = SandboxExchange(seed=1, cancel_delay=0.5)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, n)
    with SandboxServer(exchange) as server:
        async with AsyncTanxSession(
            base_url=server.url, access_token=access, refresh_token=refresh
        ) as session:
            await session.warm_up()
            outcomes = await session.orders.cancel_many(
                ids,
                confirm=confirm_with is not None,
                confirm_with=confirm_with or "auto",  # type: ignore[arg-type]
                confirm_timeout=10,
            )
            wire = on_the_wire(exchange)
    return wire, Counter(o.status.value for o in outcomes)


async def consumer_round(n: int) -> tuple[float, Counter[str]]:
    exchange = SandboxExchange(seed=2, cancel_delay=0.0)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, n)
    got: Counter[str] = Counter()
    with SandboxServer(exchange) as server:
        async with AsyncTanxSession(
            base_url=server.url, access_token=access, refresh_token=refresh
        ) as session:
            await session.warm_up()
            async for outcome in session.orders.cancel_iter(ids, deadline=3):
                got[outcome.status.value] += 1
                await asyncio.sleep(0.005)
            wire = on_the_wire(exchange)
    assert sum(got.values()) == n, got  # one outcome per id
    return wire, got


def measure(ctx: Context) -> Measured:
    rounds = ctx.rounds(5)
    pairs: list[tuple[float, float, float]] = []
    statuses: Counter[str] = Counter()
    for r in range(rounds):
        order = VARIANTS[r % 3 :] + VARIANTS[: r % 3]
        wire: dict[str | None, float] = {}
        for variant in order:
            wire[variant], counts = asyncio.run(confirm_round(variant, 500))
            if variant is not None:
                statuses += counts
        pairs.append((wire[None], wire["auto"], wire["poll"]))
        ctx.log(
            f"  panic round {r + 1}: without {wire[None]:.3f} s, by push {wire['auto']:.3f} s, "
            f"by polling {wire['poll']:.3f} s"
        )
    consumers = [asyncio.run(consumer_round(1000)) for _ in range(rounds)]
    for wire_s, got in consumers:
        ctx.log(f"  panic consumer: cancels on the wire within {wire_s:.3f} s, outcomes {dict(got)}")
    ratios = [b / a for a, b, _ in pairs]
    polled = [c / a for a, _, c in pairs]
    date = dt.date.today().isoformat()
    lines = [
        "## The panic path whatever the caller does (`run.py --scenarios panic`, issue 28)",
        "",
        f"{date}, commit `{commit()}`, {rounds} paired rounds on the sandbox (loopback, served from",
        "a thread of the benchmark's own process), on a 2-core machine shared with other work.",
        "",
        "500 cancels, each applied 0.5 s after it is queued: seconds from the first cancel's arrival",
        "at the exchange to the last's (its request log).",
        "",
        '| round | without `confirm` | `confirm=True` (push) | ratio | `confirm_with="poll"` | ratio |',
        "|---|---|---|---|---|---|",
        *[
            f"| {i + 1} | {a:.3f} | {b:.3f} | {b / a:.2f}x | {c:.3f} | {c / a:.2f}x |"
            for i, (a, b, c) in enumerate(pairs)
        ],
        f"| **median** | {statistics.median(a for a, _, _ in pairs):.3f} | "
        f"{statistics.median(b for _, b, _ in pairs):.3f} | **{statistics.median(ratios):.2f}x** | "
        f"{statistics.median(c for _, _, c in pairs):.3f} | **{statistics.median(polled):.2f}x** |",
        "",
        f"With confirmation every order ended: {dict(statuses)}.",
        "",
        "`cancel_iter` of 1,000 ids, `deadline=3`, a consumer spending 5 ms per outcome (5 s in all):",
        "",
        "| run | first to last cancel on the wire | outcomes |",
        "|---|---|---|",
        *[
            f"| {i + 1} | {w:.3f} s | {', '.join(f'{n} {s}' for s, n in sorted(got.items()))} |"
            for i, (w, got) in enumerate(consumers)
        ],
    ]
    skipped = any(got[CancelStatus.SKIPPED.value] for _, got in consumers)
    return Measured(section("panic", lines), invalid=skipped, raw={"pairs": pairs, "consumers": consumers})
