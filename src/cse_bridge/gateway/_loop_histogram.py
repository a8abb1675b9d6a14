"""
``LoopHistogram``: a Prometheus histogram kept as plain numbers, for the hot path.

prometheus-client's ``Histogram.observe`` takes a lock per bucket and per sum and walks
the buckets in Python: about a microsecond per observation, paid on every request.
The gateway observes on its one event loop only, so plain integers do; the registry
reads them when Prometheus scrapes (``GatewayMetrics.collect``).
"""

from __future__ import annotations

import time
from bisect import bisect_left
from collections.abc import Callable, Sequence
from typing import Final

from prometheus_client.core import HistogramMetricFamily
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

__all__ = ["LoopHistogram"]

_bucket_label: Final[Callable[[float], str]] = floatToGoString
"""How prometheus-client writes a bound (``le``): the same labels as its Histogram."""


class LoopHistogram:
    """
    Counts observations into buckets (upper bounds, inclusive, as Prometheus does).

    Observe from one thread only (the gateway's loop); a scrape from another thread
    reads a consistent-enough snapshot (each number is read once).

    Args:
        bounds: The buckets' upper bounds, ascending; ``+Inf`` is added.
    """

    __slots__ = ("_bounds", "_labels", "counts", "created", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._labels = [_bucket_label(bound) for bound in self._bounds] + ["+Inf"]
        self.counts = [0] * (len(self._bounds) + 1)
        """Observations per bucket (not cumulative); the last one is ``+Inf``."""
        self.sum = 0.0
        self.created = time.time()

    def observe(self, value: float) -> None:
        """Count one observation of *value*."""
        self.counts[bisect_left(self._bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: Sequence[str]) -> None:
        """Add this histogram's samples (cumulative buckets, count, sum, created)."""
        running = 0
        buckets: list[tuple[str, float]] = []
        for label, count in zip(self._labels, list(self.counts), strict=True):
            running += count
            buckets.append((label, running))
        family.add_metric(labels, buckets, self.sum)
        family.samples.append(
            Sample(
                family.name + "_created",
                dict(zip(family._labelnames, labels, strict=True)),
                self.created,
            )
        )
