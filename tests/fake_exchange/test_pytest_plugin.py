"""The pytest plugin (``pytest11`` entry point ``_tanx_async_pytest``): the ``tanx_sandbox``
fixture under pytest-asyncio and under anyio's plugin (asyncio and trio), its options, its errors.

The inner test files import nothing of the plugin: pytest finds it through the entry point.
"""

from __future__ import annotations

import textwrap

import pytest

pytest_plugins = ["pytester"]

INI = "[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings = error\n"
ASYNCIO_INI = (
    INI + "asyncio_default_fixture_loop_scope = function\nasyncio_default_test_loop_scope = function\n"
)

# Cancels every seeded order and checks the exchange's own state of each: the fixture's user,
# tokens, URL and session all have to be right for this to pass.
BODY = """
    async with tanx_sandbox.session() as session:
        outcomes = await session.orders.cancel_many(tanx_sandbox.order_ids, confirm=True)
    assert len(outcomes) == 3
    assert all(o.ok for o in outcomes), outcomes
    assert {tanx_sandbox.exchange.order(i).state for i in tanx_sandbox.order_ids} == {"cancel"}
    assert tanx_sandbox.url.startswith("http://127.0.0.1:")
    assert tanx_sandbox.access_token not in repr(tanx_sandbox)
    assert tanx_sandbox.refresh_token not in repr(tanx_sandbox)
"""


def write(pytester: pytest.Pytester, source: str, body: str = "", ini: str = ASYNCIO_INI) -> None:
    """The inner test file: ``source`` (dedented) followed by ``body`` (already indented)."""
    pytester.makeini(ini)
    pytester.makepyfile(test_inner=textwrap.dedent(source).rstrip() + body)


def test_pytest_asyncio(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import pytest

        @pytest.mark.asyncio
        @pytest.mark.tanx_sandbox(orders=3, cancel_delay=0)
        async def test_cancel(tanx_sandbox):
        """,
        BODY,
    )
    pytester.runpytest("-p", "no:anyio").assert_outcomes(passed=1)


def test_anyio_plugin_on_asyncio_and_trio(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import pytest

        @pytest.fixture(params=["asyncio", "trio"])
        def anyio_backend(request):
            return request.param

        @pytest.mark.anyio
        @pytest.mark.tanx_sandbox(orders=3)
        async def test_cancel(tanx_sandbox):
        """,
        BODY,
        ini=INI,
    )
    pytester.runpytest("-p", "no:asyncio").assert_outcomes(passed=2)


def test_options_marker_parametrize_and_faults(pytester: pytest.Pytester) -> None:
    write(
        pytester,
        """
        import pytest
        from tanx_async.testing import Faults

        pytestmark = pytest.mark.tanx_sandbox(seed=7, cancel_delay=0.5)

        def test_defaults_and_module_marker(tanx_sandbox):
            assert tanx_sandbox.order_ids == []
            assert tanx_sandbox.exchange.cancel_delay == 0.5
            assert tanx_sandbox.exchange.faults.seed == 7
            assert tanx_sandbox.uid in tanx_sandbox.exchange.decode_token(tanx_sandbox.access_token).values()

        @pytest.mark.tanx_sandbox(
            cancel_delay=0, profile="mixed", texts="random", faults={"error_rate": 1.0, "only_paths": ("/x",)}
        )
        def test_test_marker_wins_and_faults_dict(tanx_sandbox):
            faults = tanx_sandbox.exchange.faults
            assert tanx_sandbox.exchange.cancel_delay == 0
            assert (tanx_sandbox.exchange.profile, tanx_sandbox.exchange.texts) == ("mixed", "random")
            assert (faults.seed, faults.error_rate, faults.only_paths) == (7, 1.0, ("/x",))

        @pytest.mark.parametrize(
            "tanx_sandbox", [{"orders": 2}, {"orders": 1, "faults": Faults(latency=0.25)}], indirect=True
        )
        @pytest.mark.tanx_sandbox(orders=5)
        def test_parameter_wins(tanx_sandbox):
            assert len(tanx_sandbox.order_ids) in (1, 2)
            orders = tanx_sandbox.exchange.orders_of(tanx_sandbox.uid)
            assert [o.id for o in orders] == tanx_sandbox.order_ids
            assert {o.state for o in orders} == {"wait"}
            if len(tanx_sandbox.order_ids) == 1:
                assert tanx_sandbox.exchange.faults.latency == 0.25

        def test_server_stops_after_the_test(tanx_sandbox, request):
            request.config.stash.setdefault("servers", []).append(tanx_sandbox.server)

        def test_check_stopped(request):
            (server,) = request.config.stash["servers"]
            assert not server.running
        """.replace("stash.setdefault", "_tanx_servers.setdefault").replace(
            'stash["servers"]', '_tanx_servers["servers"]'
        ),
    )
    pytester.makeconftest("def pytest_configure(config):\n    config._tanx_servers = {}\n")
    pytester.runpytest("-p", "no:anyio").assert_outcomes(passed=6)


BAD_OPTIONS = {
    "@pytest.mark.tanx_sandbox(colour='x', sed=1)": "unknown option(s) colour, sed; the fixture takes *",
    "@pytest.mark.tanx_sandbox(1)": "options are keywords only",
    "@pytest.mark.tanx_sandbox(orders=-1)": "orders must be a non-negative int, got -1",
    "@pytest.mark.tanx_sandbox(faults=0.5)": "faults must be a Faults or a dict of its fields, got 0.5",
    "@pytest.mark.parametrize('tanx_sandbox', [3], indirect=True)": "* must be a dict of options, got 3",
}


def test_bad_options_are_clear_errors(pytester: pytest.Pytester) -> None:
    tests = (
        f"{decorator}\ndef test_{i}(tanx_sandbox):\n    pass\n" for i, decorator in enumerate(BAD_OPTIONS)
    )
    write(pytester, "import pytest\n\n" + "\n".join(tests))
    result = pytester.runpytest("-p", "no:anyio")
    result.assert_outcomes(errors=len(BAD_OPTIONS))
    for i, message in enumerate(BAD_OPTIONS.values()):
        result.stdout.fnmatch_lines(
            [f"*ERROR at setup of test_{i}*", f"E * TypeError: tanx_sandbox*{message}"]
        )


def test_entry_point_loads_without_importing_tanx_async(pytester: pytest.Pytester) -> None:
    """In a fresh interpreter: the plugin is registered (marker listed, fixture found) and
    pytest start-up imports nothing of tanx_async until a test uses the fixture."""
    pytester.makeini(ASYNCIO_INI)
    pytester.makeconftest(
        "import sys\n\nIMPORTED_AT_START = 'tanx_async' in sys.modules\n\n"
        "def pytest_report_header(config):\n    return f'tanx_async imported at start-up: {IMPORTED_AT_START}'\n"
    )
    pytester.makepyfile(
        test_inner="def test_uses_it(tanx_sandbox):\n    assert tanx_sandbox.exchange.orders_of(tanx_sandbox.uid) == []\n"
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["tanx_async imported at start-up: False"])
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(
        ["@pytest.mark.tanx_sandbox(seed=1, faults=None, orders=0, **exchange_options)*"]
    )
