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
import concurrent.futures
import contextlib
import logging
import ssl
import threading
import time
from collections.abc import Callable, Coroutine, Iterator, Sequence
from typing import Final, Protocol
from urllib.parse import urlsplit

from ._http11 import Response, ResponseReader
from ._lifecycle import on_engine_thread
from ._options import DEFAULT_CONNECTIONS

__all__ = [
    "ABANDONED",
    "AsyncTransport",
    "DaemonExecutor",
    "Outcome",
    "Response",
    "Transport",
]

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


_PULL_BUDGET: Final = 0.001
"""
Seconds of pulling bodies from a lazy source before the loop gets a turn.

Pulling encodes: a 1,000-span pack takes about 10 ms. Lanes pulling one after the
other in the same turn would leave connections unopened, large requests half
written and answers unread until the last one is done (sixteen packs: ~150 ms of
silence on the wire). Once this much pulling has been done, the next lane waits one
loop turn, in which connects progress, writes go on and answers are read; small
bodies pull a hundred at a time without extra turns.
"""

_READ_BUFFER: Final = 16 * 1024
"""
Bytes one read of a connection takes at most, into a buffer the connection owns.

A plain ``asyncio.Protocol`` gets a new 256 KiB ``bytes`` per read: allocated with
``mmap``, shrunk with ``mremap`` and freed with ``munmap``, three syscalls per answer
(more than the request's own send and receive). Reading into one preallocated buffer
(``BufferedProtocol``) makes each answer one ``recv_into``.
"""


class _Connection(asyncio.BufferedProtocol):
    """
    One keep-alive HTTP/1.1 connection; one request at a time.

    The answer is handed straight to the owning ``_Run`` from ``data_received``: no
    Future, no task wake-up and no coroutine step per request, which were most of
    the worker's Python cost per event.
    """

    def __init__(self) -> None:
        self._buffer = memoryview(bytearray(_READ_BUFFER))
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.uses = 0
        self._reader = ResponseReader()
        self._received = False
        self.owner: _Run | None = None
        self.index = -1
        """The outcome slot of the request in flight, or -1 if none is."""
        self.payload = b""
        self.retried = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - stream sockets only
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.index < 0:
            return
        try:
            response = self._reader.at_eof()  # a read-to-close body
        except ValueError:
            response = None
        if response is not None:
            self._answer(response)
            return
        error = ConnectionResetError(str(exc) if exc else "connection closed")
        # Tagged for the retry rule: a reused idle connection the server
        # closed is safe to retry once.
        error.reused = self.uses > 0 and not self._received  # type: ignore[attr-defined]  # tag
        self._answer(error)

    def request(self, owner: _Run, index: int, payload: bytes, retried: bool) -> None:
        self.owner, self.index, self.payload, self.retried = (
            owner,
            index,
            payload,
            retried,
        )
        self._reader.reset()
        self._received = False
        self.uses += 1
        assert self.transport is not None  # noqa: S101 - connected before use
        self.transport.write(payload)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._buffer

    def buffer_updated(self, nbytes: int) -> None:
        self.data_received(self._buffer[:nbytes].tobytes())

    def data_received(self, data: bytes) -> None:
        self._received = True
        if self.index < 0:
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
        self._answer(response)

    def _answer(self, result: Response | BaseException) -> None:
        owner, index = self.owner, self.index
        self.owner, self.index = None, -1
        if owner is not None:
            owner.answered(self, index, result)

    def abort(self, exc: BaseException | None = None) -> None:
        """Drop the connection; report *exc* for the request in flight, if given."""
        self.closed = True
        if self.transport is not None:
            self.transport.abort()
        if exc is not None and self.index >= 0:
            self._answer(exc)
        # Without exc (the deadline passed): forget the request, so the
        # connection_lost that follows reports nothing to a finished run.
        self.owner, self.index = None, -1


