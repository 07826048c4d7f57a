"""Exchange state: users, nonces, tokens, orders, request log.

Every mutation happens under one ``threading.Lock``: the server thread handles requests
while the test thread seeds and inspects. Orders are immutable snapshots
(``SandboxOrder``); a change replaces the stored snapshot.
"""

from __future__ import annotations

import heapq
import random
import re
import string
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from datetime import timezone
from decimal import Decimal
from typing import Any, Final, Literal

import attrs

from ._app import ASGIApp, make_app
from ._clock import SandboxClock
from ._faults import Faults
from ._records import RequestRecord
from ._tokens import TokenMinter
from ._wire import (
    INVENTED_TEXTS,
    PROFILES,
    TEXTS,
    Profile,
    Shape,
    TextMode,
    iso,
    num,
    pick_shape,
    random_sentence,
)
from ._ws import StreamHub

#: Called (under the exchange's lock: keep it cheap) with ``(before, after)`` whenever an order
#: snapshot is stored; ``before`` is None for a new order.
OrderObserver = Callable[["SandboxOrder | None", "SandboxOrder"], None]

CANCEL_REASON_USER: Final = "Order cancelled by user"
DEFAULT_MARKETS: Final[dict[str, tuple[str, str]]] = {
    "btcusdc": ("btc", "usdc"),
    "btcusdt": ("btc", "usdt"),
    "ethusdc": ("eth", "usdc"),
    "ethusdt": ("eth", "usdt"),
    "usdcusdt": ("usdc", "usdt"),
    "maticusdt": ("matic", "usdt"),
}
_QUOTES: Final = ("usdc", "usdt", "btc", "eth")
_PRICE_RANGE: Final = {
    "btc": (58000, 71000),
    "eth": (2900, 3900),
    "usdc": (1, 1),
    "matic": (1, 1),
}
_SIGNATURE_RE: Final = re.compile(r"0x[0-9a-fA-F]{130}")
_OPEN_STATES: Final = frozenset({"wait", "pending"})

#: What a cancel request did to the sandbox's state (not the library's ``CancelOutcome``).
CancelResult = Literal[
    "queued",
    "not_found",
    "already_cancelled",
    "already_filled",
    "already_queued",
    "not_open",
]


def _decimal_str(value: object) -> str:
    """Numbers in the API's form (``"450.0"``); strings are kept exactly as given."""
    if isinstance(value, str):
        return value
    if isinstance(value, float | int | Decimal) and not isinstance(value, bool):
        return num(value)
    raise TypeError(f"expected a number or a decimal string, got {value!r}")


def _opt_decimal_str(value: object) -> str | None:
    return None if value is None else _decimal_str(value)


@attrs.frozen
class SandboxOrder:
    """One order as the exchange holds it (immutable snapshot).

    ``created_at``/``updated_at`` are unix seconds; ``to_payload()`` renders the wire
    form. ``cancel_due`` is the exchange-clock time a queued cancellation takes effect.
    Numbers given as ``int``/``float``/``Decimal`` are stored in the API's string form
    (``1134`` -> ``"1134.0"``); strings are kept as given. ``trades`` are the fills of a
    generated order (see ``SandboxExchange.seed_orders()``).
    """

    id: int
    uid: str
    uuid: str
    side: str
    ord_type: str
    market: str
    price: str | None = attrs.field(converter=_opt_decimal_str)
    stop_price: str | None = attrs.field(converter=_opt_decimal_str)
    avg_price: str = attrs.field(converter=_decimal_str)
    state: str
    created_at: float
    updated_at: float
    origin_volume: str = attrs.field(converter=_decimal_str)
    remaining_volume: str = attrs.field(converter=_decimal_str)
    executed_volume: str = attrs.field(converter=_decimal_str)
    maker_fee: str = attrs.field(converter=_decimal_str)
    taker_fee: str = attrs.field(converter=_decimal_str)
    trades_count: int
    cancel_reason: str | None
    cancel_due: float | None = None
    trades: tuple[SandboxTrade, ...] = ()

    @property
    def cancel_queued(self) -> bool:
        """A cancellation was accepted and has not taken effect yet."""
        return self.cancel_due is not None

    def to_payload(
        self,
        *,
        legacy: bool = False,
        newer_fields: bool = True,
        trades: bool = False,
        offset: timezone | None = None,
    ) -> dict[str, Any]:
        """The order object as the API returns it.

        ``legacy``: ``order_id`` instead of ``id`` (the Brine-era cancel echo).
        ``newer_fields``: include ``stop_price`` and ``cancel_reason`` (added in 2024).
        ``trades``: add the ``trades`` list (GET order only). ``offset``: write the times
        in this offset instead of the server's own.
        """
        payload: dict[str, Any] = {
            "order_id" if legacy else "id": self.id,
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": self.price,
            "stop_price": self.stop_price,
            "avg_price": self.avg_price,
            "state": self.state,
            "market": self.market,
            "created_at": iso(self.created_at, offset),
            "updated_at": iso(self.updated_at, offset),
            "origin_volume": self.origin_volume,
            "remaining_volume": self.remaining_volume,
            "executed_volume": self.executed_volume,
            "maker_fee": self.maker_fee,
            "taker_fee": self.taker_fee,
            "trades_count": self.trades_count,
            "cancel_reason": self.cancel_reason,
        }
        if not newer_fields:
            del payload["stop_price"], payload["cancel_reason"]
        if trades:
            payload["trades"] = [t.to_payload(offset) for t in self.trades]
        return payload


