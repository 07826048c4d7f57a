"""``Fleet``: the processes (on one machine or many) that share one tanX account.

tanX rotates the refresh token on every refresh: processes that each refresh on their own knock
each other out, and their rate limits do not add up. Sessions given the same fleet
(``AsyncTanxSession(..., fleet=Fleet(url))``) share, through a backend chosen by the URL:

- one token pair per identity (a cross-process single flight renews it; see ``_fleet.py``);
- one rate budget (``rate_limit``/``rate_limit_burst``) and the pause a 429 imposes;
- the exchange clock's offset.

Backends: ``file:///path/to/dir`` (one machine: OS file locks, files mode 0600, atomic
writes; ``_fleet_file.py``) and ``redis://host:port/db`` (many machines: the ``redis`` extra;
``_fleet_redis.py``). Anything else is refused here, before anything is sent.

A pair is keyed by the exchange's URL and a fingerprint of the identity it came from (the first
16 hex digits of the sha256 of the constructor's refresh token, else of the wallet address),
never by a token: the key the CLI's token cache has always used.
"""

from __future__ import annotations

import importlib.util
import math
import os
from pathlib import Path
from urllib.parse import unquote, urlsplit

from . import _constants as C
from ._errors import MissingDependencyError
from ._fleet_base import FleetBackend, StoredPair, fingerprint, identity_key

__all__ = ["Fleet", "FleetBackend", "StoredPair", "fingerprint", "identity_key"]

SCHEMES = ("file", "redis", "rediss")


def _positive(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")
    return float(value)


class Fleet:
    """The processes that share one tanX account: ``Fleet("file:///var/lib/desk/fleet")`` or
    ``Fleet("redis://127.0.0.1:6379/0")``; pass it to every ``AsyncTanxSession`` of the desk.

    - ``lease``: seconds a Redis renewal lock outlives a holder that stopped renewing it (a
      process killed mid-refresh); the holder extends it while it works. File locks die with
      their process.
    - ``timeout``: seconds one backend call may take; past it (or on any backend error) the
      session carries on alone (its own tokens, a local limiter), says so once at WARNING and
      in a ``fleet_unavailable`` event, and tries the backend again ``retry_after`` seconds later.

    A ``Fleet`` holds no connection: each session opens its own on its event loop.
    """

    def __init__(
        self,
        url: str,
        *,
        lease: float = C.FLEET_LEASE,
        timeout: float = C.FLEET_TIMEOUT,
        retry_after: float = C.FLEET_RETRY_AFTER,
    ) -> None:
        if not isinstance(url, str):
            raise TypeError(f"Fleet needs a URL string, got {type(url).__name__}")
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        if scheme not in SCHEMES:
            raise ValueError(
                f"unsupported fleet URL scheme {parts.scheme + ':' if parts.scheme else '(none)'}: "
                "use file:///path/to/dir (one machine) or redis://host:port/db (many machines; rediss:// over TLS)"
            )
        self.scheme = scheme
        self.lease = _positive("lease", lease)
        self.timeout = _positive("timeout", timeout)
        self.retry_after = _positive("retry_after", retry_after)
        if scheme == "file":
            if os.name != "posix":
                raise ValueError("a file:// fleet needs POSIX file locks (fcntl): use redis://host:port/db")
            if parts.netloc not in ("", "localhost"):
                raise ValueError("a file:// fleet URL names a local folder: file:///path/to/dir")
            path = unquote(parts.path)
            if not path.startswith("/"):
                raise ValueError("a file:// fleet URL needs an absolute path: file:///path/to/dir")
            self.path: Path | None = Path(path)
            self._url = url
            self.where = f"file://{path}"
        else:
            if importlib.util.find_spec("redis") is None:
                raise MissingDependencyError(
                    "a redis:// fleet needs redis-py: pip install 'tanx-async[redis]'"
                )
            if not parts.hostname:
                raise ValueError("a redis:// fleet URL needs a host: redis://host:port/db")
            db = parts.path.strip("/")
            if db and not db.isdigit():
                raise ValueError(f"the database of a redis:// fleet URL is a number, got {db!r}")
            self.path = None
            self._url = url
            # Where, for messages: the password (if any) left out.
            self.where = f"redis://{parts.hostname}:{parts.port or 6379}/{db or 0}"

    def __repr__(self) -> str:
        return f"<Fleet {self.where}>"

    def backend(self) -> FleetBackend:
        """A new connection to the backend (one per session, on its event loop)."""
        if self.path is not None:
            from ._fleet_file import FileBackend

            return FileBackend(self.path, self.timeout)
        from ._fleet_redis import RedisBackend

        return RedisBackend(self._url, self.timeout, self.where)
