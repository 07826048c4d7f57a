"""The dead man's switch's guard (``tanx-async guard``): meant for another machine than the bots.

It watches the heartbeat keys of a ``redis://`` fleet (``_remote_switch``). When an armed switch's
heartbeat expired without a disarm (its process killed, its loop stalled, its host dead or frozen,
its network link cut), the guard claims the switch (one atomic script: exactly one guard acts on
an expiry, however many run), opens a session of the fleet holding the fleet's token pair for the
switch's identity (a renewal goes through the fleet's single flight, as for any member), runs the
sweep for what the switch guards (``_sweep``: list, ``cancel_all`` confirmed, list again; every
outcome logged) and goes on watching; ``once``: it returns after the first sweep.

It looks every ``GUARD_POLL_MAX`` seconds, or a quarter of the shortest timeout of the switches
armed (at least ``GUARD_POLL_MIN``): an expiry is noticed that long after it happened at most.
Sweeps run beside the watch (several switches may expire at once). ``stop`` ends the watch and
waits for the sweeps in progress, each bounded by its switch's deadline plus ``DEADMAN_VERIFY``
and ``DEADMAN_GRACE``; ``abandon()`` cuts them short.

An expiry more than ``GUARD_STALE`` seconds old when a guard first sees it (no guard ran then)
is claimed but not swept: the switch's markets may hold orders of processes armed since (a bot
restarted after its host died, say); the guard says so loudly, and a person decides.

A guard given ``markets`` takes only the switches armed over some of those markets (a switch over
every market needs a guard without ``markets``): it never sweeps less, or more, than a switch
guards. The others it leaves to another guard, and says so once.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Collection
from typing import Any

import anyio
import anyio.abc

from . import _constants as C
from ._remote_switch import Armed, SwitchKeys, new_switch_id
from ._session import AsyncTanxSession
from ._sweep import Sweep, sweep
from .fleet import Fleet

__all__ = ["Guard", "takes"]

log = logging.getLogger("tanx_async.deadman")

Report = Callable[[dict[str, Any]], None]


def takes(markets: Collection[str] | None, armed: Armed) -> bool:
    """A guard over ``markets`` (None: every market) takes this switch."""
    return markets is None or (armed.markets is not None and set(armed.markets) <= set(markets))


class Guard:
    """Watches one fleet's switches (see the module docstring); ``report`` is told every event
    (a dict with ``event``: ``watching``, ``fired``, ``outcome``, ``swept``, ``stale``,
    ``stopped``)."""

    def __init__(
        self,
        fleet: Fleet,
        *,
        markets: Collection[str] | None = None,
        once: bool = False,
        report: Report | None = None,
    ) -> None:
        if fleet.scheme == "file":
            raise ValueError(
                "the guard watches heartbeat keys in Redis: give it the desk's redis://host:port/db fleet "
                "(a file:// fleet is one machine, which the same-machine watchdog covers)"
            )
        self.fleet = fleet
        self.markets = None if markets is None else frozenset(markets)
        self.once = once
        self.id = "guard-" + new_switch_id()
        #: Every switch this guard fired, with what its sweep found (None: cut short).
        self.swept: list[tuple[Armed, Sweep | None]] = []
        self._report = report
        self._watching: dict[str, Armed] = {}
        self._told: set[str] = set()  # switches already said to be left alone
        self._down = False
        self._scope: anyio.CancelScope | None = None

    def __repr__(self) -> str:
        return f"<Guard {self.id} {self.fleet.where}>"

    @property
    def covers(self) -> str:
        return "every market" if self.markets is None else ", ".join(sorted(self.markets))

    def _tell(self, event: str, **fields: Any) -> None:
        if self._report is not None:
            self._report({"event": event, **fields})

    def abandon(self) -> None:
        """Cut the sweeps in progress short (a second stop signal)."""
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, stop: anyio.Event) -> bool:
        """Watch until ``stop`` is set (or, ``once``, the first sweep is done). True when every
        sweep it made ended with a listing that found nothing open."""
        keys = SwitchKeys(self.fleet._url, self.fleet.timeout, self.fleet.where)
        log.info(
            "%s watching the dead man's switches of the fleet %s (%s)", self.id, self.fleet.where, self.covers
        )
        self._tell("watching", guard=self.id, fleet=self.fleet.where, markets=_list(self.markets))
        try:
            with anyio.CancelScope() as self._scope:
                async with anyio.create_task_group() as tg:
                    while not stop.is_set():
                        poll = await self._look(keys, tg)
                        if self.once and self.swept:
                            break
                        with anyio.move_on_after(poll):
                            await stop.wait()
                    if stop.is_set() and any(result is None for _, result in self.swept):
                        log.warning("%s stopping: the sweeps in progress finish first", self.id)
            if self._scope.cancelled_caught:
                log.error(
                    "%s: stopped at once: a sweep in progress was cut short; CHECK THE ACCOUNT", self.id
                )
        finally:
            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception), anyio.fail_after(self.fleet.timeout):
                    await keys.absent(self.id)
                with contextlib.suppress(Exception), anyio.fail_after(self.fleet.timeout):
                    await keys.aclose()
        clear = all(result is not None and result.clear for _, result in self.swept)
        log.info("%s stopped (%d switch(es) fired)", self.id, len(self.swept))
        self._tell("stopped", guard=self.id, fired=len(self.swept), clear=clear)
        return clear

    # -- watching ---------------------------------------------------------------------------

    async def _look(self, keys: SwitchKeys, tg: anyio.abc.TaskGroup) -> float:
        """One look at the fleet; the seconds until the next."""
        try:
            with anyio.fail_after(self.fleet.timeout):
                await keys.present(self.id, self.markets, C.GUARD_PRESENCE)
                armed = await keys.armed()
                expired = await keys.expired()
        except Exception as exc:
            if not self._down:
                self._down = True
                log.error(
                    "%s: the fleet %s does not answer (%s): NOTHING is guarded until it does",
                    self.id,
                    self.fleet.where,
                    type(exc).__name__,
                )
            return C.GUARD_POLL_MAX
        if self._down:
            self._down = False
            log.warning("%s: the fleet %s answers again", self.id, self.fleet.where)
        records = {sid: self._read(sid, text) for sid, text in armed.items()}
        self._follow({sid: a for sid, a in records.items() if a is not None})
        for sid, (text, since) in expired.items():
            record = self._read(sid, text)
            if record is None or not takes(self.markets, record):
                continue
            if since is not None and since - record.timeout > C.GUARD_STALE:
                await self._stale(keys, record, since - record.timeout)
                continue
            claimed = await self._claim(keys, record)
            if claimed is None:
                continue
            self._watching.pop(sid, None)
            if self.once:
                await self._fire(claimed)
                break
            tg.start_soon(self._fire, claimed)
        timeouts = [a.timeout for a in self._watching.values() if takes(self.markets, a)]
        poll = min(timeouts, default=4 * C.GUARD_POLL_MAX) / 4
        return min(max(poll, C.GUARD_POLL_MIN), C.GUARD_POLL_MAX)

    def _read(self, sid: str, text: str) -> Armed | None:
        try:
            record = Armed.from_json(text)
            if record.id != sid:
                raise ValueError("its id is not its key's")
        except ValueError as exc:
            if sid not in self._told:
                self._told.add(sid)
                log.error(
                    "%s: switch %s has a record of an unknown shape (%s): left alone", self.id, sid, exc
                )
            return None
        return record

    def _follow(self, armed: dict[str, Armed]) -> None:
        """Say which switches appeared and went (disarmed, or claimed by another guard)."""
        for sid, record in armed.items():
            if sid in self._watching:
                continue
            self._watching[sid] = record
            if takes(self.markets, record):
                log.info(
                    "%s: watching switch %s (%s): timeout %g s, covering %s",
                    self.id,
                    sid,
                    record.where,
                    record.timeout,
                    record.covers,
                )
            elif sid not in self._told:
                self._told.add(sid)
                log.info(
                    "%s: switch %s covers %s, beyond this guard's markets (%s): left to another guard",
                    self.id,
                    sid,
                    record.covers,
                    self.covers,
                )
        for sid in [sid for sid in self._watching if sid not in armed]:
            record = self._watching.pop(sid)
            if takes(self.markets, record):
                log.info(
                    "%s: switch %s (%s) is no longer armed (disarmed, or another guard took it)",
                    self.id,
                    sid,
                    record.where,
                )

    async def _claim(self, keys: SwitchKeys, record: Armed) -> Armed | None:
        try:
            with anyio.fail_after(self.fleet.timeout):
                text = await keys.claim(record.id, self.id)
                if text is None:
                    who = await keys.fired(record.id)
        except Exception as exc:
            log.warning(
                "%s: claiming switch %s failed (%s): trying again", self.id, record.id, type(exc).__name__
            )
            return None
        if text is None:
            if who is not None:
                log.info("%s: switch %s expired: another guard claimed it (%s)", self.id, record.id, who)
            return None
        try:
            return Armed.from_json(text)
        except ValueError:  # (read a moment ago; a record changed in between is not guessed at)
            log.error(
                "%s: switch %s claimed, but its record changed to an unknown shape: CHECK THE ACCOUNT",
                self.id,
                record.id,
            )
            return None

    async def _stale(self, keys: SwitchKeys, record: Armed, ago: float) -> None:
        """An expiry no guard saw in time: claimed (no guard acts on it later) but not swept, since
        its markets may hold orders of processes armed since; said loudly."""
        try:
            with anyio.fail_after(self.fleet.timeout):
                claimed = await keys.claim(record.id, self.id, swept=False)
        except Exception as exc:
            log.warning(
                "%s: claiming switch %s failed (%s): trying again", self.id, record.id, type(exc).__name__
            )
            return
        if claimed is None:
            return
        self._watching.pop(record.id, None)
        log.error(
            "%s: switch %s (%s) expired %.0f s ago, when no guard watched: NOT swept (its markets, %s, may "
            "hold orders placed since); CHECK THE ACCOUNT",
            self.id,
            record.id,
            record.where,
            ago,
            record.covers,
        )
        self._tell(
            "stale",
            switch=record.id,
            host=record.host,
            pid=record.pid,
            markets=_list(record.markets),
            ago=round(ago, 1),
        )

    # -- firing -----------------------------------------------------------------------------

    async def _fire(self, armed: Armed) -> None:
        """Cancel everything the switch guards, with the fleet's token pair for it."""
        at = time.time()
        log.error(
            "%s: switch %s (%s): no heartbeat for %g s and no disarm: FIRING; cancelling every open order "
            "of %s on %s",
            self.id,
            armed.id,
            armed.where,
            armed.timeout,
            armed.covers,
            armed.base_url,
        )
        self._tell(
            "fired",
            switch=armed.id,
            host=armed.host,
            pid=armed.pid,
            markets=_list(armed.markets),
            base_url=armed.base_url,
            at=at,
        )
        entry: tuple[Armed, Sweep | None] = (armed, None)
        self.swept.append(entry)
        index = len(self.swept) - 1
        result: Sweep | None = None
        who = f"guard, switch {armed.id}"
        try:
            with anyio.move_on_after(armed.deadline + C.DEADMAN_VERIFY + C.DEADMAN_GRACE):
                result = await self._sweep(armed, who)
        except Exception:  # (the sweep logs the exchange's errors itself; this is anything else)
            log.exception("%s: the sweep failed", who)
        self.swept[index] = (armed, result)
        if result is None:
            log.error("%s: the sweep did not finish: CHECK THE ACCOUNT", who)
            self._tell("swept", switch=armed.id, clear=False, open=None, outcomes={})
            return
        for oid, outcome in sorted(result.outcomes.items()):
            self._tell(
                "outcome",
                switch=armed.id,
                order_id=oid,
                market=result.markets.get(oid),
                status=outcome.status.value,
                ok=outcome.ok,
            )
        counts: dict[str, int] = {}
        for outcome in result.outcomes.values():
            counts[outcome.status.value] = counts.get(outcome.status.value, 0) + 1
        self._tell(
            "swept",
            switch=armed.id,
            clear=result.clear,
            open=None if result.left is None else len(result.left),
            rounds=result.rounds,
            outcomes=counts,
            seconds=round(time.time() - at, 3),
        )

    async def _sweep(self, armed: Armed, who: str) -> Sweep | None:
        session = AsyncTanxSession(
            base_url=armed.base_url, allow_insecure_http=armed.allow_insecure_http, fleet=self.fleet
        )
        link = session._pipeline.fleet
        assert link is not None
        link.key = armed.identity  # the switch's pair (the session has none of its own)
        async with session:
            await link.join()
            if session.tokens is None:
                log.error(
                    "%s: the fleet %s holds no token pair for the switch (or did not answer): NOTHING "
                    "cancelled; CHECK THE ACCOUNT",
                    who,
                    self.fleet.where,
                )
                return None
            return await sweep(session, armed.markets, armed.deadline, who)


def _list(markets: Collection[str] | None) -> list[str] | None:
    return None if markets is None else sorted(markets)
