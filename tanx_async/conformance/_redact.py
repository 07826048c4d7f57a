"""Redaction for ``--record``: every token, signature and wallet address out of what is written.

Three nets, so one that misses is caught by the next: a field whose name says secret
(``access``, ``refresh``, ``token``, ``signature``, ``auth_header``, an address...), any string
containing a secret the run knows (the tokens it used or received, the wallet's key and
address), and any string shaped like one (a JWT, a ``0x`` address, a long hex signature).
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

__all__ = ["REDACTED", "Redactor"]

REDACTED = "<redacted>"

_SECRET_KEYS = frozenset(
    {
        "access",
        "refresh",
        "token",
        "access_token",
        "refresh_token",
        "jwt",
        "authorization",
        "auth_header",
        "signature",
        "private_key",
        "eth_address",
        "address",
        "destination_address",
        "msg_hash",
        "r",
        "s",
        "cookie",
        "set-cookie",
    }
)
_SHAPED = re.compile(
    r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*\.[A-Za-z0-9_-]*"  # a JWT
    r"|0x[0-9a-fA-F]{40,}"  # an address, a hash or a signature
    r"|[0-9a-fA-F]{64,}"  # a bare key or signature
)


class Redactor:
    """Redacts values for the record; ``learn`` adds secrets met during the run."""

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        self._secrets: set[str] = set()
        self.learn(*secrets)

    def learn(self, *secrets: str | None) -> None:
        for secret in secrets:
            if secret and len(secret) >= 6:
                self._secrets.add(secret)
                if secret.lower().startswith("0x"):
                    self._secrets.add(secret.lower())

    def text(self, value: str) -> str:
        lowered = value.lower()
        for secret in self._secrets:
            if secret in value or secret in lowered:
                return REDACTED
        return _SHAPED.sub(REDACTED, value)

    def value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, dict):
            return {
                str(k): REDACTED if str(k).lower() in _SECRET_KEYS and v not in (None, "") else self.value(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self.value(v) for v in value]
        return value
