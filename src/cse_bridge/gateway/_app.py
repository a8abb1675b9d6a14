"""
The gateway process: one asyncio loop serving the HTTP API and the pub/sub port.

``Gateway`` runs on the caller's loop; ``GatewayThread`` runs one on a private loop in a
background thread, for tests, demos and ``cse_bridge.testing``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import ssl
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import TracebackType

from aiohttp import hdrs, web

from ._access_log import AccessLog
from ._auth import Authenticator
from ._drain import Drain
from ._fd_limit import fit_connection_cap, raise_open_file_limit
from ._guarded_site import GuardedSite
from ._http import add_events_routes, body_limited_requests, error_answers
from ._http_guard import HttpGuard
from ._limits import GatewayLimits
from ._log_throttle import LogThrottle
from ._loop_errors import throttle_accept_errors
from ._metrics import CONTENT_TYPE, GatewayMetrics
from ._observed_store import ObservedStore
from ._observer import RequestObserver
from ._probes import Probes
from ._pubsub import PubSubServer
from ._rate_limiter import RateLimiter
from ._rejections import Rejections
from ._routes import Routes
from ._server_errors import ServerErrorLog
from ._tls import server_tls_context
from ._tokens import resolve_secret
from .stores import DEFAULT_RETENTION, Broker, EventStore, open_store

__all__ = ["Gateway", "GatewayConfig", "GatewayThread"]

logger = logging.getLogger("cse_bridge.gateway")

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
    tls_cert: str | None = None
    """A PEM certificate chain, to speak TLS on both ports (HTTPS, TLS pub/sub)."""
    tls_key: str | None = None
    """PEM private key of ``tls_cert``."""


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
        self.tls: ssl.SSLContext | None = None
        """The server TLS context of both ports; None for plain TCP."""
        if (config.tls_cert is None) != (config.tls_key is None):
            raise ValueError("TLS needs both a certificate and its key")
        if config.tls_cert is not None and config.tls_key is not None:
            self.tls = server_tls_context(config.tls_cert, config.tls_key)
        self.limits: GatewayLimits = config.limits
        """The limits in force (``max_connections`` may be lowered at start)."""
        self.rejections = Rejections()
        """Refused requests and connections by port and cause (for metrics)."""
        self.log = LogThrottle(logger)
        self._drain = Drain()
        self._restore_loop_errors: Callable[[], None] | None = None
        self._runner: web.ServerRunner | None = None
        self._site: GuardedSite | None = None
        self._http_guard: HttpGuard | None = None
        self._pubsub: PubSubServer | None = None
        self.http_port = 0
        self.pubsub_port = 0

    @property
    def http_url(self) -> str:
        """The base URL clients use, e.g. ``http://127.0.0.1:8080``."""
        scheme = "http" if self.tls is None else "https"
        return f"{scheme}://{_url_host(self.config.host)}:{self.http_port}"

    @property
    def pubsub_address(self) -> str:
        """``host:port`` of the pub/sub server."""
        return f"{_url_host(self.config.host)}:{self.pubsub_port}"

    def open_connections(self) -> dict[str, int]:
        """Client connections open now, per port: ``{"http": n, "pubsub": m}``."""
        http = 0 if self._http_guard is None else self._http_guard.connection_count
        pubsub = 0 if self._pubsub is None else self._pubsub.connection_count
        return {"http": http, "pubsub": pubsub}

    async def start(self) -> None:
        """Open the store, start both servers; return once both accept connections."""
        await self.store.open()
        self._restore_loop_errors = throttle_accept_errors(
            asyncio.get_running_loop(), self.log
        )
        self.limits = limits = self._fit_limits()
        rate_limiter = None
        if limits.rate_limit is not None:
            rate_limiter = RateLimiter(limits.rate_limit, limits.burst)
        guard = HttpGuard(
            max_connections=limits.max_connections,
            idle_timeout=limits.idle_timeout,
            rejections=self.rejections,
            log=self.log,
        )
        self._http_guard = guard
        # Around every handler: it counts every answer, the guard's refusals too.
        observer = RequestObserver(
            self.metrics,
            self._drain,
            AccessLog() if self.config.access_log else None,
            guard,
            error_answers(limits),
        )
        routes = Routes(observer)
        add_events_routes(
            routes,
            ObservedStore(self.store, self.metrics),
            self.broker,
            self.auth,
            limits,
            rate_limiter=rate_limiter,
        )
        self._add_operations_routes(routes)
        # aiohttp's low-level server: see Routes for why not web.Application. A
        # refused (413) body is drained for at most lingering_time so that the client
        # reads our answer; shutdown_timeout bounds how long stop() waits for
        # requests in flight. aiohttp's defaults (10 s, 60 s) would stall stop().
        server = web.Server(
            routes,
            request_factory=body_limited_requests(asyncio.get_running_loop(), limits),
            access_log=None,
            lingering_time=_LINGERING_TIME,
            keepalive_timeout=limits.idle_timeout,
            logger=ServerErrorLog(self.rejections, self.log),
        )
        self._runner = web.ServerRunner(
            server, handle_signals=False, shutdown_timeout=_SHUTDOWN_TIMEOUT
        )
        await self._runner.setup()
        site = GuardedSite(
            self._runner,
            guard,
            self.config.host,
            self.config.http_port,
            ssl_context=self.tls,
            handshake_timeout=limits.idle_timeout,
            reuse_port=self.config.reuse_port,
        )
        await site.start()
        self._site = site
        self.http_port = site.port
        self._pubsub = PubSubServer(
            self.broker, self.auth, limits, rejections=self.rejections
        )
        await self._pubsub.start(
            self.config.host,
            self.config.pubsub_port,
            reuse_port=self.config.reuse_port,
            ssl=self.tls,
        )
        self.pubsub_port = self._pubsub.port
        pubsub = self._pubsub
        self.metrics.watch(
            pubsub,
            # As the cap counts them: TLS handshakes included.
            http_connections=lambda: guard.connection_count,
            in_flight=lambda: self._drain.in_flight,
            draining=lambda: self._drain.draining,
            rejections=self.rejections,
            max_connections=lambda: self.limits.max_connections,
        )

    def _add_operations_routes(self, routes: Routes) -> None:
        """Add the probes and /metrics."""
        probes = Probes(
            self.store,
            self._drain,
            http_serving=lambda: self._site is not None,
            pubsub_serving=lambda: self._pubsub is not None and self._pubsub.serving,
        )
        get = hdrs.METH_GET
        routes.add(get, "/healthz", probes.healthz)
        routes.add(get, "/readyz", probes.readyz)
        routes.add(get, "/metrics", self._serve_metrics)

    async def _serve_metrics(self, request: web.BaseRequest) -> web.Response:
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

    def _fit_limits(self) -> GatewayLimits:
        """Raise the descriptor limit; lower the connection cap to fit under it."""
        wanted = self.config.limits.max_connections
        cap = fit_connection_cap(wanted, raise_open_file_limit())
        if cap == wanted:
            return self.config.limits
        # INFO, not WARNING: a default cap lowered to fit the machine is normal.
        logger.info(
            "max connections lowered from %d to %d per port: the open file limit "
            "(ulimit -n) cannot hold more on both ports",
            wanted,
            cap,
        )
        return dataclasses.replace(self.config.limits, max_connections=cap)

    async def stop(self) -> None:
        """Close both servers, then the broker and the store. Idempotent."""
        if self._pubsub is not None:
            await self._pubsub.close()
            self._pubsub = None
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._http_guard is not None:
            self._http_guard.abort_all()
        await self.broker.close()
        await self.store.close()
        if self._restore_loop_errors is not None:
            self._restore_loop_errors()
            self._restore_loop_errors = None


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
