"""Wallet login end to end against the sandbox over a loopback socket, and the signer's hygiene."""

from __future__ import annotations

import copy
import logging
import pickle
import subprocess
import sys
from collections.abc import Iterator

import anyio
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from tanx_async import (
    AsyncTanxSession,
    AuthenticationError,
    MissingDependencyError,
    NotAuthenticatedError,
    Signer,
    TanxError,
)
from tanx_async.testing import SandboxExchange, SandboxServer
from tests.internals import PrivateKeySigner, auth_of, random_wallet

KEY = "0x" + "11" * 32
ADDRESS = "0x19E7E376E7C213B7E7e7e46cc70A5dD086DAff2A"
KEY_HEX = "11" * 32
NONCE = (
    "You\u2019re now signing into tanX Testnet, make sure the origin is https://testnet.tanx.finance "
    "(Login-code:YG2DHzDpRncwCZAVRUTrVG)"
)
# eth-account 0.14's signature of NONCE with KEY (r || s || v), fixed so a change shows up.
NONCE_SIGNATURE = (
    "0xd52183a456bf5829b252c091f52af86558585a308ec152afc5780d164813314d"
    "583bada07ad37291a58ed7a3dc869827229284420d5a315edb239fa594d5d6131b"
)
NONCE_PATH = "/sapi/v2/auth/nonce/"
LOGIN_PATH = "/sapi/v2/auth/login/"


class Sandbox:
    def __init__(self, exchange: SandboxExchange, server: SandboxServer, uid: str, ids: list[int]) -> None:
        self.exchange = exchange
        self.server = server
        self.uid = uid
        self.ids = ids

    def session(self, **kwargs: object) -> AsyncTanxSession:
        return AsyncTanxSession(base_url=self.server.url, private_key=KEY, eth_address=ADDRESS, **kwargs)  # type: ignore[arg-type]

    def count(self, path: str) -> int:
        return sum(1 for r in list(self.exchange.requests) if r.path == path)


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    exchange = SandboxExchange(seed=4)
    uid = exchange.create_user(ADDRESS)
    ids = exchange.seed_orders(uid, 5)
    with SandboxServer(exchange) as server:
        yield Sandbox(exchange, server, uid, ids)


def _leaks(text: str) -> bool:
    return KEY_HEX in text.lower()


# -- the signer -----------------------------------------------------------------------------------


def test_known_key_has_known_address() -> None:
    assert Account.from_key(KEY).address == ADDRESS
    assert PrivateKeySigner(KEY).address == ADDRESS
    assert PrivateKeySigner(KEY_HEX, eth_address=ADDRESS.lower()).address == ADDRESS
    assert isinstance(PrivateKeySigner(KEY), Signer)


async def test_signature_matches_eth_account_and_known_vector() -> None:
    signer = PrivateKeySigner(KEY, eth_address=ADDRESS)
    signature = await signer.sign(NONCE)
    expected = bytes(Account.sign_message(encode_defunct(text=NONCE), private_key=KEY).signature)
    assert bytes.fromhex(signature[2:]) == expected
    assert signature == NONCE_SIGNATURE
    assert signature.startswith("0x") and len(signature) == 132
    assert int(signature[-2:], 16) in (27, 28)
    assert Account.recover_message(encode_defunct(text=NONCE), signature=signature) == ADDRESS


async def test_the_message_is_signed_exactly_as_received() -> None:
    # The typographic apostrophe (U+2019) must not be re-typed: an ASCII one is another message.
    signer = PrivateKeySigner(KEY)
    assert await signer.sign(NONCE) != await signer.sign(NONCE.replace("\u2019", "'"))
    with_newline = NONCE.replace(" make", "\n make")
    signature = await signer.sign(with_newline)
    assert Account.recover_message(encode_defunct(text=with_newline), signature=signature) == ADDRESS


