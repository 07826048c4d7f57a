"""``tanx-async watch``: the private order stream, printed until interrupted (or ``--count``).

One line per event as it arrives: fixed-width columns (a table cannot wait for its last row), or
with ``--json`` one JSON object per line with an ``event`` key (``order``, ``trade``, ``gap``).
"""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING, Any

from ..models import OrderUpdate, StreamEvent, StreamGap, TradeUpdate
from ._args import EXIT_OK
from ._output import Output, _jsonable, text

if TYPE_CHECKING:
    from .._session import AsyncTanxSession

_HEADER = f"{'event':<6} {'id':>10} {'order':>10} {'market':<9} {'side':<4} {'state':<7} {'price':>12} {'amount':>12} at (UTC)"


def event_json(event: StreamEvent) -> dict[str, Any]:
    kind = "order" if isinstance(event, OrderUpdate) else "trade" if isinstance(event, TradeUpdate) else "gap"
    result: dict[str, Any] = {"event": kind, **_jsonable(event)}
    return result


def event_line(event: StreamEvent) -> str:
    if isinstance(event, StreamGap):
        dropped = f", {event.dropped} dropped" if event.dropped else ""
        return f"gap    updates may have been missed ({event.reason}{dropped}) {text(event.started)} .. {text(event.ended)}"
    cells: tuple[object, ...]
    if isinstance(event, OrderUpdate):
        cells = (
            "order",
            event.id,
            event.id,
            event.market,
            event.side,
            event.state,
            event.price,
            event.remaining_volume,
            event.updated_at or event.at,
        )
    else:
        cells = (
            "trade",
            event.id,
            event.order_id,
            event.market,
            event.side,
            "",
            event.price,
            event.amount,
            event.created_at,
        )
    kind, ident, order, market, side, state, price, amount, at = (text(c) for c in cells)
    return f"{kind:<6} {ident:>10} {order:>10} {market:<9} {side:<4} {state:<7} {price:>12} {amount:>12} {at}"


async def cmd_watch(session: AsyncTanxSession, args: argparse.Namespace, out: Output) -> int:
    count = 0
    async with session.stream(streams=tuple(args.streams.split(","))) as events:
        out.note(f"watching {args.streams} updates on {events.url} (Ctrl-C to stop)")
        if not out.json_mode:
            out.line(_HEADER)
        async for event in events:
            if out.json_mode:
                out.json(event_json(event))
            else:
                out.line(event_line(event))
            out.stdout.flush()
            count += 1
            if args.count and count >= args.count:
                break
    return EXIT_OK
