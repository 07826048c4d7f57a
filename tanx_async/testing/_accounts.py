"""The sandbox's accounts: users and their addresses, login nonces, access and refresh tokens.

Each method takes the exchange's lock (shared with the other rooms), except where it says so.
Tokens are JWT-shaped (``_tokens.TokenMinter``); a token the exchange forgot (expired, rotated,
invalidated) is refused whatever its ``exp`` claim says.
"""

from __future__ import annotations

import random
import re
import string
import threading
from typing import Any, Final

import attrs

from ._clock import SandboxClock
from ._tokens import TokenMinter

__all__ = ["Accounts", "Token"]

_SIGNATURE_RE: Final = re.compile(r"0x[0-9a-fA-F]{130}")


@attrs.frozen
class Token:
    """What the exchange knows of a token it issued: whose it is, when it expires, its ``jti``."""

    uid: str
    expires_at: float
    jti: str


class Accounts:
    """Users, nonces and tokens.

    Knobs (plain attributes, change any time; ``SandboxExchange`` shows them under the same
    names): ``access_ttl`` and ``refresh_ttl`` (seconds a new token lives), ``verify_signatures``
    (False accepts any ``0x`` + 130 hex signature). Counters: ``login_count`` and
    ``refresh_count`` (requests processed, successful or not), ``refresh_failures``.

    The ``SandboxExchange`` methods of the same names (``create_user``, ``issue_tokens``, ...)
    call these; the ASGI app and the stream call ``authenticate``, ``nonce``, ``login`` and
    ``rotate``.
    """

    def __init__(
        self,
        lock: threading.Lock,
        rng: random.Random,
        clock: SandboxClock,
        access_ttl: float,
        refresh_ttl: float,
    ) -> None:
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.verify_signatures = True
        self.login_count = 0
        self.refresh_count = 0
        self.refresh_failures = 0
        self._lock = lock
        self._rng = rng
        self._clock = clock
        self._minter = TokenMinter(random.Random(rng.getrandbits(64)))
        self._users: dict[str, str | None] = {}
        self._uid_by_address: dict[str, str] = {}
        self._nonces: dict[str, str] = {}
        self._access: dict[str, Token] = {}
        self._refresh: dict[str, Token] = {}

    # -- users ---------------------------------------------------------------------------------

    def create_user(self, eth_address: str | None) -> str:
        """Register a user (a random address if None); its uid (the existing one for a known
        address)."""
        with self._lock:
            if eth_address is None:
                eth_address = f"0x{self._rng.getrandbits(160):040x}"
            return self._user_for(eth_address)

    def require(self, uid: str) -> None:
        """Raise ``KeyError`` for a uid the exchange does not know."""
        if uid not in self._users:
            raise KeyError(f"unknown user {uid!r}")

    def eth_address(self, uid: str) -> str | None:
        """The address a user was created with."""
        return self._users[uid]

    def _user_for(self, eth_address: str) -> str:
        key = eth_address.lower()
        uid = self._uid_by_address.get(key)
        if uid is None:
            uid = self._new_uid()
            self._users[uid] = eth_address
            self._uid_by_address[key] = uid
        return uid

    def _new_uid(self) -> str:
        while True:
            uid = f"ID{self._rng.getrandbits(40):010X}"
            if uid not in self._users:
                return uid

    # -- tokens --------------------------------------------------------------------------------

    def issue_tokens(self, uid: str, access_ttl: float | None, refresh_ttl: float | None) -> tuple[str, str]:
        """Mint ``(access, refresh)`` for a known user (KeyError otherwise)."""
        with self._lock:
            self.require(uid)
            return self._issue(uid, access_ttl, refresh_ttl)

    def expire_access_tokens(self) -> None:
        """Forget every access token issued so far."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Forget every refresh token issued so far."""
        with self._lock:
            self._refresh.clear()

    def decode_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a token minted by this exchange (valid or not), else None."""
        return self._minter.decode(token)

    def authenticate(self, token: str) -> Token | None:
        """The live access token ``token``, or None (unknown, forgotten or expired). Without the
        lock: one dictionary read."""
        entry = self._access.get(token)
        if entry is None or self._clock.now() >= entry.expires_at:
            return None
        return entry

    def rotate(self, refresh: str) -> tuple[str, str] | None:
        """A new ``(access, refresh)`` for a live refresh token, which is used up; None (and a
        failure counted) for any other."""
        with self._lock:
            self.refresh_count += 1
            entry = self._refresh.pop(refresh, None)
            if entry is None or self._clock.now() >= entry.expires_at:
                self.refresh_failures += 1
                return None
            return self._issue(entry.uid, None, None)

    def _issue(self, uid: str, access_ttl: float | None, refresh_ttl: float | None) -> tuple[str, str]:
        now = self._clock.now()
        a_ttl = self.access_ttl if access_ttl is None else access_ttl
        r_ttl = self.refresh_ttl if refresh_ttl is None else refresh_ttl
        access, a_jti = self._minter.mint(uid, "access", now, a_ttl)
        refresh, r_jti = self._minter.mint(uid, "refresh", now, r_ttl)
        # Expired tokens are forgotten (they would fail anyway): memory stays bounded by the live
        # ones, however long a session runs.
        for table in (self._access, self._refresh):
            for stale in [t for t, entry in table.items() if entry.expires_at <= now]:
                del table[stale]
        self._access[access] = Token(uid, now + a_ttl, a_jti)
        self._refresh[refresh] = Token(uid, now + r_ttl, r_jti)
        return access, refresh

    # -- the wallet login ----------------------------------------------------------------------

    def nonce(self, eth_address: str) -> tuple[str, bool]:
        """``(nonce, cached)`` for an address: the one it has, else a new one."""
        key = eth_address.lower()
        with self._lock:
            nonce = self._nonces.get(key)
            if nonce is not None:
                return nonce, True
            code = "".join(self._rng.choice(string.ascii_letters + string.digits) for _ in range(22))
            nonce = (
                "You\u2019re now signing into tanX Sandbox, make sure the origin is "
                f"https://testnet.tanx.fi (Login-code:{code})"
            )
            self._nonces[key] = nonce
            return nonce, False

    def login(self, eth_address: object, signature: object) -> tuple[str, str, str] | None:
        """``(uid, access, refresh)`` for a signature of the address's nonce, which is used up
        (the user is created if new); None otherwise. The signature is checked outside the lock."""
        with self._lock:
            self.login_count += 1
            if not isinstance(eth_address, str) or not isinstance(signature, str):
                return None
            nonce = self._nonces.get(eth_address.lower())
        if nonce is None or not _SIGNATURE_RE.fullmatch(signature):
            return None
        if self.verify_signatures and not _signature_ok(nonce, signature, eth_address):
            return None
        with self._lock:
            if self._nonces.get(eth_address.lower()) != nonce:
                return None  # a concurrent login consumed it
            del self._nonces[eth_address.lower()]
            uid = self._user_for(eth_address)
            access, refresh = self._issue(uid, None, None)
            return uid, access, refresh


def _signature_ok(nonce: str, signature: str, eth_address: str) -> bool:
    try:
        from eth_account import Account
        from eth_account.messages import encode_defunct
    except ImportError:  # shape already checked by the caller
        return True
    try:
        signer = Account.recover_message(encode_defunct(text=nonce), signature=signature)
    except Exception:  # eth-account raises assorted errors for bad curves points
        return False
    return bool(signer.lower() == eth_address.lower())