class _Run:
    """
    One ``post_many``: its lanes, driven by callbacks as answers arrive.

    A lane is one connection carrying one request at a time; when its answer
    arrives, the lane records it, asks *stop*, and writes the next body right away
    (or one loop turn later: ``_PULL_BUDGET``). A lane that has to wait for its
    turn without a connection opens one meanwhile, so its body goes out as soon as
    it is made. Only opening a connection needs a task (``_open``).
    """

    def __init__(
        self,
        sender: AsyncTransport,
        source: Iterator[bytes],
        head: bytes,
        stop: StopRule,
        outcomes: list[Outcome],
        *,
        done: asyncio.Future[None],
    ) -> None:
        self.sender = sender
        self.source = source
        self.head = head
        self.stop = stop
        self.outcomes = outcomes
        self.done = done
        self.stopped = False
        self.expired = False
        self.lanes = 0
        self.used: list[_Connection] = []
        """Every connection a lane took: the deadline aborts the busy ones."""
        self.opening: set[asyncio.Task[None]] = set()
        self.pulled = 0.0
        """Seconds spent pulling since the gate last closed (``_PULL_BUDGET``)."""
        self.gate: asyncio.Handle | None = None
        """The loop turn after which the ``ready`` lanes pull, if one is due."""
        self.ready: list[_Connection] = []
        """Lanes waiting for the gate with a connection: they pull when it opens."""
        self.unconnected = 0
        """Lanes waiting for the gate without one: they get theirs one at a time."""
        self.ahead: asyncio.Task[None] | None = None
        """The connection being opened for one of the ``unconnected`` lanes."""

    def start(self, count: int) -> None:
        self.lanes = count
        if count <= 0:
            self.done.set_result(None)
        for _ in range(count):
            self.next(None)

    def next(
        self, conn: _Connection | None, refused: BaseException | None = None
    ) -> None:
        """
        Give a lane (on *conn* if still open) its next request, or end it.

        If the pulling budget of this loop turn is spent, the lane waits for the
        gate instead (``_wait``). A lane that could not connect (*refused*, from
        ``_open_ahead``) gives its next body that error as its outcome.
        """
        if self.done.done():
            return
        try:
            if self.stopped:
                self._end_lanes(conn)
                return
            if self.gate is not None and refused is None:  # _PULL_BUDGET spent
                self._wait(conn)
                return
            # Pulled only now that this connection is free: a lazy source encodes
            # while the other connections' requests are in flight.
            taken = self._take()
            if taken is None:
                self._end_lanes(conn)
            elif refused is not None:
                self.answered(None, taken[0], refused)
            else:
                self._send(conn, *taken, retried=False)
        except BaseException as exc:  # a bug (ours or the source's)
            self._lane_failed(conn, exc)

    def _wait(self, conn: _Connection | None) -> None:
        """
        Queue a lane for the gate. Without a connection it gets one first: one
        lane at a time, so that what a slow source makes goes out at once.

        One at a time, not all: the source may have nothing more (a single large
        pack), and each connection costs a handshake and a place under the
        gateway's cap.
        """
        if conn is None or conn.closed:
            conn = self._take_idle()
            if conn is None:
                self.unconnected += 1
                self._connect_ahead()
                return
        self.ready.append(conn)

    def _connect_ahead(self) -> None:
        """Open a connection for one unconnected lane, unless one is being opened."""
        if self.ahead is None and self.unconnected:
            self.unconnected -= 1
            self.ahead = self._start_connect(self._open_ahead())

    def _end_lanes(self, conn: _Connection | None) -> None:
        """
        The source ran dry or *stop* said so: this lane (on *conn*) ends, and so do
        the lanes waiting without a connection (nothing is left for them).
        """
        self._lane_done(conn)
        while self.unconnected:
            self.unconnected -= 1
            self._lane_done(None)

    def _take(self) -> tuple[int, bytes] | None:
        """Pull the next body; return its outcome slot and request, or None."""
        started = time.perf_counter()
        body = next(self.source, None)
        self.pulled += time.perf_counter() - started
        if self.pulled > _PULL_BUDGET and self.gate is None:
            self.pulled = 0.0
            self.gate = asyncio.get_running_loop().call_soon(self._open_gate)
        if body is None:
            return None
        outcomes = self.outcomes
        index = len(outcomes)
        outcomes.append(None)
        return index, b"%s%d\r\n\r\n%s" % (self.head, len(body), body)

    def _open_gate(self) -> None:
        """The loop had its turn: the ready lanes pull (until the budget is spent)."""
        self.gate = None
        ready = self.ready
        # Until spent again (the rest wait for the next turn) or the run ended
        # (release() gives the rest their connections back).
        while ready and self.gate is None and not self.done.done():
            self.next(ready.pop(0))

    def release(self) -> None:
        """The run ended: the lanes still waiting give their connections back."""
        if self.gate is not None:
            self.gate.cancel()
            self.gate = None
        self.sender.idle.extend(conn for conn in self.ready if not conn.closed)
        self.ready = []

    def _take_idle(self) -> _Connection | None:
        """An idle keep-alive connection for a lane of this run, or None."""
        conn = self.sender.take_idle()
        if conn is not None:
            self.used.append(conn)
        return conn

    def _send(
        self, conn: _Connection | None, index: int, payload: bytes, *, retried: bool
    ) -> None:
        if conn is None or conn.closed:
            conn = self._take_idle()
            if conn is None:
                self._start_connect(self._open(index, payload, retried))
                return
        conn.request(self, index, payload, retried)

    def _start_connect(
        self, connect: Coroutine[None, None, None]
    ) -> asyncio.Task[None]:
        """Run *connect* (``_open``, ``_open_ahead``) as a task the run can cancel."""
        task = asyncio.ensure_future(connect)
        self.opening.add(task)
        task.add_done_callback(self.opening.discard)
        return task

    async def _dial(self) -> _Connection:
        sender = self.sender
        _, conn = await asyncio.get_running_loop().create_connection(
            _Connection,
            sender.host,
            sender.port,
            ssl=sender.ssl,
            server_hostname=sender.host if sender.ssl else None,
        )
        return conn

    async def _open(self, index: int, payload: bytes, retried: bool) -> None:
        """Connect, then send *payload* (request *index*)."""
        try:
            conn = await self._dial()
        except (OSError, ValueError, EOFError) as exc:
            if not self.done.done():  # else the run ended meanwhile (deadline, stop)
                self.answered(None, index, exc)
            return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug (ours or asyncio's)
            self._lane_failed(None, exc)
            return
        if self.done.done():  # the run ended while connecting: keep it for later
            self.sender.idle.append(conn)
            return
        self.used.append(conn)
        conn.request(self, index, payload, retried)

    async def _open_ahead(self) -> None:
        """Connect for a waiting lane (``_wait``), which then pulls its body."""
        try:
            conn = await self._dial()
        except (OSError, ValueError, EOFError) as exc:
            self.ahead = None
            if not self.done.done():
                self.next(None, refused=exc)
                self._connect_ahead()
            return
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # a bug (ours or asyncio's)
            self.ahead = None
            self._lane_failed(None, exc)
            self._connect_ahead()
            return
        self.ahead = None
        if self.done.done():
            self.sender.idle.append(conn)
            return
        self.used.append(conn)
        self.next(conn)  # pulls now, or waits in ready for the gate
        self._connect_ahead()  # the next unconnected lane's turn

    def answered(
        self, conn: _Connection | None, index: int, result: Response | BaseException
    ) -> None:
        """Record the outcome of request *index*; give the lane its next one."""
        try:
            if (
                conn is not None
                and not conn.retried
                and isinstance(result, ConnectionResetError)
                and getattr(result, "reused", False)
            ):
                # The server closed an idle keep-alive connection as we reused it
                # and answered nothing: it saw no request, so one fresh attempt is
                # safe.
                self._send(None, index, conn.payload, retried=True)
                return
            if isinstance(result, BaseException) and not isinstance(
                result, (OSError, ValueError, EOFError)
            ):
                self._lane_failed(conn, result)
                return
            self.outcomes[index] = result
            if self.stop(index, result):
                self.stopped = True
        except BaseException as exc:  # a bug (ours or the stop rule's)
            self._lane_failed(conn, exc)
            return
        self.next(conn if conn is not None and not conn.closed else None)

    def _lane_done(self, conn: _Connection | None) -> None:
        if conn is not None and not conn.closed:
            self.sender.idle.append(conn)
        self.lanes -= 1
        if self.lanes <= 0 and not self.done.done():
            self.done.set_result(None)

    def _lane_failed(self, conn: _Connection | None, exc: BaseException) -> None:
        """A bug ends its lane only, reported like a failed task's; the others go on."""
        if not isinstance(exc, Exception):  # KeyboardInterrupt and such: stop all
            self.fail(exc)
            return
        asyncio.get_running_loop().call_exception_handler(
            {"message": "cse-bridge: a send lane failed", "exception": exc}
        )
        self._lane_done(conn)

    def fail(self, exc: BaseException) -> None:
        """End the run with *exc* (post_many reports it for the open requests)."""
        if not self.done.done():
            self._abort_busy()
            self.done.set_exception(exc)

    def expire(self) -> None:
        """The deadline passed: abort the requests in flight, end the run."""
        if not self.done.done():
            self.expired = True
            self._abort_busy()
            self.done.set_result(None)

    def _abort_busy(self) -> None:
        # Between two requests a connection is idle (a finished lane's) or waiting
        # for the gate (release() keeps it); only one owned by this run is busy.
        for conn in self.used:
            if conn.owner is self:
                conn.abort()


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
        connections: int = DEFAULT_CONNECTIONS,
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
        self.idle: list[_Connection] = []
        self._running: _Run | None = None
        """The send in flight, for ``interrupt`` (another thread)."""

    def interrupt(self) -> None:
        """
        End the send in flight now, as if its deadline had passed. Any thread.

        Shutdown calls it at the drain deadline when a spool waits for what the
        send holds: a send started before shutdown began runs to its own deadline
        otherwise. A no-op between sends.
        """
        loop, run = self._loop, self._running
        if loop is not None and run is not None:
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(run.expire)

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
            self._loop.set_default_executor(DaemonExecutor())
        # Everything but the length and the body, built once per batch.
        head = (
            f"POST {self.path} HTTP/1.1\r\nHost: {self.authority}\r\n".encode("latin-1")
            + headers
            + b"Content-Length: "
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
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()
        run = _Run(self, source, head, stop, outcomes, done=done)
        timer = loop.call_later(max(0.0, deadline - time.monotonic()), run.expire)
        lanes = self.connections if total is None else min(self.connections, total)
        self._running = run
        try:
            run.start(lanes)
            await done
        finally:
            self._running = None
            timer.cancel()
            run.release()
            if run.opening:  # the deadline or a bug cut connects short
                for task in run.opening:
                    task.cancel()
                await asyncio.gather(*run.opening, return_exceptions=True)
        if not run.expired or run.stopped:
            return False
        for index, outcome in enumerate(outcomes):
            if outcome is None:
                outcomes[index] = TimeoutError("send deadline passed")
        return True

    def take_idle(self) -> _Connection | None:
        """An open keep-alive connection left by an earlier request, or None."""
        idle = self.idle
        while idle:
            conn = idle.pop()
            if not conn.closed:
                return conn
        return None

    def close(self) -> None:
        """Close every idle connection and the loop; call from the sending thread."""
        idle, self.idle = self.idle, []
        for conn in idle:
            conn.abort()
        loop, self._loop = self._loop, None
        if loop is not None and not loop.is_closed() and not loop.is_running():
            with contextlib.suppress(Exception):
                loop.run_until_complete(asyncio.sleep(0))  # let aborts finish
                loop.close()

    def forget(self) -> None:
        """Drop connections without touching them (a fork child shares their fds)."""
        ABANDONED.append((self._loop, self.idle))
        self._loop, self.idle = None, []


class DaemonExecutor(concurrent.futures.ThreadPoolExecutor):
    """
    Runs each call (the loop's ``getaddrinfo``) on a daemon thread of its own.

    asyncio resolves names on its default executor, whose threads the interpreter
    joins at exit: a resolver that never answers then held the exit for its whole
    timeout (10 s and more), past the exit budget. A daemon thread is not joined;
    the send's deadline abandons the lookup instead.
    """

    def __init__(self) -> None:
        super().__init__(max_workers=1, thread_name_prefix="cse-bridge-resolve")

    def submit(  # type: ignore[override]  # same call, no pool
        self, fn: Callable[..., object], /, *args: object, **kwargs: object
    ) -> concurrent.futures.Future[object]:
        """Run ``fn(*args, **kwargs)`` on a new daemon thread; return its future."""
        future: concurrent.futures.Future[object] = concurrent.futures.Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:  # handed to the awaiting coroutine
                future.set_exception(exc)

        threading.Thread(target=run, name="cse-bridge-resolve", daemon=True).start()
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Nothing to stop: each call's thread ends with it, and none is joined."""


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
