"""The models: open enums, order helpers, outcomes and token pairs."""

from __future__ import annotations

import pickle
from datetime import datetime, timezone
from decimal import Decimal

import attrs
import pytest

from tanx_async import (
    BadRequestError,
    CancelOutcome,
    CancelStatus,
    Order,
    OrderState,
    OrderType,
    Side,
    TokenPair,
)
from tests.conftest import make_jwt, order_payload
from tests.internals import queued_outcome, structure_order


@pytest.mark.parametrize(
    ("cls", "raw"),
    [(OrderState, "reject"), (OrderType, "stop_market"), (Side, "short")],
)
def test_unknown_enum_value_keeps_raw_value(cls: type[OrderState | OrderType | Side], raw: str) -> None:
    value = cls(raw)
    assert isinstance(value, cls)
    assert value.value == raw
    assert value == raw
    assert str(value) == raw
    assert f"{value}" == raw
    assert not value.known
    assert raw in repr(value)
    assert hash(value) == hash(raw)


def test_known_enum_members() -> None:
    assert OrderState("wait") is OrderState.WAIT
    assert OrderState.WAIT.known
    wait: object = "wait"
    assert wait == OrderState.WAIT
    assert str(OrderType.LIMIT_MAKER) == "limit_maker"
    assert Side("sell") is Side.SELL
    assert [s.value for s in OrderState] == ["pending", "wait", "done", "cancel"]


def test_unknown_enum_values_do_not_become_members() -> None:
    OrderState("reject")
    assert "reject" not in [s.value for s in OrderState]
    assert OrderState("reject") == OrderState("reject")


def test_enum_rejects_non_strings() -> None:
    with pytest.raises(ValueError, match="not a valid"):
        OrderState(3)


@pytest.mark.parametrize(
    ("state", "is_open"),
    [("pending", True), ("wait", True), ("done", False), ("cancel", False), ("reject", False)],
)
def test_order_is_open(state: str, is_open: bool) -> None:
    order = structure_order(order_payload(state=state))
    assert order.is_open is is_open
    assert order.state.is_open is is_open


def test_order_is_frozen_and_hashable() -> None:
    order = structure_order(order_payload())
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        order.state = OrderState.CANCEL  # type: ignore[misc]
    assert order == structure_order(order_payload())
    assert hash(order) == hash(structure_order(order_payload()))
    assert attrs.evolve(order, state=OrderState.CANCEL).state is OrderState.CANCEL


def test_order_is_keyword_only() -> None:
    with pytest.raises(TypeError):
        Order(1, "btcusdc")  # type: ignore[call-arg]


def test_order_pickles_with_unknown_state() -> None:
    order = structure_order(order_payload(state="reject"))
    again = pickle.loads(pickle.dumps(order))
    assert again == order
    assert again.state == "reject"


def _outcome(status: CancelStatus, *, error: bool = False) -> CancelOutcome:
    err = BadRequestError("no", status_code=400, body={}, response=None) if error else None
    return CancelOutcome(order_id=7, status=status, error=err)


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        (CancelStatus.QUEUED, True),
        (CancelStatus.CANCELLED, True),
        (CancelStatus.ALREADY_CLOSED, True),
        (CancelStatus.NOT_FOUND, False),
        (CancelStatus.FAILED, False),
        (CancelStatus.UNKNOWN, False),
        (CancelStatus.SKIPPED, False),
    ],
)
def test_cancel_outcome_ok(status: CancelStatus, ok: bool) -> None:
    assert _outcome(status).ok is ok


@pytest.mark.parametrize(
    ("status", "ok"),
    [
        # A queued cancel that carries an error (not confirmed in time) is not ok.
        (CancelStatus.QUEUED, False),
        # Off the book: the exchange's refusal is kept on the outcome for the record.
        (CancelStatus.CANCELLED, True),
        (CancelStatus.ALREADY_CLOSED, True),
        (CancelStatus.NOT_FOUND, False),
        (CancelStatus.FAILED, False),
        (CancelStatus.UNKNOWN, False),
        (CancelStatus.SKIPPED, False),
    ],
)
def test_cancel_outcome_ok_with_error(status: CancelStatus, ok: bool) -> None:
    assert _outcome(status, error=True).ok is ok


def test_cancel_outcome_equality_ignores_error() -> None:
    assert _outcome(CancelStatus.FAILED) == _outcome(CancelStatus.FAILED, error=True)


def test_the_fast_queued_outcome_is_the_constructor_s() -> None:
    """``queued_outcome`` (every accepted cancel of a burst) makes what the constructor makes,
    every field set (one it forgot would raise ``AttributeError`` here)."""
    made = queued_outcome(5, 1, 0.01, None, b'{"payload":{}}')
    built = CancelOutcome(
        order_id=5,
        status=CancelStatus.QUEUED,
        attempts=1,
        elapsed=0.01,
        echo=None,
        echo_payload=b'{"payload":{}}',
    )
    assert type(made) is CancelOutcome
    assert {f.name: getattr(made, f.name) for f in attrs.fields(CancelOutcome)} == {
        f.name: getattr(built, f.name) for f in attrs.fields(CancelOutcome)
    }
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert made.ok and made.order is None


def test_token_pair_repr_hides_tokens() -> None:
    access = make_jwt(1_900_000_000)
    pair = TokenPair(access, "refresh-secret", datetime(2030, 1, 1, tzinfo=timezone.utc))
    text = repr(pair)
    assert access not in text
    assert "refresh-secret" not in text
    assert "2030" in text
    assert pair.access == access
    assert pair.refresh == "refresh-secret"


def test_trade_decimals_are_exact() -> None:
    order = structure_order(
        order_payload(trades=[{"id": 1, "price": "0.009000000000000001", "amount": 0.1, "side": "sell"}])
    )
    (trade,) = order.trades
    assert trade.price == Decimal("0.009000000000000001")
    assert trade.amount == Decimal("0.1")
    assert trade.side is Side.SELL
