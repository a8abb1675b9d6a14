"""The engine's stats() through an application's Prometheus registry or OTel meter."""

from __future__ import annotations

from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from cse_bridge.engine import BatchEngine, EventItem, EventsSink
from cse_bridge.gateway import GatewayThread

from ..engine.servers import closed_port
from ..helpers import read_all_events, wait_until


def ship_ten(gateway: GatewayThread, sandbox: str) -> BatchEngine:
    """An engine that shipped 10 events to *gateway*, then one after its shutdown."""
    engine = BatchEngine(
        EventsSink(gateway.http_url, gateway.issue_token(sandbox)), schedule_delay=0.01
    )
    for i in range(10):
        engine.submit(EventItem("log.info", {"message": f"record {i}"}))
    assert engine.flush(10)
    assert 10 == len(read_all_events(gateway.http_url, sandbox))
    engine.shutdown(5)
    engine.submit(EventItem("log.info", {"message": "too late"}))
    return engine


Key = tuple[str, tuple[tuple[str, str], ...]]
"""A sample or data point: its name and its sorted label pairs."""


def prometheus_samples(
    *engines: tuple[BatchEngine, dict[str, str]],
) -> dict[Key, float]:
    """Every sample of an ``EngineCollector`` per engine (with its labels), scraped."""
    from cse_bridge.integrations.prometheus import EngineCollector

    registry = CollectorRegistry()
    for engine, labels in engines:
        registry.register(EngineCollector(engine, labels=labels))
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(generate_latest(registry).decode())
        for s in family.samples
    }


def otel_points(*engines: tuple[BatchEngine, dict[str, str]]) -> dict[Key, float]:
    """Every data point of ``observe_engine`` per engine on one meter, collected once
    by the real SDK's in-memory reader."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader

    from cse_bridge.integrations.otel_metrics import observe_engine

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        meter = provider.get_meter("test")
        for engine, attributes in engines:
            observe_engine(meter, engine, attributes=attributes)
        data = reader.get_metrics_data()
    finally:
        provider.shutdown()
    return {
        (metric.name, tuple(sorted(point.attributes.items()))): point.value
        for resource in data.resource_metrics
        for scope in resource.scope_metrics
        for metric in scope.metrics
        for point in metric.data.data_points
    }


class TestPrometheusEngineCollector:
    """``cse_bridge.integrations.prometheus.EngineCollector``."""

    def test_counters_match_what_was_shipped(self, gateway: GatewayThread) -> None:
        """10 sent, 1 dropped after shutdown; the constant label marks the engine."""
        engine = ship_ten(gateway, "sb-engine-prom")
        samples = prometheus_samples((engine, {"engine": "app"}))
        app = (("engine", "app"),)
        stats = engine.stats()
        assert 10 == samples["cse_engine_sent_events_total", app]
        assert stats.queued == samples["cse_engine_accepted_items_total", app]
        assert (
            1
            == samples[
                "cse_engine_dropped_items_total", (*app, ("reason", "after_shutdown"))
            ]
        )
        assert 0 == samples["cse_engine_queue_items", app]


class TestOtelEngineMetrics:
    """``cse_bridge.integrations.otel_metrics.observe_engine``."""

    def test_instruments_read_the_engine(self, gateway: GatewayThread) -> None:
        """The real SDK's reader collects 10 sent and the after-shutdown drop."""
        engine = ship_ten(gateway, "sb-engine-otel")
        points = otel_points((engine, {"app": "a"}))
        assert 10 == points["cse.engine.sent", (("app", "a"),)]
        assert (
            1
            == points[
                "cse.engine.dropped", (("app", "a"), ("reason", "after_shutdown"))
            ]
        )
        assert 0 == points["cse.engine.queue.items", (("app", "a"),)]


def spool_then_replay(
    gateway: GatewayThread, sandbox: str, spool: Path
) -> tuple[BatchEngine, BatchEngine]:
    """10 records spooled at exit by a gateway that refuses; the next engine sends
    them. Returns both engines, shut down."""
    token = gateway.issue_token(sandbox)
    refused = BatchEngine(
        EventsSink(f"http://127.0.0.1:{closed_port()}", token),
        spool_dir=str(spool),
        handle_sigterm=False,
    )
    for i in range(10):
        refused.submit(EventItem("log.info", {"message": f"record {i}"}))
    refused.shutdown(0.5)
    assert {"exit": 10} == dict(refused.stats().spooled_by)
    replaying = BatchEngine(
        EventsSink(gateway.http_url, token), spool_dir=str(spool), handle_sigterm=False
    )
    replaying.submit(EventItem("log.info", {"message": "next program"}))
    wait_until(
        lambda: 11 == len(read_all_events(gateway.http_url, sandbox)),
        "the spooled records and the new one at the gateway",
    )
    replaying.shutdown(5)
    return refused, replaying


def test_prometheus_spool_counters(gateway: GatewayThread, tmp_path: Path) -> None:
    """Spooled by reason in one engine, replayed in the next: both exported."""
    refused, replaying = spool_then_replay(gateway, "sb-spool-prom", tmp_path)
    samples = prometheus_samples(
        (refused, {"engine": "first"}), (replaying, {"engine": "next"})
    )
    first, after = (("engine", "first"),), (("engine", "next"),)
    assert 10 == samples["cse_engine_spooled_items_total", (*first, ("reason", "exit"))]
    assert 10 == samples["cse_engine_spool_replayed_events_total", after]
    assert 0 == samples["cse_engine_spool_damaged_stretches_total", after]


def test_otel_spool_counters(gateway: GatewayThread, tmp_path: Path) -> None:
    """The same counters through the real OpenTelemetry SDK."""
    refused, replaying = spool_then_replay(gateway, "sb-spool-otel", tmp_path)
    points = otel_points(
        (refused, {"engine": "first"}), (replaying, {"engine": "next"})
    )
    assert 10 == points["cse.engine.spooled", (("engine", "first"), ("reason", "exit"))]
    assert 10 == points["cse.engine.spool.replayed", (("engine", "next"),)]
