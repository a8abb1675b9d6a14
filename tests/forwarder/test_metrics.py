"""The forwarder's Prometheus metrics, scraped over HTTP from its metrics server."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping
from pathlib import Path

import pytest
import requests
from prometheus_client import CollectorRegistry

from cse_bridge.client import EventsClient
from cse_bridge.forwarder import Forwarder
from cse_bridge.forwarder.metrics import ForwarderCollector, MetricsServer
from cse_bridge.gateway import GatewayThread
from cse_bridge.models import SandboxEvent

from ..conftest import make_gateway_config
from ..gateway.redis_fixtures import free_port
from ..helpers import sample, scrape, wait_until

TIMEOUT = 10


class GateSink:
    """A sink whose ``deliver`` waits while its gate is closed; counts what it got."""

    name = "gate"

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.waiting = threading.Event()
        self.events: list[SandboxEvent] = []

    def deliver(self, event: SandboxEvent) -> None:
        if not self.gate.is_set():
            self.waiting.set()
            self.gate.wait(TIMEOUT)
        self.events.append(event)

    def flush(self, timeout: float) -> bool:
        return True

    def close(self, timeout: float) -> None:
        self.gate.set()

    def drops(self) -> Mapping[str, int]:
        return {}


class FailingSink(GateSink):
    """A sink that raises on every event."""

    name = "failing"

    def deliver(self, event: SandboxEvent) -> None:
        raise RuntimeError("this sink always fails")


class Served:
    """A forwarder with its metrics server on a free port."""

    def __init__(self, forwarder: Forwarder) -> None:
        self.forwarder = forwarder
        registry = CollectorRegistry()
        registry.register(ForwarderCollector(forwarder))
        self.server = MetricsServer(
            registry, healthy=lambda: forwarder.running, port=0
        ).start()
        self.url = f"http://127.0.0.1:{self.server.port}"

    def metrics(self) -> dict:
        return scrape(f"{self.url}/metrics")

    def close(self) -> None:
        self.forwarder.stop()
        self.server.stop()


@pytest.fixture
def serve() -> Iterator:
    """Build a ``Served`` forwarder; stopped after the test."""
    made: list[Served] = []

    def build(sinks: list, **options: object) -> Served:
        served = Served(Forwarder(sinks, **options))  # type: ignore[arg-type]
        made.append(served)
        return served

    yield build
    for served in made:
        served.close()


def store(gateway: GatewayThread, token: str, count: int = 1) -> list[str]:
    """Store *count* events with *token*; return their ids."""
    with EventsClient(gateway_url=gateway.http_url, access_token=token) as client:
        return [client.store_event("custom", {"i": i}).event_id for i in range(count)]


class TestForwarderMetrics:
    """What /metrics says about deliveries, errors, duplicates and lag."""

    def test_counts_per_sink(
        self, gateway: GatewayThread, options: dict, serve
    ) -> None:
        """5 events: received 5, delivered 5 to the good sink, 5 errors on the bad."""
        token = gateway.issue_token("m-sinks")
        good, bad = GateSink(), FailingSink()
        served = serve([good, bad], tokens={"m-sinks": token}, **options)
        health = requests.get(f"{served.url}/healthz", timeout=TIMEOUT)
        assert 503 == health.status_code  # not started yet
        served.forwarder.start()
        store(gateway, token, 5)
        # Each event goes to the good sink, then fails on the bad one: wait for both,
        # or a scrape between the two sees the fifth error missing.
        page = wait_until(
            lambda: (
                (m := served.metrics())
                and sample(m, "cse_forwarder_events_delivered_total", sink="gate") == 5
                and sample(m, "cse_forwarder_sink_errors_total", sink="failing") == 5
                and m
            ),
            "5 events delivered, 5 errors counted",
        )
        assert 5 == sample(page, "cse_forwarder_events_received_total")
        assert 0 == sample(page, "cse_forwarder_events_delivered_total", sink="failing")
        assert 5 == sample(page, "cse_forwarder_sink_errors_total", sink="failing")
        assert 0 == sample(page, "cse_forwarder_sink_errors_total", sink="gate")
        assert 0 == sample(page, "cse_forwarder_duplicates_suppressed_total")
        assert 1 == sample(page, "cse_forwarder_up")
        assert 200 == requests.get(f"{served.url}/healthz", timeout=TIMEOUT).status_code
        assert 404 == requests.get(f"{served.url}/other", timeout=TIMEOUT).status_code

    def test_lag_rises_while_the_sink_is_blocked_and_falls_after(
        self, gateway: GatewayThread, options: dict, serve
    ) -> None:
        """The lag grows with the clock while the sink blocks; new events reset it."""
        token = gateway.issue_token("m-lag")
        sink = GateSink()
        served = serve([sink], tokens={"m-lag": token}, **options)
        served.forwarder.start()

        def lag() -> float:
            return sample(served.metrics(), "cse_forwarder_lag_seconds")

        store(gateway, token)
        wait_until(lambda: len(sink.events) == 1, "the first event delivered")
        sink.gate.clear()
        store(gateway, token)
        assert sink.waiting.wait(TIMEOUT)
        blocked = lag()
        rising = wait_until(
            lambda: (value := lag()) > blocked + 0.3 and value, "the lag rising"
        )
        sink.gate.set()
        wait_until(lambda: len(sink.events) == 2, "the blocked event delivered")
        store(gateway, token)
        wait_until(lambda: len(sink.events) == 3, "a fresh event delivered")
        assert lag() < rising

    def test_overflow_re_reads_and_duplicates(
        self, gateway: GatewayThread, options: dict, tmp_path: Path, serve
    ) -> None:
        """A 2-event hand-off overflows; re-read events count; a resume skips one."""
        token = gateway.issue_token("m-over")
        sink = GateSink()
        sink.gate.clear()
        state = tmp_path / "state.json"
        served = serve(
            [sink],
            tokens={"m-over": token},
            handoff_size=2,
            state_file=state,
            **options,
        )
        served.forwarder.start()
        stored = store(gateway, token, 1)
        assert sink.waiting.wait(TIMEOUT)
        stored += store(gateway, token, 9)
        wait_until(
            lambda: sample(served.metrics(), "cse_forwarder_overflowed_events_total"),
            "an overflow",
        )
        sink.gate.set()
        wait_until(lambda: len(sink.events) == 10, "all 10 delivered")
        page = served.metrics()
        stats = served.forwarder.stats()
        assert stats.overflow == sample(page, "cse_forwarder_overflowed_events_total")
        assert stats.resynced == sample(page, "cse_forwarder_reread_events_total")
        assert 0 < stats.resynced
        assert 0 == sample(page, "cse_forwarder_lost_events_total")
        served.close()
        # Resuming re-reads the newest delivered event: skipped, and counted.
        again = serve(
            [GateSink()], tokens={"m-over": token}, since=0, state_file=state, **options
        )
        again.forwarder.start()
        wait_until(
            lambda: (
                sample(again.metrics(), "cse_forwarder_duplicates_suppressed_total")
                == 1
            ),
            "the resume seam's duplicate",
        )
        assert stored == [event.id for event in sink.events]

    def test_reconnects_are_counted(self, tmp_path: Path, serve) -> None:
        """A gateway restarted on the same ports: one reconnect."""
        http_port, pubsub_port = free_port(), free_port()
        config = make_gateway_config(
            f"sqlite:///{tmp_path / 'events.db'}",
            http_port=http_port,
            pubsub_port=pubsub_port,
        )
        first = GatewayThread(config).start()
        try:
            token = first.issue_token("m-re")
            served = serve(
                [GateSink()],
                tokens={"m-re": token},
                host="127.0.0.1",
                port=pubsub_port,
            )
            served.forwarder.start()
            assert 0 == sample(served.metrics(), "cse_forwarder_reconnects_total")
        finally:
            first.stop()
        with GatewayThread(config):
            wait_until(
                lambda: sample(served.metrics(), "cse_forwarder_reconnects_total") == 1,
                "a reconnect",
            )
