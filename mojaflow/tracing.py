"""OpenTelemetry traces across the hops: API request → workflow → activities → outbound HTTP (SDK, CBS, webhooks).

On when `OTEL_EXPORTER_OTLP_ENDPOINT` is set (OTLP over HTTP, protobuf: `<endpoint>/v1/traces`), off otherwise.
Off means nothing at all: `Tracing.from_settings` answers None, no interceptor, middleware or httpx hook is
installed, no tracer provider is made and the global one is never set (no OpenTelemetry module is even imported
here). On, every process builds its own `Tracing` and hands it explicitly to what it instruments:

- Temporal: `client_interceptors()` for `mojaflow.temporal.connect`; workers inherit them from the client
  (StartWorkflow / StartUpdateWithStartWorkflow in the API, RunWorkflow / StartActivity / RunActivity in workers).
- FastAPI: `instrument_app` (server spans named by route template, `POST /transfers`).
- httpx: `instrument_client` (client spans, the W3C `traceparent` header sent on).

Personal data never reaches a span: `/parties/{idType}/{idValue}[/{idSubValue}]` and `/accounts/...` paths are
redacted in every span name, attribute and event (exception messages too), query strings and URL credentials are
cut from URL attributes (the webhook client's spans keep only the receiver's origin: a subscriber's path may be its
secret), captured HTTP headers are dropped, and no body is ever recorded. The redaction runs on
the finished span, before any exporter sees it, so it holds for spans of any instrumentation. Workflow and activity
spans carry ids and types only, never payloads. Only the W3C trace context travels in Temporal headers (no
baggage): those headers are stored in workflow histories unencrypted.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from mojaflow.settings import Settings

if TYPE_CHECKING:
    import httpx
    from fastapi import FastAPI
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.util.types import Attributes
    from temporalio.client import Interceptor

__all__ = ["Tracing", "redact"]

# Probes and scrapes: frequent and uninteresting (regexes searched in the request's full URL; `GET /` is the health
# check of the Send Money and backend specs)
_UNTRACED_URLS = r"/health$,/ready$,/metrics$,^[a-z]+://[^/]+/$"

_PARTY_PATH = re.compile(r"/parties/[^/?#\s\"']+/[^/?#\s\"']+(/[^/?#\s\"']+)?")
_ACCOUNT_PATH = re.compile(r"/accounts/[^/?#\s\"']+(/[^/?#\s\"']+)?")
_CREDENTIALS = re.compile(r"(?<=://)[^/@\s]+@")
_URL_KEYS = frozenset({"http.url", "url.full", "http.target", "url.path"})
_DROPPED_KEYS = frozenset({"url.query"})
_DROPPED_PREFIXES = ("http.request.header.", "http.response.header.")


def redact(text: str) -> str:
    """`text` with party and account ids in URL paths replaced by their parameter names."""
    text = _PARTY_PATH.sub(lambda m: "/parties/{idType}/{idValue}" + ("/{idSubValue}" if m.group(1) else ""), text)
    return _ACCOUNT_PATH.sub(lambda m: "/accounts/{idType}/{idValue}" if m.group(1) else "/accounts/{id}", text)


def _redact_url(url: str) -> str:
    return redact(_CREDENTIALS.sub("", url.split("#", 1)[0].split("?", 1)[0]))


def _redacted_attributes(attributes: Attributes) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, value in (attributes or {}).items():
        if key in _DROPPED_KEYS or key.startswith(_DROPPED_PREFIXES):
            continue
        clean = _redact_url if key in _URL_KEYS else redact
        if isinstance(value, str):
            kept[key] = clean(value)
        elif isinstance(value, Sequence) and not isinstance(value, bytes | str):
            kept[key] = tuple(clean(v) if isinstance(v, str) else v for v in value)
        else:
            kept[key] = value
    return kept


def _redacted(span: ReadableSpan) -> ReadableSpan:
    """A copy of a finished span without personal data (see the module's docstring)."""
    from opentelemetry.sdk.trace import Event, ReadableSpan
    from opentelemetry.trace import Status

    description = span.status.description
    return ReadableSpan(
        name=redact(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=_redacted_attributes(span.attributes),
        events=[Event(e.name, _redacted_attributes(e.attributes), e.timestamp) for e in span.events],
        links=span.links,
        kind=span.kind,
        status=Status(span.status.status_code, redact(description) if description else None),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def _redacting_processor(inner: SpanProcessor) -> SpanProcessor:
    """A span processor handing `inner` (the exporting one) redacted copies of finished spans."""
    from opentelemetry.sdk.trace import SpanProcessor

    class Redacting(SpanProcessor):
        def on_start(self, span: Span, parent_context: Context | None = None) -> None:
            inner.on_start(span, parent_context)

        def on_end(self, span: ReadableSpan) -> None:
            inner.on_end(_redacted(span))

        def shutdown(self) -> None:
            inner.shutdown()

        def force_flush(self, timeout_millis: int = 30000) -> bool:
            return inner.force_flush(timeout_millis)

    return Redacting()


class Tracing:
    """One process's tracer provider and what it instruments with it. Build it with `from_settings` (OTLP), or
    with any exporter (tests: an in-memory one, `batch=False` to see each span as it ends)."""

    def __init__(self, exporter: SpanExporter, *, service_name: str, batch: bool = True) -> None:
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor

        self.provider: TracerProvider = TracerProvider(resource=Resource.create({"service.name": service_name}))
        exporting = BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter)
        self.provider.add_span_processor(_redacting_processor(exporting))

    @classmethod
    def from_settings(cls, settings: Settings, *, service_name: str) -> Tracing | None:
        """Tracing to `OTEL_EXPORTER_OTLP_ENDPOINT` (its `/v1/traces`), or None when it is not set. The service
        name is `OTEL_SERVICE_NAME` when set, else `service_name` (`mojaflow-api`, `mojaflow-worker`)."""
        if not settings.otel_exporter_otlp_endpoint:
            return None
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        endpoint = settings.otel_exporter_otlp_endpoint.rstrip("/") + "/v1/traces"
        return cls(OTLPSpanExporter(endpoint=endpoint), service_name=settings.otel_service_name or service_name)

    def client_interceptors(self) -> list[Interceptor]:
        """For `Client.connect`: spans of client calls, and (inherited by every worker of that client) of
        workflows and activities, their context carried in Temporal headers."""
        return [_tracing_interceptor(self.provider.get_tracer("mojaflow.temporal"))]

    def instrument_app(self, app: FastAPI) -> None:
        """Server spans for every request but the probes, named `METHOD /route/{template}`."""
        from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        FastAPIInstrumentor.instrument_app(
            app,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),  # metrics are Prometheus' business, not this module's
            excluded_urls=_UNTRACED_URLS,
            exclude_spans=["receive", "send"],  # one span per request, not one per ASGI message
        )

    def instrument_client(self, client: httpx.AsyncClient, *, origin_only: bool = False) -> None:
        """Client spans for every request `client` sends, and the trace context sent on in `traceparent`.
        `origin_only`: the spans name the server (scheme, host, port), never the path; for URLs of others' making
        (webhook subscribers), whose path may itself be a credential."""
        from opentelemetry.instrumentation.httpx import HTTPXClientInstrumentor
        from opentelemetry.metrics import NoOpMeterProvider

        HTTPXClientInstrumentor.instrument_client(
            client,
            tracer_provider=self.provider,
            meter_provider=NoOpMeterProvider(),
            request_hook=_origin_only if origin_only else None,
        )

    def shutdown(self) -> None:
        """Export what is still buffered, then stop (at the process's exit)."""
        self.provider.shutdown()


async def _origin_only(span: Any, request: Any) -> None:
    """httpx request hook: the span's URL attributes cut down to the origin."""
    attributes = getattr(span, "attributes", None) or {}
    for key in _URL_KEYS & set(attributes):
        url = str(attributes[key])
        scheme, _, rest = url.partition("://")
        span.set_attribute(key, f"{scheme}://{_CREDENTIALS.sub('', rest.split('/', 1)[0])}")


def _tracing_interceptor(tracer: Any) -> Interceptor:
    """temporalio's `TracingInterceptor` with a W3C trace-context-only propagator (no baggage into histories)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
    from temporalio.contrib.opentelemetry import TracingInterceptor, TracingWorkflowInboundInterceptor
    from temporalio.worker import WorkflowInterceptorClassInput

    propagator = TraceContextTextMapPropagator()

    class WorkflowInbound(TracingWorkflowInboundInterceptor):
        def __init__(self, next: Any) -> None:
            super().__init__(next)
            self.text_map_propagator = propagator

    class Interceptor(TracingInterceptor):
        def __init__(self) -> None:
            super().__init__(tracer)
            self.text_map_propagator = propagator

        def workflow_interceptor_class(
            self, input: WorkflowInterceptorClassInput
        ) -> type[TracingWorkflowInboundInterceptor]:
            super().workflow_interceptor_class(input)  # registers the extern function that ends workflow spans
            return WorkflowInbound

    return Interceptor()
