"""Exchange state: users, nonces, tokens, orders, request log.

Every mutation happens under one ``threading.Lock``: the server thread handles requests
while the test thread seeds and inspects. Orders are immutable snapshots
(:class:`SandboxOrder`); a change replaces the stored snapshot.
"""

from __future__ import annotations

import heapq
import random
import re
import string
import threading
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Final, Literal

import attrs

from ._clock import SandboxClock
from ._faults import Faults
from ._tokens import TokenMinter, fingerprint

if TYPE_CHECKING:
    from ._app import ASGIApp

#: The server reports local time; +02:00 is what the real exchange shows in summer.
SERVER_TZ: Final = timezone(timedelta(hours=2))
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
_ADDRESS_RE: Final = re.compile(r"0x[0-9a-fA-F]{40}")
_SIGNATURE_RE: Final = re.compile(r"0x[0-9a-fA-F]{130}")
_OPEN_STATES: Final = frozenset({"wait", "pending"})

CancelOutcome = Literal[
    "queued",
    "not_found",
    "already_cancelled",
    "already_filled",
    "already_queued",
    "not_open",
]


def iso(ts: float) -> str:
    """Unix seconds -> ISO-8601 in the server's +02:00 offset."""
    return datetime.fromtimestamp(ts, SERVER_TZ).isoformat(timespec="seconds")


def _decimal_str(value: object) -> str:
    if isinstance(value, float):
        return repr(value)
    return str(value)


def _opt_decimal_str(value: object) -> str | None:
    return None if value is None else _decimal_str(value)


