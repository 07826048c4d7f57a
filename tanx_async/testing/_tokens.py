"""JWT-shaped HS256 tokens (``header.claims.signature``, base64url without padding)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import random
from typing import Any, Literal

TokenType = Literal["access", "refresh"]

_HEADER = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').rstrip(b"=")


def _b64(data: bytes) -> bytes:
    return base64.urlsafe_b64encode(data).rstrip(b"=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class TokenMinter:
    """Mints and decodes tokens signed with a per-exchange secret."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._secret = rng.randbytes(32)

    def mint(self, uid: str, token_type: TokenType, now: float, ttl: float) -> tuple[str, str]:
        """Return ``(token, jti)``; ``exp`` is whole seconds, rounded down."""
        jti = f"{self._rng.getrandbits(128):032x}"
        claims = {
            "token_type": token_type,
            "exp": int(now + ttl),
            "iat": int(now),
            "jti": jti,
            "user_id": uid,
        }
        body = _b64(json.dumps(claims, separators=(",", ":")).encode())
        signing_input = _HEADER + b"." + body
        sig = _b64(hmac.new(self._secret, signing_input, hashlib.sha256).digest())
        return (signing_input + b"." + sig).decode(), jti

    def decode(self, token: str) -> dict[str, Any] | None:
        """Claims of a well-formed token signed by this minter, else None."""
        parts = token.split(".")
        if len(parts) != 3:
            return None
        try:
            signing_input = f"{parts[0]}.{parts[1]}".encode()
            expected = hmac.new(self._secret, signing_input, hashlib.sha256).digest()
            if not hmac.compare_digest(expected, _unb64(parts[2])):
                return None
            claims = json.loads(_unb64(parts[1]))
        except ValueError:
            return None
        return claims if isinstance(claims, dict) else None


def fingerprint(token: str) -> str:
    """Short, non-reversible tag for logging a token."""
    return hashlib.sha256(token.encode()).hexdigest()[:10]
