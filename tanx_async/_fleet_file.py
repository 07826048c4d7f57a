"""A ``file://`` fleet: processes on one machine share a folder (``tanx_async.fleet``).

- ``tokens.json``: the pairs, ``{"format": 1, "pairs": {key: {"access", "refresh", "seq",
  "saved_at"}}}`` (the CLI's token cache file, read by older versions too);
- ``state.json``: each rate budget's GCRA arrival time and 429 pause (on ``time.monotonic``,
  one clock for every process of the machine) and each exchange's clock offset;
- ``tokens.lock``, ``state.lock``: OS file locks (``fcntl.flock``) around each read-modify-write;
  ``renew-<fingerprint of the key>.lock``: the renewal lock, held while one process refreshes.
  The OS lets go of a dead process's locks at once.

Every file is mode 0600 in a folder made 0700; a file is replaced by writing a temporary file
and renaming it over the old one (readers never see half a file). Locks are taken without
blocking and retried every millisecond, so a stalled holder delays the event loop not at all
(the session's bound on a backend call gives up on it).
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import anyio

from ._fleet_base import StoredPair, fingerprint

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FileBackend"]

TOKENS = "tokens.json"
STATE = "state.json"
_FORMAT = 1
#: At most this many pairs are kept (the least recently saved go first), as the CLI's cache did.
MAX_PAIRS = 64
_POLL = 0.001

T = TypeVar("T")


def _read_json(path: Path) -> dict[str, Any]:
    try:
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            raise PermissionError(
                f"{path} is readable by others (mode {mode:o}): `chmod 600` it or delete it"
            )
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {"format": _FORMAT}
    except ValueError:
        data = None
    if not isinstance(data, dict) or data.get("format") != _FORMAT:
        raise ValueError(f"{path} is not in a format this version reads: delete it")
    return data


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


class FileBackend:
    """One session's view of a fleet folder (see the module docstring)."""

    def __init__(self, folder: Path, timeout: float) -> None:
        if fcntl is None:  # pragma: no cover - Windows
            raise ValueError("a file:// fleet needs POSIX file locks (fcntl); use redis:// here")
        self.folder = folder
        self.where = f"file://{folder}"
        self._timeout = timeout
        self._made = False

    def _ready(self) -> None:
        if not self._made:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            self._made = True

    def _open_lock(self, name: str) -> int:
        self._ready()
        return os.open(self.folder / name, os.O_RDWR | os.O_CREAT, 0o600)

    @staticmethod
    def _try_flock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True

    async def _locked(self, name: str, work: Callable[[], T]) -> T:
        """``work()`` under the file lock ``name`` (held for microseconds by anyone)."""
        fd = self._open_lock(name)
        try:
            while not self._try_flock(fd):  # noqa: ASYNC110 - an OS lock: nothing to wait on
                await anyio.sleep(_POLL)
            return work()
        finally:
            os.close(fd)  # (lets go of the lock)

    # -- pairs ----------------------------------------------------------------------------

    async def load(self, key: str) -> StoredPair | None:
        self._ready()
        entry = _read_json(self.folder / TOKENS).get("pairs", {}).get(key)
        if entry is None:
            return None
        access, refresh, seq = entry.get("access"), entry.get("refresh"), entry.get("seq", 0)
        if not isinstance(access, str) or not isinstance(refresh, str | None) or not isinstance(seq, int):
            raise ValueError(f"{self.folder / TOKENS} holds an entry of an unknown shape: delete it")
        return StoredPair(access, refresh, seq)

    async def save(self, key: str, pair: StoredPair) -> None:
        def work() -> None:
            path = self.folder / TOKENS
            data = _read_json(path)
            pairs = data.setdefault("pairs", {})
            pairs.pop(key, None)
            pairs[key] = {
                "access": pair.access,
                "refresh": pair.refresh,
                "seq": pair.seq,
                "saved_at": time.time(),
            }
            while len(pairs) > MAX_PAIRS:
                del pairs[next(iter(pairs))]
            _write_json(path, data)

        await self._locked("tokens.lock", work)

    # -- the renewal lock -----------------------------------------------------------------

    async def try_lock(self, key: str, lease: float) -> object | None:
        fd = self._open_lock(f"renew-{fingerprint(key)}.lock")
        if self._try_flock(fd):
            return fd
        os.close(fd)
        return None

    async def extend(self, handle: object, lease: float) -> None:
        return None  # a file lock lasts as long as its holder

    async def unlock(self, handle: object) -> None:
        assert isinstance(handle, int)
        os.close(handle)

    # -- the rate budget and the clock ----------------------------------------------------

    async def reserve(self, key: str, interval: float, tolerance: float, pause: float) -> float:
        def work() -> float:
            path = self.folder / STATE
            data = _read_json(path)
            budget = data.setdefault("rate", {}).setdefault(key, {})
            now = time.monotonic()
            paused = float(budget.get("paused_until", 0.0))
            changed = False
            if pause > 0 and now + pause > paused:
                paused = budget["paused_until"] = now + pause
                changed = True
            wait = max(0.0, paused - now)
            if wait == 0 and interval > 0:
                tat = max(float(budget.get("tat", 0.0)), now)
                wait = max(0.0, tat - tolerance - now)
                if wait == 0:
                    budget["tat"] = tat + interval
                    changed = True
            if changed:
                _write_json(path, data)
            return wait

        return await self._locked("state.lock", work)

    async def load_clock(self, base_url: str) -> float | None:
        self._ready()
        value = _read_json(self.folder / STATE).get("clock", {}).get(base_url)
        return float(value) if isinstance(value, int | float) else None

    async def save_clock(self, base_url: str, offset: float) -> None:
        def work() -> None:
            path = self.folder / STATE
            data = _read_json(path)
            data.setdefault("clock", {})[base_url] = offset
            _write_json(path, data)

        await self._locked("state.lock", work)

    async def aclose(self) -> None:
        return None
