"""Serve the sandbox with uvicorn instead of the built-in server (``pip install tanx-async[sandbox]``).

The built-in ``SandboxServer`` is what the tests and the demo use, because only it can act out
socket-level faults (resets, truncated bodies, stalls). Use this one to check that your own
stack talks to the sandbox as to any ASGI deployment; socket faults then degrade as documented in
``tanx_async.testing._app``.
"""

from __future__ import annotations

import threading
import time
from types import TracebackType
from typing import Any

from .._config import is_loopback
from ._state import SandboxExchange

__all__ = ["UvicornSandboxServer"]


class UvicornSandboxServer:
    """``with UvicornSandboxServer(exchange) as server: server.url`` on 127.0.0.1."""

    def __init__(
        self,
        exchange: SandboxExchange,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        start_timeout: float = 10.0,
    ) -> None:
        if not is_loopback(host):
            raise ValueError(f"refusing to bind non-loopback host {host!r}")
        try:
            import uvicorn
        except ImportError as exc:  # pragma: no cover - exercised only without the extra
            raise ImportError(
                "UvicornSandboxServer needs uvicorn: pip install 'tanx-async[sandbox]'"
            ) from exc
        config = uvicorn.Config(
            exchange.app,
            host=host,
            port=port,
            log_level="warning",
            lifespan="off",
            access_log=False,
            date_header=False,  # the app sends Date on the exchange's (skewable) clock
        )
        self._server: Any = uvicorn.Server(config)
        self._host = host
        self._timeout = start_timeout
        self._thread: threading.Thread | None = None
        self.port: int = port

    @property
    def url(self) -> str:
        """Base URL, ``http://127.0.0.1:<port>``."""
        return f"http://{self._host}:{self.port}"

    def start(self) -> UvicornSandboxServer:
        """Start uvicorn in a thread and wait (bounded) until it listens."""
        self._thread = threading.Thread(target=self._server.run, name="tanx-sandbox-uvicorn", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + self._timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        sockets = [sock for server in self._server.servers for sock in server.sockets]
        self.port = int(sockets[0].getsockname()[1])
        return self

    def stop(self) -> None:
        """Ask uvicorn to exit and join its thread (bounded)."""
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(self._timeout)
            self._thread = None

    def __enter__(self) -> UvicornSandboxServer:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
