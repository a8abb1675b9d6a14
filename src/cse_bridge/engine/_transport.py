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
import logging
import ssl
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Protocol
from urllib.parse import urlsplit

from ._http11 import Response, ResponseReader
from ._lifecycle import on_engine_thread

__all__ = ["ABANDONED", "AsyncTransport", "Outcome", "Response", "Transport"]

Outcome = Response | BaseException | None
"""Per request: the answer, the error that prevented one, or None (never attempted)."""

StopRule = Callable[[int, Response | BaseException], bool]
"""Called with each outcome on the sending thread; True stops taking new requests."""


class Transport(Protocol):
    """Posts request bodies to ``{gateway}/events``; used by one thread at a time."""

    def post_many(
        self,
        bodies: Sequence[bytes] | Iterator[bytes],
        headers: bytes,
        deadline: float,
        stop: StopRule,
    ) -> list[Outcome]:
        """
        POST every body (until *stop* says so or monotonic *deadline*); no raise.

        For a sequence, one outcome per body; for an iterator (taken lazily, as a
        connection frees up), one per body taken.
        """

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
                # Tagged for the retry rule: a reused idle connection the server
                # closed is safe to retry once.
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
        self,
        bodies: Sequence[bytes] | Iterator[bytes],
        headers: bytes,
        deadline: float,
        stop: StopRule,
    ) -> list[Outcome]:
        """
        POST each body to the gateway with *headers* (ending in ``\\r\\n``).

        *bodies* may be an iterator: each free connection takes the next body only
        when it is ready to send it, so the caller can encode body N+1 while bodies
        up to N are in flight (the outcomes then cover the bodies taken, in order).
        Blocks until all are answered, *stop* returned True (requests not started are
        left None), or monotonic *deadline* passed (unanswered ones get TimeoutError).
        Never raises.
        """
        total = len(bodies) if isinstance(bodies, Sequence) else None
        outcomes: list[Outcome] = []
        if total == 0:
            return outcomes
        if self._loop is None or self._loop.is_closed():
            _quiet_private_loops()
            self._loop = asyncio.new_event_loop()
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.authority}\r\n".encode("latin-1")
            + headers
        )
        try:
            late = self._loop.run_until_complete(
                self._run(iter(bodies), head, deadline, stop, outcomes, total=total)
            )
        except BaseException as exc:  # a bug here must not kill the worker
            late = False
            outcomes[:] = [exc if o is None else o for o in outcomes]
            if total is not None:
                outcomes.extend([exc] * (total - len(outcomes)))
        if total is not None:
            fill = TimeoutError("send deadline passed") if late else None
            outcomes.extend([fill] * (total - len(outcomes)))
        return outcomes

    async def _run(
        self,
        source: Iterator[bytes],
        head: bytes,
        deadline: float,
        stop: StopRule,
        outcomes: list[Outcome],
        *,
        total: int | None,
    ) -> bool:
        """Run the lanes; True if the deadline cut them short (and stop did not)."""
        stopped = False

        async def lane() -> None:
            nonlocal stopped
            conn: _Connection | None = None
            try:
                while not stopped:
                    # Pulled only now that this connection is free: a lazy source
                    # encodes while the other connections' requests are in flight.
                    body = next(source, None)
                    if body is None:
                        return
                    index = len(outcomes)
                    outcomes.append(None)
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

        count = self.connections if total is None else min(self.connections, total)
        lanes = [asyncio.ensure_future(lane()) for _ in range(count)]
        _, late = await asyncio.wait(
            lanes, timeout=max(0.0, deadline - time.monotonic())
        )
        for task in late:
            task.cancel()
        if not late:
            return False
        await asyncio.gather(*late, return_exceptions=True)
        if stopped:
            return False
        for index, outcome in enumerate(outcomes):
            if outcome is None:
                outcomes[index] = TimeoutError("send deadline passed")
        return True

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


def _drop_engine_records(record: logging.LogRecord) -> bool:
    return not on_engine_thread()


def _quiet_private_loops() -> None:
    """Keep asyncio's chatter about the engine's private loop out of the app's logs."""
    # asyncio logs "Using selector: ..." at DEBUG for every new loop. The engine
    # creates its loop on its own thread, often at the application's first log
    # call, and that line is about our internals, not the application: filter the
    # asyncio records made on engine threads (only those) for every handler.
    asyncio_logger = logging.getLogger("asyncio")
    if _drop_engine_records not in asyncio_logger.filters:
        asyncio_logger.addFilter(_drop_engine_records)


ABANDONED: list[object] = []
"""A fork child's inherited loops and connections: kept, so no finalizer closes them."""
