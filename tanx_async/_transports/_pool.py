"""``ConnectionPool``: the asyncio transport's connections, per origin.

A LIFO list of idle connections per origin, at most ``max_connections`` open; a request that
finds none idle opens one within the limit, else queues (first come, first served: a freed
connection or slot goes to the longest waiter, never to a newcomer), bounded by the pool timeout.
An idle connection is reused only while it is younger than its idle life (our expiry, and a
margin under the server's ``Keep-Alive: timeout``) and nothing has arrived on it (a stray byte
closes a ``Connection`` at once). ``warm_up`` opens connections ahead of need, and with
``keep_warm`` a keeper task replaces idle ones before they lapse, sending nothing.

New connections: happy eyeballs (RFC 8305) through ``aiohappyeyeballs``, TLS through the
standard ``ssl`` module (certifi's CA bundle, or ``SSL_CERT_FILE`` / ``SSL_CERT_DIR`` with
``trust_env``, as httpx does), ``connect`` bounding TCP + TLS set-up.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import time
from collections import deque
from typing import TYPE_CHECKING

from .. import _constants as C
from .._config import ssl_context as make_ssl_context
from .._duration import within
from .._errors import APIConnectionError, APITimeoutError
from .._log import logger
from .._pace import Pacer
from ._connection import Connection, not_sent
from ._deadlines import Deadlines
from ._http11 import Origin
from .base import idle_life, pool_closed, pool_sizes

if TYPE_CHECKING:
    from .._httpx import httpx

__all__ = ["ConnectionPool"]

_URL_CACHE_SIZE = 256


class ConnectionPool:
    """Idle connections per origin (LIFO), at most ``max_connections`` open."""

    def __init__(
        self,
        *,
        limits: httpx.Limits,
        verify: bool | ssl.SSLContext,
        max_response_bytes: int,
        trust_env: bool = True,
        keep_warm: bool = False,
    ) -> None:
        self._loop = asyncio.get_running_loop()
        self._cap = max_response_bytes
        self._verify = verify
        self._trust_env = trust_env
        self._ssl: ssl.SSLContext | None = None
        self._max, self._max_idle, self._expiry = pool_sizes(limits)
        self._idle: dict[tuple[str, str, int], list[Connection]] = {}
        self._open = 0  # connections opening, in use or idle
        self._in_use = 0
        #: Requests queued for a connection, oldest first, with the origin each wants.
        self._waiters: deque[tuple[asyncio.Future[Connection | None], tuple[str, str, int]]] = deque()
        self._origins: dict[str, Origin] = {}
        self._closed = False
        self._busy: set[Connection] = set()
        #: Per origin: the ``Origin`` (to reconnect it) and the server's last ``Keep-Alive`` hint.
        self._known: dict[tuple[str, str, int], Origin] = {}
        self._server_idle: dict[tuple[str, str, int], float] = {}
        self._keeper: asyncio.Task[None] | None = None
        self._keep_warm = keep_warm
        self._pacer = Pacer(self._loop, C.ANSWERS_PER_TURN)
        #: The one buffer every connection of the pool reads into (see ``Connection``).
        self._read_buffer = memoryview(bytearray(C.READ_BUFFER_SIZE))
        self._deadlines = Deadlines(self._loop)
        #: The timeouts of the last request or warm-up: keep-warm connects within them.
        self.connect_timeout: httpx.Timeout | None = None

    @property
    def closed(self) -> bool:
        return self._closed

    def connections_in_use(self) -> int:
        """Connections checked out of the pool now (a leak shows as a count that stays up)."""
        return self._in_use

    async def aclose(self) -> None:
        self._closed = True
        keeper, self._keeper = self._keeper, None
        if keeper is not None:
            keeper.cancel()
            await asyncio.gather(keeper, return_exceptions=True)
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        for conn in list(self._busy):
            conn.fail(
                APIConnectionError("the connection pool was closed during the request", maybe_processed=True)
            )
        while self._waiters:
            waiter, _ = self._waiters.popleft()
            if not waiter.done():
                waiter.set_exception(pool_closed())
        self._deadlines.cancel()
        # Let the transports run their close callbacks before the loop may go away.
        await asyncio.sleep(0)

    async def warm_up(self, url: str, connections: int, timeout: httpx.Timeout) -> int:
        """Open connections to ``url``'s origin ahead of need until ``connections`` are idle and
        ready (TCP connected, TLS handshake done and the certificate verified), within
        ``max_connections`` and ``max_keepalive_connections``. Sends no request. Returns how
        many idle connections are ready now; raises the connect error when none could be opened
        and none were ready."""
        if self._closed:
            raise pool_closed()
        origin = self.origin(url)
        key = origin.key
        self.connect_timeout = timeout
        ready = self._ready_count(key)
        want = min(connections, self._max_idle if self._max_idle is not None else connections) - ready
        room = want if self._max is None else min(want, self._max - self._open)
        if room <= 0:
            return ready
        self._open += room  # reserved now: requests arriving meanwhile see the slots taken
        results = await asyncio.gather(*(self._open_ahead(origin, timeout) for _ in range(room)))
        ready = self._ready_count(key)
        errors = [r for r in results if r is not None]
        if errors and ready == 0:
            raise errors[0]
        if errors:
            logger.info("warm_up: %d of %d connections failed to open (%s)", len(errors), room, errors[0])
        return ready

    def origin(self, url: str) -> Origin:
        """What ``url`` means on the wire (kept per URL: a few hundred at most)."""
        origin = self._origins.get(url)
        if origin is None:
            origin = Origin(url)
            if len(self._origins) >= _URL_CACHE_SIZE:
                self._origins.clear()
            self._origins[url] = origin
            self._known.setdefault(origin.key, origin)
        return origin

    def _ready_count(self, key: tuple[str, str, int]) -> int:
        now = time.monotonic()
        return sum(
            1
            for conn in self._idle.get(key, ())
            if not conn.is_closing() and now - conn.idle_since < self._life(conn)
        )

    def _life(self, conn: Connection) -> float:
        """How long ``conn`` may sit idle and still be reused (``idle_life``)."""
        return idle_life(self._expiry, conn.server_idle)

    async def _open_ahead(self, origin: Origin, timeout: httpx.Timeout) -> APIConnectionError | None:
        """Fill a slot already counted in ``_open`` with a new idle connection (or hand it to a
        waiting request). Never raises a connect error: returns it (and frees the slot)."""
        try:
            conn = await self._connect(origin, timeout)
        except APIConnectionError as exc:
            self._free_slot()
            return exc
        except BaseException:
            self._free_slot()
            raise
        if self._closed:
            self._discard(conn)
            return pool_closed()
        conn.keep_alive = True  # fresh, nothing asked of it yet
        conn.server_idle = self._server_idle.get(origin.key)
        conn.opened_at = time.monotonic()
        self._in_use += 1
        self._release(origin.key, conn)
        return None

    # keep-warm: replace idle connections before they lapse, without sending anything

    def _start_keeper(self) -> None:
        if self._keep_warm and self._keeper is None and not self._closed:
            self._keeper = self._loop.create_task(self._keep_warm_loop())

    async def _keep_warm_loop(self) -> None:
        """Every tick (at most ``KEEP_WARM_POLL`` apart, sooner when a connection is due):
        idle connections that will lapse within the lead time (our expiry, the server's
        ``Keep-Alive: timeout``) or that the server closed are replaced by new ones."""
        while not self._closed:
            await asyncio.sleep(self._next_tick())
            stale = self._take_stale()
            if stale and self.connect_timeout is not None:
                timeout = self.connect_timeout
                await asyncio.gather(*(self._open_ahead(self._known[key], timeout) for key in stale))

    def _lead(self, life: float) -> float:
        return min(C.KEEP_WARM_LEAD, life / 2)

    def _next_tick(self) -> float:
        now = time.monotonic()
        tick = C.KEEP_WARM_POLL
        for idle in self._idle.values():
            for conn in idle:
                life = self._life(conn)
                tick = min(tick, conn.idle_since + life - self._lead(life) - now)
        return max(tick, C.KEEP_WARM_MIN_TICK)

    def _take_stale(self) -> list[tuple[str, str, int]]:
        """Close the idle connections due for replacement (their slots stay reserved) and
        return the origin of each one to reopen. A connection the server closed within
        ``KEEP_WARM_MIN_LIFE`` of opening, or whose life is shorter than that, is let go:
        reconnecting it would only churn."""
        now = time.monotonic()
        stale: list[tuple[str, str, int]] = []
        for key, idle in self._idle.items():
            if key not in self._known:
                continue
            keep: list[Connection] = []
            for conn in idle:
                life = self._life(conn)
                closed = conn.is_closing()
                if not closed and now - conn.idle_since < life - self._lead(life):
                    keep.append(conn)
                elif life < C.KEEP_WARM_MIN_LIFE or (closed and now - conn.opened_at < C.KEEP_WARM_MIN_LIFE):
                    self._discard(conn)
                else:
                    conn.close()
                    stale.append(key)
            idle[:] = keep
        return stale

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for ``https`` origins (built on first use: it loads the CA bundle)."""
        if self._ssl is None:
            self._ssl = make_ssl_context(self._verify, trust_env=self._trust_env)
        return self._ssl

    # internals

    async def _acquire(self, origin: Origin, timeout: httpx.Timeout) -> Connection:
        """A live idle connection, else a new one within ``max_connections``, else a place in
        the queue (first come, first served: a freed connection or slot is handed to the
        longest waiter, never left for a newcomer to take)."""
        conn = self._pop_idle(origin.key)
        if conn is not None:
            self._in_use += 1
            return conn
        if self._max is None or self._open < self._max:
            self._open += 1
        elif self._reuse_idle_slot():
            pass  # the slot of an idle connection to another origin, closed for us
        else:
            got = await self._wait_for_room(origin.key, timeout)
            if got is not None:
                return got  # handed over, already counted in use
            # else: a slot was reserved for us (counted in _open)
        self._in_use += 1
        try:
            return await self._connect(origin, timeout)
        except BaseException:
            self._in_use -= 1
            self._free_slot()
            raise

    def _pop_idle(self, key: tuple[str, str, int]) -> Connection | None:
        idle = self._idle.get(key)
        if not idle:
            return None
        now = time.monotonic()
        while idle:
            conn = idle.pop()
            if conn.is_closing() or now - conn.idle_since > self._life(conn):
                self._discard(conn)
                continue
            return conn
        return None

    async def _wait_for_room(self, key: tuple[str, str, int], timeout: httpx.Timeout) -> Connection | None:
        """Queue for a connection of ``key`` (returned, counted in use) or a reserved slot (None).

        The pool timeout is a timer that fails the future, not ``asyncio.wait_for``: on Python
        <= 3.11 that returns a result that arrived together with a cancellation, swallowing
        the cancellation.
        """
        waiter: asyncio.Future[Connection | None] = self._loop.create_future()
        entry = (waiter, key)
        self._waiters.append(entry)
        timer = None
        if timeout.pool is not None:
            timer = self._loop.call_later(timeout.pool, _pool_timeout, waiter, timeout.pool)
        try:
            return await waiter
        except BaseException:
            if waiter.done() and not waiter.cancelled() and waiter.exception() is None:
                # Handed a connection or a slot, then cancelled: pass it on, never lose it.
                handed = waiter.result()
                if handed is None:
                    self._free_slot()
                else:
                    self._release(key, handed)
            raise
        finally:
            if timer is not None:
                timer.cancel()
            if not waiter.done():
                waiter.cancel()
            if entry in self._waiters:
                self._waiters.remove(entry)

    def _reuse_idle_slot(self) -> bool:
        """At the limit: close one idle connection (of another origin) and take its slot."""
        for idle in self._idle.values():
            if idle:
                idle.pop(0).close()
                return True
        return False

    async def _connect(self, origin: Origin, timeout: httpx.Timeout) -> Connection:
        from anyio import fail_after  # imported here, as in _transport (only new connections)

        loop = self._loop
        context = None
        if origin.tls:
            context = self.ssl_context()
        conn = Connection(loop, self._cap, self._read_buffer)
        conn.pacer = self._pacer
        conn.deadlines = self._deadlines
        try:
            # anyio's deadline, not ``asyncio.wait_for`` (which, on Python <= 3.11, can drop a
            # cancellation that arrives as the connection completes).
            with fail_after(timeout.connect):
                await self._dial(origin, conn, context)
        except TimeoutError:  # our deadline, or the kernel's ETIMEDOUT
            conn.close()
            raise APITimeoutError(
                f"could not connect to {origin.host}:{origin.port}{within(timeout.connect)}",
                maybe_processed=False,
            ) from None
        except (OSError, ssl.SSLError) as exc:  # refused, unreachable, DNS, TLS verification
            conn.close()
            text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            raise APIConnectionError(
                f"could not connect to {origin.host}:{origin.port}: {text}", maybe_processed=False
            ) from exc
        except BaseException:
            # Cancelled: ``connection_made`` may already have handed us the transport.
            conn.close()
            raise
        return conn

    async def _dial(self, origin: Origin, conn: Connection, context: ssl.SSLContext | None) -> None:
        """Resolve, connect (happy eyeballs, RFC 8305: a dead IPv6 route must not eat the whole
        connect timeout) and wrap the socket in a transport whose protocol is ``conn``.

        ``aiohappyeyeballs`` (aio-libs) rather than ``create_connection(happy_eyeballs_delay=)``:
        the standard library's race leaks a socket when cancelled mid-connect (3.11), and
        uvloop's ``create_connection`` does not take the option at all.
        """
        import aiohappyeyeballs

        loop = self._loop
        infos = await loop.getaddrinfo(origin.host, origin.port, type=socket.SOCK_STREAM)
        if not infos:  # pragma: no cover - getaddrinfo raises rather than answer nothing
            raise OSError(f"no address for {origin.host}")
        sock = await aiohappyeyeballs.start_connection(infos, happy_eyeballs_delay=C.HAPPY_EYEBALLS_DELAY)
        try:
            await loop.create_connection(
                lambda: conn,
                sock=sock,
                ssl=context,
                server_hostname=origin.host if context is not None else None,
            )
        except BaseException:
            if conn.transport is None:
                sock.close()  # never handed to a transport (which would close it itself)
            raise

    async def check_out(self, origin: Origin, timeout: httpx.Timeout) -> Connection:
        """A connection to ``origin``, checked out for a request (``give_back`` returns it):
        a warm idle one, else a new one, else one freed for us while we queue."""
        conn = self.check_out_idle(origin.key)
        if conn is not None:
            return conn
        if self._closed:
            raise pool_closed()
        conn = await self._acquire(origin, timeout)
        if self.closed:  # closed while we queued or connected: nothing sent
            self._release(origin.key, conn)
            raise pool_closed()
        if conn.is_closing():  # lost while this task waited to run again
            conn.keep_alive = False
            self._release(origin.key, conn)
            raise not_sent()
        self._busy.add(conn)
        return conn

    def check_out_idle(self, key: tuple[str, str, int]) -> Connection | None:
        """A warm idle connection of ``key``, checked out for requests (``_give_back`` returns
        it), or None: none is idle, or the pool is closed."""
        if self._closed:
            return None
        conn = self._pop_idle(key)
        if conn is not None:
            self._in_use += 1
            self._busy.add(conn)
        return conn

    def give_back(self, key: tuple[str, str, int], conn: Connection) -> None:
        """A connection checked out for requests (``_busy``) is done with: back to the pool."""
        self._busy.discard(conn)
        self._release(key, conn)

    def _release(self, key: tuple[str, str, int], conn: Connection) -> None:
        self._in_use -= 1
        if not conn.keep_alive or conn.is_closing() or self._closed:
            self._discard(conn)
            return
        waiter = self._next_waiter() if self._waiters else None
        if waiter is not None:
            future, wanted = waiter
            if wanted == key:
                self._in_use += 1
                future.set_result(conn)  # straight to the longest waiter
            else:
                conn.close()
                future.set_result(None)  # its slot goes to a waiter for another origin
            return
        idle = self._idle.get(key)
        if idle is None:
            idle = self._idle[key] = []
        if self._max_idle is not None and len(idle) >= self._max_idle:
            self._discard(conn)
            return
        if conn.server_idle is not None:
            self._server_idle[key] = conn.server_idle
        conn.idle_since = time.monotonic()
        idle.append(conn)
        if self._keeper is None and self._keep_warm:
            self._start_keeper()

    def _discard(self, conn: Connection) -> None:
        conn.close()
        self._free_slot()

    def _free_slot(self) -> None:
        """A connection's slot is free: reserve it for the longest waiter, or give it back."""
        waiter = self._next_waiter()
        if waiter is None:
            self._open -= 1
        else:
            waiter[0].set_result(None)

    def _next_waiter(self) -> tuple[asyncio.Future[Connection | None], tuple[str, str, int]] | None:
        waiters = self._waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter[0].done():
                return waiter
        return None


def _pool_timeout(waiter: asyncio.Future[Connection | None], seconds: float) -> None:
    if not waiter.done():
        waiter.set_exception(
            APITimeoutError(f"no free connection{within(seconds)} (pool timeout)", maybe_processed=False)
        )
