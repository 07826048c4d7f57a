"""The CLI keeps the rotated token pair between runs (issue 13, item 2).

Real subprocesses against a loopback sandbox that rotates the refresh token on every refresh
(before each run the sandbox expires every access token, invisibly in their JWT ``exp``, so
every run refreshes: on the 401). The cache lives in ``tmp_path`` (``XDG_STATE_HOME``), and keyring is kept out
(``PYTHON_KEYRING_BACKEND`` set to keyring's failing backend; keyring is not a dependency).
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tanx_async.cli._args import UsageError
from tanx_async.cli._tokens import CachedPair, FileStore, KeyringStore, cache_key
from tanx_async.testing import SandboxExchange, SandboxServer

KEY = "0x" + "22" * 32
ADDRESS = "0x1563915e194D8CfBA1943570603F7606A3115508"  # KEY's address


class Run:
    def __init__(self, tmp_path: Path) -> None:
        self.state = tmp_path / "state"
        self.exchange = SandboxExchange(seed=11)
        self.uid = self.exchange.create_user(ADDRESS)
        self.ids = self.exchange.seed_orders(self.uid, 6)
        self.access, self.refresh = self.exchange.issue_tokens(self.uid)

    @property
    def env(self) -> dict[str, str]:
        return {"TANX_ACCESS_TOKEN": self.access, "TANX_REFRESH_TOKEN": self.refresh}

    @property
    def cache_file(self) -> Path:
        return self.state / "tanx-async" / "tokens.json"

    def __call__(
        self, url: str, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        environ = {k: v for k, v in os.environ.items() if not k.startswith("TANX_")}
        environ.update(
            env if env is not None else self.env,
            XDG_STATE_HOME=str(self.state),
            PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring",
        )
        argv = [sys.executable, "-m", "tanx_async", "--base-url", url, *args]
        self.exchange.expire_access_tokens()  # this run must refresh, and so rotate
        result = subprocess.run(argv, env=environ, capture_output=True, text=True, timeout=60)
        assert "Traceback" not in result.stderr, result.stderr
        return result

    def secrets(self) -> list[str]:
        """The env's tokens and the cached ones (none may ever be printed)."""
        pairs = json.loads(self.cache_file.read_text())["pairs"] if self.cache_file.exists() else {}
        return [self.access, self.refresh] + [t for p in pairs.values() for t in (p["access"], p["refresh"])]


@pytest.fixture
def run(tmp_path: Path) -> Iterator[tuple[Run, str]]:
    r = Run(tmp_path)
    with SandboxServer(r.exchange) as server:
        yield r, server.url


def test_two_runs_with_the_same_env_both_succeed(run: tuple[Run, str]) -> None:
    r, url = run
    first = r(url, "order", str(r.ids[0]), "--json")
    assert first.returncode == 0, first.stderr
    assert r.exchange.refresh_count == 1 and r.exchange.refresh_failures == 0
    # The env's refresh token is now spent: without the cache the next run is refused...
    spent = r(url, "order", str(r.ids[0]), "--no-token-cache")
    assert spent.returncode == 3 and "AuthenticationError" in spent.stderr
    assert "cached" not in spent.stderr  # the cache was not involved
    # ... with it, the same env works again, run after run (each one refreshes and rotates).
    for oid in r.ids[1:3]:
        again = r(url, "cancel", str(oid), "--json")
        assert again.returncode == 0, again.stderr
        assert json.loads(again.stdout)["status"] == "queued"
    assert r.exchange.refresh_failures == 1  # only the --no-token-cache run's
    assert r.exchange.refresh_count == 4

    mode = r.cache_file.stat().st_mode
    assert stat.S_IMODE(mode) == 0o600
    assert stat.S_IMODE(r.cache_file.parent.stat().st_mode) == 0o700
    keys = list(json.loads(r.cache_file.read_text())["pairs"])
    assert len(keys) == 1 and keys[0].startswith(url + " refresh:")
    assert r.access not in keys[0] and r.refresh not in keys[0]  # a fingerprint, never the token
    for result in (first, spent, again):
        for secret in r.secrets():
            assert secret not in result.stdout + result.stderr


