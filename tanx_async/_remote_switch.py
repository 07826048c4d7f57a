"""The dead man's switch over a ``redis://`` fleet: heartbeat keys that a guard on another machine
watches (``tanx-async guard``, ``_guard.py``). The one way a client-side switch covers a dead
host, a frozen VM or a cut network link.

Keys, under ``tanx:fleet:deadman:`` in the fleet's Redis database (one Redis, not a cluster: the
scripts name keys they compute):

- ``armed``, a hash: switch id -> what the switch guards (``Armed``, as JSON): the exchange's URL,
  the fleet's key of its token pair (``identity_key``: a fingerprint, never a token), its markets,
  timeout and deadline, and where it runs (host, pid). Written when armed; removed by a clean
  disarm, or by the guard that claims the switch.
- ``beat:<switch id>``: the heartbeat, ``SET ... PX timeout``, refreshed from the session's event
  loop every ``timeout / DEADMAN_BEATS_PER_TIMEOUT`` (``_deadman.py``): a killed process, a
  stalled loop, a dead host or a cut link to Redis let it expire.
- ``beats``, a hash: switch id -> when its last heartbeat came (milliseconds, the Redis server's
  clock): a guard that finds an expiry older than ``GUARD_STALE`` does not sweep for it.
- ``fired:<switch id>``: which guard claimed the switch, and when (kept a day).
- ``guard:<guard id>``: a running guard (what it covers), a key with a TTL it refreshes; read
  when a switch is armed, to say so when no guard watches.

A switch is *expired* when ``armed`` holds it and its ``beat`` key is gone. Claiming it is one
atomic script that removes it from ``armed``: exactly one guard acts on an expiry, and a heartbeat
or a disarm that comes later learns that a guard took it (the heartbeat is only refreshed while
``armed`` holds the switch).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import secrets
import socket
import time
from collections.abc import Collection
from typing import TYPE_CHECKING, Any

import anyio
import attrs

from ._fleet_redis import PREFIX, _client, _ms

if TYPE_CHECKING:
    from .fleet import Fleet

__all__ = ["Armed", "RemoteSwitch", "SwitchKeys", "covered_by", "new_switch_id"]

log = logging.getLogger("tanx_async.deadman")

NS = PREFIX + "deadman:"
ARMED = NS + "armed"
BEATS = NS + "beats"
BEAT = NS + "beat:"
FIRED = NS + "fired:"
GUARD = NS + "guard:"
#: How long a claim is remembered (for whoever looks at the fleet afterwards).
FIRED_TTL_S = 86400

#: The Redis server's clock in milliseconds (one clock for every machine).
_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
"""
#: KEYS: armed, beat, beats. ARGV: id, record, ttl ms.
_ARM = (
    _NOW
    + """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[2], '1', 'PX', ARGV[3])
redis.call('HSET', KEYS[3], ARGV[1], string.format('%.0f', now))
return 1
"""
)
#: KEYS: armed, beat, beats. ARGV: id, ttl ms. 1: refreshed; 0: no longer armed (claimed).
_BEAT = (
    _NOW
    + """
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 1 then
  redis.call('SET', KEYS[2], '1', 'PX', ARGV[2])
  redis.call('HSET', KEYS[3], ARGV[1], string.format('%.0f', now))
  return 1
end
return 0
"""
)
#: KEYS: armed, beat, beats. ARGV: id. 1: disarmed; 0: it was not armed any more (claimed).
_DISARM = """
local n = redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('DEL', KEYS[2])
redis.call('HDEL', KEYS[3], ARGV[1])
return n
"""
#: KEYS: armed, beats. ARGV: beat prefix. The armed switches whose heartbeat is gone: id,
#: record, milliseconds since its last heartbeat (-1: unknown), ...
_EXPIRED = (
    _NOW
    + """
local found = {}
local all = redis.call('HGETALL', KEYS[1])
for i = 1, #all, 2 do
  if redis.call('EXISTS', ARGV[1] .. all[i]) == 0 then
    local last = tonumber(redis.call('HGET', KEYS[2], all[i]) or '')
    found[#found + 1] = all[i]
    found[#found + 1] = all[i + 1]
    found[#found + 1] = last and string.format('%.0f', now - last) or '-1'
  end
end
return found
"""
)
#: KEYS: armed, beat, fired, beats. ARGV: id, claim, ttl s. The record when this caller claimed
#: the expired switch; false when its heartbeat is back or another claimed it (or disarmed).
_CLAIM = """
if redis.call('EXISTS', KEYS[2]) == 1 then return false end
local record = redis.call('HGET', KEYS[1], ARGV[1])
if not record then return false end
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[3])
return record
"""


