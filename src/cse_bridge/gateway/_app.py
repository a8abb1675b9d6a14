"""
The gateway process: one asyncio loop serving the HTTP API and the pub/sub port.

``Gateway`` runs on the caller's loop; ``GatewayThread`` runs one on a private loop in a
background thread, for tests, demos and ``cse_bridge.testing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import web

from ._access_log import AccessLog
from ._auth import Authenticator
from ._drain import Drain
from ._http import create_http_app
from ._limits import GatewayLimits
from ._metrics import CONTENT_TYPE, GatewayMetrics
from ._observed_store import ObservedStore
from ._observer import observe_requests
from ._probes import Probes
from ._pubsub import PubSubServer
from ._tokens import resolve_secret
from .stores import DEFAULT_RETENTION, Broker, EventStore, open_store

__all__ = ["Gateway", "GatewayConfig", "GatewayThread"]

_LINGERING_TIME = 1.0
"""Seconds spent draining the unread rest of a refused request body."""
_SHUTDOWN_TIMEOUT = 2.0
"""Seconds ``stop()`` waits for requests in flight before closing their connections."""
DEFAULT_DRAIN_TIMEOUT = 10.0
"""Seconds a drain waits for the HTTP requests in flight (``GatewayConfig``)."""
DRAIN_MESSAGE = "gateway is shutting down: reconnect to another gateway"
"""The ``-ERR`` every pub/sub client gets when the gateway drains."""


@dataclass(frozen=True)
class GatewayConfig:
    """
    Everything a gateway needs; port 0 picks a free port.

    ``secret=None`` generates one (kept beside an sqlite store, see ``resolve_secret``).
    """

    host: str = "127.0.0.1"
    http_port: int = 8080
    pubsub_port: int = 6380
    store_url: str = "memory://"
    secret: str | None = None
    api_keys: Mapping[str, int] = field(default_factory=dict)
    retention: int = DEFAULT_RETENTION
    limits: GatewayLimits = field(default_factory=GatewayLimits)
    reuse_port: bool = False
    """Set ``SO_REUSEPORT`` on both ports (Linux): N processes share one port."""
    drain_timeout: float = DEFAULT_DRAIN_TIMEOUT
    """Seconds ``Gateway.drain`` waits for the HTTP requests in flight."""
    access_log: bool = False
    """Log one JSON line per HTTP request to ``cse_bridge.gateway.access`` (INFO)."""


class Gateway:
    """
    A local events gateway on the running event loop.

    See docs/protocol.md#protocol-gateway.

    Call ``await start()`` then, when done, ``await stop()``. Not thread-safe: use it
    from its loop only (``GatewayThread`` wraps it for other threads).
    """

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        secret, generated = resolve_secret(config.secret, config.store_url)
        self.secret: str = secret
        """The HS256 signing secret, configured or generated."""
        self.secret_generated: bool = generated
        """True if ``secret`` was generated (none was configured)."""
        self.auth = Authenticator(secret, config.api_keys)
        self.store: EventStore = open_store(
            config.store_url, retention=config.retention
        )
        self.broker: Broker = self.store.create_broker()
        self.metrics = GatewayMetrics()
        """This gateway's Prometheus metrics (its own registry), served at /metrics."""
        self._drain = Drain()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None
        self._pubsub: PubSubServer | None = None
        self.http_port = 0
        self.pubsub_port = 0

    @property
    def http_url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8080``."""
        return f"http://{_url_host(self.config.host)}:{self.http_port}"

    @property
    def pubsub_address(self) -> str:
        """``host:port`` of the pub/sub server."""
        return f"{_url_host(self.config.host)}:{self.pubsub_port}"

    async def start(self) -> None:
        """Open the store, start both servers; return once both accept connections."""
        await self.store.open()
        app = create_http_app(
            ObservedStore(self.store, self.metrics),
            self.broker,
            self.auth,
            self.config.limits,
        )
        self._add_operations_routes(app)
        # A refused (413) body is drained for at most lingering_time so that the
        # client reads our answer; shutdown_timeout bounds how long stop() waits for
        # requests in flight. aiohttp's defaults (10 s, 60 s) would stall stop().
        self._runner = web.AppRunner(
            app,
            access_log=None,
            handle_signals=False,
            lingering_time=_LINGERING_TIME,
            shutdown_timeout=_SHUTDOWN_TIMEOUT,
        )
        await self._runner.setup()
        site = web.TCPSite(
            self._runner,
            self.config.host,
            self.config.http_port,
            reuse_port=self.config.reuse_port or None,
        )
        await site.start()
        self._site = site
        server = site._server  # aiohttp exposes the bound port only here
        assert isinstance(server, asyncio.base_events.Server)  # noqa: S101 - narrows for mypy
        self.http_port = server.sockets[0].getsockname()[1]
        self._pubsub = PubSubServer(self.broker, self.auth, self.config.limits)
        await self._pubsub.start(
            self.config.host, self.config.pubsub_port, reuse_port=self.config.reuse_port
        )
        self.pubsub_port = self._pubsub.port
        runner, pubsub = self._runner, self._pubsub
        self.metrics.watch(
            pubsub,
            http_connections=lambda: (
                len(runner.server.connections) if runner.server is not None else 0
            ),
            in_flight=lambda: self._drain.in_flight,
            draining=lambda: self._drain.draining,
        )

    def _add_operations_routes(self, app: web.Application) -> None:
        """Add the probes, /metrics and the outermost middleware."""
        access_log = AccessLog() if self.config.access_log else None
        app.middlewares.insert(
            0, observe_requests(self.metrics, self._drain, access_log)
        )
        probes = Probes(
            self.store,
            self._drain,
            http_serving=lambda: self._site is not None,
            pubsub_serving=lambda: self._pubsub is not None and self._pubsub.serving,
        )
        app.router.add_get("/healthz", probes.healthz)
        app.router.add_get("/readyz", probes.readyz)
        app.router.add_get("/metrics", self._serve_metrics)

    async def _serve_metrics(self, request: web.Request) -> web.Response:
        """``GET /metrics``: the Prometheus text format, no credentials."""
        return web.Response(
            body=self.metrics.render(), headers={"Content-Type": CONTENT_TYPE}
        )

    @property
    def draining(self) -> bool:
        """True once ``drain()`` was called."""
        return self._drain.draining

    async def drain(self, timeout: float | None = None) -> bool:
        """
        Shut down gracefully: what a load balancer needs on SIGTERM.

        ``/readyz`` answers 503 at once; both ports stop accepting; every pub/sub
        client gets ``-ERR`` (``DRAIN_MESSAGE``) and is closed, so it reconnects
        elsewhere and backfills; requests in flight get up to *timeout* seconds
        (``config.drain_timeout`` by default) to finish, their keep-alive
        connections closed after the answer. Then ``stop()``. An event answered 200
        is in the store before this returns.

        Returns:
            True if every request in flight finished in time.
        """
        timeout = self.config.drain_timeout if timeout is None else timeout
        self._drain.begin()
        site, self._site = self._site, None
        if site is not None:
            await site.stop()  # the listening socket only: connections stay
        pubsub = self._pubsub
        closing = (
            pubsub.close(DRAIN_MESSAGE) if pubsub is not None else asyncio.sleep(0)
        )
        finished, _ = await asyncio.gather(self._drain.wait_idle(timeout), closing)
        await self.stop()
        return finished

    async def stop(self) -> None:
        """Close both servers, then the broker and the store. Idempotent."""
        if self._pubsub is not None:
            await self._pubsub.close()
            self._pubsub = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        await self.broker.close()
        await self.store.close()


def _url_host(host: str) -> str:
    if host in ("", "0.0.0.0"):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _cancel_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel and reap tasks still pending on *loop* (as ``asyncio.run`` does)."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


class GatewayThread:
    """
    Run a ``Gateway`` on its own loop in a daemon thread (``cse-bridge-gateway``).

    ``start()`` blocks until both ports accept connections; ``stop()`` until it has shut
    down. Usable as a context manager. Safe to call from any thread.
    """

    def __init__(self, config: GatewayConfig | None = None) -> None:
        self.config = config or GatewayConfig(http_port=0, pubsub_port=0)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._gateway: Gateway | None = None
        self._stopped: asyncio.Event | None = None

    @property
    def gateway(self) -> Gateway:
        """The running gateway."""
        if self._gateway is None:
            raise RuntimeError("the gateway is not running")
        return self._gateway

    @property
    def http_url(self) -> str:
        """The base URL clients use."""
        return self.gateway.http_url

    @property
    def pubsub_host(self) -> str:
        """The pub/sub host."""
        return self.gateway.pubsub_address.rsplit(":", 1)[0].strip("[]")

    @property
    def pubsub_port(self) -> int:
        """The pub/sub port."""
        return self.gateway.pubsub_port

    def issue_token(
        self, sandbox_id: str, workspace_id: int = 1, *, ttl: float | None = 3600.0
    ) -> str:
        """Return an access token this gateway accepts."""
        return self.gateway.auth.issue_token(sandbox_id, workspace_id, ttl=ttl)

    def start(self, timeout: float = 10.0) -> GatewayThread:
        """
        Start the gateway and wait until it serves.

        Raises:
            RuntimeError: It did not start within *timeout* (the cause is chained).
        """
        if self._thread is not None:
            raise RuntimeError("already started")
        started = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            loop = asyncio.new_event_loop()
            self._loop = loop
            try:
                loop.run_until_complete(self._serve(started, failure))
            finally:
                _cancel_leftover_tasks(loop)
                loop.close()

        self._thread = threading.Thread(
            target=run, name="cse-bridge-gateway", daemon=True
        )
        self._thread.start()
        if not started.wait(timeout):
            raise RuntimeError("the gateway did not start in time")
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise RuntimeError("the gateway failed to start") from failure[0]
        return self

    async def _serve(
        self, started: threading.Event, failure: list[BaseException]
    ) -> None:
        self._stopped = asyncio.Event()
        gateway = Gateway(self.config)
        try:
            await gateway.start()
        except BaseException as exc:  # handed to the starting thread
            failure.append(exc)
            await gateway.stop()
            started.set()
            return
        self._gateway = gateway
        started.set()
        try:
            await self._stopped.wait()
        finally:
            await gateway.stop()

    def drain(self, timeout: float | None = None) -> bool:
        """
        Drain the gateway (``Gateway.drain``), then stop its thread.

        Blocks until the drain ended: about *timeout* seconds at most
        (``config.drain_timeout`` by default). Safe from any thread.

        Returns:
            True if every HTTP request in flight finished in time.
        """
        loop, gateway = self._loop, self._gateway
        if loop is None or gateway is None or loop.is_closed():
            raise RuntimeError("the gateway is not running")
        limit = self.config.drain_timeout if timeout is None else timeout
        done = asyncio.run_coroutine_threadsafe(gateway.drain(timeout), loop)
        finished = done.result(limit + _SHUTDOWN_TIMEOUT + 10.0)
        self.stop()
        return finished

    def stop(self, timeout: float = 10.0) -> None:
        """Shut the gateway down and join its thread. Idempotent."""
        thread, loop, stopped = self._thread, self._loop, self._stopped
        if thread is None or loop is None or stopped is None:
            return
        if not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(stopped.set)
        thread.join(timeout)
        self._thread = None

    def __enter__(self) -> GatewayThread:
        return self.start() if self._thread is None else self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
