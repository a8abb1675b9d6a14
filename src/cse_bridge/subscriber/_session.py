"""
One pub/sub session: the socket thread, keepalive and reconnects.

The socket thread (``cse-bridge-pubsub``) only reads, parses and hands batches to the
client's hooks; it never runs user code. It sends a ``PING`` after
``keepalive_interval`` seconds of silence and drops the connection when nothing at all
arrives within ``keepalive_timeout`` seconds after it. A dropped connection is
reopened after a capped, jittered exponential backoff that starts at
``reconnect_delay``, until ``stop()``; ``max_rejections`` ``-ERR`` answers in a row
(a token the server no longer accepts) end it for good.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections import deque
from typing import TYPE_CHECKING, Final, Protocol

from ..errors import EventsError, EventsPubSubError
from ._connect import Connection, Handshake, Settings, backoff_delay, handshake
from ._decode import decode_push
from ._resp import ErrorReply, Frame
from ._rules import PING, UNSUBSCRIBE, first_reconnect_delay, sort_frames

if TYPE_CHECKING:
    from ..models import SandboxEvent

__all__ = [
    "Handshake",
    "Session",
    "Settings",
    "backoff_delay",
    "decode_push",
    "handshake",
]

logger = logging.getLogger(__name__)

_READ_SIZE: Final = 65536
_PING: Final = PING
_UNSUBSCRIBE: Final = UNSUBSCRIBE


class Hooks(Protocol):
    """What the session tells its client; every hook runs on the socket thread."""

    def _session_events(self, events: list[SandboxEvent]) -> None: ...
    def _session_connected(self) -> None: ...
    def _session_dropped(
        self, error: EventsError | None, reconnecting: bool
    ) -> None: ...
    def _session_error(self, error: EventsError) -> None: ...
    def _session_gave_up(self, error: EventsError) -> None: ...


class Session:
    """
    Owns the socket of one client and its thread, from the first handshake to stop.

    ``start`` takes the connection that ``connect()`` opened. ``ping`` and ``stop`` are
    safe from any thread; sends are serialised by one lock so that the order of
    ``PING`` commands matches the order of their ``PONG`` replies.
    """

    def __init__(self, settings: Settings, hooks: Hooks) -> None:
        self._settings = settings
        self._hooks = hooks
        self._stopped = threading.Event()
        self._send_lock = threading.Lock()
        self._sock: Connection | None = None
        # One entry per PING sent, in order: the waiter of a user ping, None for ours.
        self._pongs: deque[list[object] | None] = deque()
        self._thread: threading.Thread | None = None

    @property
    def stopped(self) -> threading.Event:
        """Set once ``stop()`` was called."""
        return self._stopped

    def start(self, first: Handshake) -> None:
        """Start the socket thread on an open connection; returns at once."""
        self._sock = first.sock
        self._thread = threading.Thread(
            target=self._run, args=(first,), name="cse-bridge-pubsub", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float) -> None:
        """
        Say ``UNSUBSCRIBE``, close the socket and end the thread; idempotent.

        Blocks up to *timeout* seconds for the thread (not at all from itself).
        """
        self._stopped.set()
        with self._send_lock:
            sock = self._sock
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.sendall(_UNSUBSCRIBE)
                # shutdown() wakes the socket thread's recv() at once.
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
        thread = self._thread
        # ident is None if start() was interrupted (Ctrl-C) before the thread ran.
        if (
            thread is not None
            and thread.ident is not None
            and thread is not threading.current_thread()
        ):
            thread.join(timeout)

    def ping(self, timeout: float) -> float:
        """
        Send ``PING`` and wait for its ``PONG``; return the round trip in seconds.

        Blocks up to *timeout* seconds; safe from any thread but a listener.

        Raises:
            EventsPubSubError: Not connected, the connection dropped, or no answer.
        """
        waiter: list[object] = [threading.Event(), False]
        started = time.perf_counter()
        with self._send_lock:
            sock = self._sock
            if sock is None or self._stopped.is_set():
                raise EventsPubSubError("pub/sub client is not connected")
            self._pongs.append(waiter)
            try:
                sock.sendall(_PING)
            except OSError as exc:
                raise EventsPubSubError(f"pub/sub ping failed: {exc}") from None
        event = waiter[0]
        assert isinstance(event, threading.Event)  # noqa: S101 - narrows for mypy
        if not event.wait(timeout):
            raise EventsPubSubError(f"pub/sub ping: no PONG within {timeout} s")
        if not waiter[1]:
            raise EventsPubSubError("pub/sub ping: the connection dropped")
        return time.perf_counter() - started

    # the socket thread

    def _run(self, first: Handshake) -> None:
        conn: Handshake | None = first
        rejections = 0
        attempt = 0
        settings = self._settings
        while conn is not None:
            error = self._pump(conn)
            self._close(conn)
            reconnecting = settings.auto_reconnect and not self._stopped.is_set()
            self._hooks._session_dropped(error, reconnecting)
            conn = None
            while reconnecting and conn is None:
                delay = backoff_delay(
                    attempt, settings.reconnect_delay, settings.max_reconnect_delay
                )
                if attempt == 0:
                    delay = first_reconnect_delay(error, delay)
                attempt += 1
                if self._stopped.wait(delay):
                    return
                try:
                    result = handshake(settings, settings.connect_timeout)
                except EventsError as exc:
                    logger.debug("pub/sub reconnect failed: %s", exc.message)
                    continue
                if isinstance(result, ErrorReply):
                    rejections += 1
                    rejected = EventsPubSubError(result.message)
                    if rejections >= settings.max_rejections:
                        self._hooks._session_gave_up(rejected)
                        return
                    self._hooks._session_error(rejected)
                    continue
                conn = result
                with self._send_lock:
                    if self._stopped.is_set():  # stop() came during the handshake
                        conn.sock.close()
                        return
                    self._sock = conn.sock
                rejections = attempt = 0
                self._hooks._session_connected()

    def _close(self, conn: Handshake) -> None:
        with self._send_lock:
            self._sock = None
            pongs, self._pongs = self._pongs, deque()
        conn.sock.close()
        for waiter in pongs:
            if waiter is not None:
                waiter[0].set()  # type: ignore[attr-defined]  # an Event, see ping()

    def _pump(self, conn: Handshake) -> EventsError | None:
        """Read until the connection ends; return why (None: closed or stopped)."""
        settings = self._settings
        sock, reader = conn.sock, conn.reader
        buf = bytearray(_READ_SIZE)
        try:
            frames = reader.frames()  # what came with the +OK
        except EventsError as exc:
            return exc
        last_rx = time.monotonic()
        ping_sent: float | None = None
        while True:
            if frames:
                error = self._handle(frames)
                if error is not None:
                    return error
            if self._stopped.is_set():
                return None
            now = time.monotonic()
            if ping_sent is not None:
                wait = ping_sent + settings.keepalive_timeout - now
                if wait <= 0:
                    return EventsPubSubError(
                        f"pub/sub keepalive: no answer within "
                        f"{settings.keepalive_timeout} s; reconnecting"
                    )
            else:
                wait = last_rx + settings.keepalive_interval - now
                if wait <= 0:
                    with self._send_lock:
                        self._pongs.append(None)
                        try:
                            sock.sendall(_PING)
                        except OSError as exc:
                            return EventsPubSubError(f"pub/sub send failed: {exc}")
                    ping_sent = now
                    frames = []
                    continue
            try:
                sock.settimeout(wait)
                size = sock.recv_into(buf)
            except TimeoutError:
                frames = []
                continue
            except OSError as exc:
                if self._stopped.is_set():
                    return None
                return EventsPubSubError(f"pub/sub connection failed: {exc}")
            if not size:
                return None
            last_rx = time.monotonic()
            ping_sent = None  # any byte proves the connection alive
            reader.feed(bytes(buf[:size]))
            try:
                frames = reader.frames()
            except EventsError as exc:
                return exc

    def _handle(self, frames: list[Frame]) -> EventsError | None:
        # The hot path: one socket read's frames, most of them message pushes.
        batch = sort_frames(frames)
        for error in batch.errors:
            self._hooks._session_error(error)
        for _ in range(batch.pongs):
            with self._send_lock:
                waiter = self._pongs.popleft() if self._pongs else None
            if waiter is not None:
                waiter[1] = True
                waiter[0].set()  # type: ignore[attr-defined]  # an Event
        if batch.events:
            self._hooks._session_events(batch.events)
        return batch.ended
