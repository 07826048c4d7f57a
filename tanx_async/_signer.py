"""``PrivateKeySigner``: the local wallet that signs the login challenge (EIP-191).

eth-account is an optional extra (``pip install 'tanx-async[login]'``) and heavy to import, so it
is imported here, lazily, and only when a signer is built. The key is held as bytes in a private
slot and never appears in a repr, a str, a log line or an exception message; the eth-account
``LocalAccount`` is not kept (its ``key`` attribute is a ``HexBytes`` whose repr is the key).
"""

from __future__ import annotations

import re
import secrets
from typing import Any, NoReturn

from ._errors import MissingDependencyError

__all__ = ["PrivateKeySigner", "random_wallet"]

_KEY = re.compile(r"(?:0[xX])?([0-9a-fA-F]{64})")
_ADDRESS = re.compile(r"0[xX][0-9a-fA-F]{40}")
_INSTALL_HINT = "pip install 'tanx-async[login]'"


def _eth_account() -> tuple[Any, Any]:
    """``(Account, encode_defunct)``, or ``MissingDependencyError`` naming the extra."""
    try:
        from eth_account import Account
        from eth_account.messages import encode_defunct
    except ImportError as exc:
        raise MissingDependencyError(
            f"wallet login needs eth-account, which is not installed: {_INSTALL_HINT}"
        ) from exc
    return Account, encode_defunct


def _parse_key(private_key: object) -> bytes:
    if not isinstance(private_key, str):
        raise TypeError(f"private_key must be a hex string, not {type(private_key).__name__}")
    match = _KEY.fullmatch(private_key.strip())
    if match is None:
        # Say what is wrong with its shape, never what it is.
        raise ValueError(
            "private_key must be 32 bytes written as 64 hex digits (with or without 0x); "
            f"the value given ({len(private_key.strip())} characters) is not"
        )
    return bytes.fromhex(match.group(1))


def _address_of(account_cls: Any, key: bytes) -> str:
    try:
        address: str | None = str(account_cls.from_key(key).address)
    except Exception:
        address = None
    if address is None:
        # Raised outside the except block so that neither __cause__ nor __context__ carries
        # eth-keys' own exception, whose message or arguments may quote the key.
        raise ValueError("private_key is not a valid secp256k1 key (zero, or not below the curve order)")
    return address


class PrivateKeySigner:
    """Signs tanX's login nonce with a wallet private key (EIP-191 ``personal_sign``).

    ``PrivateKeySigner(private_key, eth_address=...)``: ``private_key`` is 64 hex digits, with or
    without ``0x``; ``eth_address``, when given, must be the key's address (any letter case), so a
    wrong pairing fails here rather than as "Invalid Credentials" from the exchange.
    """

    __slots__ = ("__key", "_address")

    def __init__(self, private_key: str, *, eth_address: str | None = None) -> None:
        key = _parse_key(private_key)
        if eth_address is not None and (
            not isinstance(eth_address, str) or _ADDRESS.fullmatch(eth_address.strip()) is None
        ):
            # Not echoed: a key pasted into the wrong variable would end up in the message.
            raise ValueError("eth_address must be 0x followed by 40 hex digits")
        account_cls, _ = _eth_account()
        address = _address_of(account_cls, key)
        if eth_address is not None and eth_address.strip().lower() != address.lower():
            raise ValueError(
                f"eth_address {eth_address.strip()} does not match the private key, whose address is {address}"
            )
        self.__key = key
        self._address = address

    @property
    def address(self) -> str:
        """The wallet's EIP-55 checksummed address."""
        return self._address

    async def sign(self, message: str) -> str:
        """The EIP-191 signature of ``message`` exactly as received: 0x + 130 hex (r, s, v=27/28)."""
        if not isinstance(message, str):
            raise TypeError(f"message must be a str, not {type(message).__name__}")
        account_cls, encode_defunct = _eth_account()
        # A few ms of CPU: not worth a thread hop, and it happens once per login.
        signed = account_cls.sign_message(encode_defunct(text=message), private_key=self.__key)
        # Build the hex ourselves: hexbytes >= 1.0 dropped the 0x from ``.hex()``.
        raw = bytes(signed.signature)
        if len(raw) != 65:  # pragma: no cover - eth-account always returns 65 bytes
            raise RuntimeError(f"eth-account returned a {len(raw)}-byte signature")
        v = raw[64] + 27 if raw[64] < 27 else raw[64]
        return "0x" + raw[:64].hex() + f"{v:02x}"

    def __repr__(self) -> str:
        return f"PrivateKeySigner(address={self._address!r})"

    __str__ = __repr__

    def __reduce__(self) -> NoReturn:
        # Pickling would write the key wherever the pickle goes (a cache, a queue, a log).
        raise TypeError("PrivateKeySigner cannot be pickled or copied: it holds a private key")


def random_wallet() -> tuple[str, str]:
    """A throwaway wallet: ``(private_key, address)``, the key as 0x + 64 hex (for demos and tests)."""
    account_cls, _ = _eth_account()
    while True:
        key = secrets.token_bytes(32)
        try:
            address = _address_of(account_cls, key)
        except ValueError:  # pragma: no cover - probability ~2**-128
            continue
        return "0x" + key.hex(), address
