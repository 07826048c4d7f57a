"""The models: open enums, order helpers, outcomes and token pairs."""

from __future__ import annotations

import json
import pickle
from datetime import datetime, timezone
from decimal import Decimal

import attrs
import cattrs
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
from tests.internals import CancelEcho, queued_outcome, structure_order


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


#: The documented fields of ``CancelOutcome``, in order: all its constructor takes, all that
#: ``attrs.asdict`` and cattrs show.
OUTCOME_FIELDS = ["order_id", "status", "order", "error", "attempts", "elapsed", "note"]


def test_cancel_outcome_shows_exactly_its_documented_fields() -> None:
    assert [f.name for f in attrs.fields(CancelOutcome)] == OUTCOME_FIELDS
    assert [f.alias for f in attrs.fields(CancelOutcome)] == OUTCOME_FIELDS
    with pytest.raises(TypeError):
        CancelOutcome(order_id=1, status=CancelStatus.QUEUED, echo=None)  # type: ignore[call-arg]


@pytest.mark.parametrize("with_error", [False, True], ids=["no-error", "error"])
@pytest.mark.parametrize("with_order", [False, True], ids=["no-order", "order"])
@pytest.mark.parametrize("status", list(CancelStatus))
def test_cancel_outcome_is_plain_data(status: CancelStatus, with_order: bool, with_error: bool) -> None:
    """Every outcome serialises the way users log it: ``attrs.asdict`` and a plain cattrs
    converter give the documented fields and nothing else, with the order's own fields."""
    order = structure_order(order_payload(state="cancel")) if with_order else None
    error = BadRequestError("no", status_code=400, body={}, response=None) if with_error else None
    outcome = CancelOutcome(
        order_id=7, status=status, order=order, error=error, attempts=2, elapsed=0.5, note="n"
    )
    as_dict = attrs.asdict(outcome)
    assert list(as_dict) == OUTCOME_FIELDS
    assert as_dict["status"] is status and as_dict["error"] is error
    assert as_dict["order"] == (attrs.asdict(order) if order is not None else None)

    plain = cattrs.Converter().unstructure(outcome)
    assert list(plain) == OUTCOME_FIELDS
    assert plain["order_id"] == 7 and plain["status"] == status.value
    assert (plain["attempts"], plain["elapsed"], plain["note"]) == (2, 0.5, "n")
    assert plain["error"] is error
    if order is None:
        assert plain["order"] is None
    else:
        assert plain["order"]["id"] == order.id and plain["order"]["state"] == "cancel"
        assert isinstance(plain["order"]["price"], Decimal)  # the plain converter keeps Decimals


def test_the_fast_queued_outcome_is_the_constructor_s() -> None:
    """``queued_outcome`` (every accepted cancel of a burst) makes what the constructor makes,
    every field set (one it forgot would raise ``AttributeError`` here)."""
    made = queued_outcome(5, 1, 0.01, None)
    built = CancelOutcome(order_id=5, status=CancelStatus.QUEUED, attempts=1, elapsed=0.01)
    assert type(made) is CancelOutcome
    assert attrs.asdict(made) == attrs.asdict(built)
    assert made == built and hash(made) == hash(built) and repr(made) == repr(built)
    assert made.ok and made.order is None


def _echoed(payload: object) -> CancelOutcome:
    """An accepted cancel's outcome as a burst makes it: the echo kept as the answer's bytes."""
    content = json.dumps({"status": "success", "message": "queued", "payload": payload}).encode()
    return queued_outcome(ORDER_ID, 1, 0.01, CancelEcho(content))


ORDER_ID = order_payload()["id"]


@pytest.mark.parametrize("read", ["attribute", "asdict", "cattrs", "pickle", "evolve"])
def test_an_echo_decoded_on_first_read_is_plain_data_to_every_reader(read: str) -> None:
    """The echo is decoded when ``order`` is first read, by whatever reads it: the outcome shows
    only its documented fields, ``order`` among them as a decoded ``Order``, never the bytes."""
    outcome = _echoed(order_payload())
    if read == "attribute":
        order = outcome.order
    elif read == "asdict":
        as_dict = attrs.asdict(outcome, recurse=False)
        assert list(as_dict) == OUTCOME_FIELDS
        order = as_dict["order"]
    elif read == "cattrs":
        plain = cattrs.Converter().unstructure(outcome)
        assert list(plain) == OUTCOME_FIELDS and plain["order"]["id"] == ORDER_ID
        order = outcome.order
    elif read == "pickle":
        order = pickle.loads(pickle.dumps(outcome)).order
    else:
        order = attrs.evolve(outcome, note="x").order
    assert isinstance(order, Order) and order.id == ORDER_ID
    assert outcome.order is outcome.order  # decoded once, then kept
    assert outcome == CancelOutcome(order_id=ORDER_ID, status=CancelStatus.QUEUED, attempts=1, elapsed=0.01)


def test_an_echo_that_does_not_decode_reads_as_none() -> None:
    outcome = _echoed({"id": ORDER_ID, "side": 5})
    assert outcome.order is None and attrs.asdict(outcome)["order"] is None
    assert outcome.ok


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