def test_wrong_eth_address_names_both_addresses() -> None:
    other = "0x" + "22" * 20
    with pytest.raises(ValueError, match="does not match") as info:
        PrivateKeySigner(KEY, eth_address=other)
    assert other in str(info.value) and ADDRESS in str(info.value)
    assert not _leaks(str(info.value))


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "0x",
        "0x1234",
        "11" * 31,
        "0x" + "11" * 33,
        "0x" + "zz" * 32,
        "0x" + "11" * 31 + "1g",
        "0x" + "00" * 32,  # zero is not a key
        "0x" + "ff" * 32,  # not below the curve order
    ],
)
def test_malformed_key_is_refused_without_echoing_it(bad: str) -> None:
    with pytest.raises(ValueError, match="private_key") as info:
        PrivateKeySigner(bad)
    digits = bad.removeprefix("0x")
    error: BaseException | None = info.value
    while error is not None:  # nothing in the chain may quote it either
        if len(digits) >= 8:
            assert digits not in str(error) and digits not in repr(error.args), str(error)
        error = error.__cause__ or error.__context__


def test_key_must_be_a_string() -> None:
    with pytest.raises(TypeError, match="hex string"):
        PrivateKeySigner(bytes.fromhex(KEY_HEX))  # type: ignore[arg-type]


def test_malformed_eth_address_is_not_echoed() -> None:
    # A key pasted into the address variable must not end up in the message.
    with pytest.raises(ValueError, match="eth_address") as info:
        PrivateKeySigner(KEY, eth_address=KEY)
    assert not _leaks(str(info.value))


def test_key_never_in_repr_str_or_pickle(sandbox: Sandbox) -> None:
    signer = PrivateKeySigner(KEY, eth_address=ADDRESS)
    session = sandbox.session()
    for text in (repr(signer), str(signer), repr(session), str(session), repr(auth_of(session))):
        assert not _leaks(text), text
    assert ADDRESS in repr(signer)
    assert not hasattr(signer, "__dict__")
    with pytest.raises(TypeError, match="private key"):
        pickle.dumps(signer)
    with pytest.raises(TypeError, match="private key"):
        copy.deepcopy(signer)


async def test_key_never_in_logs_or_errors(sandbox: Sandbox, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tanx_async")
    async with sandbox.session() as session:
        await session.orders.get(sandbox.ids[0])
        with pytest.raises(TanxError) as info:
            await session.orders.get(1)
    assert caplog.records
    for record in caplog.records:
        assert not _leaks(record.getMessage())
    assert not _leaks(str(info.value)) and not _leaks(repr(info.value))


def test_random_wallet_is_a_working_pair() -> None:
    key, address = random_wallet()
    assert key.startswith("0x") and len(key) == 66
    assert Account.from_key(key).address == address
    assert PrivateKeySigner(key, eth_address=address).address == address
    assert random_wallet()[0] != key


def test_missing_eth_account_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "eth_account", None)
    with pytest.raises(MissingDependencyError, match=r"pip install 'tanx-async\[login\]'") as info:
        PrivateKeySigner(KEY, eth_address=ADDRESS)
    assert isinstance(info.value, ImportError)
    with pytest.raises(MissingDependencyError):
        AsyncTanxSession(private_key=KEY, eth_address=ADDRESS)
    with pytest.raises(MissingDependencyError):
        random_wallet()


