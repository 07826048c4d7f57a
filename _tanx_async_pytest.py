"""The pytest plugin of tanx-async: the ``tanx_sandbox`` fixture and marker.

Registered through the ``pytest11`` entry point, so pytest loads it wherever tanx-async is
installed. It sits outside the ``tanx_async`` package and imports nothing of it at load time
(the fixture imports ``tanx_async.testing`` when a test first asks for it), so pytest start-up
stays cheap and coverage of a project's own tanx-async code is not disturbed.
See ``tanx_async.testing.TanxSandbox`` and the docs' testing page.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from tanx_async.testing import TanxSandbox

MARKER = (
    "tanx_sandbox(seed=1, faults=None, orders=0, **exchange_options): options of the tanx_sandbox "
    "fixture (a loopback tanX sandbox exchange); other options go to SandboxExchange(...)"
)


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", MARKER)


@pytest.fixture
def tanx_sandbox(request: pytest.FixtureRequest) -> Iterator[TanxSandbox]:
    """A running loopback tanX sandbox with a user and tokens (``tanx_async.testing.TanxSandbox``).

    Options: ``@pytest.mark.tanx_sandbox(...)`` on the test (or its class or module), or
    ``@pytest.mark.parametrize("tanx_sandbox", [{...}], indirect=True)``; a parameter wins.
    """
    from tanx_async.testing._fixture import running_sandbox

    options: dict[str, Any] = {}
    for marker in reversed(list(request.node.iter_markers("tanx_sandbox"))):
        if marker.args:
            raise TypeError("tanx_sandbox marker: options are keywords only")
        options.update(marker.kwargs)
    param = getattr(request, "param", None)
    if param is not None:
        if not isinstance(param, dict):
            raise TypeError(f"tanx_sandbox parameter must be a dict of options, got {param!r}")
        options.update(param)
    with running_sandbox(options) as sandbox:
        yield sandbox
