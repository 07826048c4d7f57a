"""``SandboxExchange``: the fake exchange, a façade over rooms of one job each.

- ``_accounts.py`` (``exchange.accounts``): users, login nonces, access and refresh tokens;
- ``_book.py`` (``exchange.book``): the orders, queued cancels and their observers, with
  ``_generator.py`` making realistic orders and ``_orders.py`` their snapshots;
- ``_records.py`` (``exchange.log``): the request log and the count of requests in flight;
- ``_answers.py`` (``exchange.answers``): the shape and the invented texts of the next answer.

The rooms share one ``threading.Lock`` (the server thread handles requests while the test
thread seeds and inspects) and one random stream (a seed gives the same users, tokens and
orders). Tests use the methods and knobs of ``SandboxExchange``; the ASGI app (``_app.py``) and
the stream (``_ws.py``) talk to the rooms directly, through their documented methods.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from typing import Any, Generic, TypeVar, overload

from ._accounts import Accounts
from ._answers import Answers
from ._app import ASGIApp, make_app
from ._book import CancelResult, OrderBook, OrderObserver
from ._clock import SandboxClock
from ._faults import Faults
from ._generator import DEFAULT_MARKETS, OrderGenerator
from ._orders import CANCEL_REASON_USER, SandboxOrder, SandboxTrade
from ._records import RequestLog, RequestRecord
from ._wire import Profile, TextMode
from ._ws import StreamHub

__all__ = [
    "CANCEL_REASON_USER",
    "DEFAULT_MARKETS",
    "CancelResult",
    "OrderObserver",
    "SandboxExchange",
    "SandboxOrder",
    "SandboxTrade",
]

T = TypeVar("T")


class _InRoom(Generic[T]):
    """An attribute of ``SandboxExchange`` kept in one of its rooms under the same name: read
    and written there, so the room sees a change at once."""

    def __init__(self, room: str) -> None:
        self._room = room

    def __set_name__(self, owner: type, name: str) -> None:
        self._name = name

    @overload
    def __get__(self, obj: None, owner: type | None = None) -> _InRoom[T]: ...
    @overload
    def __get__(self, obj: object, owner: type | None = None) -> T: ...
    def __get__(self, obj: object | None, owner: type | None = None) -> T | _InRoom[T]:
        if obj is None:
            return self
        value: T = getattr(getattr(obj, self._room), self._name)
        return value

    def __set__(self, obj: object, value: T) -> None:
        setattr(getattr(obj, self._room), self._name, value)


class SandboxExchange:
    """A fake tanX exchange; serve ``app`` in-process or with ``SandboxServer``.

    Knobs (plain attributes, change any time): ``access_ttl``, ``refresh_ttl``,
    ``cancel_delay`` (seconds until a queued cancel takes effect, applied lazily on
    every read; 0 = at once), ``verify_signatures`` (False accepts any ``0x`` + 130 hex
    signature), ``faults``, ``profile`` and ``texts`` (below). ``legacy_cancel_response``
    and ``empty_cancel_payload`` force the ``brine`` / ``ack`` cancel answer whatever the
    profile. ``clock`` (a ``SandboxClock``: its
    ``offset`` skews the exchange's clock, ``advance`` moves it).

    ``profile`` picks the shapes of order answers, all of them real (tanX's docs and connectors):

    - ``"docs"`` (default): each endpoint as its 2024 documented example. Cancel echoes the
      order as it was (``id``, ``stop_price`` and ``cancel_reason`` null, message "Order is
      successfully queued for cancellation"); list orders carries ``stop_price`` and
      ``cancel_reason``; GET order lacks both, like the documented GET example, and adds
      ``trades``.
    - ``"full"``: ``stop_price`` and ``cancel_reason`` on GET order too (inferred).
    - ``"brine"``: the 2022-23 shapes: no ``stop_price``/``cancel_reason`` anywhere; the
      cancel echo has ``order_id`` instead of ``id`` and the message "Cancelled Order
      Successfully".
    - ``"ack"``: the cancel answer's payload is ``{}``; otherwise ``"docs"``.
    - ``"mixed"``: one of the four per answer, and times in the server's offset, ``+01:00``
      or ``+02:00``, drawn from a stream seeded by ``seed``.

    In every profile numbers are decimal strings in the API's form (``"450.0"``,
    ``"0.0425"``, float artefacts like ``"0.009000000000000001"`` in ``executed_volume``),
    times carry the server's offset (``+01:00`` in winter, ``+02:00`` in summer), and filled
    or partly filled orders carry 1-3 ``trades`` whose amounts add up to
    ``executed_volume`` and whose volume-weighted price is ``avg_price``.

    Texts. The real ones, from the docs or the official connectors' fixtures:

    - 200 ``Order is successfully queued for cancellation`` / ``Cancelled Order
      Successfully`` (cancel), ``Orders are successfully queued for cancellation`` (bulk),
      ``Order Retrieved Successfully``, ``Orders Retrieved Successfully``, ``Nonce
      Acquired`` / ``Cached Nonce Acquired``, ``Login Successful``, ``Working fine!``
    - 400 ``please provide market, market is a mandatory field`` / ``please enter a valid
      market`` (bulk cancel; list orders for a market the exchange does not list)
    - 400 ``Ensure eth_address has at least 30 characters.`` (nonce); 400 ``Invalid
      Credentials or Token Expired, Kindly login again.`` (login)
    - 401 ``Token is invalid or expired`` with ``payload {"code": "token_not_valid"}``
      (refresh); 401 ``Given token not valid for any token type`` with the simplejwt
      payload; 401 ``Authentication credentials were not provided.`` (no ``JWT`` header)
    - 403 ``Invalid organization key`` and 400 ``User does not exist`` with an object
      payload (injected faults only)

    Invented (no source shows them; ``tanx_async.testing._wire.INVENTED_TEXTS``), all with
    ``"payload": ""``:

    - 404 ``Order not found`` (unknown order or another user's; get and cancel)
    - 400 ``Order is already cancelled`` / ``Order is already filled`` /
      ``Order is already queued for cancellation`` / ``Order is not open``
      (state other than wait/pending/done/cancel, e.g. ``reject``)
    - 400 ``order_id must be a positive integer`` (cancel body or get-order path)
    - 400 ``please enter a valid side`` / ``limit must be a positive integer`` (bulk
      cancel); 400 ``limit must be a positive integer`` (likewise ``page``,
      ``start_time``, ``end_time``) and ``order_by must be one of asc, desc`` on list
      orders, where a limit above 100 is silently lowered to 100 (also invented: the real
      maximum is undocumented)
    - 400 ``eth_address: This field is required.`` / ``Enter a valid eth_address.``
      (nonce); 400 ``refresh: This field is required.`` (refresh)
    - 400 ``JSON parse error - <detail>``; 405 ``Method "X" not allowed.``
    - faults: 429 ``Too many requests``, 500 ``Internal Server Error`` and 400 ``Bad
      Request`` (texts of the Go connector's mocks), 200 ``Something went wrong, please
      try again`` (with ``"status": "error"``)

    ``texts="random"`` replaces every invented text with a different random sentence per
    answer (real texts stay), so a test can prove that no decision depends on words the
    real exchange may not use.
    """

    # Knobs and counters, kept in the rooms that use them.
    profile = _InRoom[Profile]("answers")
    """The shapes of the answers (see above)."""
    texts = _InRoom[TextMode]("answers")
    """``"fixed"`` or ``"random"`` invented texts (see above)."""
    legacy_cancel_response = _InRoom[bool]("answers")
    """Force the ``brine`` cancel answer whatever the profile."""
    empty_cancel_payload = _InRoom[bool]("answers")
    """Force the ``ack`` cancel answer (payload ``{}``) whatever the profile."""
    access_ttl = _InRoom[float]("accounts")
    """Seconds a new access token lives."""
    refresh_ttl = _InRoom[float]("accounts")
    """Seconds a new refresh token lives."""
    verify_signatures = _InRoom[bool]("accounts")
    """False accepts any ``0x`` + 130 hex login signature."""
    login_count = _InRoom[int]("accounts")
    """Login requests processed (successful or not)."""
    refresh_count = _InRoom[int]("accounts")
    """Refresh requests processed (successful or not); see ``refresh_failures``."""
    refresh_failures = _InRoom[int]("accounts")
    """Refresh requests refused."""
    cancel_delay = _InRoom[float]("book")
    """Seconds until a queued cancel takes effect (applied lazily on every read; 0: at once)."""
    observers = _InRoom[list[OrderObserver]]("book")
    """Called with ``(before, after)`` whenever an order snapshot is stored (``before`` is None for
    a new order), under the exchange's lock: keep them cheap. See ``OrderObserver``; the private
    stream (``ws``) registers one."""
    requests = _InRoom[list[RequestRecord]]("log")
    """Append-only log of handled requests; read it, or use ``cancel_attempts()``."""
    in_flight = _InRoom[int]("log")
    """Requests being handled now."""
    peak_in_flight = _InRoom[int]("log")
    """The most requests handled at once (see ``reset_peak_in_flight``)."""

    def __init__(
        self,
        seed: int | None = None,
        access_ttl: float = 300,
        refresh_ttl: float = 86400,
        cancel_delay: float = 0.05,
        *,
        markets: dict[str, tuple[str, str]] | None = None,
        faults: Faults | None = None,
        profile: Profile = "docs",
        texts: TextMode = "fixed",
        clock: SandboxClock | None = None,
    ) -> None:
        self._clock = clock if clock is not None else SandboxClock()
        lock = self._lock = threading.Lock()
        rng = random.Random(seed)
        self.accounts = Accounts(lock, rng, self._clock, access_ttl, refresh_ttl)
        """Users, nonces and tokens (the app's and the stream's side of them)."""
        self.answers = Answers(seed, profile, texts)
        """The shape and the invented texts of the next answer (the app's side)."""
        self.book = OrderBook(lock, self._clock, OrderGenerator(rng, markets), cancel_delay)
        """The orders and queued cancels (the app's side of them)."""
        self.log = RequestLog(lock)
        """The request log and the requests in flight (the app's side)."""
        self.faults = faults if faults is not None else Faults(seed=seed)
        """Faults injected into the HTTP answers (``Faults``)."""
        self._app: ASGIApp | None = None
        self.ws = StreamHub(self)
        """The private WebSocket stream (``/private``): its faults, connections and counters."""

    # -- plumbing ------------------------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI 3 application serving this exchange."""
        if self._app is None:
            self._app = make_app(self)
        return self._app

    @property
    def clock(self) -> SandboxClock:
        """The exchange's clock (tokens, ``Date`` headers, order timestamps): change its
        ``offset`` or ``advance`` it."""
        return self._clock

    @property
    def markets(self) -> dict[str, tuple[str, str]]:
        """The markets the exchange lists: market -> ``(base, quote)`` units."""
        return self.book.generator.markets

    @markets.setter
    def markets(self, value: dict[str, tuple[str, str]]) -> None:
        self.book.generator.markets = value

    def tick(self) -> None:
        """Apply the queued cancels that are due (reads do it too; the stream calls this)."""
        self.book.tick()

    def now(self) -> float:
        """The exchange clock (unix seconds, wall clock + ``clock.offset``)."""
        return self._clock.now()

    @property
    def time_offset(self) -> float:
        """``clock.offset`` (kept for existing callers)."""
        return self._clock.offset

    @time_offset.setter
    def time_offset(self, value: float) -> None:
        self._clock.offset = float(value)

    def advance_time(self, seconds: float) -> None:
        """Move the exchange clock forward (expires tokens, triggers cancels)."""
        with self._lock:
            self._clock.advance(seconds)

    # -- the request log -----------------------------------------------------------------------

    def reset_peak_in_flight(self) -> None:
        """Restart ``peak_in_flight`` from the current ``in_flight``."""
        self.log.reset_peak()

    def clear_requests(self) -> None:
        """Empty the request log."""
        self.log.clear()

    def cancel_attempts(self, order_id: int) -> list[RequestRecord]:
        """Every logged cancel request for ``order_id`` (faulted ones included)."""
        return self.log.cancel_attempts(order_id)

    # -- users and tokens ----------------------------------------------------------------------

    def create_user(self, eth_address: str | None = None) -> str:
        """Register a user (random address if None); returns its uid.

        An already registered address returns the existing uid.
        """
        return self.accounts.create_user(eth_address)

    def eth_address(self, uid: str) -> str | None:
        """The address a user was created with."""
        return self.accounts.eth_address(uid)

    def issue_tokens(
        self,
        uid: str,
        access_ttl: float | None = None,
        refresh_ttl: float | None = None,
    ) -> tuple[str, str]:
        """Mint ``(access, refresh)`` for a known user without a wallet login."""
        return self.accounts.issue_tokens(uid, access_ttl, refresh_ttl)

    def expire_access_tokens(self) -> None:
        """Invalidate every access token issued so far (``exp`` claims unchanged)."""
        self.accounts.expire_access_tokens()

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token issued so far (forces a new login)."""
        self.accounts.revoke_refresh_tokens()

    def decode_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a token minted by this exchange (valid or not), else None."""
        return self.accounts.decode_token(token)

    # -- orders --------------------------------------------------------------------------------

    def seed_orders(
        self,
        uid: str,
        n: int,
        markets: Sequence[str] = ("btcusdc", "ethusdc", "btcusdt"),
        state: str = "wait",
        side: str | None = None,
        ord_type: str = "limit",
    ) -> list[int]:
        """Create ``n`` realistic orders (markets round-robin); returns their ids.

        ``side=None`` picks sides at random. About 30% of ``wait``/``cancel`` orders
        are partially filled, with float-artefact ``executed_volume`` strings; ``done``
        orders are filled. A (partly) filled order has 1-3 ``trades`` adding up to its
        ``executed_volume``: a limit order fills at its price (as maker), a market order
        within 0.2% of a reference price (as taker), and ``avg_price`` is their
        volume-weighted mean (rounded to the quote's precision).
        """
        self.accounts.require(uid)
        return self.book.seed(uid, n, markets, state, side, ord_type)

    def add_order(self, uid: str, **fields: Any) -> int:
        """Create one order; any ``SandboxOrder`` field may be given.

        Unspecified fields are generated (``market`` defaults to ``btcusdc``,
        ``state`` to ``wait``). Numbers are turned into decimal strings; ``state``
        may be anything, e.g. ``"reject"``. Returns the id.
        """
        self.accounts.require(uid)
        return self.book.add(uid, fields)

    def update_order(self, order_id: int, **fields: Any) -> SandboxOrder:
        """Change fields of an order (e.g. fill it while a cancel is queued).

        Only the given fields change: filling an order this way adds no ``trades``.
        """
        return self.book.update(order_id, fields)

    def order(self, order_id: int) -> SandboxOrder:
        """Current snapshot of an order (raises KeyError if unknown)."""
        return self.book.get(order_id)

    def orders_of(self, uid: str) -> list[SandboxOrder]:
        """All orders of a user, oldest first."""
        return self.book.of(uid)
