"""
Prometheus metrics for a forwarder: ``cse-bridge forward --metrics-port PORT``.

``ForwarderCollector`` exports a ``Forwarder``'s counters through any
prometheus-client registry (your application's own, or a private one);
``MetricsServer`` serves a registry at ``/metrics`` and a health check at
``/healthz``. Needs prometheus-client (the ``forward`` extra); see
docs/how-to/operate.md.
"""

from __future__ import annotations

from ._collector import ForwarderCollector
from ._metrics_server import MetricsServer

__all__ = ["ForwarderCollector", "MetricsServer"]
