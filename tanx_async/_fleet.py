"""A session's side of a fleet (``tanx_async.fleet``): sharing its tokens, rate budget and clock.

``FleetLink`` is what the pipeline calls (three small hooks in ``_pipeline.py``):

- ``join()``, before the session's first request: the exchange clock's offset if a member
  learned it; the fleet's pair for this identity, unless the constructor's is newer (its
  access token expires later). A pair is stored in the fleet only by a renewal (so a spent
  pair given to a constructor is never offered to the others).
- ``renewal(run, stale, login)``, inside the pipeline's single flight (so once per process):
  a pair newer than ``stale`` in the fleet is taken as it is; otherwise the renewal lock is
  taken, the pair read once more (another member may just have renewed it), and only then
  ``run()`` refreshes (or logs in) and the new pair is stored. Who refreshes holds the lock;
  the others wait for it and read the new pair, so no member is left holding a refresh token
  that was rotated away. A Redis lock lapses ``lease`` seconds after a holder that died (the
  holder extends it while it works); a file lock dies with its process.
- ``FleetFlow``: the session's ``FlowControl`` with the budget in the fleet: every request of a
  rate-limited session takes its slot there (one atomic call) when it may go now, or learns
  how long to wait and asks again then (a slot is never reserved ahead: a member that is slow
  to send does not spend it later, beside the others'); a session's requests ask one at a
  time. A 429's pause is written there, and a session without a rate limit looks for a fleet-wide pause at least every
  ``FLEET_PAUSE_POLL`` seconds.

A backend that fails or takes longer than ``Fleet.timeout`` never stops a request: the session
works alone (its own tokens, its local limiter), says so once at WARNING and in a
``fleet_unavailable`` event, tries the backend again ``Fleet.retry_after`` seconds later, and
says ``fleet_restored`` when it answers. A pair renewed alone in the meantime is offered to the
fleet then, unless a member stored a newer one.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Final, TypeVar

import anyio

from . import _constants as C
from ._auth import jwt_expiry
from ._flow import FlowControl
from ._log import logger
from .events import EventCallback, EventKind, RequestEvent
from .fleet import Fleet, FleetBackend, StoredPair

if TYPE_CHECKING:
    from ._auth import Auth

__all__ = ["FleetFlow", "FleetLink"]

T = TypeVar("T")


class _Down:
    """The backend did not answer (the caller works alone)."""


DOWN: Final = _Down()
#: How often a waiting member asks for the renewal lock again.
_LOCK_POLL = 0.01


def _newer(ours: str, theirs: str) -> bool:
    """Our access token expires later than theirs (both readable)."""
    mine, other = jwt_expiry(ours), jwt_expiry(theirs)
    return mine is not None and other is not None and mine > other


class FleetLink:
    """One session's membership of a fleet (see the module docstring)."""

    def __init__(
        self, fleet: Fleet, *, base_url: str, key: str | None, auth: Auth, on_event: EventCallback | None
    ) -> None:
        self.fleet = fleet
        self.base_url = base_url
        #: The pair's key (``fleet.identity_key``); None: no pair to share (an access token alone).
        self.key = key
        #: The rate budget's: the fleet's for this exchange (whichever identity a member holds:
        #: a fleet is one account).
        self.rate_key = base_url
        self.auth = auth
        self.on_event = on_event
        self.joined = False
        #: The ``seq`` of the fleet's pair this session holds (0: none yet).
        self.seq = 0
        #: A pair was renewed alone while the backend was down: offer it when it is back.
        self.dirty = False
        self._fleet_seq = 0
        self._backend: FleetBackend | None = None
        self._joining: anyio.Event | None = None
        self._down_until: float | None = None
        self._warned = False
        self._clock_saved = False

    def __repr__(self) -> str:
        state = "down" if self._down_until is not None else "up"
        return f"<FleetLink {self.fleet.where} {state}>"

    # -- talking to the backend -----------------------------------------------------------

    def _emit(self, kind: EventKind, error: str | None = None) -> None:
        if self.on_event is not None:
            self.on_event(RequestEvent(kind=kind, method="FLEET", path=self.fleet.where, error=error))

    async def _call(self, what: str, op: Callable[[FleetBackend], Awaitable[T]]) -> T | _Down:
        """``op(backend)`` bounded by the fleet's timeout, or ``DOWN`` (it failed now, or
        recently: the backend is left alone until ``retry_after`` has passed)."""
        if self._down_until is not None and time.monotonic() < self._down_until:
            return DOWN
        try:
            if self._backend is None:
                self._backend = self.fleet.backend()  # (imports redis-py: not the backend's time)
            with anyio.fail_after(self.fleet.timeout):
                result = await op(self._backend)
        except Exception as exc:  # any failure of the backend: work alone
            self._went_down(what, exc)
            return DOWN
        if self._down_until is not None:
            self._down_until = None
            logger.info(
                "the fleet %s answers again; this session shares its tokens and budget again",
                self.fleet.where,
            )
            self._emit("fleet_restored")
        return result

    def _went_down(self, what: str, exc: Exception) -> None:
        first = self._down_until is None
        self._down_until = time.monotonic() + self.fleet.retry_after
        if not first:
            return
        why = "no answer in time" if isinstance(exc, TimeoutError) else f"{type(exc).__name__}: {exc}"
        message = (
            "the fleet %s failed (%s, %s): this session works alone (its own tokens, a local rate "
            "limit) and tries the fleet again in %.0f s"
        )
        args = (self.fleet.where, what, why[:200], self.fleet.retry_after)
        if self._warned:
            logger.info(message, *args)
        else:
            self._warned = True
            logger.warning(message, *args)
        self._emit("fleet_unavailable", type(exc).__name__)

    async def aclose(self) -> None:
        backend, self._backend = self._backend, None
        if backend is not None:
            try:
                with anyio.fail_after(self.fleet.timeout):
                    await backend.aclose()
            except Exception as exc:
                logger.debug("closing the fleet's connection failed: %s", type(exc).__name__)

    # -- joining --------------------------------------------------------------------------

    async def join(self) -> None:
        """Before the first request: the fleet's clock offset and pair (see the module docstring)."""
        if self.joined:
            return
        joining = self._joining
        if joining is not None:
            await joining.wait()
            return
        joining = self._joining = anyio.Event()
        try:
            with anyio.CancelScope(shield=True):
                await self._join()
        finally:
            self.joined = True
            self._joining = None
            joining.set()

    async def _join(self) -> None:
        clock = self.auth.clock
        if clock.offset is None:
            offset = await self._call("read the clock", lambda b: b.load_clock(self.base_url))
            if isinstance(offset, float) and clock.offset is None:
                clock.assume(offset)
        if self.key is not None:
            await self._adopt()

    async def _adopt(self) -> bool:
        """Take the fleet's pair when it is newer than ours (a higher ``seq``, or any pair while
        we hold none of the fleet's and ours does not expire later). Remembers the fleet's seq."""
        key = self.key
        assert key is not None
        pair = await self._call("read the token pair", lambda b: b.load(key))
        if isinstance(pair, _Down) or pair is None:
            self._fleet_seq = 0
            return False
        self._fleet_seq = pair.seq
        auth = self.auth
        if pair.seq <= self.seq or pair.access == auth.access:
            self.seq = max(self.seq, pair.seq)
            return False
        if self.seq == 0 and auth.access is not None and _newer(auth.access, pair.access):
            return False  # the constructor's pair is newer than the fleet's
        auth.adopt(pair.access, pair.refresh)
        self.seq = pair.seq
        tokens = auth.tokens
        if tokens is not None:
            for listener in tuple(auth.listeners):  # new to them (a dead man's switch's watchdog)
                listener(tokens)
        return True

    async def _publish(self) -> None:
        """Store the session's pair as the fleet's newest (the caller holds the lock)."""
        key, tokens = self.key, self.auth.tokens
        if key is None or tokens is None:
            return
        seq = max(self.seq, self._fleet_seq) + 1
        stored = await self._call(
            "store the token pair", lambda b: b.save(key, StoredPair(tokens.access, tokens.refresh, seq))
        )
        if not isinstance(stored, _Down):
            self.seq = self._fleet_seq = seq
            self.dirty = False
        await self.save_clock()

    async def save_clock(self) -> None:
        offset = self.auth.clock.offset
        if offset is not None and not self._clock_saved:
            saved = await self._call("store the clock", lambda b: b.save_clock(self.base_url, offset))
            self._clock_saved = not isinstance(saved, _Down)

    # -- the renewal lock -----------------------------------------------------------------

    async def _lock(self, *, wait: bool = True) -> object | None:
        """The renewal lock's handle once held, or ``DOWN``. Waits while another member holds
        it (bounded by the pipeline's bound on the renewal); ``wait=False``: None then."""
        key, lease = self.key, self.fleet.lease
        assert key is not None
        while True:
            handle = await self._call("take the renewal lock", lambda b: b.try_lock(key, lease))
            if handle is not None or not wait:
                return handle
            await anyio.sleep(_LOCK_POLL)

    async def _unlock(self, handle: object) -> None:
        """Let go of the lock, even while the backend counts as down (a file lock held by a
        live process would stall the fleet for good; a Redis lock left behind lapses)."""
        backend = self._backend
        if backend is None:  # pragma: no cover - a handle comes from the backend
            return
        try:
            # (shielded: a renewal that timed out still lets go of its lock)
            with anyio.CancelScope(shield=True), anyio.fail_after(self.fleet.timeout):
                await backend.unlock(handle)
        except Exception as exc:
            logger.debug("releasing the fleet's renewal lock failed: %s", type(exc).__name__)

    async def _keep(self, handle: object) -> None:
        """Extend the lock's lease while the renewal runs."""
        lease = self.fleet.lease
        while True:
            await anyio.sleep(lease / 3)
            await self._call("extend the renewal lock", lambda b: b.extend(handle, lease))

    # -- renewal --------------------------------------------------------------------------

    async def renewal(self, run: Callable[[], Awaitable[None]], stale: str | None, login: bool) -> None:
        """Renew ``stale`` for the fleet (see the module docstring); ``run()`` is the
        session's own renewal (refresh, or login)."""
        if not self.joined:
            await self.join()
        if self.key is None:
            await run()
            return
        if not login and self.auth.access == stale and await self._adopt():
            return
        handle = await self._lock()
        if handle is None or isinstance(handle, _Down):
            await run()
            self.dirty = True
            return
        try:
            if not login and await self._adopt():
                return
            error: Exception | None = None
            async with anyio.create_task_group() as tg:
                tg.start_soon(self._keep, handle)
                try:
                    await run()
                except Exception as exc:  # raised as itself below, not in an exception group
                    error = exc
                finally:
                    tg.cancel_scope.cancel()
            if error is not None:
                raise error
            await self._publish()
        finally:
            await self._unlock(handle)

    async def offer(self) -> bool:
        """Make sure the fleet holds this identity's pair, at least as new as the session's (the
        dead man's switch's guard, on another machine, cancels with it). Under the renewal lock
        the fleet's pair is read again, and the session's is stored only where ``join`` would
        have preferred it: the fleet holds none, or the session holds its constructor's pair
        (``seq`` 0) and its access token expires later than the fleet's. A pair the fleet holds
        is otherwise replaced only by a renewal, as always. True when the fleet holds a pair
        for this identity now (False: no identity, no tokens, or the backend did not answer)."""
        if not self.joined:
            await self.join()
        if self.key is None or self.auth.tokens is None:
            return False
        handle: object | None = None
        with anyio.move_on_after(self.fleet.lease + self.fleet.timeout):
            handle = await self._lock()
        if handle is None or isinstance(handle, _Down):
            return False
        try:
            await self._adopt()
            if self.seq == 0:  # nothing adopted or matched: the fleet holds none, or an older one
                await self._publish()
            return self.seq > 0
        finally:
            await self._unlock(handle)

    async def sync(self) -> None:
        """After an outage, offer the pair renewed alone, unless a member stored a newer one
        (then it is taken)."""
        if self.key is None or self._down_until is not None:
            return
        handle = await self._lock(wait=False)  # (on a request's way: never wait for it)
        if handle is None or isinstance(handle, _Down):
            return
        try:
            if not await self._adopt() and self._fleet_seq <= self.seq:
                await self._publish()
            self.dirty = False
        finally:
            await self._unlock(handle)

    # -- the rate budget ------------------------------------------------------------------

    async def reserve(self, interval: float, tolerance: float, pause: float) -> float | None:
        """Seconds to wait before the next request, from the fleet's budget; None: work alone."""
        wait = await self._call(
            "reserve a request", lambda b: b.reserve(self.rate_key, interval, tolerance, pause)
        )
        if not self._clock_saved and self.auth.clock.offset is not None:
            await self.save_clock()
        return None if isinstance(wait, _Down) else wait


