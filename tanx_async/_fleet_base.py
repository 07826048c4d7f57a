"""What a fleet keeps and its backends do (``tanx_async.fleet``): the pair's key, the stored
pair and the backend protocol, below both the public module and the backends."""

from __future__ import annotations

import hashlib
from typing import Protocol

import attrs

__all__ = ["FleetBackend", "StoredPair", "fingerprint", "identity_key"]


def fingerprint(secret: str) -> str:
    """A short, non-reversible tag of a secret (16 hex digits of its sha256)."""
    return hashlib.sha256(secret.encode()).hexdigest()[:16]


def identity_key(base_url: str, *, refresh_token: str | None, eth_address: str | None) -> str | None:
    """The key of the pair for this exchange and identity, or None when nothing would rotate
    (an access token alone cannot be refreshed: there is no pair to share)."""
    if refresh_token is not None:
        return f"{base_url} refresh:{fingerprint(refresh_token)}"
    if eth_address is not None:
        return f"{base_url} wallet:{fingerprint(eth_address.lower())}"
    return None


@attrs.frozen
class StoredPair:
    """A token pair as the fleet keeps it; ``seq`` counts the pairs stored under its key."""

    access: str = attrs.field(repr=False)
    refresh: str | None = attrs.field(repr=False)
    seq: int = 0


class FleetBackend(Protocol):
    """What a fleet's backend does; every method may raise (the session then works alone)."""

    where: str
    """Where the fleet lives, for messages (never a password)."""

    async def load(self, key: str) -> StoredPair | None:
        """The pair stored under ``key``."""
        ...

    async def save(self, key: str, pair: StoredPair) -> None:
        """Store ``pair`` under ``key`` (replacing any)."""
        ...

    async def try_lock(self, key: str, lease: float) -> object | None:
        """Take the renewal lock of ``key`` now (a handle), or None when another holds it. A
        holder that dies loses it: at once (file locks) or after ``lease`` seconds (Redis)."""
        ...

    async def extend(self, handle: object, lease: float) -> None:
        """Keep holding the lock for ``lease`` more seconds."""
        ...

    async def unlock(self, handle: object) -> None:
        """Let go of the lock."""
        ...

    async def reserve(self, key: str, interval: float, tolerance: float, pause: float) -> float:
        """Pause the budget ``key`` for ``pause`` seconds if > 0 (the longest pause wins), then
        take a slot for a request sent now (GCRA: ``interval`` seconds a request, ``tolerance``
        the burst; 0: no rate limit, only the pause): 0.0 when taken, else the seconds to wait
        before asking again (nothing taken: a slot is never reserved ahead)."""
        ...

    async def load_clock(self, base_url: str) -> float | None:
        """The exchange clock's offset learned by a member of the fleet."""
        ...

    async def save_clock(self, base_url: str, offset: float) -> None: ...

    async def aclose(self) -> None: ...