@attrs.frozen
class SandboxOrder:
    """One order as the exchange holds it (immutable snapshot).

    ``created_at``/``updated_at`` are unix seconds; :meth:`to_payload` renders the wire
    form. ``cancel_due`` is the exchange-clock time a queued cancellation takes effect.
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

    @property
    def cancel_queued(self) -> bool:
        """A cancellation was accepted and has not taken effect yet."""
        return self.cancel_due is not None

    def to_payload(self, *, legacy: bool = False) -> dict[str, Any]:
        """The order object as the API returns it (``order_id`` instead of ``id``
        when ``legacy``, like the Brine-era cancel response)."""
        return {
            "order_id" if legacy else "id": self.id,
            "uuid": self.uuid,
            "side": self.side,
            "ord_type": self.ord_type,
            "price": self.price,
            "stop_price": self.stop_price,
            "avg_price": self.avg_price,
            "state": self.state,
            "market": self.market,
            "created_at": iso(self.created_at),
            "updated_at": iso(self.updated_at),
            "origin_volume": self.origin_volume,
            "remaining_volume": self.remaining_volume,
            "executed_volume": self.executed_volume,
            "maker_fee": self.maker_fee,
            "taker_fee": self.taker_fee,
            "trades_count": self.trades_count,
            "cancel_reason": self.cancel_reason,
        }


@attrs.frozen
class RequestRecord:
    """One handled request.

    ``result`` is what the exchange did (``"cancel_queued"``, ``"refresh_ok"``,
    ``"unauthorized"``, ...) or ``"fault:<kind>"`` when a fault stopped the request
    before processing. ``fault`` names any injected fault, including those applied
    after processing (``"drop_after"``, ``"truncate"``, ``"stall"``). ``status`` is
    None when no status line reached the client. Tokens are never stored: ``token`` is
    a short fingerprint, and token/signature fields in ``body`` are redacted likewise.
    """

    time: float
    method: str
    path: str
    query: str
    body: Any
    status: int | None
    result: str
    fault: str | None = None
    order_id: int | None = None
    order_ids: tuple[int, ...] = ()
    uid: str | None = None
    token: str | None = None
    duration: float = 0.0


@attrs.frozen
class _Token:
    uid: str
    expires_at: float
    jti: str


class SandboxExchange:
    """A fake tanX exchange; serve :attr:`app` in-process or with ``SandboxServer``.

    Knobs (plain attributes, change any time): ``access_ttl``, ``refresh_ttl``,
    ``cancel_delay`` (seconds until a queued cancel takes effect, applied lazily on
    every read; 0 = at once), ``legacy_cancel_response`` (Brine form: message
    ``"Cancelled Order Successfully"``, ``order_id`` instead of ``id``),
    ``empty_cancel_payload`` (``payload: {}``), ``verify_signatures`` (False accepts
    any ``0x`` + 130 hex signature), ``faults``, ``clock`` (a :class:`SandboxClock`: its
    ``offset`` skews the exchange's clock, ``advance`` moves it).

    Error texts (``{"status": "error", "message": ..., "payload": ""}``):

    - 404 ``Order not found`` (unknown order or another user's; get and cancel)
    - 400 ``Order is already cancelled`` / ``Order is already filled`` /
      ``Order is already queued for cancellation`` / ``Order is not open``
      (state other than wait/pending/done/cancel, e.g. ``reject``)
    - 400 ``order_id must be a positive integer`` (cancel body or get-order path)
    - 400 ``please provide market, market is a mandatory field`` /
      ``please enter a valid market`` / ``please enter a valid side`` /
      ``limit must be a positive integer`` (bulk cancel)
    - 400 ``limit must be an integer between 1 and 100`` (and similar for page,
      order_by, start_time, end_time) on list orders; a limit above 100 is clamped
    - 400 ``eth_address: This field is required.`` / ``Ensure eth_address has at
      least 30 characters.`` / ``Enter a valid eth_address.`` (nonce)
    - 400 ``Invalid Credentials or Token Expired, Kindly login again.`` (login)
    - 400 ``refresh: This field is required.``; 401 ``Token is invalid or expired``
      with ``payload {"code": "token_not_valid"}`` (refresh)
    - 401 ``Authentication credentials were not provided.`` (no ``JWT`` header) and
      401 ``Given token not valid for any token type`` with the simplejwt payload
    - 400 ``JSON parse error - <detail>``; 405 ``Method "X" not allowed.``
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
        clock: SandboxClock | None = None,
    ) -> None:
        self.access_ttl = access_ttl
        self.refresh_ttl = refresh_ttl
        self.cancel_delay = cancel_delay
        self.legacy_cancel_response = False
        self.empty_cancel_payload = False
        self.verify_signatures = True
        self.faults = faults if faults is not None else Faults(seed=seed)
        self.markets: dict[str, tuple[str, str]] = dict(markets or DEFAULT_MARKETS)
        #: Append-only log; read it, or use :meth:`cancel_attempts`.
        self.requests: list[RequestRecord] = []
        #: Refresh requests processed (successful or not); see ``refresh_failures``.
        self.refresh_count = 0
        self.refresh_failures = 0
        #: Login requests processed (successful or not).
        self.login_count = 0
        self.in_flight = 0
        self.peak_in_flight = 0
        #: The exchange's clock (tokens, ``Date`` headers, order timestamps).
        self.clock = clock if clock is not None else SandboxClock()
        self._lock = threading.Lock()
        self._rng = random.Random(seed)
        self._minter = TokenMinter(random.Random(self._rng.getrandbits(64)))
        self._users: dict[str, str | None] = {}
        self._uid_by_address: dict[str, str] = {}
        self._nonces: dict[str, str] = {}
        self._access: dict[str, _Token] = {}
        self._refresh: dict[str, _Token] = {}
        self._orders: dict[int, SandboxOrder] = {}
        self._orders_by_uid: dict[str, list[int]] = {}
        self._cancel_heap: list[tuple[float, int]] = []
        self._next_order_id = 25_000_000
        self._app: ASGIApp | None = None

    # -- plumbing ----------------------------------------------------------------

    @property
    def app(self) -> ASGIApp:
        """The ASGI 3 application serving this exchange."""
        if self._app is None:
            from ._app import make_app

            self._app = make_app(self)
        return self._app

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
        return SandboxOrder(
            id=self._take_id(),
            uid=uid,
            uuid=str(uuid.UUID(int=rng.getrandbits(128), version=4)),
            side=side or rng.choice(("buy", "sell")),
            ord_type=ord_type,
            market=market,
            price=None if ord_type == "market" else str(price),
            stop_price=str(price * Decimal("0.98")) if ord_type == "stop_limit" else None,
            avg_price=str(price) if filled_part else "0.0",
            state=state,
            created_at=created_at,
            # never in the future: a fill happened between creation and now
            updated_at=min(
                created_at + (rng.uniform(1, 600) if filled_part else 0), max(created_at, self.now())
            ),
            origin_volume=str(volume),
            remaining_volume=str(remaining) if remaining else "0.0",
            executed_volume=executed,
            maker_fee="0.0004",
            taker_fee="0.0006",
            trades_count=rng.randint(1, 3) if filled_part else 0,
            cancel_reason=CANCEL_REASON_USER if state == "cancel" else None,
        )

    def _take_id(self) -> int:
        order_id = self._next_order_id
        self._next_order_id += 1
        return order_id

    def _store(self, order: SandboxOrder) -> None:
        self._orders[order.id] = order
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
        are partially filled, with float-artefact ``executed_volume`` strings.
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
        """Create one order; any :class:`SandboxOrder` field may be given.

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
        """Change fields of an order (e.g. fill it while a cancel is queued)."""
        with self._lock:
            self._apply_due(self.now())
            order = attrs.evolve(self._orders[order_id], **fields)
            self._orders[order_id] = order
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
            self._orders[order_id] = order

    def _queue_cancel(self, order: SandboxOrder, now: float) -> None:
        due = now + max(0.0, self.cancel_delay)
        self._orders[order.id] = attrs.evolve(order, cancel_due=due)
        heapq.heappush(self._cancel_heap, (due, order.id))

    def _get_order(self, uid: str, order_id: int) -> SandboxOrder | None:
        with self._lock:
            self._apply_due(self.now())
            order = self._orders.get(order_id)
        return order if order is not None and order.uid == uid else None

    def _cancel(self, uid: str, order_id: int) -> tuple[CancelOutcome, SandboxOrder | None]:
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


def valid_address(eth_address: str) -> bool:
    """``0x`` + 40 hex digits."""
    return _ADDRESS_RE.fullmatch(eth_address) is not None


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


def redact(token: str) -> str:
    """Log form of a secret."""
    return f"<redacted:{fingerprint(token)}>"
