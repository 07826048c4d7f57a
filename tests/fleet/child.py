"""One member of a fleet, run as its own process by tests/fleet/ and benchmarks/scenarios/fleet.py.

``python tests/fleet/child.py '<json>'`` with ``url`` (the sandbox), ``access``/``refresh``
(the pair every member starts from), ``fleet`` (a fleet URL, or null: no fleet), ``rounds`` of
``ids`` (each round a list of order ids, cancelled with ``cancel_many``), ``gap`` (seconds
between rounds), and optional ``rate_limit``, ``rate_limit_burst``, ``refresh_skew``,
``signer`` (an address: a signer the sandbox accepts without checking signatures),
``ready_file`` (touched when the first round is done) and ``lease``.

Prints one JSON line: the outcomes by status, the errors by class, the events by kind.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from tanx_async import AsyncTanxSession, Fleet, RequestEvent


class LaxSigner:
    """Signs with a fixed signature of the right shape (the sandbox is told not to verify)."""

    def __init__(self, address: str) -> None:
        self._address = address

    @property
    def address(self) -> str:
        return self._address

    async def sign(self, message: str) -> str:
        return "0x" + "11" * 65


async def main(spec: dict[str, Any]) -> dict[str, Any]:
    events: collections.Counter[str] = collections.Counter()

    def on_event(event: RequestEvent) -> None:
        if event.kind != "response":
            events[event.kind] += 1

    options: dict[str, Any] = {}
    if spec.get("fleet"):
        fleet_options = {"lease": spec["lease"]} if spec.get("lease") else {}
        options["fleet"] = Fleet(spec["fleet"], **fleet_options)
    if spec.get("signer"):
        options["signer"] = LaxSigner(spec["signer"])
    if spec.get("rate_limit"):
        options["rate_limit"] = spec["rate_limit"]
        options["rate_limit_burst"] = spec.get("rate_limit_burst", 1)
    statuses: collections.Counter[str] = collections.Counter()
    errors: collections.Counter[str] = collections.Counter()
    async with AsyncTanxSession(
        base_url=spec["url"],
        access_token=spec.get("access"),
        refresh_token=spec.get("refresh"),
        refresh_skew=spec.get("refresh_skew", 30.0),
        on_event=on_event,
        **options,
    ) as session:
        for number, ids in enumerate(spec["rounds"]):
            if number:
                await asyncio.sleep(spec.get("gap", 0.0))
            for outcome in await session.orders.cancel_many(ids):
                statuses[outcome.status.value] += 1
                if outcome.error is not None:
                    errors[f"{type(outcome.error).__name__}: {outcome.error}"] += 1
            if number == 0 and spec.get("ready_file"):
                Path(spec["ready_file"]).touch()  # noqa: ASYNC240 - one tiny file, once
    return {"statuses": dict(statuses), "errors": dict(errors), "events": dict(events), "end": time.time()}


if __name__ == "__main__":
    logging.basicConfig(
        level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
    )
    print(json.dumps(asyncio.run(main(json.loads(sys.argv[1])))), flush=True)