class FleetFlow(FlowControl):
    """The session's flow control with the rate budget and the 429 pause in the fleet; the
    local one (``FlowControl``) while the fleet does not answer."""

    def __init__(self, link: FleetLink, rate: float | None = None, burst: int = 1) -> None:
        super().__init__(rate, burst)
        self._link = link
        self._pending = 0.0
        self._checked = float("-inf")
        #: One reservation at a time per session: a burst's requests queue here, not at the
        #: backend (64 at once would each wait for a connection or a file lock, and time out).
        self._reserving = anyio.Lock()

    def ready(self) -> bool:
        """Go without ``acquire`` only without a rate limit, no pause to tell the fleet, and
        the fleet's pause looked at recently."""
        if self._interval or self._pending or not self._link.joined:
            return False
        now = time.monotonic()
        return self._paused_until <= now and now - self._checked < C.FLEET_PAUSE_POLL

    def pause(self, seconds: float) -> None:
        super().pause(seconds)
        self._pending = max(self._pending, seconds)

    async def share_pause(self) -> None:
        """Write the pause a 429 just imposed to the fleet at once (not only when this
        session's next request asks): every member holds off from now."""
        pending, self._pending = self._pending, 0.0
        if pending > 0 and self._link.joined:
            await self._link.reserve(0.0, 0.0, pending)

    async def acquire(self) -> None:
        link = self._link
        if not link.joined:
            await link.join()
        if link.dirty:
            await link.sync()
        async with self._reserving:
            while True:
                pending, self._pending = self._pending, 0.0
                wait = await link.reserve(self._interval, self._tolerance, pending)
                if wait is None:
                    break
                self._checked = time.monotonic()
                if wait <= 0:
                    return
                if not self._interval:
                    # The fleet's pause, known here too (a deadline checks ``paused_for``).
                    FlowControl.pause(self, wait)
                # Ask again then (the slot is taken when the request goes, never ahead).
                await anyio.sleep(wait)
        await super().acquire()  # the fleet does not answer: the local limiter
