"""
The engine's fast sender: HTTP/1.1 POSTs over several keep-alive connections at once.

The events API takes one event per request, so throughput is requests per second. A
small asyncio client (this module) runs a private event loop *on the engine's worker
thread* only while a batch is sent: N connections each carry one request at a time (no
pipelining, which proxies do not all support), so N requests are in flight. It reads
answers with ``_http11.ResponseReader`` and needs nothing beyond the standard library.
When an HTTP(S) proxy applies to the gateway (``HTTPS_PROXY`` and friends),
``_proxied.ProxiedTransport`` posts through requests, one at a time, instead.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
from collections.abc import Callable, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from ._http11 import Response, ResponseReader

__all__ = ["ABANDONED", "AsyncTransport", "Outcome", "Response", "Transport"]

Outcome = Response | BaseException | None
"""Per request: the answer, the error that prevented one, or None (never attempted)."""

StopRule = Callable[[int, Response | BaseException], bool]
"""Called with each outcome on the sending thread; True stops taking new requests."""


class Transport(Protocol):
    """Posts request bodies to ``{gateway}/events``; used by one thread at a time."""

    def post_many(
        self, bodies: Sequence[bytes], headers: bytes, deadline: float, stop: StopRule
    ) -> list[Outcome]:
        """POST every body (until *stop* says so or monotonic *deadline*); no raise."""

    def close(self) -> None:
        """Close every connection; never raises."""


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection; one request at a time."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.uses = 0
        self._reader = ResponseReader()
        self._waiter: asyncio.Future[Response] | None = None
        self._received = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - stream sockets only
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            try:
                response = self._reader.at_eof()  # a read-to-close body
            except ValueError:
                response = None
            if response is not None:
                waiter.set_result(response)
            else:
                error = ConnectionResetError(str(exc) if exc else "connection closed")
                error.reused = self.uses > 0 and not self._received  # type: ignore[attr-defined]
                waiter.set_exception(error)

    def request(self, payload: bytes) -> asyncio.Future[Response]:
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._reader.reset()
        self._received = False
        self.uses += 1
        assert self.transport is not None  # noqa: S101 - connected before use
        self.transport.write(payload)
        return self._waiter

    def data_received(self, data: bytes) -> None:
        self._received = True
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        try:
            response = self._reader.feed(data)
        except ValueError as exc:  # not HTTP: give up this connection
            self.abort(exc)
            return
        if response is None:
            return
        if self._reader.close:
            self.closed = True
            if self.transport is not None:
                self.transport.close()
        waiter.set_result(response)

    def abort(self, exc: BaseException | None = None) -> None:
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        waiter = self._waiter
        if exc is not None and waiter is not None and not waiter.done():
            waiter.set_exception(exc)


class AsyncTransport:
    """
    POSTs over up to *connections* keep-alive connections with a private asyncio loop.

    Use from one thread at a time (the engine's worker); ``post_many`` blocks that
    thread until every body was answered, *stop* stopped it, or the deadline passed.
    """

    def __init__(
        self,
        url: str,
        *,
        connections: int = 8,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"the gateway URL must be http(s)://host[:port]: {url!r}")
        self.host = parts.hostname
        self.port = parts.port or (443 if parts.scheme == "https" else 80)
        self.path = (parts.path.rstrip("/") or "") + "/events"
        self.ssl: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self.ssl = ssl_context or ssl.create_default_context()
        host = f"[{self.host}]" if ":" in self.host else self.host
        default_port = self.port == (443 if self.ssl else 80)
        self.authority = host if default_port else f"{host}:{self.port}"
        self.connections = connections
        self._loop: asyncio.AbstractEventLoop | None = None
        # Connections live between calls: the loop is not running then, so only the
        # calling (worker) thread touches them; no lock.
        self._idle: list[_Connection] = []

    def post_many(
        self, bodies: Sequence[bytes], headers: bytes, deadline: float, stop: StopRule
    ) -> list[Outcome]:
        """
        POST each body to the gateway with *headers* (ending in ``\\r\\n``).

        Blocks until all are answered, *stop* returned True (requests not started are
        left None), or monotonic *deadline* passed (unanswered ones get TimeoutError).
        Never raises.
        """
        outcomes: list[Outcome] = [None] * len(bodies)
        if not bodies:
            return outcomes
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.authority}\r\n".encode("latin-1")
            + headers
        )
        try:
            self._loop.run_until_complete(
                self._run(bodies, head, deadline, stop, outcomes)
            )
        except BaseException as exc:  # a bug here must not kill the worker
            for index, outcome in enumerate(outcomes):
                if outcome is None:
                    outcomes[index] = exc
        return outcomes

    async def _run(
        self,
        bodies: Sequence[bytes],
        head: bytes,
        deadline: float,
        stop: StopRule,
        outcomes: list[Outcome],
    ) -> None:
        pending = iter(range(len(bodies)))
        stopped = False

        async def lane() -> None:
            nonlocal stopped
            conn: _Connection | None = None
            try:
                for index in pending:
                    if stopped:
                        return
                    body = bodies[index]
                    payload = b"%sContent-Length: %d\r\n\r\n%s" % (
                        head,
                        len(body),
                        body,
                    )
                    result: Response | BaseException
                    try:
                        conn, result = await self._exchange(conn, payload)
                    except (OSError, ValueError, EOFError) as exc:
                        conn, result = None, exc
                    outcomes[index] = result
                    if stop(index, result):
                        stopped = True
            except asyncio.CancelledError:
                if conn is not None:
                    conn.abort()
                    conn = None
                raise
            finally:
                if conn is not None and not conn.closed:
                    self._idle.append(conn)

        lanes = [
            asyncio.ensure_future(lane())
            for _ in range(min(self.connections, len(bodies)))
        ]
        _, late = await asyncio.wait(
            lanes, timeout=max(0.0, deadline - time.monotonic())
        )
        for task in late:
            task.cancel()
        if late:
            await asyncio.gather(*late, return_exceptions=True)
            for index, outcome in enumerate(outcomes):
                if outcome is None and not stopped:
                    outcomes[index] = TimeoutError("send deadline passed")

    async def _exchange(
        self, conn: _Connection | None, payload: bytes
    ) -> tuple[_Connection | None, Response]:
        if conn is None or conn.closed:
            conn = await self._connection()
        try:
            response = await conn.request(payload)
        except ConnectionResetError as exc:
            if not getattr(exc, "reused", False):
                raise
            # The server closed an idle keep-alive connection as we reused it and
            # answered nothing: it saw no request, so one fresh attempt is safe.
            conn = await self._connection()
            response = await conn.request(payload)
        return (None if conn.closed else conn), response

    async def _connection(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if not conn.closed:
                return conn
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            _Connection,
            self.host,
            self.port,
            ssl=self.ssl,
            server_hostname=self.host if self.ssl else None,
        )
        return conn

    def close(self) -> None:
        """Close every idle connection and the loop; call from the sending thread."""
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.abort()
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))  # let aborts finish
                loop.close()

    def forget(self) -> None:
        """Drop connections without touching them (a fork child shares their fds)."""
        ABANDONED.append((self._loop, self._idle))
        self._loop, self._idle = None, []


ABANDONED: list[object] = []
"""A fork child's inherited loops and connections: kept, so no finalizer closes them."""
