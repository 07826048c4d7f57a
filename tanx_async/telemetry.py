"""OpenTelemetry spans and metrics for a session (the ``otel`` extra: ``opentelemetry-api``).

    from tanx_async.telemetry import instrument

    async with AsyncTanxSession(...) as session:
        instrument(session)  # the global tracer and meter providers, or pass your own

Follows OpenTelemetry's HTTP client semantic conventions: one ``CLIENT`` span per HTTP attempt
(``http.request.method``, ``server.address``, ``server.port``, ``url.full`` and ``url.path``
without the query, ``url.template``, ``http.response.status_code``,
``http.request.resend_count``, ``error.type``), child of an ``INTERNAL`` span per operation
(``tanx.cancel``, ``tanx.cancel_many``, ``tanx.cancel_iter``, ``tanx.get``, ``tanx.list``,
``tanx.renewal``, ``tanx.stream.connect``); and the metrics listed in ``METRICS``. No attribute
ever holds a token, a signature, a query string or the stream's token-bearing URL.

``import tanx_async`` never imports this module (nor OpenTelemetry); an uninstrumented session
pays one attribute check at each hook.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable
from types import TracebackType
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from ._errors import MissingDependencyError

try:
    from opentelemetry import context as otel_context
    from opentelemetry import metrics, trace
    from opentelemetry.trace import SpanKind, Status, StatusCode
except ImportError as exc:  # pragma: no cover - the extra is missing
    raise MissingDependencyError(
        "tanx_async.telemetry needs OpenTelemetry: pip install 'tanx-async[otel]'"
    ) from exc

from . import __version__

if TYPE_CHECKING:
    from ._session import AsyncTanxSession
    from .events import RequestEvent
    from .models import CancelOutcome

__all__ = ["METRICS", "Telemetry", "instrument", "uninstrument"]

#: The metrics recorded, by name: (instrument, unit, what).
METRICS: dict[str, tuple[str, str, str]] = {
    "http.client.request.duration": ("histogram", "s", "each HTTP attempt, answered or not"),
    "tanx.cancel.outcomes": ("counter", "{order}", "cancel outcomes, by tanx.cancel.status"),
    "tanx.cancel.confirmation.duration": (
        "histogram",
        "s",
        "from a cancel's first attempt to the exchange reporting the order cancelled",
    ),
    "tanx.token.renewals": ("counter", "{renewal}", "token refreshes and logins, by kind and result"),
    "tanx.rate_limit.pauses": ("counter", "{pause}", "429 answers (each pauses the whole session)"),
    "tanx.stream.gaps": ("counter", "{gap}", "private stream gaps, by tanx.stream.gap.reason"),
    "tanx.stream.reconnects": ("counter", "{connection}", "private stream reconnections"),
    "tanx.limiter.wait": (
        "histogram",
        "s",
        "waits for a request slot (tanx.limiter.kind concurrency) or the rate limit (rate)",
    ),
}

# The HTTP client duration buckets the semantic conventions advise.
_DURATION_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 7.5, 10.0)
_SHORT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


_ORDER_ID = re.compile(r"(?<=/)\d+(?=/|$)")


def url_template(path: str) -> str:
    """``path`` with its numeric segments (order ids) as ``{order_id}``: low cardinality."""
    return _ORDER_ID.sub("{order_id}", path)


class _Operation:
    """One operation's span, current while the block runs (``Instrumentation.operation``)."""

    __slots__ = ("_kind", "_name", "_span", "_telemetry", "_token", "counts")

    def __init__(self, telemetry: Telemetry, name: str, attributes: dict[str, Any]) -> None:
        self._telemetry = telemetry
        self._name = name
        self._kind = "login" if attributes.get("login") else "refresh"
        self._span = telemetry.tracer.start_span(
            "tanx." + name,
            kind=SpanKind.INTERNAL,
            attributes={"tanx." + key: value for key, value in attributes.items()},
            record_exception=False,
            set_status_on_exception=False,
        )
        self._token: object = None
        self.counts: Counter[str] = Counter()

    def __enter__(self) -> _Operation:
        self._token = otel_context.attach(trace.set_span_in_context(self._span))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        otel_context.detach(self._token)  # type: ignore[arg-type]
        self.end(exc)

    def end(self, exc: BaseException | None) -> None:
        span = self._span
        for status, count in self.counts.items():
            span.set_attribute("tanx.batch.outcome." + status, count)
        if exc is not None:
            # The class name only: a message could quote more than a desk wants in a trace store.
            span.set_attribute("error.type", type(exc).__qualname__)
            span.set_status(Status(StatusCode.ERROR, type(exc).__qualname__))
        if self._name == "renewal":
            self._telemetry.renewals.add(
                1, {"tanx.renewal.kind": self._kind, "tanx.renewal.result": "ok" if exc is None else "error"}
            )
        span.end()

    def set(self, key: str, value: str | int | float | bool) -> None:
        self._span.set_attribute("tanx." + key, value)

    def outcomes(self, outcomes: Iterable[CancelOutcome]) -> None:
        telemetry = self._telemetry
        counts: Counter[str] = Counter()
        for outcome in outcomes:
            status = outcome.status.value
            counts[status] += 1
            if status == "cancelled":
                telemetry.confirmed(self._name, outcome.elapsed)
            if self._name == "cancel" and not outcome.ok:
                # One order's cancel failed: the operation says so, whether or not it raises.
                self._span.set_attribute("error.type", status)
                self._span.set_status(Status(StatusCode.ERROR, status))
        # One add per status, not per order: a batch of 500 costs a handful of adds.
        for status, count in counts.items():
            telemetry.cancel_outcomes.add(count, telemetry.outcome_attributes(self._name, status))
        self.counts.update(counts)


