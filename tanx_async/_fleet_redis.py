"""A ``redis://`` fleet: processes on many machines share a Redis database (``tanx_async.fleet``).

Needs the ``redis`` extra (redis-py's asyncio client), imported only when a session of a
``redis://`` fleet first talks to it. Keys, under ``tanx:fleet:``:

- ``pair:<key>``: the pair as JSON (``access``, ``refresh``, ``seq``);
- ``lock:<key>``: the renewal lock, ``SET NX PX lease`` with a random value; extended and
  released only by its holder (a script compares the value), lapsing ``lease`` seconds after a
  holder that died stopped extending it;
- ``tat:<key>``, ``pause:<key>``: the rate budget (GCRA) and the 429 pause, kept in
  microseconds of the Redis server's own clock (``TIME``), one clock for every machine, and
  changed by one atomic script per request (a slot is granted for now or not at all: a member
  that was slow to send never spends slots reserved for it long ago);
- ``clock:<base url>``: the exchange clock's offset.
"""

from __future__ import annotations

import secrets
from typing import Any, cast

from ._errors import MissingDependencyError
from ._fleet_base import StoredPair
from ._json import dumps, loads

__all__ = ["RedisBackend"]

PREFIX = "tanx:fleet:"

#: KEYS: tat, pause. ARGV: interval, tolerance, pause (microseconds). Returns 0 when a request
#: may go now (its slot taken), else the microseconds to wait before asking again (nothing taken).
_RESERVE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local pause = tonumber(ARGV[3])
local paused = tonumber(redis.call('GET', KEYS[2]) or '0')
if pause > 0 and now + pause > paused then
  paused = now + pause
  redis.call('SET', KEYS[2], string.format('%.0f', paused), 'PX', math.ceil(pause / 1000) + 1000)
end
local wait = 0
if paused > now then wait = paused - now end
if wait == 0 and interval > 0 then
  local tat = math.max(tonumber(redis.call('GET', KEYS[1]) or '0'), now)
  local due = tat - tolerance - now
  if due > 0 then
    wait = due
  else
    local new = tat + interval
    redis.call('SET', KEYS[1], string.format('%.0f', new), 'PX', math.ceil((new - now) / 1000) + 1000)
  end
end
return string.format('%.0f', wait)
"""

_EXTEND = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""

_UNLOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


def _client(url: str, timeout: float) -> Any:
    try:
        from redis.asyncio import Redis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
    except ImportError:
        raise MissingDependencyError(
            "a redis:// fleet needs redis-py: pip install 'tanx-async[redis]'"
        ) from None
    return Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry_on_timeout=False,
        retry=Retry(NoBackoff(), 0),  # one try: the session, not the client, decides what next
        decode_responses=True,
    )


def _ms(seconds: float) -> int:
    return max(1, int(seconds * 1000))


class RedisBackend:
    """One session's connection to a fleet's Redis (see the module docstring)."""

    def __init__(self, url: str, timeout: float, where: str) -> None:
        self.where = where
        self._url = url
        self._timeout = timeout
        self._redis: Any = None
        self._scripts: dict[str, Any] = {}
        self._conn()  # the client is built (and redis-py imported) now; it connects on first use

    def _conn(self) -> Any:
        if self._redis is None:
            self._redis = _client(self._url, self._timeout)
            for name, text in (("reserve", _RESERVE), ("extend", _EXTEND), ("unlock", _UNLOCK)):
                self._scripts[name] = self._redis.register_script(text)
        return self._redis

    async def load(self, key: str) -> StoredPair | None:
        text = await self._conn().get(PREFIX + "pair:" + key)
        if text is None:
            return None
        entry = loads(text)
        access = entry.get("access") if isinstance(entry, dict) else None
        refresh = entry.get("refresh") if isinstance(entry, dict) else None
        seq = entry.get("seq", 0) if isinstance(entry, dict) else None
        if not isinstance(access, str) or not isinstance(refresh, str | None) or not isinstance(seq, int):
            raise ValueError(f"the fleet {self.where} holds a pair of an unknown shape under {key!r}")
        return StoredPair(access, refresh, seq)

    async def save(self, key: str, pair: StoredPair) -> None:
        value = dumps({"access": pair.access, "refresh": pair.refresh, "seq": pair.seq})
        await self._conn().set(PREFIX + "pair:" + key, value)

    async def try_lock(self, key: str, lease: float) -> object | None:
        name = PREFIX + "lock:" + key
        value = secrets.token_hex(16)
        if await self._conn().set(name, value, nx=True, px=_ms(lease)):
            return (name, value)
        return None

    async def extend(self, handle: object, lease: float) -> None:
        name, value = cast("tuple[str, str]", handle)
        self._conn()
        await self._scripts["extend"](keys=[name], args=[value, _ms(lease)])

    async def unlock(self, handle: object) -> None:
        name, value = cast("tuple[str, str]", handle)
        self._conn()
        await self._scripts["unlock"](keys=[name], args=[value])

    async def reserve(self, key: str, interval: float, tolerance: float, pause: float) -> float:
        self._conn()
        args = [round(interval * 1e6), round(tolerance * 1e6), round(pause * 1e6)]
        wait = await self._scripts["reserve"](
            keys=[PREFIX + "tat:" + key, PREFIX + "pause:" + key], args=args
        )
        return max(0.0, float(wait) / 1e6)

    async def load_clock(self, base_url: str) -> float | None:
        text = await self._conn().get(PREFIX + "clock:" + base_url)
        try:
            return None if text is None else float(text)
        except ValueError:
            return None

    async def save_clock(self, base_url: str, offset: float) -> None:
        await self._conn().set(PREFIX + "clock:" + base_url, repr(offset))

    async def aclose(self) -> None:
        redis, self._redis = self._redis, None
        if redis is not None:
            await redis.aclose()
