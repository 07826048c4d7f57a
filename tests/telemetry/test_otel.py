"""OpenTelemetry spans and metrics (``tanx_async.telemetry``) against the sandbox exchange."""

from __future__ import annotations

import contextlib
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the OpenTelemetry SDK (dev extra) is not installed")

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import HistogramDataPoint, InMemoryMetricReader, NumberDataPoint
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tanx_async import AsyncTanxSession, CancelStatus, PrivateKeySigner, RateLimitError, StreamGap
from tanx_async.telemetry import instrument, uninstrument, url_template
from tanx_async.testing import SandboxExchange, SandboxServer
from tests.sandbox import BATCH_TRANSPORTS, Sandbox, running_sandbox

CANCEL_PATH = "/sapi/v1/orders/cancel/"


class Telemetry:
    """An in-memory tracer and meter provider pair, and readers of what they hold."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def finished(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.spans.get_finished_spans())

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for resource in data.resource_metrics:
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def close(self) -> None:
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


@pytest.fixture
def otel() -> Iterator[Telemetry]:
    telemetry = Telemetry()
    yield telemetry
    telemetry.close()


@pytest.fixture
def sandbox() -> Iterator[Sandbox]:
    with running_sandbox(seed=33, cancel_delay=0.01) as sb:
        yield sb


def secrets_in(spans: tuple[ReadableSpan, ...], otel: Telemetry, secrets: list[str]) -> list[str]:
    """Every span or metric attribute that contains one of ``secrets`` (name and where)."""
    found: list[str] = []
    values: list[tuple[str, object]] = []
    for span in spans:
        values.append((f"span {span.name!r} name", span.name))
        values.extend((f"span {span.name!r} {k}", v) for k, v in (span.attributes or {}).items())
        if span.status.description:
            values.append((f"span {span.name!r} status", span.status.description))
    data = otel.reader.get_metrics_data()
    assert data is not None
    for resource in data.resource_metrics:
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    values.extend(
                        (f"metric {metric.name} {k}", v) for k, v in (point.attributes or {}).items()
                    )
    for where, value in values:
        text = str(value)
        for secret in secrets:
            if secret and secret in text:
                found.append(where)
        if "?" in text or "auth_header" in text:
            found.append(f"{where} (a query string)")
    return found


@pytest.mark.parametrize("transport", BATCH_TRANSPORTS)
async def test_100_cancels_and_5_unknown_give_spans_outcomes_and_durations(
    sandbox: Sandbox, otel: Telemetry, transport: str
) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 100)
    unknown = [900_000_001 + i for i in range(5)]
    async with sandbox.session(transport=transport) as session:
        instrument(session, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        outcomes = await session.orders.cancel_many(ids + unknown)
        # A refresh and a stream connection: the renewal's and the stream's secrets are checked too.
        await session.refresh()
        async with session.stream() as stream:
            assert stream.connected
        # A listing with filters: its query string must not reach an attribute.
        await session.orders.list(market="btcusdc", state="cancel", limit=10)
        tokens = session.tokens
    assert tokens is not None
    assert Counter(o.status for o in outcomes) == {CancelStatus.QUEUED: 100, CancelStatus.NOT_FOUND: 5}

    spans = otel.finished()
    [batch] = [s for s in spans if s.name == "tanx.cancel_many"]
    client = [s for s in spans if s.kind is SpanKind.CLIENT]
    cancels_200 = [
        s
        for s in client
        if (s.attributes or {}).get("url.path") == CANCEL_PATH
        and (s.attributes or {}).get("http.response.status_code") == 200
    ]
    assert len(cancels_200) >= 100
    # Every cancel attempt is a child of the batch's span, whichever path sent it.
    cancel_spans = [s for s in client if (s.attributes or {}).get("url.path") == CANCEL_PATH]
    assert batch.context is not None
    assert {s.parent.span_id for s in cancel_spans if s.parent} == {batch.context.span_id}
    assert all(s.parent is not None for s in cancel_spans)
    for span in cancels_200:
        attributes = span.attributes or {}
        assert attributes["http.request.method"] == "POST"
        assert attributes["server.address"] == "127.0.0.1"
        assert attributes["url.template"] == CANCEL_PATH
    refused = [s for s in cancel_spans if (s.attributes or {}).get("http.response.status_code") == 404]
    assert len(refused) == 5
    assert {(s.attributes or {}).get("error.type") for s in refused} == {"404"}
    assert (batch.attributes or {})["tanx.batch_size"] == 105
    assert (batch.attributes or {})["tanx.batch.outcome.queued"] == 100
    assert (batch.attributes or {})["tanx.batch.outcome.not_found"] == 5
    assert [s.name for s in spans if s.name == "tanx.renewal"] == ["tanx.renewal"]
    assert any(s.name == "tanx.stream.connect" for s in spans)

    counted = {
        (p.attributes or {})["tanx.cancel.status"]: p.value
        for p in otel.points("tanx.cancel.outcomes")
        if isinstance(p, NumberDataPoint)
    }
    assert counted == {"queued": 100, "not_found": 5}
    durations = [p for p in otel.points("http.client.request.duration") if isinstance(p, HistogramDataPoint)]
    assert sum(p.count for p in durations) >= 100
    cancel_200 = [
        p
        for p in durations
        if (p.attributes or {}).get("url.template") == CANCEL_PATH
        and (p.attributes or {}).get("http.response.status_code") == 200
    ]
    assert sum(p.count for p in cancel_200) >= 100
    renewals = [p for p in otel.points("tanx.token.renewals") if isinstance(p, NumberDataPoint)]
    assert [(dict(p.attributes or {}), p.value) for p in renewals] == [
        ({"tanx.renewal.kind": "refresh", "tanx.renewal.result": "ok"}, 1)
    ]

    secrets = [s for s in (sandbox.access, sandbox.refresh, tokens.access, tokens.refresh) if s]
    assert secrets_in(spans, otel, secrets) == []


async def test_cancel_iter_is_one_operation_and_its_outcomes_are_counted(
    sandbox: Sandbox, otel: Telemetry
) -> None:
    ids = sandbox.exchange.seed_orders(sandbox.uid, 20)
    async with sandbox.session() as session:
        instrument(session, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        async with contextlib.aclosing(session.orders.cancel_iter([*ids, 900_000_001])) as outcomes:
            seen = [o.status async for o in outcomes]
    assert Counter(seen) == {CancelStatus.QUEUED: 20, CancelStatus.NOT_FOUND: 1}
    spans = otel.finished()
    [batch] = [s for s in spans if s.name == "tanx.cancel_iter"]
    assert (batch.attributes or {})["tanx.batch_size"] == 21
    assert batch.context is not None
    cancel_spans = [s for s in spans if (s.attributes or {}).get("url.path") == CANCEL_PATH]
    assert len(cancel_spans) == 21
    assert {s.parent.span_id for s in cancel_spans if s.parent} == {batch.context.span_id}


async def test_single_operations_are_spans_with_their_requests_as_children(
    sandbox: Sandbox, otel: Telemetry
) -> None:
    [oid] = sandbox.exchange.seed_orders(sandbox.uid, 1)
    async with sandbox.session() as session:
        instrument(session, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
        await session.orders.cancel(oid)
        await session.orders.get(oid)
        with pytest.raises(Exception, match="Order not found"):
            await session.orders.cancel(900_000_001)
        uninstrument(session)
        await session.orders.get(oid)  # not recorded
    spans = otel.finished()
    operations = [s for s in spans if s.kind is SpanKind.INTERNAL]
    assert [s.name for s in operations] == ["tanx.cancel", "tanx.get", "tanx.cancel"]
    assert (operations[2].attributes or {})["error.type"] == "not_found"
    for operation in operations:
        assert operation.context is not None
        children = [
            s for s in spans if s.parent is not None and s.parent.span_id == operation.context.span_id
        ]
        assert children, operation.name
        assert all(c.kind is SpanKind.CLIENT for c in children)
    counted = {
        (p.attributes or {})["tanx.cancel.status"]: p.value
        for p in otel.points("tanx.cancel.outcomes")
        if isinstance(p, NumberDataPoint)
    }
    assert counted == {"queued": 1, "not_found": 1}


def test_url_template_hides_order_ids() -> None:
    assert url_template("/sapi/v1/orders/123/") == "/sapi/v1/orders/{order_id}/"
    assert url_template("/sapi/v1/orders/cancel/") == "/sapi/v1/orders/cancel/"


def test_importing_the_library_imports_no_opentelemetry() -> None:
    code = (
        "import sys, tanx_async, tanx_async.testing, tanx_async.cli;"
        "bad = sorted(m for m in sys.modules if m.startswith('opentelemetry') or m == 'tanx_async.telemetry');"
        "print(bad); raise SystemExit(1 if bad else 0)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def counted(otel: Telemetry, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    """A counter's values by attribute set."""
    return {
        tuple(sorted((p.attributes or {}).items())): p.value
        for p in otel.points(name)
        if isinstance(p, NumberDataPoint)
    }


