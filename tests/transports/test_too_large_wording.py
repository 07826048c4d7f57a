"""``ResponseTooLargeError`` says what happened in plain words (issue 34, item 10)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from tanx_async import ResponseTooLargeError
from tests.engine.test_unreadable_headers import IDS, TRANSPORTS, run_on, session_on
from tests.stub import Stub


@pytest.mark.parametrize("chunked", [False, True], ids=["length", "chunked"])
@pytest.mark.parametrize(("loop", "transport"), TRANSPORTS, ids=IDS)
def test_a_too_large_answer_says_so_in_plain_words(loop: str, transport: str, chunked: bool) -> None:
    body = json.dumps({"status": "success", "message": "", "payload": "x" * 8000}).encode()

    def answer(method: str, path: str, _: Any, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        return 200, ({"transfer-encoding": "chunked"} if chunked else {}), body

    async def main() -> None:
        async with (
            Stub(answer) as stub,
            session_on(stub, transport, max_response_bytes=1024, max_retries=0) as s,
        ):
            with pytest.raises(ResponseTooLargeError) as info:
                await s.orders.get(7)
        message = info.value.message
        assert "of more" not in message
        assert re.fullmatch(r"response body (of \d+ bytes )?exceeds max_response_bytes=1024", message), (
            message
        )

    run_on(loop, main)
