"""
Ship OpenTelemetry spans and OTel log records as sandbox events.

The script runs an embedded local gateway (``cse_bridge.testing``) and prints what
arrived there. With ``--use-env`` the producers ship to the gateway COMPUTESDK_* name
instead, as inside a sandbox, and read back with COMPUTESDK_API_KEY and SANDBOX_ID.

Without code changes, the same comes from ``opentelemetry-instrument`` with
``OTEL_TRACES_EXPORTER=computesdk_events OTEL_LOGS_EXPORTER=computesdk_events``.
"""

from __future__ import annotations

import logging
import os
import sys
from contextlib import ExitStack

from opentelemetry import trace
from opentelemetry._logs import SeverityNumber
from opentelemetry.sdk._logs import LoggerProvider
from opentelemetry.sdk._logs.export import SimpleLogRecordProcessor
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider

from cse_bridge import EventsClient
from cse_bridge.integrations.logging import EventsHandler
from cse_bridge.integrations.otel import EventsLogExporter, EventsSpanProcessor


def followed_sandbox() -> str:
    """With ``--use-env``: the sandbox COMPUTESDK_* and SANDBOX_ID name (on stderr)."""
    sandbox_id = os.environ.get("SANDBOX_ID", "")
    if not (os.environ.get("COMPUTESDK_ACCESS_TOKEN") and sandbox_id):
        sys.exit(
            "--use-env needs COMPUTESDK_ACCESS_TOKEN, COMPUTESDK_API_KEY, SANDBOX_ID"
        )
    url = os.environ.get("COMPUTESDK_GATEWAY_URL", "https://events.computesdk.com")
    print(f"--use-env: sandbox {sandbox_id} on {url}", file=sys.stderr)
    return sandbox_id


def main() -> None:
    """Trace a request with logs inside it, then print the events that arrived."""
    with ExitStack() as stack:
        if "--use-env" in sys.argv[1:]:
            sandbox_id = followed_sandbox()
        else:
            from cse_bridge.testing import capture_events

            sandbox_id = stack.enter_context(capture_events("example")).sandbox_id

        resource = Resource.create({"service.name": "example"})
        # Spans: the processor submits each ended span to the shared engine, which
        # batches and sends in the background (no second queue in front of it).
        tracer_provider = TracerProvider(resource=resource)
        tracer_provider.add_span_processor(EventsSpanProcessor())
        # OTel log records (the Logs API, or an OTel logging handler).
        logger_provider = LoggerProvider(resource=resource)
        logger_provider.add_log_record_processor(
            SimpleLogRecordProcessor(EventsLogExporter())
        )
        # Stdlib records: EventsHandler adds the active span's ids by itself.
        log = logging.getLogger("example.orders")
        log.addHandler(EventsHandler(service_name="example"))
        log.setLevel(logging.INFO)

        tracer = tracer_provider.get_tracer("example.orders", "1.0")
        otel_log = logger_provider.get_logger("example.otel")
        with tracer.start_as_current_span("GET /orders/42", kind=trace.SpanKind.SERVER):
            with tracer.start_as_current_span("load order") as span:
                span.set_attributes({"order.id": 42, "order.items": ("a", "b")})
                log.info("order %s loaded", 42)
            with tracer.start_as_current_span("charge", kind=trace.SpanKind.CLIENT):
                try:
                    {}["card"]
                except KeyError as exc:
                    otel_log.emit(
                        severity_number=SeverityNumber.ERROR,
                        body="charge failed",
                        exception=exc,
                    )
                    span = trace.get_current_span()
                    span.record_exception(exc)
                    span.set_status(trace.StatusCode.ERROR, "card missing")

        tracer_provider.shutdown()  # both flush the shared engine
        logger_provider.shutdown()
        with EventsClient() as client:
            for event in client.get_events(sandbox_id):
                data = event.data
                if event.type == "trace.span":
                    print(
                        f"[{event.type}] {data['name']} {data['kind']}"
                        f" parent={'yes' if data['parentSpanId'] else 'no'}"
                        f" status={data['status']['code']} events={len(data['events'])}"
                    )
                else:
                    same = "in span" if data.get("spanId") else "no span"
                    print(f"[{event.type}] {data['logger']}: {data['message']} {same}")


if __name__ == "__main__":
    main()
