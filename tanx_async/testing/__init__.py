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

Cancel answers (``POST /sapi/v1/orders/cancel/``), beyond the documented success
(200 "Order is successfully queued for cancellation", payload = the order before
cancellation): 404 "Order not found" (unknown or another user's), 400 "Order is
already cancelled", 400 "Order is already filled", 400 "Order is already queued for
cancellation", 400 "Order is not open" (e.g. state ``reject``), 400 "order_id must be
a positive integer". All other texts are listed on :class:`SandboxExchange`.
"""

from ._faults import Faults, SimulatedDisconnect
from ._fixture import TanxSandbox
from ._server import SandboxServer, is_loopback, serve
from ._state import RequestRecord, SandboxExchange, SandboxOrder
from ._tokens import fingerprint as token_fingerprint
from ._uvicorn import UvicornSandboxServer

__all__ = [
    "Faults",
    "RequestRecord",
    "SandboxExchange",
    "SandboxOrder",
    "SandboxServer",
    "SimulatedDisconnect",
    "TanxSandbox",
    "UvicornSandboxServer",
    "is_loopback",
    "serve",
    "token_fingerprint",
]