class Telemetry:
    """The instrumentation ``instrument`` attaches to a session (``_instrument.Instrumentation``)."""

    def __init__(
        self,
        base_url: str,
        *,
        tracer_provider: trace.TracerProvider | None = None,
        meter_provider: metrics.MeterProvider | None = None,
    ) -> None:
        self.tracer = trace.get_tracer("tanx_async", __version__, tracer_provider=tracer_provider)
        meter = metrics.get_meter("tanx_async", __version__, meter_provider=meter_provider)
        parts = urlsplit(base_url)
        self._origin = f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}"
        port = parts.port or (443 if parts.scheme == "https" else 80)
        self._server: dict[str, Any] = {"server.address": parts.hostname or "", "server.port": port}
        self.duration = meter.create_histogram(
            "http.client.request.duration",
            unit="s",
            description="Duration of HTTP client requests (each attempt).",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.cancel_outcomes = meter.create_counter(
            "tanx.cancel.outcomes", unit="{order}", description="Cancel outcomes, by status."
        )
        self.confirmation = meter.create_histogram(
            "tanx.cancel.confirmation.duration",
            unit="s",
            description="From a cancel's first attempt to the exchange reporting the order cancelled.",
            explicit_bucket_boundaries_advisory=_DURATION_BUCKETS,
        )
        self.renewals = meter.create_counter(
            "tanx.token.renewals", unit="{renewal}", description="Token refreshes and logins."
        )
        self.pauses = meter.create_counter(
            "tanx.rate_limit.pauses", unit="{pause}", description="429 answers; each pauses the session."
        )
        self.gaps = meter.create_counter(
            "tanx.stream.gaps", unit="{gap}", description="Private stream gaps (updates may be missed)."
        )
        self.reconnects = meter.create_counter(
            "tanx.stream.reconnects", unit="{connection}", description="Private stream reconnections."
        )
        self.limiter_wait = meter.create_histogram(
            "tanx.limiter.wait",
            unit="s",
            description="Waits for a request slot or the rate limit.",
            explicit_bucket_boundaries_advisory=_SHORT_BUCKETS,
        )
        #: Metric attribute sets, built once per (method, template, status, error), and the span
        #: attributes with them for paths without an order id.
        self._attribute_sets: dict[tuple[str, str, int | None, str | None], dict[str, Any]] = {}
        self._span_sets: dict[tuple[str, str, int | None, str | None], dict[str, Any]] = {}
        self._templates: dict[str, str] = {}
        self._outcome_sets: dict[tuple[str, str], dict[str, Any]] = {}

    # -- the hooks (``_instrument.Instrumentation``) ---------------------------------------------

    def operation(self, name: str, attributes: dict[str, Any]) -> _Operation:
        return _Operation(self, name, attributes)

    def parent(self) -> object:
        return otel_context.get_current()

    def attempt(
        self,
        method: str,
        path: str,
        status: int | None,
        elapsed: float,
        attempt: int,
        error: str | None,
        parent: object,
    ) -> None:
        template = self._templates.get(path)
        if template is None:
            template = url_template(path)
            if template == path and len(self._templates) < 64:  # the fixed paths, not order ids
                self._templates[path] = template
        key = (method, template, status, error)
        metric_attributes = self._attribute_sets.get(key)
        if metric_attributes is None:
            metric_attributes = {"http.request.method": method, **self._server, "url.template": template}
            if status is not None:
                metric_attributes["http.response.status_code"] = status
            if error is not None:
                metric_attributes["error.type"] = error
            if len(self._attribute_sets) >= 256:
                self._attribute_sets.clear()
            self._attribute_sets[key] = metric_attributes
        self.duration.record(elapsed, metric_attributes)
        if status == 429:
            self.pauses.add(1, self._server)
        end = time.time_ns()
        attributes = self._span_sets.get(key) if template == path else None
        if attributes is None:
            attributes = {**metric_attributes, "url.path": path, "url.full": self._origin + path}
            if template == path and len(self._span_sets) < 256:
                self._span_sets[key] = attributes
        if attempt:
            attributes = {**attributes, "http.request.resend_count": attempt}
        span = self.tracer.start_span(
            f"{method} {template}",
            context=parent,  # type: ignore[arg-type]  # a Context from ``parent()``, or None: current
            kind=SpanKind.CLIENT,
            attributes=attributes,
            start_time=end - int(elapsed * 1e9),
        )
        if error is not None:
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end)

    def waited(self, kind: str, seconds: float) -> None:
        self.limiter_wait.record(seconds, {"tanx.limiter.kind": kind})

    def event(self, event: RequestEvent) -> None:
        kind = event.kind
        if kind == "stream_gap":
            self.gaps.add(1, {"tanx.stream.gap.reason": event.error or ""})
        elif kind == "stream_open" and event.attempt > 1:
            self.reconnects.add(1)

    def outcome_attributes(self, operation: str, status: str) -> dict[str, Any]:
        key = (operation, status)
        attributes = self._outcome_sets.get(key)
        if attributes is None:
            attributes = self._outcome_sets[key] = {"tanx.cancel.status": status, "tanx.operation": operation}
        return attributes

    def confirmed(self, operation: str, elapsed: float) -> None:
        self.confirmation.record(elapsed, {"tanx.operation": operation})


def instrument(
    session: AsyncTanxSession,
    *,
    tracer_provider: trace.TracerProvider | None = None,
    meter_provider: metrics.MeterProvider | None = None,
) -> Telemetry:
    """Record spans and metrics for ``session`` and every ``with_options`` view of it (they share
    its pipeline), with the given providers or OpenTelemetry's global ones. Replaces an earlier
    ``instrument`` of the same session."""
    telemetry = Telemetry(session.base_url, tracer_provider=tracer_provider, meter_provider=meter_provider)
    session._pipeline.instrumentation = telemetry
    return telemetry


def uninstrument(session: AsyncTanxSession) -> None:
    """Stop recording for ``session``: back to one attribute check per hook."""
    session._pipeline.instrumentation = None