def new_switch_id() -> str:
    """A switch's id: the host, the pid and a random part (unique across the fleet's machines)."""
    host = "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())[:40]
    return f"{host}-{os.getpid()}-{secrets.token_hex(4)}"


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    return float(value)


@attrs.frozen
class Armed:
    """What an armed switch guards, as the fleet keeps it (never a token)."""

    id: str
    base_url: str
    #: The fleet's key of the token pair the guard cancels with (``fleet.identity_key``).
    identity: str
    markets: tuple[str, ...] | None
    timeout: float
    deadline: float
    host: str
    pid: int
    armed_at: float
    #: The same-machine watchdog runs beside it (it may fire first on the same event).
    local: bool
    allow_insecure_http: bool = False

    @property
    def covers(self) -> str:
        return "every market" if self.markets is None else ", ".join(self.markets)

    @property
    def where(self) -> str:
        return f"{self.host} pid {self.pid}"

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self, recurse=False), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Armed:
        """The record, or ``ValueError`` for a shape it does not know (never a guess)."""
        data: Any = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        markets = data.get("markets")
        timeout, deadline, armed_at = (_number(data.get(k)) for k in ("timeout", "deadline", "armed_at"))
        strings = ("id", "base_url", "identity", "host")
        if (
            any(not isinstance(data.get(k), str) or not data[k] for k in strings)
            or not (
                markets is None or (isinstance(markets, list) and all(isinstance(m, str) for m in markets))
            )
            or timeout is None
            or timeout <= 0
            or deadline is None
            or deadline <= 0
            or armed_at is None
            or not isinstance(data.get("pid"), int)
            or not isinstance(data.get("local"), bool)
            or not isinstance(data.get("allow_insecure_http", False), bool)
        ):
            raise ValueError("a field is missing or of the wrong type")
        if not data["identity"].startswith(data["base_url"] + " "):
            # The pair under ``identity`` belongs to that exchange: its tokens go nowhere else.
            raise ValueError("its token pair belongs to another exchange than its base_url")
        return cls(
            id=data["id"],
            base_url=data["base_url"],
            identity=data["identity"],
            markets=None if markets is None else tuple(markets),
            timeout=timeout,
            deadline=deadline,
            host=data["host"],
            pid=data["pid"],
            armed_at=armed_at,
            local=data["local"],
            allow_insecure_http=data.get("allow_insecure_http", False),
        )


