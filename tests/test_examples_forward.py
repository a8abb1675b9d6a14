"""examples/forward_to_logging.py and examples/forward_to_otlp.py run as written."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from .forwarder.rotel import Received, RotelReceiver
from .helpers import run_example


@pytest.fixture
def receiver() -> Iterator[RotelReceiver]:
    """A rotel collector on free ports that reports what it decoded."""
    received = Received()
    rotel = RotelReceiver(received)
    rotel.start()
    yield rotel
    rotel.stop()
    received.close()


class TestForwardToLoggingExample:
    """examples/forward_to_logging.py."""

    def test_records_come_back_on_the_console(self) -> None:
        """Each record logged in the sandbox is printed as a prefixed local record."""
        lines = run_example("forward_to_logging.py").stdout.splitlines()
        expected = [
            "sandbox.shop DEBUG cart c-7 loaded [sandboxId=shop-sandbox]",
            "sandbox.shop INFO order 42 placed [sandboxId=shop-sandbox]",
            "sandbox.shop WARNING stock low for widget [sandboxId=shop-sandbox]",
            "sandbox.shop ERROR lookup failed [sandboxId=shop-sandbox]",
        ]
        assert expected == [x for x in lines if x.startswith("sandbox.")]
        assert ("KeyError: 'missing'", "4 records came back from shop-sandbox") == (
            lines[-2],
            lines[-1],
        )


class TestForwardToOtlpExample:
    """examples/forward_to_otlp.py."""

    def test_spans_and_logs_reach_the_receiver(self, receiver: RotelReceiver) -> None:
        """rotel decodes both spans (one trace) and both log records, correlated."""
        run_example("forward_to_otlp.py", OTEL_EXPORTER_OTLP_ENDPOINT=receiver.http_url)
        items = receiver.received.take(4)
        spans = {i["name"]: i for i in items if i["signal"] == "span"}
        logs = {i["body"]: i for i in items if i["signal"] == "log"}
        root, child = spans["checkout"], spans["charge card"]
        expected = {
            "spans": ["charge card", "checkout"],
            "child of": root["spanId"],
            "one trace": {root["traceId"]},
            "sandbox": "shop-sandbox",
            "logs": [("charged card", "INFO"), ("receipt failed", "ERROR")],
            "info in": (child["traceId"], child["spanId"]),
            "amount": 42.5,
            "error in": (root["traceId"], root["spanId"]),
            "exception": "KeyError",
        }
        info, error = logs["charged card"], logs["receipt failed"]
        actual = {
            "spans": sorted(spans),
            "child of": child["parentSpanId"],
            "one trace": {child["traceId"], info["traceId"], error["traceId"]},
            "sandbox": root["resource"]["computesdk.sandbox.id"],
            "logs": sorted((body, i["severityText"]) for body, i in logs.items()),
            "info in": (info["traceId"], info["spanId"]),
            "amount": info["attributes"]["amount"],
            "error in": (error["traceId"], error["spanId"]),
            "exception": error["attributes"]["exception.type"],
        }
        assert expected == actual

    def test_without_an_endpoint_it_starts_rotel(self) -> None:
        """With no OTLP endpoint set, it runs rotel itself and shows what arrived."""
        out = run_example("forward_to_otlp.py").stdout
        shown = (
            "rotel |     Name           : checkout",
            "rotel |     Name           : charge card",
            "rotel | Body: Str(receipt failed)",
            "rotel |      -> computesdk.sandbox.id: Str(shop-sandbox)",
        )
        assert (True, True, True, True) == tuple(x in out for x in shown)
        assert "4 spans and log records from shop-sandbox at http://127.0.0.1:" in out