async def test_stream_gaps_reconnects_429_pauses_and_confirmation_times_are_recorded(otel: Telemetry) -> None:
    with running_sandbox(seed=37, cancel_delay=0.01) as sb:
        ids = sb.exchange.seed_orders(sb.uid, 10)
        async with sb.session(max_retries=0) as session:
            instrument(session, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
            outcomes = await session.orders.cancel_many(ids, confirm=True, confirm_with="stream")
            async with session.stream() as events:
                assert sb.exchange.ws.drop_all("close", 1012) == 1
                async for event in events:
                    if isinstance(event, StreamGap):
                        break
            sb.exchange.faults.rate_limit_rate = 1.0
            sb.exchange.faults.retry_after = 0.01
            with pytest.raises(RateLimitError):
                await session.orders.get(ids[0])
    assert {o.status for o in outcomes} == {CancelStatus.CANCELLED}
    confirmations = [
        p for p in otel.points("tanx.cancel.confirmation.duration") if isinstance(p, HistogramDataPoint)
    ]
    assert sum(p.count for p in confirmations) == 10
    assert counted(otel, "tanx.stream.gaps") == {(("tanx.stream.gap.reason", "reconnect"),): 1}
    assert sum(counted(otel, "tanx.stream.reconnects").values()) == 1
    assert sum(counted(otel, "tanx.rate_limit.pauses").values()) == 1
    spans = otel.finished()
    assert len([s for s in spans if s.name == "tanx.stream.connect"]) >= 3  # the batch's, ours, the reconnect


async def test_a_wallet_login_leaves_no_key_signature_or_token_in_any_attribute(otel: Telemetry) -> None:
    pytest.importorskip("eth_account", reason="the login extra (eth-account) is not installed")
    key = "0x" + "11" * 32
    inner = PrivateKeySigner(key)
    signatures: list[str] = []

    class Recording:
        """The wallet's signer, keeping every signature it made (to look for them)."""

        address = inner.address

        async def sign(self, message: str) -> str:
            signature = await inner.sign(message)
            signatures.append(signature)
            return signature

    exchange = SandboxExchange(seed=38)
    uid = exchange.create_user(inner.address)
    [oid] = exchange.seed_orders(uid, 1)
    with SandboxServer(exchange) as server:
        async with AsyncTanxSession(base_url=server.url, signer=Recording()) as session:
            instrument(session, tracer_provider=otel.tracer_provider, meter_provider=otel.meter_provider)
            await session.orders.cancel(oid)  # logs in first
            tokens = session.tokens
    assert tokens is not None and tokens.refresh is not None
    assert len(signatures) == 1
    spans = otel.finished()
    [renewal] = [s for s in spans if s.name == "tanx.renewal"]
    assert renewal.context is not None
    login_paths = {
        (s.attributes or {}).get("url.path")
        for s in spans
        if s.parent is not None and s.parent.span_id == renewal.context.span_id
    }
    assert len(login_paths) == 2  # the nonce and the login, both children of the renewal
    address = inner.address
    secrets = [tokens.access, tokens.refresh, key, key[2:], address, address.lower(), *signatures]
    secrets += [signature.removeprefix("0x")[:40] for signature in signatures]
    assert secrets_in(spans, otel, secrets) == []
