"""A faithful fake tanX exchange for tests: ``SandboxExchange`` + ``SandboxServer``.

Of the rest of ``tanx_async`` it uses only ``is_loopback`` (from ``tanx_async._config``)
and, for the ``tanx_sandbox`` pytest fixture, the session itself::

    exchange = SandboxExchange(seed=1)
    uid = exchange.create_user()
    access, refresh = exchange.issue_tokens(uid)
    ids = exchange.seed_orders(uid, 10)
    with SandboxServer(exchange) as server:
        ...  # talk to server.url; inspect exchange.requests / exchange.order(id)

The private stream ``/private`` (WebSocket) is served by ``SandboxServer`` too: every state
change of a user's orders is pushed to that user's subscribed sockets; its faults are
``exchange.ws.faults`` (``StreamFaults``), its counters and ``drop_all()`` are on ``exchange.ws``.

``exchange.app`` is a plain ASGI 3 app usable in-process (``httpx.ASGITransport``);
there, socket-level faults degrade as described in ``tanx_async.testing._app``.

Answers follow the real shapes (``SandboxExchange(profile=...)`` picks among them), and
every text the sandbox invents, such as the cancel refusals (404 "Order not found", 400
"Order is already cancelled", ...), is marked as invented on ``SandboxExchange``;
``SandboxExchange(texts="random")`` replaces each with a random sentence per answer.
"""

from .._config import is_loopback
from ._clock import SandboxClock
from ._faults import Faults, SimulatedDisconnect
from ._fixture import TanxSandbox
from ._records import RequestRecord
from ._server import SandboxServer, serve
from ._state import SandboxExchange, SandboxOrder, SandboxTrade
from ._tokens import fingerprint as token_fingerprint
from ._uvicorn import UvicornSandboxServer
from ._wire import INVENTED_TEXTS, PROFILES
from ._ws import StreamFaults, StreamHub

__all__ = [
    "INVENTED_TEXTS",
    "PROFILES",
    "Faults",
    "RequestRecord",
    "SandboxClock",
    "SandboxExchange",
    "SandboxOrder",
    "SandboxServer",
    "SandboxTrade",
    "SimulatedDisconnect",
    "StreamFaults",
    "StreamHub",
    "TanxSandbox",
    "UvicornSandboxServer",
    "is_loopback",
    "serve",
    "token_fingerprint",
]
