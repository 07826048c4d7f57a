"""A session used and never closed warns as aiohttp's ``ClientSession`` does: a ``ResourceWarning``
naming the session and where it was created (issue 30, item 7)."""

from __future__ import annotations

import asyncio
import gc
import sys
import warnings
from collections.abc import Callable, Iterator

import httpx
import pytest

from tanx_async import AsyncTanxSession
from tests.sandbox import Sandbox, running_sandbox

HERE = __file__


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=3) as sandbox:
        yield sandbox


def collected(body: Callable[[], None]) -> list[warnings.WarningMessage]:
    """Run ``body``, collect the garbage, and return the session warnings given meanwhile."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        body()
        gc.collect()
    # (Python's own "unclosed transport" warnings for the sockets are not ours.)
    return [w for w in caught if "AsyncTanxSession" in str(w.message)]


def line_of(marker: str) -> int:
    """The line of this file that holds ``marker`` (where a test creates its session)."""
    with open(HERE, encoding="utf-8") as f:
        return next(i for i, text in enumerate(f, 1) if marker in text and "line_of" not in text)


def test_a_used_session_never_closed_warns_with_where_it_was_created(sandbox: Sandbox) -> None:
    async def leak() -> None:
        session = AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access)  # LEAK-1
        await session.orders.list()

    (warning,) = collected(lambda: asyncio.run(leak()))
    assert warning.category is ResourceWarning
    text = str(warning.message)
    assert text.startswith(f"unclosed <AsyncTanxSession {sandbox.server.url}> created at ")
    assert f"{HERE}:{line_of('# LEAK-1')}" in text
    assert "aclose()" in text
    assert sandbox.access not in text and sandbox.refresh not in text  # no secret in it
    assert "most recent call last" not in text  # no traceback outside debug mode


def test_in_debug_mode_the_creating_stack_is_shown_too(sandbox: Sandbox) -> None:
    async def leak() -> None:
        session = AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access)  # LEAK-2
        await session.orders.list()

    (warning,) = collected(lambda: asyncio.run(leak(), debug=True))
    text = str(warning.message)
    assert f"{HERE}:{line_of('# LEAK-2')}" in text
    stack = text.split("created at (most recent call last):\n", 1)[1]
    assert f'File "{HERE}", line {line_of("# LEAK-2")}, in leak' in stack
    assert "asyncio.run(leak(), debug=True)" in stack  # the frames that led there as well


def test_no_warning_for_a_closed_an_unused_or_a_borrowed_session(sandbox: Sandbox) -> None:
    async def fine() -> None:
        async with AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access) as s:
            await s.orders.list()
        closed = AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access)
        await closed.orders.list()
        await closed.aclose()
        AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access)  # never used
        # An http_client the caller owns: the session holds no connection of its own.
        async with httpx.AsyncClient() as client:
            borrowed = AsyncTanxSession(
                base_url=sandbox.server.url, access_token=sandbox.access, http_client=client
            )
            await borrowed.orders.list()
        with pytest.raises(ValueError, match="eth_address"):
            AsyncTanxSession(eth_address="0x" + "11" * 20)  # __init__ raised: nothing to warn about

    assert collected(lambda: asyncio.run(fine())) == []


def test_a_view_keeps_its_session_and_the_warning_comes_once(sandbox: Sandbox) -> None:
    views: list[AsyncTanxSession] = []

    async def use_a_view() -> None:
        # The session itself is dropped at once: its view still uses (and keeps) the pool.
        session = AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access)  # LEAK-3
        view = session.with_options(timeout=4)
        del session
        await view.orders.list()
        views.append(view)

    assert collected(lambda: asyncio.run(use_a_view())) == []  # the view is still alive
    (warning,) = collected(views.clear)
    assert f"{HERE}:{line_of('# LEAK-3')}" in str(warning.message)

    async def close_the_view() -> None:
        view = AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access).with_options(
            timeout=4
        )
        await view.orders.list()
        await view.aclose()  # closes the pool the session and its views share

    assert collected(lambda: asyncio.run(close_the_view())) == []


def test_the_warning_is_an_error_under_the_test_suite_filter(sandbox: Sandbox) -> None:
    """What makes a leaking test fail here: ``filterwarnings = error`` turns the warning into an
    exception in ``__del__``, which Python reports as unraisable."""
    seen: list[BaseException | None] = []

    async def leak() -> None:
        session = AsyncTanxSession(base_url=sandbox.server.url, access_token=sandbox.access)
        await session.orders.list()

    previous = sys.unraisablehook
    sys.unraisablehook = lambda info: seen.append(info.exc_value)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # (the sockets' own warnings)
            warnings.filterwarnings("error", message="unclosed <AsyncTanxSession")
            asyncio.run(leak())
            gc.collect()
    finally:
        sys.unraisablehook = previous
    assert [type(e) for e in seen] == [ResourceWarning]