class SwitchKeys:
    """The switch keys of one fleet's Redis (both sides use it; one connection pool each)."""

    def __init__(self, url: str, timeout: float, where: str) -> None:
        self.where = where
        self._redis: Any = _client(url, timeout)
        self._scripts = {
            name: self._redis.register_script(text)
            for name, text in (
                ("arm", _ARM),
                ("beat", _BEAT),
                ("disarm", _DISARM),
                ("expired", _EXPIRED),
                ("claim", _CLAIM),
            )
        }

    def __repr__(self) -> str:
        return f"<SwitchKeys {self.where}>"

    async def arm(self, armed: Armed) -> None:
        await self._scripts["arm"](
            keys=[ARMED, BEAT + armed.id, BEATS], args=[armed.id, armed.to_json(), _ms(armed.timeout)]
        )

    async def beat(self, switch_id: str, ttl: float) -> bool:
        """Refresh the heartbeat; False when the switch is no longer armed (a guard claimed it)."""
        return bool(
            await self._scripts["beat"](keys=[ARMED, BEAT + switch_id, BEATS], args=[switch_id, _ms(ttl)])
        )

    async def disarm(self, switch_id: str) -> bool:
        """Remove the switch; False when it was not armed any more (a guard claimed it)."""
        return bool(await self._scripts["disarm"](keys=[ARMED, BEAT + switch_id, BEATS], args=[switch_id]))

    async def expired(self) -> dict[str, tuple[str, float | None]]:
        """The armed switches whose heartbeat is gone: id -> (record as JSON, unchecked; seconds
        since its last heartbeat, on the Redis server's clock, or None when unknown)."""
        flat = await self._scripts["expired"](keys=[ARMED, BEATS], args=[BEAT])
        found: dict[str, tuple[str, float | None]] = {}
        for i in range(0, len(flat) - 2, 3):
            since = int(flat[i + 2])
            found[str(flat[i])] = (str(flat[i + 1]), None if since < 0 else since / 1000)
        return found

    async def armed(self) -> dict[str, str]:
        """Every armed switch: id -> record (JSON, unchecked)."""
        found: dict[str, str] = await self._redis.hgetall(ARMED)
        return found

    async def claim(self, switch_id: str, guard: str, *, swept: bool = True) -> str | None:
        """The record when this guard claimed the expired switch (exactly one guard does), else
        None. ``swept=False``: claimed to be left alone (an expiry too old to act on)."""
        claim = json.dumps({"guard": guard, "at": time.time(), "swept": swept}, separators=(",", ":"))
        record = await self._scripts["claim"](
            keys=[ARMED, BEAT + switch_id, FIRED + switch_id, BEATS], args=[switch_id, claim, FIRED_TTL_S]
        )
        return None if record is None else str(record)

    async def fired(self, switch_id: str) -> str | None:
        """Who claimed the switch (JSON), if a guard did."""
        text = await self._redis.get(FIRED + switch_id)
        return None if text is None else str(text)

    async def present(self, guard: str, markets: Collection[str] | None, ttl: float) -> None:
        """Say this guard runs (and what it covers) for ``ttl`` seconds."""
        value = json.dumps(
            {"guard": guard, "markets": None if markets is None else sorted(markets)}, separators=(",", ":")
        )
        await self._redis.set(GUARD + guard, value, px=_ms(ttl))

    async def absent(self, guard: str) -> None:
        await self._redis.delete(GUARD + guard)

    async def guards(self) -> list[frozenset[str] | None]:
        """What each running guard covers (None: every market)."""
        found: list[frozenset[str] | None] = []
        async for name in self._redis.scan_iter(match=GUARD + "*", count=100):
            text = await self._redis.get(name)
            try:
                data = json.loads(text) if text is not None else None
            except ValueError:
                continue
            if isinstance(data, dict):
                markets = data.get("markets")
                found.append(None if markets is None else frozenset(str(m) for m in markets))
        return found

    async def aclose(self) -> None:
        await self._redis.aclose()


def covered_by(guards: list[frozenset[str] | None], markets: Collection[str] | None) -> bool:
    """A guard in ``guards`` takes a switch over ``markets`` (see ``_guard.takes``)."""
    return any(g is None or (markets is not None and set(markets) <= g) for g in guards)


