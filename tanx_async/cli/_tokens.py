"""The CLI's token cache: the current token pair, kept from one run to the next.

The exchange rotates the refresh token on every refresh, so after one run that refreshed, the
``TANX_REFRESH_TOKEN`` in the environment is spent. Like other developer CLIs, we keep the
current pair:

- in the OS keyring when the ``keyring`` package is installed and has a working backend;
- otherwise in a JSON file, mode 0600 (its folder 0700), in the user's state directory
  (``platformdirs``: ``$XDG_STATE_HOME/tanx-async/tokens.json``, by default
  ``~/.local/state/tanx-async/tokens.json``, on Linux; the platform's equivalent elsewhere).
  That folder is a ``file://`` fleet (``tanx_async.fleet``): runs at the same time share the
  pair through it (one refresh per expiry for all of them) instead of each saving its own.

An entry's key is the base URL and a fingerprint of the identity the pair came from: the first
16 hex digits of the sha256 of the environment's refresh token, or of the wallet address. Never
a token. So a pair derived from the environment's refresh token is used instead of it (and wins
over it), a new refresh token in the environment starts afresh, and another exchange URL never
sees the pair. ``tanx-async logout`` deletes the entry; ``--no-token-cache`` skips the cache.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import attrs

from .. import fleet as _fleet
from ._args import Credentials, UsageError

if TYPE_CHECKING:
    from ..models import TokenPair

__all__ = [
    "CachedPair",
    "FileStore",
    "KeyringStore",
    "TokenCache",
    "TokenStore",
    "cache_key",
    "identity_key",
    "open_store",
]

SERVICE = "tanx-async"
FILE_NAME = "tokens.json"
#: At most this many pairs are kept in the file (the least recently saved go first).
MAX_ENTRIES = 64
_FORMAT = 1


@attrs.frozen
class CachedPair:
    access: str = attrs.field(repr=False)
    refresh: str | None = attrs.field(repr=False)


def cache_key(base_url: str, *, refresh_token: str | None, eth_address: str | None) -> str | None:
    """The entry for this exchange and identity, or None when nothing would rotate (an access
    token alone cannot be refreshed): a fleet's key (``tanx_async.fleet.identity_key``), as the
    file cache is a ``file://`` fleet's."""
    return _fleet.identity_key(base_url, refresh_token=refresh_token, eth_address=eth_address)


class TokenStore(Protocol):
    where: str

    def load(self, key: str) -> CachedPair | None: ...
    def save(self, key: str, pair: CachedPair) -> None: ...
    def delete(self, key: str) -> bool: ...


def _pair_of(value: object, where: str) -> CachedPair:
    if (
        not isinstance(value, dict)
        or not isinstance(value.get("access"), str)
        or not isinstance(value.get("refresh"), str | None)
    ):
        raise UsageError(f"the token cache {where} holds an entry of an unknown shape: delete it")
    return CachedPair(value["access"], value["refresh"])


