"""
``MetricsServer``: ``/metrics`` and ``/healthz`` over HTTP, on a thread of its own.

The standard library's threading HTTP server: the forwarder has no event loop, and a
scrape every few seconds needs nothing more. It binds 127.0.0.1 unless told otherwise.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ["MetricsServer"]

logger = logging.getLogger(__name__)


class MetricsServer:
    """
    Serve *registry* at ``/metrics`` and *healthy* at ``/healthz`` (200 or 503).

    ``start()`` binds and returns once it accepts (port 0 picks a free port);
    ``stop()`` closes it within about a second. Safe from any thread.

    Args:
        registry: What ``/metrics`` renders.
        healthy: Called per ``/healthz``; True answers 200, False 503.
        host: Address to bind.
        port: Port to bind; 0 picks a free one (see ``port`` once started).
    """

    def __init__(
        self,
        registry: CollectorRegistry,
        *,
        healthy: Callable[[], bool],
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.registry = registry
        self._healthy = healthy
        self._address = (host, port)
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        """The bound port, once started."""
        if self._server is None:
            raise RuntimeError("the metrics server is not running")
        return int(self._server.server_address[1])

    def start(self) -> MetricsServer:
        """
        Bind and serve on the ``cse-bridge-metrics`` thread; return self.

        Raises:
            OSError: The address cannot be bound.
        """
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                owner._answer(self)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # a scrape every few seconds is not news

        server = ThreadingHTTPServer(self._address, Handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.2},
            name="cse-bridge-metrics",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket; idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.shutdown()
            server.server_close()
        if self._thread is not None:
            self._thread.join(2.0)
            self._thread = None

    def _answer(self, request: BaseHTTPRequestHandler) -> None:
        path = request.path.split("?", 1)[0]
        if path == "/metrics":
            status, body, kind = (
                200,
                generate_latest(self.registry),
                CONTENT_TYPE_LATEST,
            )
        elif path == "/healthz":
            ok = self._healthy()
            status = 200 if ok else 503
            body = b'{"status":"ok"}' if ok else b'{"status":"stopped"}'
            kind = "application/json"
        else:
            status, body, kind = (
                404,
                b"not found: try /metrics or /healthz\n",
                "text/plain",
            )
        request.send_response(status)
        request.send_header("Content-Type", kind)
        request.send_header("Content-Length", str(len(body)))
        request.end_headers()
        request.wfile.write(body)
