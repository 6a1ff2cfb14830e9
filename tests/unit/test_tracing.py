"""mojaflow/tracing.py on its own: what a span keeps of a URL, an error and headers; off costs nothing; on, the
real OTLP exporter reaches `OTEL_EXPORTER_OTLP_ENDPOINT`."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import httpx
from opentelemetry import trace
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import Status, StatusCode

from mojaflow.settings import Settings
from mojaflow.tracing import Tracing, redact
from tests.support.otlp_receiver import otlp_receiver
from tests.support.stack import ROOT

PARTY = "25612398765"


def test_redact_names_every_id_of_a_party_or_account_path_by_its_parameter() -> None:
    assert redact(f"GET /parties/MSISDN/{PARTY}") == "GET /parties/{idType}/{idValue}"
    assert redact(f"http://cbs/parties/MSISDN/{PARTY}/7") == "http://cbs/parties/{idType}/{idValue}/{idSubValue}"
    assert redact("http://cbs/accounts/acc-0001") == "http://cbs/accounts/{id}"
    assert redact(f"DELETE /accounts/MSISDN/{PARTY}") == "DELETE /accounts/{idType}/{idValue}"
    assert redact("GET /parties/{idType}/{idValue}") == "GET /parties/{idType}/{idValue}"  # a route: as it is
    assert redact("PUT /transfers/3a350c27-59fe-480f-8850-8bfd14d06ecf") == (
        "PUT /transfers/3a350c27-59fe-480f-8850-8bfd14d06ecf"
    )  # transfer ids are no personal data, and they are what an operator looks for


def test_a_finished_span_keeps_no_party_id_query_credential_or_header() -> None:
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter, service_name="tests", batch=False)
    tracer = tracing.provider.get_tracer("tests")
    attributes = {
        "url.full": f"https://user:pw@cbs.example/parties/MSISDN/{PARTY}?name=Jane#top",
        "http.target": f"/parties/MSISDN/{PARTY}?name=Jane",
        "url.query": "name=Jane",
        "http.request.header.authorization": ("Bearer s3cr3t",),
        "http.response.header.set-cookie": ("session=s3cr3t",),
        "mojaflow.paths": (f"/accounts/{PARTY}", "/holds"),
        "http.status_code": 502,
    }
    with tracer.start_as_current_span(f"GET /parties/MSISDN/{PARTY}", attributes=attributes) as span:
        span.record_exception(ValueError(f"no answer for /parties/MSISDN/{PARTY}"))
        span.set_status(Status(StatusCode.ERROR, f"failed: /accounts/{PARTY}"))

    [finished] = exporter.get_finished_spans()
    assert finished.name == "GET /parties/{idType}/{idValue}"
    assert dict(finished.attributes or {}) == {
        "url.full": "https://cbs.example/parties/{idType}/{idValue}",
        "http.target": "/parties/{idType}/{idValue}",
        "mojaflow.paths": ("/accounts/{id}", "/holds"),
        "http.status_code": 502,
    }
    assert finished.status.description == "failed: /accounts/{id}"
    [event] = finished.events
    assert (event.attributes or {})["exception.message"] == "no answer for /parties/{idType}/{idValue}"
    assert PARTY not in str((event.attributes or {})["exception.stacktrace"])


def test_off_without_an_endpoint_and_then_nothing_of_the_sdk_is_even_loaded() -> None:
    """Off is the default: no provider, and the processes never import OpenTelemetry's SDK, its exporter, an
    instrumentation or temporalio's tracing interceptor (the API and the worker build nothing, wrap nothing)."""
    script = textwrap.dedent(
        """
        import sys
        import api.__main__, worker
        from mojaflow.settings import Settings
        from mojaflow.tracing import Tracing

        for endpoint in (None, ""):
            settings = Settings.model_validate({"OTEL_EXPORTER_OTLP_ENDPOINT": endpoint})
            assert Tracing.from_settings(settings, service_name="mojaflow-api") is None
        heavy = ("opentelemetry.sdk", "opentelemetry.exporter", "opentelemetry.instrumentation",
                 "temporalio.contrib.opentelemetry")
        print(sorted(name for name in sys.modules if name.startswith(heavy)))
        """
    )
    env = {"PATH": "/usr/bin:/bin"}  # no OTEL_* of this machine's environment
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=True
    )
    assert result.stdout.strip() == "[]"


def test_on_the_otlp_exporter_sends_redacted_spans_to_the_endpoint_under_the_service_name() -> None:
    with otlp_receiver() as receiver:
        settings = Settings.model_validate(
            {"OTEL_EXPORTER_OTLP_ENDPOINT": receiver.url + "/", "OTEL_SERVICE_NAME": "bank-connector"}
        )
        tracing = Tracing.from_settings(settings, service_name="mojaflow-api")
        assert tracing is not None
        with tracing.provider.get_tracer("tests").start_as_current_span(f"GET /parties/MSISDN/{PARTY}"):
            pass
        tracing.shutdown()  # exports what is buffered

        [span] = receiver.spans
    assert (span.service, span.name) == ("bank-connector", "GET /parties/{idType}/{idValue}")
    assert not any(PARTY.encode() in body for body in receiver.bodies)
    assert isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider)  # the global one never set


async def test_a_client_instrumented_origin_only_never_names_the_path_it_calls() -> None:
    """The webhook client's spans: a subscriber's URL path may be its secret (`/hooks/T0/B0/XXXX`)."""
    exporter = InMemorySpanExporter()
    tracing = Tracing(exporter, service_name="tests", batch=False)
    with otlp_receiver() as peer:  # any HTTP server on 127.0.0.1 will do: it answers this path 404
        async with httpx.AsyncClient() as webhooks, httpx.AsyncClient() as cbs:
            tracing.instrument_client(webhooks, origin_only=True)
            tracing.instrument_client(cbs)
            await webhooks.post(f"{peer.url.replace('://', '://user:pw@')}/hooks/T0/B0/s3cr3tpath?sig=abc", json={})
            await cbs.post(f"{peer.url}/holds/h-1/commit?x=1")

    webhook, cbs_call = exporter.get_finished_spans()
    assert (webhook.attributes or {})["http.url"] == peer.url
    assert (cbs_call.attributes or {})["http.url"] == f"{peer.url}/holds/h-1/commit"
    assert "s3cr3tpath" not in str(webhook.attributes) and "pw" not in str(webhook.attributes)
