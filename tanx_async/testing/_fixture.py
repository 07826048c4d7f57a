"""What the ``tanx_sandbox`` pytest fixture gives a test: ``TanxSandbox``.

The fixture itself lives in the top-level module ``_tanx_async_pytest`` (the ``pytest11`` entry
point), which imports this module only when a test asks for the fixture.
"""

from __future__ import annotations

import inspect
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import attrs

from ._faults import Faults
from ._server import SandboxServer
from ._state import SandboxExchange

if TYPE_CHECKING:
    from tanx_async import AsyncTanxSession

#: Options the fixture handles itself; every other one goes to ``SandboxExchange(...)``.
FIXTURE_OPTIONS = frozenset({"orders"})


@attrs.define(eq=False)
class TanxSandbox:
    """A running loopback sandbox exchange with one user and that user's tokens.

    Given by the ``tanx_sandbox`` pytest fixture (installed with tanx-async, no import needed)::

        async def test_cancel(tanx_sandbox):
            order_ids = tanx_sandbox.exchange.seed_orders(tanx_sandbox.uid, 3)
            async with tanx_sandbox.session() as session:
                outcomes = await session.orders.cancel_many(order_ids)
            assert all(o.ok for o in outcomes)

    Options come from ``@pytest.mark.tanx_sandbox(seed=..., faults=..., orders=..., **more)``
    or from indirect parametrization (a dict, which wins over the marker): ``seed`` (default 1)
    seeds the exchange; ``faults`` is a ``Faults`` or a dict of its fields (seeded with
    ``seed``); ``orders`` seeds that many open orders for the user (``order_ids``); every
    other option is passed to ``SandboxExchange`` (for example ``cancel_delay``).
    """

    exchange: SandboxExchange
    """The fake exchange: seed orders, switch faults, inspect requests and order states."""
    server: SandboxServer
    """The loopback server hosting ``exchange``."""
    uid: str
    """The user the tokens belong to."""
    access_token: str = attrs.field(repr=False)
    """A valid access token of ``uid`` (never shown in a repr)."""
    refresh_token: str = attrs.field(repr=False)
    """A valid refresh token of ``uid`` (never shown in a repr)."""
    order_ids: list[int] = attrs.field(factory=list)
    """Ids of the open orders seeded by the ``orders`` option (empty without it)."""

    @property
    def url(self) -> str:
        """The sandbox's base URL, ``http://127.0.0.1:<port>``."""
        return self.server.url

    def session(self, **kwargs: Any) -> AsyncTanxSession:
        """A new ``AsyncTanxSession`` pointed at the sandbox with the user's
        tokens (any keyword overrides them, or sets another option); use it with ``async with``.
        """
        from tanx_async import AsyncTanxSession

        kwargs.setdefault("access_token", self.access_token)
        kwargs.setdefault("refresh_token", self.refresh_token)
        kwargs.setdefault("base_url", self.url)
        return AsyncTanxSession(**kwargs)


def _exchange_parameters() -> frozenset[str]:
    signature = inspect.signature(SandboxExchange.__init__)
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.parameters.values()):
        return frozenset()  # accepts anything: let SandboxExchange check
    return frozenset(name for name in signature.parameters if name != "self")


def check_options(options: Mapping[str, Any]) -> None:
    """Raise ``TypeError`` naming every option neither the fixture nor ``SandboxExchange`` takes."""
    accepted = _exchange_parameters()
    if not accepted:
        return
    unknown = sorted(set(options) - accepted - FIXTURE_OPTIONS)
    if unknown:
        raise TypeError(
            f"tanx_sandbox: unknown option(s) {', '.join(unknown)}; "
            f"the fixture takes {', '.join(sorted(FIXTURE_OPTIONS | accepted))}"
        )


@contextmanager
def running_sandbox(options: Mapping[str, Any]) -> Iterator[TanxSandbox]:
    """Start a sandbox with ``options`` (as described on ``TanxSandbox``), stop it after."""
    check_options(options)
    kwargs = dict(options)
    kwargs.setdefault("seed", 1)
    orders = kwargs.pop("orders", 0)
    if not isinstance(orders, int) or isinstance(orders, bool) or orders < 0:
        raise TypeError(f"tanx_sandbox: orders must be a non-negative int, got {orders!r}")
    faults = kwargs.get("faults")
    if isinstance(faults, Mapping):
        kwargs["faults"] = Faults(**{"seed": kwargs["seed"], **faults})
    elif faults is not None and not isinstance(faults, Faults):
        raise TypeError(f"tanx_sandbox: faults must be a Faults or a dict of its fields, got {faults!r}")
    exchange = SandboxExchange(**kwargs)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    order_ids = exchange.seed_orders(uid, orders) if orders else []
    with SandboxServer(exchange) as server:
        yield TanxSandbox(exchange, server, uid, access, refresh, order_ids)