def test_another_base_url_does_not_see_the_pair_and_logout_deletes_it(run: tuple[Run, str]) -> None:
    r, url = run
    assert r(url, "order", str(r.ids[0])).returncode == 0
    with SandboxServer(r.exchange) as other:  # the same exchange behind another URL
        elsewhere = r(other.url, "order", str(r.ids[0]))
        assert elsewhere.returncode == 3  # the env's spent token: the pair was not offered there
        nothing = r(other.url, "logout")
        assert nothing.returncode == 0 and "no token pair cached" in nothing.stdout

    out = r(url, "logout", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["removed"] is True
    assert not r.cache_file.exists()  # the last entry: the file goes too
    after = r(url, "order", str(r.ids[0]))
    assert after.returncode == 3  # back to the env's spent token


def test_a_new_refresh_token_in_the_env_starts_afresh(run: tuple[Run, str]) -> None:
    r, url = run
    assert r(url, "order", str(r.ids[0])).returncode == 0
    r.access, r.refresh = r.exchange.issue_tokens(r.uid)  # the user logs in anew
    assert r(url, "order", str(r.ids[0])).returncode == 0
    assert len(json.loads(r.cache_file.read_text())["pairs"]) == 2


def test_a_wallet_login_is_reused_by_the_next_command(run: tuple[Run, str]) -> None:
    pytest.importorskip("eth_account")
    r, url = run
    wallet = {"TANX_PRIVATE_KEY": KEY, "TANX_ETH_ADDRESS": ADDRESS}
    login = r(url, "login", env=wallet)
    assert login.returncode == 0, login.stderr
    assert r.exchange.login_count == 1
    listing = r(url, "orders", "--json", env=wallet)
    assert listing.returncode == 0, listing.stderr
    assert r.exchange.login_count == 1  # the cached pair, refreshed, not a second login
    assert r.exchange.refresh_count == 1
    assert r(url, "logout", env={"TANX_ETH_ADDRESS": ADDRESS}).returncode == 0
    assert not r.cache_file.exists()


def test_a_refused_cached_pair_says_how_to_drop_it(run: tuple[Run, str]) -> None:
    r, url = run
    assert r(url, "order", str(r.ids[0])).returncode == 0
    r.exchange.revoke_refresh_tokens()
    refused = r(url, "order", str(r.ids[0]))
    assert refused.returncode == 3
    assert "tanx-async logout" in refused.stderr


# -- the stores, in-process -------------------------------------------------------------------


def test_file_store_refuses_a_file_others_can_read_and_unknown_shapes(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "t" / "tokens.json")
    key = cache_key("https://x", refresh_token="r", eth_address=None)
    assert key == "https://x refresh:" + hashlib.sha256(b"r").hexdigest()[:16]
    assert store.load(key) is None
    store.save(key, CachedPair("a1", "r1"))
    assert store.load(key) == CachedPair("a1", "r1")
    store.path.chmod(0o644)
    with pytest.raises(UsageError, match="readable by others"):
        store.load(key)
    store.path.chmod(0o600)
    store.path.write_text('{"format": 1, "pairs": {"k": ["not", "a", "pair"]}}')
    with pytest.raises(UsageError, match="unknown shape"):
        store.load("k")
    store.path.write_text("[]")
    with pytest.raises(UsageError, match="not in a format"):
        store.load(key)


def test_file_store_is_bounded(tmp_path: Path) -> None:
    store = FileStore(tmp_path / "tokens.json")
    for i in range(70):
        store.save(f"k{i}", CachedPair(f"a{i}", None))
    pairs: dict[str, Any] = json.loads(store.path.read_text())["pairs"]
    assert len(pairs) == 64 and "k0" not in pairs and "k69" in pairs


def test_keyring_store_round_trip() -> None:
    class Memory:
        priority = 1

        def __init__(self) -> None:
            self.items: dict[tuple[str, str], str] = {}

        def get_password(self, service: str, user: str) -> str | None:
            return self.items.get((service, user))

        def set_password(self, service: str, user: str, password: str) -> None:
            self.items[(service, user)] = password

        def delete_password(self, service: str, user: str) -> None:
            del self.items[(service, user)]

    backend = Memory()
    store = KeyringStore(backend)
    store.save("k", CachedPair("a", "r"))
    assert store.load("k") == CachedPair("a", "r")
    assert list(backend.items) == [("tanx-async", "k")]
    assert store.delete("k") is True and store.delete("k") is False
    assert store.load("k") is None
    backend.items[("tanx-async", "bad")] = "{"
    with pytest.raises(UsageError, match="unknown shape"):
        store.load("bad")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=3),
    max_leaves=12,
)


@given(content=st.one_of(json_values.map(json.dumps), st.text(max_size=40)))
@example(content='{"format": 1, "pairs": {"k": {"access": "a", "refresh": null}}}')
@example(content='{"format": 1, "pairs": {"k": {"access": "a", "refresh": 5}}}')
@example(content='{"format": 1, "pairs": {"other": {"access": "a", "refresh": "r"}}}')
@example(content='{"format": 2, "pairs": {}}')
@settings(max_examples=150, deadline=None)
def test_any_cache_file_content_loads_a_pair_or_is_a_clear_usage_error(content: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        store = FileStore(Path(folder) / "tokens.json")
        store.path.write_text(content, encoding="utf-8")
        store.path.chmod(0o600)
        result: CachedPair | UsageError | None
        try:
            result = store.load("k")
        except UsageError as exc:
            result = exc
        if isinstance(result, UsageError):
            assert str(store.path) in str(result)  # the message says which file
        elif result is not None:
            assert result.access == json.loads(content)["pairs"]["k"]["access"]
