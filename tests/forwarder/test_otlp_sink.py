"""OtlpSink against a real, independent receiver (rotel): spans and logs, outages."""

from __future__ import annotations

import logging
import sys

import pytest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import (
    InMemorySpanExporter,
)
from opentelemetry.trace import Link, SpanKind, Status, StatusCode

from cse_bridge.client import EventsClient
from cse_bridge.forwarder import Forwarder
from cse_bridge.forwarder.otlp import OtlpSink
from cse_bridge.gateway import GatewayThread
from cse_bridge.integrations.otel import EventsSpanExporter

from .rotel import Received, RotelReceiver


def _make_trace(gateway: GatewayThread, token: str) -> list:
    """Produce a small trace through EventsSpanExporter; return the original spans."""
    memory = InMemorySpanExporter()
    exporter = EventsSpanExporter(gateway_url=gateway.http_url, access_token=token)
    provider = TracerProvider(resource=Resource({"service.name": "shop"}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("shop.checkout", "1.2.3")
    with tracer.start_as_current_span(
        "checkout", kind=SpanKind.SERVER, attributes={"cart.items": 3, "vip": True}
    ) as root:
        root.add_event("cart.loaded", {"count": 3, "tags": ("a", "b")})
        with tracer.start_as_current_span(
            "charge", kind=SpanKind.CLIENT, links=[Link(root.get_span_context())]
        ) as child:
            child.set_attribute("amount", 42.5)
            child.set_status(Status(StatusCode.ERROR, "card declined"))
    exporter.force_flush()
    provider.shutdown()
    return list(memory.get_finished_spans())


def _expected(span, sandbox: str) -> dict:
    """The receiver's view of an original span, as rotel_processor.py reports it."""
    parent = span.parent
    return {
        "name": span.name,
        "traceId": f"{span.context.trace_id:032x}",
        "spanId": f"{span.context.span_id:016x}",
        "parentSpanId": None if parent is None else f"{parent.span_id:016x}",
        "kind": span.kind.value + 1,  # OTLP numbers kinds from UNSPECIFIED = 0
        "start": span.start_time,
        "end": span.end_time,
        "status": [span.status.status_code.value, span.status.description or ""],
        "attributes": {
            k: list(v) if isinstance(v, tuple) else v
            for k, v in span.attributes.items()
        },
        "events": [
            [
                e.name,
                e.timestamp,
                {
                    k: list(v) if isinstance(v, tuple) else v
                    for k, v in e.attributes.items()
                },
            ]
            for e in span.events
        ],
        "links": [
            [f"{link.context.trace_id:032x}", f"{link.context.span_id:016x}", {}]
            for link in span.links
        ],
        "resource": {
            **span.resource.attributes,
            "computesdk.sandbox.id": sandbox,
            "computesdk.workspace.id": 1,
        },
        "scope": [span.instrumentation_scope.name, span.instrumentation_scope.version],
    }


def _received_span(item: dict) -> dict:
    item = dict(item)
    del item["signal"], item["traceState"]
    return item


class TestOtlpSinkRoundTrip:
    """A trace goes sandbox -> gateway -> forwarder -> OTLP -> rotel unchanged."""

    @pytest.mark.parametrize("protocol", ["http/protobuf", "grpc"])
    def test_spans_arrive_field_by_field(
        self,
        gateway: GatewayThread,
        options: dict,
        rotel: RotelReceiver,
        received: Received,
        protocol: str,
    ) -> None:
        """Every span rotel decodes equals its original: ids, times, kind, status..."""
        token = gateway.issue_token("otlp-sb", 1)
        url = rotel.http_url if protocol == "http/protobuf" else rotel.grpc_url
        sink = OtlpSink(url, protocol=protocol, schedule_delay_millis=50)
        with Forwarder([sink], tokens={"otlp-sb": token}, since=0, **options) as fwd:
            originals = _make_trace(gateway, token)
            got = received.take(len(originals))
            assert fwd.flush(5.0)
        expected = sorted(
            (_expected(s, "otlp-sb") for s in originals), key=lambda d: d["name"]
        )
        actual = sorted((_received_span(i) for i in got), key=lambda d: d["name"])
        assert expected == actual

    def test_log_records_carry_severity_body_and_trace(
        self,
        gateway: GatewayThread,
        options: dict,
        rotel: RotelReceiver,
        received: Received,
    ) -> None:
        """A log.warning event becomes an OTLP log with WARN severity and its fields."""
        token = gateway.issue_token("logs-sb", 1)
        data = {
            "message": "disk almost full",
            "level": "WARNING",
            "levelno": logging.WARNING,
            "logger": "app.disk",
            "timeUnixNano": 1_700_000_000_123_456_789,
            "traceId": "0af7651916cd43dd8448eb211c80319c",
            "spanId": "b7ad6b7169203331",
            "attributes": {"percent": 91},
            "resource": {"service.name": "worker"},
        }
        sink = OtlpSink(rotel.http_url, schedule_delay_millis=50)
        with Forwarder([sink], tokens={"logs-sb": token}, since=0, **options):
            with EventsClient(gateway_url=gateway.http_url, access_token=token) as c:
                event = c.store_event("log.warning", data)
            (got,) = received.take(1)
        assert {
            "signal": "log",
            "body": "disk almost full",
            "severityNumber": 13,
            "severityText": "WARNING",
            "time": 1_700_000_000_123_456_789,
            "traceId": data["traceId"],
            "spanId": data["spanId"],
            "attributes": {
                "percent": 91,
                "computesdk.event.id": event.event_id,
                "computesdk.event.type": "log.warning",
            },
            "resource": {
                "service.name": "worker",
                "computesdk.sandbox.id": "logs-sb",
                "computesdk.workspace.id": 1,
            },
            "scope": "app.disk",
        } == got


class TestOtlpSinkOutage:
    """The receiver goes away and comes back."""

    def test_events_sent_while_down_arrive_after_it_returns(
        self,
        gateway: GatewayThread,
        options: dict,
        rotel: RotelReceiver,
        received: Received,
    ) -> None:
        """Spans forwarded while rotel is stopped are retried and delivered later."""
        token = gateway.issue_token("outage-sb", 1)
        sink = OtlpSink(rotel.http_url, schedule_delay_millis=50, timeout=1.0)
        with Forwarder([sink], tokens={"outage-sb": token}, **options) as fwd:
            rotel.stop()
            originals = _make_trace(gateway, token)
            rotel.start()
            got = received.take(len(originals), timeout=20.0)
            assert fwd.flush(5.0)
        assert sorted(s.name for s in originals) == sorted(i["name"] for i in got)
        assert {} == {k: v for k, v in sink.drops().items() if v}


def hide_grpc_exporter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the gRPC exporter fail to import, as if it were not installed."""
    package = "opentelemetry.exporter.otlp.proto.grpc"
    # None in sys.modules fails the import, even of a module imported earlier.
    for name in (package, f"{package}._log_exporter", f"{package}.trace_exporter"):
        monkeypatch.setitem(sys.modules, name, None)


class TestOtlpSinkMissingExtra:
    def test_grpc_without_its_exporter_names_the_extra(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """Without the gRPC exporter, --otlp-protocol grpc names otlp-grpc."""
        hide_grpc_exporter(monkeypatch)
        with pytest.raises(ImportError, match=r"cse-bridge\[otlp-grpc\]"):
            OtlpSink("http://127.0.0.1:1", protocol="grpc")

    def test_forward_cli_says_one_line_for_a_missing_extra(
        self, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """forward --to otlp, exporter missing: exit 1, one line, no traceback."""
        from cse_bridge.cli import main

        hide_grpc_exporter(monkeypatch)
        code = main(
            [
                "forward",
                "--sandbox",
                "sb-1",
                "--token",
                "sb-1=t",
                "--to",
                "otlp=http://127.0.0.1:1",
                "--otlp-protocol",
                "grpc",
            ]
        )
        err = capsys.readouterr().err
        assert 1 == code
        assert 1 == len(err.strip().splitlines())
        assert "pip install 'cse-bridge[otlp-grpc]'" in err