def test_importing_tanx_async_does_not_import_eth_account() -> None:
    # (Not asserted for rich: httpx imports it itself, for its own CLI, whenever it is installed.)
    code = (
        "import sys, tanx_async, tanx_async.cli, tanx_async._signer; "
        "assert 'eth_account' not in sys.modules, 'eth_account imported'"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


# -- login against the sandbox ------------------------------------------------------------------


async def test_login_on_first_use(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    async with sandbox.session() as session:
        before = session.tokens
        assert before is None
        order = await session.orders.get(sandbox.ids[0])
        assert order.id == sandbox.ids[0]
        assert (ex.login_count, ex.refresh_count) == (1, 0)
        assert sandbox.count(NONCE_PATH) == 1 and sandbox.count(LOGIN_PATH) == 1
        assert [r.result for r in ex.requests[:2]] == ["nonce", "login_ok"]
        tokens = session.tokens
        assert tokens is not None and tokens.access_expires_at is not None
        assert auth_of(session).uid == sandbox.uid
        await session.orders.get(sandbox.ids[1])
        assert ex.login_count == 1


async def test_explicit_login_returns_the_tokens(sandbox: Sandbox) -> None:
    async with sandbox.session() as session:
        tokens = await session.login()
        assert sandbox.exchange.decode_token(tokens.access) is not None
        assert tokens.refresh is not None
        assert sandbox.exchange.login_count == 1


async def test_login_logs_in_again_even_with_valid_tokens(sandbox: Sandbox) -> None:
    async with sandbox.session() as session:
        first = await session.login()
        second = await session.login()
        assert sandbox.exchange.login_count == 2 and sandbox.exchange.refresh_count == 0
        assert second.access != first.access
        refreshed = await session.refresh()
        assert sandbox.exchange.refresh_count == 1 and refreshed.access != second.access


async def test_login_without_a_signer_says_so_and_sends_nothing() -> None:
    async with AsyncTanxSession(
        base_url="http://127.0.0.1:9", access_token="a", refresh_token="r"
    ) as session:
        with pytest.raises(NotAuthenticatedError, match="signer"):
            await session.login()


async def test_relogin_when_the_refresh_token_is_rejected(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    async with sandbox.session() as session:
        await session.orders.get(sandbox.ids[0])
        first = session.tokens
        # The access token dies (401), and so does the refresh token: log in again.
        ex.expire_access_tokens()
        ex.revoke_refresh_tokens()
        order = await session.orders.get(sandbox.ids[1])
        assert order.id == sandbox.ids[1]
        assert (ex.login_count, ex.refresh_count, ex.refresh_failures) == (2, 1, 1)
        assert session.tokens is not None and first is not None
        assert session.tokens.access != first.access


async def test_relogin_when_the_token_is_near_expiry_and_refresh_is_revoked(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    async with sandbox.session() as session:
        await session.orders.get(sandbox.ids[0])
        ex.revoke_refresh_tokens()
        ex.advance_time(ex.access_ttl - 10)  # inside the refresh skew on the exchange's clock
        await session.health()  # its Date header shows the exchange's clock moved
        await session.orders.get(sandbox.ids[1])
        assert (ex.login_count, ex.refresh_failures) == (2, 1)
        # No 401 was needed: the renewal happened before the request.
        assert not any(r.result == "unauthorized" for r in ex.requests)


async def test_single_flight_login_under_100_concurrent_requests(sandbox: Sandbox) -> None:
    ex = sandbox.exchange
    ex.faults.latency = 0.005  # keep the login in flight while the others pile up
    ids = sandbox.ids
    async with sandbox.session() as session:
        got: list[int] = []

        async def one(i: int) -> None:
            got.append((await session.orders.get(ids[i % len(ids)])).id)

        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
        assert len(got) == 100
        assert ex.login_count == 1
        assert sandbox.count(NONCE_PATH) == 1 and sandbox.count(LOGIN_PATH) == 1

        # And again when both tokens die under load: one refresh attempt, one login.
        ex.expire_access_tokens()
        ex.revoke_refresh_tokens()
        got.clear()
        async with anyio.create_task_group() as tg:
            for i in range(100):
                tg.start_soon(one, i)
        assert len(got) == 100
        assert (ex.login_count, ex.refresh_count) == (2, 1)


async def test_wrong_eth_address_fails_before_anything_is_sent(sandbox: Sandbox) -> None:
    with pytest.raises(ValueError, match="does not match"):
        AsyncTanxSession(base_url=sandbox.server.url, private_key=KEY, eth_address="0x" + "22" * 20)
    assert sandbox.exchange.requests == []


async def test_a_rejected_login_is_an_authentication_error(sandbox: Sandbox) -> None:
    class WrongSigner:
        address = ADDRESS

        async def sign(self, message: str) -> str:
            return await PrivateKeySigner("0x" + "22" * 32).sign(message)

    async with AsyncTanxSession(base_url=sandbox.server.url, signer=WrongSigner()) as session:
        with pytest.raises(AuthenticationError, match="Invalid Credentials") as info:
            await session.orders.get(sandbox.ids[0])
    assert info.value.status_code == 400
    assert sandbox.exchange.login_count == 1


async def test_a_refresh_token_alone_is_enough(sandbox: Sandbox) -> None:
    _, refresh = sandbox.exchange.issue_tokens(sandbox.uid)
    async with AsyncTanxSession(base_url=sandbox.server.url, refresh_token=refresh) as session:
        order = await session.orders.get(sandbox.ids[0])
    assert order.id == sandbox.ids[0]
    assert sandbox.exchange.refresh_count == 1 and sandbox.exchange.login_count == 0
