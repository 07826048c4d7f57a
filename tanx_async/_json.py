"""JSON in and out: orjson (a dependency for speed), with bytes on both sides."""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps", "loads"]


def loads(data: bytes | str) -> Any:
    """Parse JSON; raises ``ValueError`` (``orjson.JSONDecodeError`` is one) on bad input."""
    return orjson.loads(data)


def dumps(value: Any) -> bytes:
    return orjson.dumps(value)