class FileStore:
    """The pairs in one JSON file, readable by its owner only, replaced atomically on save."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.where = f"file {path}"

    def _read(self) -> dict[str, Any]:
        try:
            if os.name != "nt":
                mode = self.path.stat().st_mode & 0o777
                if mode & 0o077:
                    raise UsageError(
                        f"the token cache {self.path} is readable by others (mode {mode:o}): "
                        "`chmod 600` it or delete it"
                    )
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise UsageError(f"cannot read the token cache {self.path}: {exc.strerror or exc}") from None
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if (
            not isinstance(data, dict)
            or data.get("format") != _FORMAT
            or not isinstance(data.get("pairs"), dict)
        ):
            raise UsageError(f"the token cache {self.path} is not in a format this version reads: delete it")
        pairs: dict[str, Any] = data["pairs"]
        return pairs

    def load(self, key: str) -> CachedPair | None:
        entry = self._read().get(key)
        return None if entry is None else _pair_of(entry, self.where)

    def save(self, key: str, pair: CachedPair) -> None:
        pairs = self._read()
        pairs.pop(key, None)
        pairs[key] = {"access": pair.access, "refresh": pair.refresh, "saved_at": time.time()}
        while len(pairs) > MAX_ENTRIES:
            del pairs[next(iter(pairs))]  # oldest first: a dict keeps insertion order
        self._write(pairs)

    def delete(self, key: str) -> bool:
        pairs = self._read()
        if key not in pairs:
            return False
        del pairs[key]
        if pairs:
            self._write(pairs)
        else:
            self.path.unlink()
        return True

    def _write(self, pairs: dict[str, Any]) -> None:
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump({"format": _FORMAT, "pairs": pairs}, f)
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                tmp.unlink()
            raise


class KeyringStore:
    """The pairs in the OS keyring (service ``tanx-async``, one entry per key)."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self.where = f"keyring {type(backend).__module__}.{type(backend).__name__}"

    def load(self, key: str) -> CachedPair | None:
        text = self._backend.get_password(SERVICE, key)
        if text is None:
            return None
        try:
            value = json.loads(text)
        except ValueError:
            value = None
        return _pair_of(value, self.where)

    def save(self, key: str, pair: CachedPair) -> None:
        self._backend.set_password(SERVICE, key, json.dumps({"access": pair.access, "refresh": pair.refresh}))

    def delete(self, key: str) -> bool:
        if self._backend.get_password(SERVICE, key) is None:
            return False
        self._backend.delete_password(SERVICE, key)
        return True


def _usable_keyring() -> Any:
    """The keyring backend, when ``keyring`` is installed and has a working one (not its
    ``fail``/``null`` placeholders, e.g. on a server without a secret service)."""
    try:
        keyring = importlib.import_module("keyring")  # optional, and untyped
    except ImportError:
        return None
    backend = keyring.get_keyring()
    try:
        priority = float(backend.priority)
    except Exception:  # a backend that cannot even say whether it works
        return None
    return backend if priority > 0 else None


def state_file() -> Path:
    """The cache file (platformdirs reads ``XDG_STATE_HOME`` & co. from the environment)."""
    import platformdirs

    return Path(platformdirs.user_state_dir(SERVICE, appauthor=False)) / FILE_NAME


def open_store() -> TokenStore:
    """The keyring when usable, else the file."""
    backend = _usable_keyring()
    if backend is not None:
        return KeyringStore(backend)
    return FileStore(state_file())


def identity_key(base_url: str, creds: Credentials) -> str | None:
    """``cache_key`` for the identity in the environment (a wallet without ``TANX_ETH_ADDRESS``
    is known by its key's address)."""
    address = creds.eth_address
    if creds.refresh_token is None and address is None and creds.private_key is not None:
        from .._errors import MissingDependencyError
        from .._signer import PrivateKeySigner

        try:
            address = PrivateKeySigner(creds.private_key).address
        except (MissingDependencyError, TypeError, ValueError) as exc:
            raise UsageError(str(exc)) from None
    return cache_key(base_url, refresh_token=creds.refresh_token, eth_address=address)


class TokenCache:
    """The cache as one command run uses it: read once before the session starts, written on
    every new pair (the session's ``on_tokens``)."""

    def __init__(self, store: TokenStore, key: str, note: Callable[[str], None]) -> None:
        self.store = store
        self.key = key
        self._note = note
        #: Whether the credentials came from the cache (a refusal then says how to drop it).
        self.used = False
        self._refresh: str | None = None

    def apply(self, creds: Credentials) -> Credentials:
        """The cached pair, if any, in place of the environment's tokens (a wallet stays, to
        log in again if the pair has died)."""
        pair = self.store.load(self.key)
        self._refresh = creds.refresh_token
        if pair is None:
            return creds
        self.used = True
        self._refresh = pair.refresh or creds.refresh_token
        return attrs.evolve(creds, access_token=pair.access, refresh_token=self._refresh)

    def save(self, pair: TokenPair) -> None:
        refresh = pair.refresh or self._refresh
        self._refresh = refresh
        try:
            self.store.save(self.key, CachedPair(pair.access, refresh))
        except (OSError, UsageError) as exc:
            self._note(
                f"tanx-async: warning: could not save the new token pair in the {self.store.where} "
                f"({exc}); the next run may need fresh tokens"
            )
