"""OpenTelemetry traces (mojaflow/tracing.py): one trace per transfer, from the CBS's `POST /transfers` through the
workflow to the SDK calls of its activities, and no personal data in any span."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from tests.conftest import Stack
from tests.support.otlp_receiver import ReceivedSpan, otlp_receiver
from tests.support.traced_stack import traced_stack
from tests.support.transfers import money_movement_headers, new_payer, transfer_body


def _url(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("url.full") or attributes.get("http.url") or "")


def _method(span: ReadableSpan) -> str:
    attributes = span.attributes or {}
    return str(attributes.get("http.request.method") or attributes.get("http.method") or "")


async def _spans_until(
    exporter: InMemorySpanExporter, done: Callable[[Sequence[ReadableSpan]], bool], timeout_s: float = 10
) -> Sequence[ReadableSpan]:
    """The finished spans, once `done(spans)` holds (a server span ends just after its response left)."""
    deadline = time.monotonic() + timeout_s
    while True:
        spans = exporter.get_finished_spans()
        if done(spans) or time.monotonic() > deadline:
            return spans
        await asyncio.sleep(0.05)


def _everything_said(span: ReadableSpan) -> str:
    """A span's name, attribute values, status and events: everything an exporter sends of it."""
    parts = [span.name, span.status.description or ""]
    for attributes in (span.attributes, *(event.attributes for event in span.events)):
        parts += [f"{key}={value}" for key, value in (attributes or {}).items()]
    parts += [event.name for event in span.events]
    return "\n".join(parts)


# The workflows' spans are made inside the workflow: unsandboxed as deployed, and in the sandbox (which the replay
# tests use, and MOJAFLOW_WORKFLOW_SANDBOX turns on), where OpenTelemetry must be passed through
@pytest.mark.parametrize("sandbox", ["false", "true"])
async def test_one_trace_spans_the_api_request_the_workflow_and_the_sdk_calls_with_no_party_id(
    stack: Stack, http: httpx.AsyncClient, sandbox: str
) -> None:
    payer, payer_account = await new_payer(http, stack.cbs_url)
    payee = f"2568{uuid.uuid4().int % 10**7:07d}"
    async with traced_stack(stack, MOJAFLOW_WORKFLOW_SANDBOX=sandbox) as traced:
        for probe in ("/", "/health", "/ready"):  # answered, and not traced
            assert (await http.get(f"{traced.api_url}{probe}")).status_code in (200, 503)
        response = await http.post(
            f"{traced.api_url}/transfers",
            json=transfer_body(payer=payer, payee=payee),
            headers=money_movement_headers(),
        )
        assert response.status_code == 201, response.text
        assert response.json()["currentState"] == "COMPLETED"
        # the SDK asks our backend API for a party of ours: a server span, and the CBS lookup behind it
        lookup = await http.get(f"{traced.backend_url}/parties/MSISDN/{payer}")
        assert lookup.status_code == 200, lookup.text

        def both_requests_ended(spans: Sequence[ReadableSpan]) -> bool:
            names = {span.name for span in spans if span.kind == SpanKind.SERVER}
            return {"POST /transfers", "GET /parties/{idType}/{idValue}"} <= names

        spans = await _spans_until(traced.exporter, both_requests_ended)

    assert not [span.name for span in spans if span.name in ("GET /", "GET /health", "GET /ready")]
    [request] = [span for span in spans if span.name == "POST /transfers" and span.kind == SpanKind.SERVER]
    assert request.context is not None
    trace = [span for span in spans if span.context is not None and span.context.trace_id == request.context.trace_id]
    names = {span.name for span in trace}
    assert names & {"StartWorkflow:OutboundTransferWorkflow", "StartUpdateWithStartWorkflow:OutboundTransferWorkflow"}
    assert "RunWorkflow:OutboundTransferWorkflow" in names
    assert {"RunActivity:request_party", "RunActivity:resolve_payer", "RunActivity:hold_funds"} <= names, names
    sdk_calls = [span for span in trace if span.kind == SpanKind.CLIENT and _url(span).startswith(stack.sdk_url)]
    # the party lookup (POST), accepting the party and the quote (PUTs): each a span of its activity
    assert sorted(_method(span) for span in sdk_calls) == ["POST", "PUT", "PUT"], [_url(s) for s in sdk_calls]
    by_id = {span.context.span_id: span for span in trace if span.context is not None}
    for call in sdk_calls:
        assert call.parent is not None and by_id[call.parent.span_id].name.startswith("RunActivity:")

    # The payer's lookup at the CBS, outbound (resolve_payer) and for the backend API, redacted in both
    cbs_lookups = [span for span in spans if span.kind == SpanKind.CLIENT and "/parties/" in _url(span)]
    assert len(cbs_lookups) == 2
    assert all(_url(span) == f"{stack.cbs_url}/parties/{{idType}}/{{idValue}}" for span in cbs_lookups)
    [backend] = [span for span in spans if span.name == "GET /parties/{idType}/{idValue}"]
    assert "/parties/{idType}/{idValue}" in _everything_said(backend)

    said = "\n".join(_everything_said(span) for span in spans)
    for personal in (payer, payee, payer_account, "Test Payer", "Test Payee"):
        assert personal not in said


async def test_the_api_and_worker_processes_export_one_trace_by_otlp_when_the_endpoint_is_set(
    stack: Stack, http: httpx.AsyncClient, tmp_path: Path
) -> None:
    """`python -m api` and `python worker.py` as deployed, with `OTEL_EXPORTER_OTLP_ENDPOINT`: their spans reach
    the collector, one trace across both processes, and no export carries a party id."""
    payer, payer_account = await new_payer(http, stack.cbs_url)
    payee = f"2568{uuid.uuid4().int % 10**7:07d}"
    with (
        otlp_receiver() as receiver,
        stack.sibling(tmp_path, OTEL_EXPORTER_OTLP_ENDPOINT=receiver.url, OTEL_BSP_SCHEDULE_DELAY="100") as traced,
    ):
        response = await http.post(
            f"{traced.api_url}/transfers",
            json=transfer_body(payer=payer, payee=payee),
            headers=money_movement_headers(),
        )
        assert response.status_code == 201, response.text
        lookup = await http.get(f"{traced.backend_url}/parties/MSISDN/{payer}")
        assert lookup.status_code == 200, lookup.text

        def transfer_traced(spans: list[ReceivedSpan]) -> bool:
            requests = [s for s in spans if s.name == "POST /transfers" and s.service == "mojaflow-api"]
            done = {(s.service, s.name, s.trace_id) for s in spans}
            return (
                bool(requests)
                and ("mojaflow-worker", "RunActivity:send_quote_acceptance", requests[0].trace_id) in done
            )

        spans = await asyncio.to_thread(receiver.wait_for, transfer_traced)
        spans = await asyncio.to_thread(
            receiver.wait_for, lambda spans: any(s.name == "GET /parties/{idType}/{idValue}" for s in spans)
        )

    [request] = [s for s in spans if s.name == "POST /transfers" and s.service == "mojaflow-api"]
    trace = [s for s in spans if s.trace_id == request.trace_id]
    assert {s.service for s in trace} == {"mojaflow-api", "mojaflow-worker"}
    sdk_calls = [
        s
        for s in trace
        if s.service == "mojaflow-worker" and s.attributes.get("http.url", "").startswith(stack.sdk_url)
    ]
    assert len(sdk_calls) == 3  # POST, PUT, PUT
    raw = b"".join(receiver.bodies)
    for personal in (payer, payee, payer_account, "Test Payer", "Test Payee"):
        assert personal.encode() not in raw