@attrs.frozen
class SandboxTrade:
    """One fill of an order, in the fields of ``GET /sapi/v1/trades/`` (the keys of the
    ``trades`` list on GET order are **inferred** to be the same; no source shows one)."""

    id: int
    order_id: int
    market: str
    side: str
    taker_type: str
    price: str
    amount: str
    total: str
    fee: str
    fee_amount: str
    fee_currency: str
    created_at: float

    def to_payload(self, offset: timezone | None = None) -> dict[str, Any]:
        """The trade object as the API returns it."""
        return {
            "id": self.id,
            "price": self.price,
            "amount": self.amount,
            "total": self.total,
            "fee_currency": self.fee_currency,
            "fee": self.fee,
            "fee_amount": self.fee_amount,
            "market": self.market,
            "created_at": iso(self.created_at, offset),
            "taker_type": self.taker_type,
            "side": self.side,
            "order_id": self.order_id,
        }


@attrs.frozen
class _Token:
    uid: str
    expires_at: float
    jti: str


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
        self.profile = profile
        self.texts = texts
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.cancel_delay = cancel_delay
        self.legacy_cancel_response = False
        self.empty_cancel_payload = False
        self.verify_signatures = True
        self.faults = faults if faults is not None else Faults(seed=seed)
        self.markets: dict[str, tuple[str, str]] = dict(markets or DEFAULT_MARKETS)
        self.requests: list[RequestRecord] = []
        """Append-only log; read it, or use ``cancel_attempts()``."""
        self.refresh_count = 0
        """Refresh requests processed (successful or not); see ``refresh_failures``."""
        self.refresh_failures = 0
        self.login_count = 0
        """Login requests processed (successful or not)."""
        self.in_flight = 0
        self.peak_in_flight = 0
        self.clock = clock if clock is not None else SandboxClock()
        """The exchange's clock (tokens, ``Date`` headers, order timestamps)."""
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._minter = TokenMinter(random.Random(self._rng.getrandbits(64)))
        # Separate streams: switching profiles or texts leaves the orders and tokens unchanged.
        self._shape_rng = random.Random(None if seed is None else f"{seed}:shapes")
        self._text_rng = random.Random(None if seed is None else f"{seed}:texts")
        self._users: dict[str, str | None] = {}
        self._uid_by_address: dict[str, str] = {}
        self._nonces: dict[str, str] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._orders: dict[int, SandboxOrder] = {}
        self._orders_by_uid: dict[str, list[int]] = {}
        self._cancel_heap: list[tuple[float, int]] = []
        self._next_order_id = 25_000_000
        self._next_trade_id = 9_100_000
        self._app: ASGIApp | None = None
        self.observers: list[OrderObserver] = []
        """Called with ``(before, after)`` whenever an order snapshot is stored (``before`` is None
        for a new order), under the exchange's lock: keep them cheap. See ``OrderObserver``; the
        private stream (``ws``) registers one."""
        self.ws = StreamHub(self)
        """The private WebSocket stream (``/private``): its faults, connections and counters."""

    # -- plumbing ----------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI 3 application serving this exchange."""
        if self._app is None:
            self._app = make_app(self)
        return self._app

    @property
    def profile(self) -> Profile:
        """The shapes of the answers (see ``SandboxExchange``)."""
        return self._profile

    @profile.setter
    def profile(self, value: Profile) -> None:
        if value not in PROFILES:
            raise ValueError(f"profile must be one of {', '.join(PROFILES)}; got {value!r}")
        self._profile = value

    @property
    def texts(self) -> TextMode:
        """``"fixed"`` or ``"random"`` invented texts (see ``SandboxExchange``)."""
        return self._texts

    @texts.setter
    def texts(self, value: TextMode) -> None:
        if value not in TEXTS:
            raise ValueError(f"texts must be one of {', '.join(TEXTS)}; got {value!r}")
        self._texts = value

    def _shape(self) -> Shape:
        """The shape of the next answer (a fresh draw per answer under ``"mixed"``)."""
        return pick_shape(self._profile, self._shape_rng)

    def _text(self, key: str, **values: str) -> str:
        """The invented text ``key`` (see ``INVENTED_TEXTS``), or a random sentence."""
        if self._texts == "random":
            return random_sentence(self._text_rng)
        return INVENTED_TEXTS[key].format(**values)

    def _put(self, order: SandboxOrder) -> None:
        """Store a snapshot and tell the observers."""
        before = self._orders.get(order.id)
        self._orders[order.id] = order
        for observer in self.observers:
            observer(before, order)

    def tick(self) -> None:
        """Apply the queued cancels that are due (reads do it too; the stream calls this)."""
        with self._lock:
            self._apply_due(self.now())

    def now(self) -> float:
        """The exchange clock (unix seconds, wall clock + ``clock.offset``)."""
        return self.clock.now()

    @property
    def time_offset(self) -> float:
        """``clock.offset`` (kept for existing callers)."""
        return self.clock.offset

    @time_offset.setter
    def time_offset(self, value: float) -> None:
        self.clock.offset = float(value)

    def advance_time(self, seconds: float) -> None:
        """Move the exchange clock forward (expires tokens, triggers cancels)."""
        with self._lock:
            self.clock.advance(seconds)

    def _enter(self) -> None:
        with self._lock:
            self.in_flight += 1
            if self.in_flight > self.peak_in_flight:
                self.peak_in_flight = self.in_flight

    def _leave(self) -> None:
        with self._lock:
            self.in_flight -= 1

    def reset_peak_in_flight(self) -> None:
        """Restart ``peak_in_flight`` from the current ``in_flight``."""
        with self._lock:
            self.peak_in_flight = self.in_flight

    def _record(self, record: RequestRecord) -> None:
        self.requests.append(record)  # list.append is atomic

    def clear_requests(self) -> None:
        """Empty the request log."""
        with self._lock:
            self.requests = []

    def cancel_attempts(self, order_id: int) -> list[RequestRecord]:
        """Every logged cancel request for ``order_id`` (faulted ones included)."""
        return [
            r for r in list(self.requests) if r.order_id == order_id and r.path == "/sapi/v1/orders/cancel/"
        ]

    # -- users and tokens -----------------------------------------------------------

    def _new_uid(self) -> str:
        while True:
            uid = f"ID{self._rng.getrandbits(40):010X}"
            if uid not in self._users:
                return uid

    def create_user(self, eth_address: str | None = None) -> str:
        """Register a user (random address if None); returns its uid.

        An already registered address returns the existing uid.
        """
        with self._lock:
            if eth_address is None:
                eth_address = f"0x{self._rng.getrandbits(160):040x}"
            return self._user_for(eth_address)

    def _user_for(self, eth_address: str) -> str:
        key = eth_address.lower()
        uid = self._uid_by_address.get(key)
        if uid is None:
            uid = self._new_uid()
            self._users[uid] = eth_address
            self._uid_by_address[key] = uid
            self._orders_by_uid[uid] = []
        return uid

    def eth_address(self, uid: str) -> str | None:
        """The address a user was created with."""
        return self._users[uid]

    def issue_tokens(
        self,
        uid: str,
        access_ttl: float | None = None,
        refresh_ttl: float | None = None,
    ) -> tuple[str, str]:
        """Mint ``(access, refresh)`` for a known user without a wallet login."""
        with self._lock:
            if uid not in self._users:
                raise KeyError(f"unknown user {uid!r}")
            return self._issue(uid, access_ttl, refresh_ttl)

    def _issue(self, uid: str, access_ttl: float | None, refresh_ttl: float | None) -> tuple[str, str]:
        now = self.now()
        a_ttl = self.access_ttl if access_ttl is None else access_ttl
        r_ttl = self.refresh_ttl if refresh_ttl is None else refresh_ttl
        access, a_jti = self._minter.mint(uid, "access", now, a_ttl)
        refresh, r_jti = self._minter.mint(uid, "refresh", now, r_ttl)
        # Expired tokens are forgotten (they would fail anyway): memory stays bounded by the live
        # ones, however long a session runs.
        for table in (self._access, self._refresh):
            for stale in [t for t, entry in table.items() if entry.expires_at <= now]:
                del table[stale]
        self._access[access] = _Token(uid, now + a_ttl, a_jti)
        self._refresh[refresh] = _Token(uid, now + r_ttl, r_jti)
        return access, refresh

    def expire_access_tokens(self) -> None:
        """Invalidate every access token issued so far (``exp`` claims unchanged)."""
        with self._lock:
            self._access.clear()

    def revoke_refresh_tokens(self) -> None:
        """Invalidate every refresh token issued so far (forces a new login)."""
        with self._lock:
            self._refresh.clear()

    def decode_token(self, token: str) -> dict[str, Any] | None:
        """Claims of a token minted by this exchange (valid or not), else None."""
        return self._minter.decode(token)

    def _authenticate(self, token: str) -> _Token | None:
        entry = self._access.get(token)
        if entry is None or self.now() >= entry.expires_at:
            return None
        return entry

    def _rotate(self, refresh: str) -> tuple[str, str] | None:
        with self._lock:
            self.refresh_count += 1
            entry = self._refresh.pop(refresh, None)
            if entry is None or self.now() >= entry.expires_at:
                self.refresh_failures += 1
                return None
            return self._issue(entry.uid, None, None)

    def _nonce(self, eth_address: str) -> tuple[str, bool]:
        """``(nonce, cached)`` for an address."""
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

    def _login(self, eth_address: object, signature: object) -> tuple[str, str, str] | None:
        """``(uid, access, refresh)`` on success, which consumes the nonce."""
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

    # -- orders ------------------------------------------------------------------------

    def _market_units(self, market: str) -> tuple[str, str]:
        units = self.markets.get(market)
        if units is None:
            for quote in _QUOTES:
                if market.endswith(quote) and len(market) > len(quote):
                    units = (market[: -len(quote)], quote)
                    break
            else:
                units = (market, "")
            self.markets[market] = units
        return units

    def _generate(
        self,
        uid: str,
        market: str,
        state: str,
        side: str | None,
        ord_type: str,
        created_at: float,
    ) -> SandboxOrder:
        rng = self._rng
        base, _ = self._market_units(market)
        low, high = _PRICE_RANGE.get(base, (1, 100))
        price = Decimal(rng.randint(low * 100, high * 100 + 99)) / 100
        if low == high:
            price = Decimal(rng.randint(9950, 10050)) / 10000
        volume = Decimal(rng.randint(10, 5000)) / 10000
        if base not in ("btc", "eth"):
            volume = Decimal(rng.randint(10, 2000))
        filled_part = Decimal(0)
        if state == "done":
            filled_part = volume
        elif state in ("wait", "cancel") and rng.random() < 0.3:
            filled_part = volume * Decimal(rng.randint(1, 9)) / 10
            filled_part = filled_part.quantize(Decimal("0.0001"))
        remaining = volume - filled_part
        # float subtraction reproduces the artefacts the real server emits
        executed = repr(float(volume) - float(remaining)) if filled_part else "0.0"
        order = SandboxOrder(
            id=self._take_id(),
            uid=uid,
            uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            side=side or rng.choice(("buy", "sell")),
            ord_type=ord_type,
            market=market,
            price=None if ord_type == "market" else price,
            stop_price=price * Decimal("0.98") if ord_type == "stop_limit" else None,
            avg_price=0,
            state=state,
            created_at=created_at,
            # never in the future: a fill happened between creation and now
            updated_at=min(
                created_at + (rng.uniform(1, 600) if filled_part else 0), max(created_at, self.now())
            ),
            origin_volume=volume,
            remaining_volume=remaining,
            executed_volume=executed,
            maker_fee="0.0004",
            taker_fee="0.0006",
            trades_count=0,
            cancel_reason=CANCEL_REASON_USER if state == "cancel" else None,
        )
        if not filled_part:
            return order
        trades, avg = self._fills(order, price, filled_part)
        return attrs.evolve(order, trades=trades, trades_count=len(trades), avg_price=avg)

    def _fills(
        self, order: SandboxOrder, price: Decimal, filled: Decimal
    ) -> tuple[tuple[SandboxTrade, ...], Decimal]:
        """1-3 trades whose amounts add up to ``filled``, and their volume-weighted price.

        A limit order rests on the book (maker) and fills at its price; a market order takes
        (taker) at prices within 0.2% of ``price``.
        """
        rng = self._rng
        step = Decimal("0.0001")
        units = int(filled / step)
        n = min(rng.randint(1, 3), units)
        cuts = sorted(rng.sample(range(1, units), n - 1)) if n > 1 else []
        amounts = [(b - a) * step for a, b in zip([0, *cuts], [*cuts, units], strict=True)]
        places = Decimal("0.01") if price >= 100 else step
        base, quote = self._market_units(order.market)
        maker = order.ord_type != "market"
        fee = Decimal(order.maker_fee if maker else order.taker_fee)
        times = sorted(rng.uniform(order.created_at, order.updated_at) for _ in amounts)
        trades = []
        for amount, at in zip(amounts, times, strict=True):
            fill_price = price if maker else (price * Decimal(rng.uniform(0.998, 1.002))).quantize(places)
            total = fill_price * amount
            trades.append(
                SandboxTrade(
                    id=self._next_trade_id,
                    order_id=order.id,
                    market=order.market,
                    side=order.side,
                    taker_type=order.side if not maker else ("sell" if order.side == "buy" else "buy"),
                    price=num(fill_price),
                    amount=num(amount),
                    total=num(total),
                    fee=num(fee),
                    fee_amount=num((amount if order.side == "buy" else total) * fee),
                    fee_currency=base if order.side == "buy" else quote,
                    created_at=at,
                )
            )
            self._next_trade_id += 1
        avg = sum((Decimal(t.price) * Decimal(t.amount) for t in trades), Decimal(0)) / filled
        return tuple(trades), avg.quantize(places)

    def _take_id(self) -> int:
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_id

    def _store(self, order: SandboxOrder) -> None:
        self._put(order)
        self._orders_by_uid.setdefault(order.uid, []).append(order.id)

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
        with self._lock:
            if uid not in self._users:
                raise KeyError(f"unknown user {uid!r}")
            now = self.now()
            ids = []
            for i in range(n):
                market = markets[i % len(markets)]
                created = now - (n - i) * 7.0
                order = self._generate(uid, market, state, side, ord_type, created)
                self._store(order)
                ids.append(order.id)
            return ids

    def add_order(self, uid: str, **fields: Any) -> int:
        """Create one order; any ``SandboxOrder`` field may be given.

        Unspecified fields are generated (``market`` defaults to ``btcusdc``,
        ``state`` to ``wait``). Numbers are turned into decimal strings; ``state``
        may be anything, e.g. ``"reject"``. Returns the id.
        """
        with self._lock:
            if uid not in self._users:
                raise KeyError(f"unknown user {uid!r}")
            base = self._generate(
                uid,
                fields.get("market", "btcusdc"),
                fields.get("state", "wait"),
                fields.get("side"),
                fields.get("ord_type", "limit"),
                fields.get("created_at", self.now()),
            )
            if "id" in fields:
                if fields["id"] in self._orders:
                    raise ValueError(f"order {fields['id']} exists")
                self._next_order_id = max(self._next_order_id, fields["id"] + 1)
            if "uid" in fields:
                raise TypeError("uid is the first argument")
            if "created_at" in fields and "updated_at" not in fields:
                fields["updated_at"] = fields["created_at"]
            order = attrs.evolve(base, **fields)
            self._store(order)
            return order.id

    def update_order(self, order_id: int, **fields: Any) -> SandboxOrder:
        """Change fields of an order (e.g. fill it while a cancel is queued).

        Only the given fields change: filling an order this way adds no ``trades``.
        """
        with self._lock:
            self._apply_due(self.now())
            order = attrs.evolve(self._orders[order_id], **fields)
            self._put(order)
            return order

    def order(self, order_id: int) -> SandboxOrder:
        """Current snapshot of an order (raises KeyError if unknown)."""
        with self._lock:
            self._apply_due(self.now())
            return self._orders[order_id]

    def orders_of(self, uid: str) -> list[SandboxOrder]:
        """All orders of a user, oldest first."""
        with self._lock:
            self._apply_due(self.now())
            return [self._orders[i] for i in self._orders_by_uid.get(uid, ())]

    def _apply_due(self, now: float) -> None:
        heap = self._cancel_heap
        while heap and heap[0][0] <= now:
            due, order_id = heapq.heappop(heap)
            order = self._orders.get(order_id)
            if order is None or order.cancel_due != due:
                continue
            if order.state in _OPEN_STATES:
                order = attrs.evolve(
                    order,
                    state="cancel",
                    cancel_reason=CANCEL_REASON_USER,
                    updated_at=due,
                    cancel_due=None,
                )
            else:
                order = attrs.evolve(order, cancel_due=None)
            self._put(order)

    def _queue_cancel(self, order: SandboxOrder, now: float) -> None:
        due = now + max(0.0, self.cancel_delay)
        self._orders[order.id] = attrs.evolve(order, cancel_due=due)
        heapq.heappush(self._cancel_heap, (due, order.id))

    def _get_order(self, uid: str, order_id: int) -> SandboxOrder | None:
        with self._lock:
            self._apply_due(self.now())
            order = self._orders.get(order_id)
        return order if order is not None and order.uid == uid else None

    def _cancel(self, uid: str, order_id: int) -> tuple[CancelResult, SandboxOrder | None]:
        """Queue a cancel; returns the outcome and the pre-cancel snapshot."""
        with self._lock:
            now = self.now()
            self._apply_due(now)
            order = self._orders.get(order_id)
            if order is None or order.uid != uid:
                return "not_found", None
            if order.state == "cancel":
                return "already_cancelled", order
            if order.state == "done":
                return "already_filled", order
            if order.cancel_due is not None:
                return "already_queued", order
            if order.state not in _OPEN_STATES:
                return "not_open", order
            self._queue_cancel(order, now)
            if self.cancel_delay <= 0:
                self._apply_due(now)
            return "queued", order

    def _bulk_cancel(self, uid: str, market: str, limit: int, side: str | None) -> tuple[int, ...]:
        """Queue cancels for up to ``limit`` open orders, oldest first."""
        with self._lock:
            now = self.now()
            self._apply_due(now)
            picked: list[int] = []
            for order_id in self._orders_by_uid.get(uid, ()):
                if len(picked) >= limit:
                    break
                order = self._orders[order_id]
                if (
                    order.market == market
                    and order.state in _OPEN_STATES
                    and order.cancel_due is None
                    and (side is None or order.side == side)
                ):
                    self._queue_cancel(order, now)
                    picked.append(order_id)
            if self.cancel_delay <= 0:
                self._apply_due(now)
            return tuple(picked)

    def _list_orders(
        self,
        uid: str,
        filters: dict[str, str],
        start_time: int | None,
        end_time: int | None,
        limit: int,
        page: int,
        descending: bool,
    ) -> list[SandboxOrder]:
        with self._lock:
            self._apply_due(self.now())
            id_list = self._orders_by_uid.get(uid, [])
            ids: Iterable[int] = reversed(id_list) if descending else id_list
            market = filters.get("market")
            state = filters.get("state")
            side = filters.get("side")
            ord_type = filters.get("ord_type")
            base_unit = filters.get("base_unit")
            quote_unit = filters.get("quote_unit")
            skip = (page - 1) * limit
            out: list[SandboxOrder] = []
            for order_id in ids:
                o = self._orders[order_id]
                if (
                    (market is not None and o.market != market)
                    or (state is not None and o.state != state)
                    or (side is not None and o.side != side)
                    or (ord_type is not None and o.ord_type != ord_type)
                    or (start_time is not None and o.created_at < start_time)
                    or (end_time is not None and o.created_at > end_time)
                ):
                    continue
                if base_unit is not None or quote_unit is not None:
                    base, quote = self._market_units(o.market)
                    if (base_unit is not None and base != base_unit) or (
                        quote_unit is not None and quote != quote_unit
                    ):
                        continue
                if skip:
                    skip -= 1
                    continue
                out.append(o)
                if len(out) >= limit:
                    break
            return out


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
