"""A faithful fake tanX exchange for tests: ``SandboxExchange`` + ``SandboxServer``.

Nothing here imports httpx or the rest of ``tanx_async``::

    exchange = SandboxExchange(seed=1)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 10)
    with SandboxServer(exchange) as server:
        ...  # talk to server.url; inspect exchange.requests / exchange.order(id)

``exchange.app`` is a plain ASGI 3 app usable in-process (``httpx.ASGITransport``);
there, socket-level faults degrade as described in ``tanx_async.testing._app``.
"""

from ._faults import Faults, SimulatedDisconnect
from ._server import SandboxServer, is_loopback, serve
from ._state import RequestRecord, SandboxExchange, SandboxOrder
from ._tokens import fingerprint as token_fingerprint

__all__ = [
    "Faults",
    "RequestRecord",
    "SandboxExchange",
    "SandboxOrder",
    "SandboxServer",
    "SimulatedDisconnect",
    "is_loopback",
    "serve",
    "token_fingerprint",
]
