"""
The gateway's Prometheus metrics, served as text by ``GET /metrics``.

Each gateway owns its registry (never the process-global one), so several gateways
in one process, as in the tests, count apart. Hot-path counts that the pub/sub server
and the drain keep as plain integers are read when Prometheus scrapes, by
``collect``; the rest are prometheus-client metrics updated as requests are answered.
Sandbox ids are never labels: one label value per sandbox would grow without bound.
The names and their meaning: docs/how-to/operate.md#operate-gateway-metrics.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from ._loop_histogram import LoopHistogram
from ._pubsub import PubSubServer
from ._rejections import CAUSES, Port, Rejections

__all__ = ["CONTENT_TYPE", "GatewayMetrics"]

CONTENT_TYPE: Final = CONTENT_TYPE_LATEST
"""The ``Content-Type`` of the text exposition format ``/metrics`` answers with."""


_LATENCY_BUCKETS: Final = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
)
"""Seconds: a memory-store POST takes well under a millisecond, a Redis one a few."""
_METHODS: Final = frozenset(
    {"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"}
)


class GatewayMetrics:
    """
    One gateway's metrics and the registry ``/metrics`` renders.

    Updated and rendered on the gateway's loop only (prometheus-client's own locks
    make a scrape from another thread safe too).

    Args:
        registry: Where to register; a new ``CollectorRegistry`` by default.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        reg = self.registry
        # The hot path (every request, every stored event) counts in plain numbers on
        # the loop, read at scrape time by collect(): prometheus-client's metrics take
        # a lock per update, which cost a tenth of a memory-store POST.
        self.request_counts: dict[tuple[str, str, int], int] = {}
        """Answered HTTP requests by (route template, method, status)."""
        self._request_created: dict[tuple[str, str, int], float] = {}
        self.post_duration = LoopHistogram(_LATENCY_BUCKETS)
        """Seconds to answer ``POST /events``, from the request line to the answer."""
        self.events_stored = 0
        """Events the store acknowledged (each one answered 200)."""
        self.bytes_stored = 0
        """Bytes of event JSON the store acknowledged."""
        self.store_duration = {
            operation: LoopHistogram(_LATENCY_BUCKETS)
            for operation in ("append", "query")
        }
        """Seconds one store call took, by operation."""
        self._created = time.time()
        self.store_errors = Counter(
            "cse_gateway_store_errors",
            "Store calls that failed, by operation and kind (unavailable: 503).",
            ["operation", "kind"],
            registry=reg,
        )
        for operation in ("append", "query"):
            for kind in ("unavailable", "error"):
                self.store_errors.labels(operation, kind)
        # The gateway's own refusal counts (every port and cause), read at scrape.
        self._rejections = Rejections()
        self._pubsub: PubSubServer | None = None
        self._http_connections: Callable[[], int] = lambda: 0
        self._in_flight: Callable[[], int] = lambda: 0
        self._draining: Callable[[], bool] = lambda: False
        self._max_connections: Callable[[], int] = lambda: 0
        reg.register(self)

    def watch(
        self,
        pubsub: PubSubServer,
        *,
        http_connections: Callable[[], int],
        in_flight: Callable[[], int],
        draining: Callable[[], bool],
        rejections: Rejections,
        max_connections: Callable[[], int],
    ) -> None:
        """Read these live values at every scrape (called once the servers run)."""
        self._rejections = rejections
        self._max_connections = max_connections
        self._pubsub = pubsub
        self._http_connections = http_connections
        self._in_flight = in_flight
        self._draining = draining

    def count_request(
        self, route: str, method: str, status: int, duration: float
    ) -> None:
        """Count one answered HTTP request (and its rejection cause, if any)."""
        if method not in _METHODS:
            method = "other"
        key = (route, method, status)
        counts = self.request_counts
        try:
            counts[key] += 1
        except KeyError:
            counts[key] = 1
            self._request_created[key] = time.time()
        if route == "/events" and method == "POST":
            self.post_duration.observe(duration)

    def count_stored(self, json_bytes: int) -> None:
        """Count one event the store acknowledged, *json_bytes* of JSON."""
        self.events_stored += 1
        self.bytes_stored += json_bytes

    def _collect_hot_path(self) -> Iterator[Metric]:
        """The request and store counts, as prometheus-client's own metrics read."""
        requests = CounterMetricFamily(
            "cse_gateway_http_requests",
            "HTTP requests answered, by route template, method and status.",
            labels=["route", "method", "status"],
        )
        created = self._request_created
        for (route, method, status), count in list(self.request_counts.items()):
            requests.add_metric(
                [route, method, str(status)],
                count,
                created=created.get((route, method, status)),
            )
        yield requests
        post = HistogramMetricFamily(
            "cse_gateway_post_event_duration_seconds",
            "Time to answer POST /events, from the request line to the answer.",
            labels=[],
        )
        self.post_duration.add_to(post, [])
        yield post
        yield CounterMetricFamily(
            "cse_gateway_events_stored",
            "Events the store acknowledged (each one answered 200).",
            value=self.events_stored,
            created=self._created,
        )
        yield CounterMetricFamily(
            "cse_gateway_stored_bytes",
            "Bytes of event JSON the store acknowledged.",
            value=self.bytes_stored,
            created=self._created,
        )
        store = HistogramMetricFamily(
            "cse_gateway_store_duration_seconds",
            "Time one store call took, by operation (append, query).",
            labels=["operation"],
        )
        for operation, histogram in self.store_duration.items():
            histogram.add_to(store, [operation])
        yield store

    def render(self) -> bytes:
        """Return the registry in the Prometheus text format."""
        return generate_latest(self.registry)

    def collect(self) -> Iterator[Metric]:
        """Yield the values read at scrape time (prometheus-client calls this)."""
        yield from self._collect_hot_path()
        pubsub = self._pubsub
        connections = GaugeMetricFamily(
            "cse_gateway_open_connections",
            "Client connections open now, by port (http, pubsub).",
            labels=["port"],
        )
        connections.add_metric(["http"], self._http_connections())
        connections.add_metric(
            ["pubsub"], 0 if pubsub is None else pubsub.connection_count
        )
        yield connections
        cap = GaugeMetricFamily(
            "cse_gateway_max_connections",
            "Connections each port admits (--max-connections, maybe lowered at start "
            "to fit the open file limit).",
            labels=["port"],
        )
        for port in ("http", "pubsub"):
            cap.add_metric([port], self._max_connections())
        yield cap
        yield GaugeMetricFamily(
            "cse_gateway_http_in_flight_requests",
            "HTTP requests taken and not yet answered.",
            value=self._in_flight(),
        )
        yield GaugeMetricFamily(
            "cse_gateway_draining",
            "1 while the gateway drains (after SIGTERM), else 0.",
            value=int(self._draining()),
        )
        yield GaugeMetricFamily(
            "cse_gateway_pubsub_subscribers",
            "Pub/sub connections subscribed to at least one sandbox.",
            value=0 if pubsub is None else pubsub.subscriber_count,
        )
        yield CounterMetricFamily(
            "cse_gateway_pubsub_pushes",
            "Event pushes written to pub/sub subscribers.",
            value=0 if pubsub is None else pubsub.pushes,
        )
        yield CounterMetricFamily(
            "cse_gateway_pubsub_slow_disconnects",
            "Subscribers cut off because their unsent output passed the buffer cap.",
            value=0 if pubsub is None else pubsub.slow_disconnects,
        )
        rejected = CounterMetricFamily(
            "cse_gateway_rejected_requests",
            "Requests (http) and subscriptions (pubsub) refused, by port and cause.",
            labels=["port", "cause"],
        )
        # Every series from the start (at 0): rate() and alerts need a first sample.
        counts = self._rejections.snapshot()
        ports: tuple[Port, ...] = ("http", "pubsub")
        for port in ports:
            for cause in CAUSES:
                rejected.add_metric([port, cause], counts.get((port, cause), 0))
        yield rejected
