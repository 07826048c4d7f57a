"""The sandbox's layout: ``SandboxExchange`` a façade over rooms, modules and functions sized for
one job, and the ASGI app and stream talking to the exchange through documented methods only.

Read with ``ast`` (nothing is run); each test names what it found.
"""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

import pytest

import tanx_async.testing
from tanx_async.testing import RequestRecord, SandboxExchange

TESTING = Path(tanx_async.testing.__file__).parent
MAX_MODULE_LINES = 700
MAX_FUNCTION_LINES = 100
#: The modules that serve requests against an exchange they are handed.
SERVING = ("_app.py", "_ws.py")


def _modules() -> list[Path]:
    return sorted(TESTING.glob("*.py"))


def _is_exchange(node: ast.expr) -> bool:
    """``exchange`` or ``<anything>.exchange``."""
    return (isinstance(node, ast.Name) and node.id == "exchange") or (
        isinstance(node, ast.Attribute) and node.attr == "exchange"
    )


def _exchange_uses(path: Path) -> list[tuple[int, list[str]]]:
    """Every ``exchange.a`` or ``exchange.a.b`` in a module: (line, [a] or [a, b])."""
    uses = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Attribute) and _is_exchange(node.value):
            uses.append((node.lineno, [node.attr]))
        elif (
            isinstance(node, ast.Attribute)
            and isinstance(node.value, ast.Attribute)
            and _is_exchange(node.value.value)
        ):
            uses.append((node.lineno, [node.value.attr, node.attr]))
    return uses


def test_no_sandbox_module_or_function_is_oversized() -> None:
    too_long = []
    for path in _modules():
        source = path.read_text()
        if (lines := len(source.splitlines())) > MAX_MODULE_LINES:
            too_long.append(f"{path.name}: {lines} lines")
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    too_long.append(f"{path.name}:{node.lineno} {node.name}: {length} lines")
    assert too_long == []


@pytest.mark.parametrize("name", SERVING)
def test_the_app_and_the_stream_use_no_private_member_of_the_exchange(name: str) -> None:
    uses = _exchange_uses(TESTING / name)
    assert uses, f"{name} no longer reaches the exchange as `exchange`: update this test"
    private = [
        f"{name}:{line} exchange.{'.'.join(chain)}" for line, chain in uses if chain[-1].startswith("_")
    ]
    assert private == []


@pytest.mark.parametrize("name", SERVING)
def test_what_the_app_and_the_stream_call_on_a_room_is_documented(name: str) -> None:
    """``exchange.<room>.<member>``: the room is one of the exchange's, the member exists on it
    and has its own docstring (or is a documented attribute of the room's class)."""
    exchange = SandboxExchange(seed=1)
    rooms = {"accounts", "answers", "book", "log"}
    undocumented = []
    for line, chain in _exchange_uses(TESTING / name):
        if len(chain) != 2 or chain[0] not in rooms:
            continue
        room = getattr(exchange, chain[0])
        member = getattr(type(room), chain[1], None)
        if member is not None and callable(member):
            if not inspect.getdoc(member):
                undocumented.append(f"{name}:{line} {'.'.join(chain)} has no docstring")
        elif chain[1] not in (inspect.getdoc(type(room)) or ""):
            undocumented.append(
                f"{name}:{line} {'.'.join(chain)} is not in {type(room).__name__}'s docstring"
            )
    assert undocumented == []


def test_the_exchange_is_a_facade_over_its_rooms() -> None:
    """The knobs live in the rooms: a change through the façade is seen by the room at once,
    and the other way round."""
    exchange = SandboxExchange(seed=1)
    exchange.cancel_delay = 0
    exchange.access_ttl = 7
    exchange.profile = "brine"
    exchange.markets["xyzusdt"] = ("xyz", "usdt")
    assert exchange.book.cancel_delay == 0 and exchange.accounts.access_ttl == 7
    assert exchange.answers.profile == "brine" and exchange.book.generator.markets["xyzusdt"] == (
        "xyz",
        "usdt",
    )
    record = RequestRecord(time=0.0, method="GET", path="/", query="", body=None, status=200, result="ok")
    exchange.log.record(record)
    assert exchange.requests == [record] and exchange.cancel_attempts(1) == []
    exchange.clear_requests()
    assert exchange.requests == [] and exchange.requests is exchange.log.requests
    with pytest.raises(ValueError, match="profile"):
        exchange.profile = "nope"  # type: ignore[assignment]
