"""Testing a bot (the quoting loop of ``quoting_loop.py``) against the sandbox exchange.

The ``tanx_sandbox`` fixture comes with tanx-async (a pytest plugin, registered when the package
is installed): nothing to import. Each test gets a fresh exchange on a loopback port with a user
and tokens; ``@pytest.mark.tanx_sandbox(...)`` sets its options, ``faults`` included.

    pytest examples/test_bot.py
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest
from quoting_loop import SandboxPlacer, quote

if TYPE_CHECKING:  # the fixture's type, for annotations only: the fixture itself needs no import
    from tanx_async.testing import TanxSandbox

pytestmark = pytest.mark.asyncio

CANCEL_PATH = "/sapi/v1/orders/cancel/"


@pytest.mark.tanx_sandbox(cancel_delay=0)
async def test_every_quote_is_pulled(tanx_sandbox: TanxSandbox) -> None:
    place = SandboxPlacer(tanx_sandbox.exchange, tanx_sandbox.uid)
    async with tanx_sandbox.session() as session:
        tally = await quote(session, place, ticks=4, tick=0.05, deadline=5.0)
    orders = tanx_sandbox.exchange.orders_of(tanx_sandbox.uid)
    assert (tally.ticks, tally.placed, len(orders)) == (4, 24, 24)
    assert {o.state for o in orders} == {"cancel"}
    assert tally.pulled == 24
    assert not tally.carried


@pytest.mark.tanx_sandbox(cancel_delay=0, faults={"error_rate": 0.3, "only_paths": (CANCEL_PATH,)})
async def test_failed_cancels_are_carried_over_and_the_loop_keeps_ticking(tanx_sandbox: TanxSandbox) -> None:
    place = SandboxPlacer(tanx_sandbox.exchange, tanx_sandbox.uid)
    async with tanx_sandbox.session(max_retries=0) as session:
        tally = await quote(session, place, ticks=6, tick=0.05, deadline=5.0)
    assert tally.ticks == 6
    assert tally.failed > 0  # some cancels did fail (seeded faults) ...
    # ... and were retried on later ticks until every quote was off the book.
    orders = tanx_sandbox.exchange.orders_of(tanx_sandbox.uid)
    assert {o.state for o in orders} == {"cancel"}
    assert tally.pulled == tally.placed == len(orders) == 36
    attempts = sum(len(tanx_sandbox.exchange.cancel_attempts(o.id)) for o in orders)
    # Each failure was sent again on a later tick (on top of the resends the library's own
    # settling pass makes within a tick for a cancel whose 5xx may hide a processed one).
    assert attempts >= 36 + tally.failed


@pytest.mark.tanx_sandbox(faults={"black_hole": True, "only_paths": (CANCEL_PATH,)})
async def test_an_exchange_that_never_answers_costs_the_deadline_and_claims_nothing(
    tanx_sandbox: TanxSandbox,
) -> None:
    place = SandboxPlacer(tanx_sandbox.exchange, tanx_sandbox.uid, per_tick=2)
    async with tanx_sandbox.session(max_retries=0) as session:
        tally = await quote(session, place, ticks=2, tick=0.05, deadline=0.2)
    orders = tanx_sandbox.exchange.orders_of(tanx_sandbox.uid)
    assert tally.ticks == 2
    assert tally.pulled == 0  # no answer is never taken for a cancel
    assert tally.carried == {o.id for o in orders}
    assert {o.state for o in orders} == {"wait"}
