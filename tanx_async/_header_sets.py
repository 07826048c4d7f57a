"""The request headers a session sends: one immutable ``Headers`` per token, built once.

Every request with the same access token (and with or without a body) shares one ``Headers``
value. A ``Headers`` cannot change, so a transport may keep what it prepares from it (the
request head's bytes) on it. Bounded: a few entries per token, cleared when tokens have rotated
a few times.
"""

from __future__ import annotations

from . import _constants as C
from ._transports import Headers

__all__ = ["HeaderSets"]

_STATIC = {
    "Accept": "application/json",
    "Content-Type": "application/json",
    "User-Agent": C.USER_AGENT,
}
#: Entries kept before the cache is cleared (two per token: with and without a body).
_MAX_ENTRIES = 8


class HeaderSets:
    """The headers for each (token, has a body) pair a session has sent."""

    __slots__ = ("_sets",)

    def __init__(self) -> None:
        self._sets: dict[tuple[str | None, bool], Headers] = {}

    def get(self, token: str | None, body: bool) -> Headers:
        """The request headers for ``token`` (None: a public request), with or without a body."""
        key = (token, body)
        headers = self._sets.get(key)
        if headers is None:
            fields = dict(_STATIC)
            if not body:
                del fields["Content-Type"]
            if token is not None:
                fields["Authorization"] = "JWT " + token
            headers = Headers(fields)
            if len(self._sets) >= _MAX_ENTRIES:
                self._sets.clear()
            self._sets[key] = headers
        return headers