class RemoteSwitch:
    """The armed side's keys (``_deadman.py`` drives it from the session's event loop): arm,
    heartbeat, disarm, each call bounded by the fleet's ``timeout``; what it learns is logged."""

    def __init__(self, fleet: Fleet, armed: Armed) -> None:
        self.fleet = fleet
        self.armed = armed
        self.keys: SwitchKeys | None = None
        #: A guard claimed the switch (learnt from a heartbeat or the disarm): it is cancelling.
        self.claimed = False
        #: The heartbeat did not reach the fleet last time.
        self.failing = False
        self.guarded = False  # arm() stored it in the fleet
        #: Disarmed or closed: a heartbeat in flight says nothing any more.
        self.done = False

    def __repr__(self) -> str:
        return f"<RemoteSwitch {self.armed.id} {self.fleet.where}>"

    async def arm(self) -> None:
        """Store the switch and its first heartbeat; raises when the fleet does not answer."""
        self.keys = SwitchKeys(self.fleet._url, self.fleet.timeout, self.fleet.where)
        with anyio.fail_after(self.fleet.timeout):
            await self.keys.arm(self.armed)
        self.guarded = True
        try:
            with anyio.fail_after(self.fleet.timeout):
                guards = await self.keys.guards()
        except Exception as exc:  # only a warning is at stake
            log.debug("listing the fleet's guards failed: %s", type(exc).__name__)
            return
        if not covered_by(guards, self.armed.markets):
            log.warning(
                "no guard watches the fleet %s for this switch now: a dead host or network link is not "
                "covered until one runs (`tanx-async guard --fleet %s` on another machine)",
                self.fleet.where,
                self.fleet.where,
            )

    async def beat(self) -> None:
        keys = self.keys
        if keys is None or self.claimed or not self.guarded or self.done:
            return
        try:
            with anyio.fail_after(self.fleet.timeout):
                armed = await keys.beat(self.armed.id, self.armed.timeout)
        except Exception as exc:
            if self._ended():
                return
            if not self.failing:
                self.failing = True
                log.warning(
                    "the dead man's switch's heartbeat did not reach the fleet %s (%s): a guard cancels "
                    "every order it covers if none arrives for %g s",
                    self.fleet.where,
                    type(exc).__name__,
                    self.armed.timeout,
                )
            return
        if self._ended():
            return  # (disarmed meanwhile, by us: not a guard's claim)
        if self.failing:
            self.failing = False
            log.info("the dead man's switch's heartbeat reaches the fleet %s again", self.fleet.where)
        if not armed:
            await self._claimed("its heartbeat had expired")

    def _ended(self) -> bool:
        """Disarmed or closed (looked at again after an await: the disarm may have come meanwhile)."""
        return self.done

    async def _claimed(self, when: str) -> None:
        self.claimed = True
        who = None
        if self.keys is not None:
            with contextlib.suppress(Exception), anyio.fail_after(self.fleet.timeout):
                who = await self.keys.fired(self.armed.id)
        log.error(
            "a guard FIRED the dead man's switch %s (%s; claim: %s): it cancels every order the switch "
            "covers; orders placed from now on are not guarded",
            self.armed.id,
            when,
            who or "unknown",
        )

    async def disarm(self) -> None:
        """A clean leave: the switch is removed (no guard fires after this)."""
        keys = self.keys
        if keys is None or not self.guarded or self.claimed or self.done:
            return
        self.done = True
        try:
            with anyio.fail_after(self.fleet.timeout):
                disarmed = await keys.disarm(self.armed.id)
        except Exception as exc:
            log.error(
                "the dead man's switch %s could not be disarmed in the fleet %s (%s): a guard cancels every "
                "order it covers once its heartbeat expires (%g s)",
                self.armed.id,
                self.fleet.where,
                type(exc).__name__,
                self.armed.timeout,
            )
            return
        if disarmed:
            log.info("dead man's switch %s disarmed in the fleet %s", self.armed.id, self.fleet.where)
        else:
            await self._claimed("before the disarm")

    async def aclose(self) -> None:
        self.done = True
        keys, self.keys = self.keys, None
        if keys is not None:
            with (
                contextlib.suppress(Exception),
                anyio.CancelScope(shield=True),
                anyio.fail_after(self.fleet.timeout),
            ):
                await keys.aclose()
