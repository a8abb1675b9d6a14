"""
``Forwarder``: follow sandboxes over pub/sub and hand every event to the sinks once.

Threads: each ``PubSubClient`` reads its socket and calls ``_receive`` on its
dispatcher thread; ``_receive`` only puts the event in a bounded hand-off queue (a full
queue drops and counts, so a slow sink never stalls a socket and the gateway never
cuts the subscriber off). A drop is not a loss when there is an API key: the sink
thread, once it has room again, re-reads the sandbox from the store after the last
event it delivered (``resync``), at the sinks' own pace, so delivery stays at least
once however slow the sinks are.

One sink thread (``cse-bridge-forward``) takes events in order, skips ids already
delivered, calls every sink, and every ``checkpoint_interval`` flushes the sinks and
saves the cursors to the state file.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Final

from ..engine import mark_engine_thread
from ..models import SandboxEvent
from ._resync import Gaps
from ._state import Cursor, StateFile
from ._types import ForwarderStats, Sink

if TYPE_CHECKING:
    from ..subscriber import PubSubClient

__all__ = ["DEFAULT_HANDOFF_SIZE", "Forwarder"]

logger = logging.getLogger(__name__)

DEFAULT_HANDOFF_SIZE: Final = 10_000
"""Events the sinks may lag behind the sockets before new ones are dropped."""
_WARN_INTERVAL: Final = 10.0


class _Flush:
    """A marker in the hand-off queue: set once everything before it is delivered."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.done = threading.Event()
        self.ok = False


_STOP: Final = object()


class Forwarder:
    """
    Follows one or many sandboxes and delivers each event to every sink, at least once.

    ``start()`` connects every subscriber (blocking up to *connect_timeout* each) and
    starts the sink thread; ``stop()`` disconnects, delivers what was received, closes
    the sinks and saves the state. Every public method is safe from any thread.

    Args:
        sinks: Where events go, in this order.
        sandboxes: Sandbox ids to follow (at least one, or named by a token).
        tokens: An access token per sandbox id (pub/sub ``SUBSCRIBE`` needs one that
            names the sandbox); a sandbox without one uses *access_token*.
        access_token: Default token; env ``COMPUTESDK_ACCESS_TOKEN``.
        api_key: For history (``since``, resume) and gap-free reconnects; env
            ``COMPUTESDK_API_KEY``.
        gateway_url: HTTP base URL for history; env ``COMPUTESDK_GATEWAY_URL``.
        host: Pub/sub host; env ``COMPUTESDK_PUBSUB_HOST``.
        port: Pub/sub port; env ``COMPUTESDK_PUBSUB_PORT``.
        since: History first: events stored strictly after this ms timestamp.
        state_file: Resume from, and save to, this file (overrides *since* for the
            sandboxes it knows).
        handoff_size: Bound of the hand-off queue, in events.
        checkpoint_interval: Seconds between two sink flushes + state saves.
        connect_timeout: Seconds each subscriber may take to connect.
        tls: Speak TLS to the pub/sub port; env ``COMPUTESDK_PUBSUB_TLS``.
        ca_file: The CA bundle that verifies the gateway (pub/sub and history); else
            ``SSL_CERT_FILE``, else ``REQUESTS_CA_BUNDLE``, else the system's.
    """

    def __init__(
        self,
        sinks: Sequence[Sink],
        *,
        sandboxes: Sequence[str] = (),
        tokens: Mapping[str, str] | None = None,
        access_token: str | None = None,
        api_key: str | None = None,
        gateway_url: str | None = None,
        host: str | None = None,
        port: int | None = None,
        since: int | None = None,
        state_file: str | Path | None = None,
        handoff_size: int = DEFAULT_HANDOFF_SIZE,
        checkpoint_interval: float = 1.0,
        connect_timeout: float = 10.0,
        tls: bool | None = None,
        ca_file: str | None = None,
    ) -> None:
        if not sinks:
            raise ValueError("at least one sink is required")
        if handoff_size < 1 or checkpoint_interval <= 0:
            raise ValueError("handoff_size and checkpoint_interval must be positive")
        tokens = dict(tokens or {})
        wanted = list(dict.fromkeys([*sandboxes, *tokens]))
        if not wanted:
            raise ValueError("no sandbox to follow: give sandboxes or tokens")
        self.sinks = tuple(sinks)
        self._state = StateFile(state_file) if state_file is not None else None
        self._cursors: dict[str, Cursor] = self._state.load() if self._state else {}
        self._queue: queue.Queue[object] = queue.Queue(handoff_size)
        self._interval = checkpoint_interval
        self._connect_timeout = connect_timeout
        self._lock = threading.Lock()  # guards the counters, read by stats()
        self._received = self._delivered = self._duplicates = 0
        self._overflow = self._sink_errors = self._resynced = self._lost = 0
        self._gaps = Gaps(api_key, gateway_url, ca_file=ca_file)
        self._lag_ms: int | None = None
        self._newest_ms: int | None = None
        # Per sink, in the order of self.sinks: labels for /metrics, unique even if
        # two sinks share a name (two jsonl files).
        names = [sink.name for sink in self.sinks]
        self._sink_labels = tuple(
            name if names.count(name) == 1 else f"{name}-{names[:i].count(name) + 1}"
            for i, name in enumerate(names)
        )
        self._sink_delivered = [0] * len(self.sinks)
        self._sink_failed = [0] * len(self.sinks)
        self._connects: dict[str, int] = {}
        self._warned_at = -_WARN_INTERVAL
        self._thread: threading.Thread | None = None
        self._stopped = False
        self.clients: dict[str, PubSubClient] = {}
        from ..subscriber import PubSubClient

        for sandbox in wanted:
            cursor = self._cursors.setdefault(sandbox, Cursor())
            start = cursor.resume_since()
            self.clients[sandbox] = PubSubClient(
                sandbox_id=sandbox,
                access_token=tokens.get(sandbox, access_token),
                host=host,
                port=port,
                api_key=api_key,
                gateway_url=gateway_url,
                since=start if start is not None else since,
                connect_timeout=connect_timeout,
                tls=tls,
                ca_file=ca_file,
            )

    # --- lifecycle ---------------------------------------------------------------

    def start(self) -> Forwarder:
        """
        Start the sink thread and connect every subscriber; return self.

        Blocks until each one is connected (up to *connect_timeout* each).

        Raises:
            EventsAuthError: A sandbox has no access token.
            EventsPubSubError: A subscription was refused or timed out; the ones
                already connected are disconnected again.
        """
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="cse-bridge-forward", daemon=True
            )
            self._thread.start()
        try:
            for sandbox, client in self.clients.items():
                client.on("event", self._receive)
                client.on("error", self._report)
                client.on("connect", lambda sandbox=sandbox: self._connected(sandbox))
                client.connect(self._connect_timeout)
        except BaseException:
            self.stop(timeout=2.0)
            raise
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """
        Disconnect, deliver what was received, close the sinks, save the state.

        Blocks for about *timeout* seconds at most; idempotent.
        """
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        deadline = time.monotonic() + timeout
        for client in self.clients.values():
            client.disconnect(timeout=max(0.1, deadline - time.monotonic()) / 2)
        thread = self._thread
        if thread is not None and thread.ident is not None:  # None: start interrupted
            self._queue.put(_STOP)  # blocks only until the sink thread makes room
            thread.join(max(0.1, deadline - time.monotonic()))
        for sink in self.sinks:
            sink.close(max(0.1, deadline - time.monotonic()))
        self._gaps.close()
        if thread is None or not thread.is_alive():  # else it still owns the cursors
            self._save()

    @property
    def running(self) -> bool:
        """True between ``start()`` and ``stop()`` while the sink thread lives."""
        thread = self._thread
        return thread is not None and thread.is_alive() and not self._stopped

    def flush(self, timeout: float = 5.0) -> bool:
        """
        Wait until every event received before this call was delivered and flushed.

        Blocks at most *timeout* seconds; not from the sink thread (a sink's code).

        Returns:
            True if it got there in time.
        """
        token = _Flush(timeout)
        try:
            self._queue.put(token, timeout=timeout)
        except queue.Full:
            return False
        return token.done.wait(timeout) and token.ok

    def stats(self) -> ForwarderStats:
        """Return a snapshot of the counters; O(1), safe from any thread."""
        drops = {
            f"{sink.name}.{reason}": count
            for sink in self.sinks
            for reason, count in sink.drops().items()
            if count
        }
        with self._lock:
            reconnects = sum(max(0, count - 1) for count in self._connects.values())
            return ForwarderStats(
                received=self._received,
                delivered=self._delivered,
                duplicates=self._duplicates,
                overflow=self._overflow,
                resynced=self._resynced,
                lost=self._lost,
                sink_errors=self._sink_errors,
                queued=self._queue.qsize(),
                lag_ms=self._lag_ms,
                sink_drops=drops,
                newest_delivered_ms=self._newest_ms,
                reconnects=reconnects,
                delivered_by_sink=dict(
                    zip(self._sink_labels, self._sink_delivered, strict=True)
                ),
                errors_by_sink=dict(
                    zip(self._sink_labels, self._sink_failed, strict=True)
                ),
            )

    def __enter__(self) -> Forwarder:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- subscriber side (dispatcher threads) ------------------------------------

    def _receive(self, event: SandboxEvent) -> None:
        # Never block here: this is the subscriber's dispatcher, and a blocked
        # dispatcher backs up into the socket reader and then the gateway.
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            recoverable = self._gaps.note(event)
            with self._lock:
                self._overflow += 1
                self._lost += not recoverable
                now = time.monotonic()
                warn = now - self._warned_at >= _WARN_INTERVAL
                if warn:
                    self._warned_at = now
            if warn:
                logger.warning(
                    "forwarder hand-off queue full (%d): the sinks are too slow; "
                    "%d events overflowed so far, %s",
                    self._queue.maxsize,
                    self._overflow,
                    "they will be re-read from the store"
                    if self._gaps.enabled
                    else "lost (no API key to re-read them)",
                )
            return
        with self._lock:
            self._received += 1

    def _connected(self, sandbox: str) -> None:
        # The first connect of each client is start(); every later one a reconnect.
        with self._lock:
            self._connects[sandbox] = self._connects.get(sandbox, 0) + 1

    def _report(self, error: BaseException) -> None:
        logger.warning("subscriber: %s", error)

    # --- sink thread ----------------------------------------------------------------

    def _run(self) -> None:
        # Records logged on this thread are the sinks' output, never the input of an
        # EventsHandler in this process (no echo back to the gateway).
        mark_engine_thread()
        next_checkpoint = time.monotonic() + self._interval
        dirty = False
        while True:
            wait = max(0.0, next_checkpoint - time.monotonic())
            try:
                item = self._queue.get(timeout=wait)
            except queue.Empty:
                item = None
            if isinstance(item, SandboxEvent):
                dirty |= self._deliver(item)
            if self._gaps and self._queue.qsize() < self._queue.maxsize // 2:
                resynced = self._gaps.fill(self._cursors, self._deliver)
                with self._lock:
                    self._resynced += resynced
                dirty |= resynced > 0
            elif isinstance(item, _Flush):
                item.ok = self._checkpoint(item.timeout)
                dirty = False
                item.done.set()
            elif item is _STOP:
                return
            if dirty and time.monotonic() >= next_checkpoint:
                self._checkpoint(self._interval)
                dirty = False
            if time.monotonic() >= next_checkpoint:
                next_checkpoint = time.monotonic() + self._interval

    def _deliver(self, event: SandboxEvent) -> bool:
        cursor = self._cursors.setdefault(event.sandbox_id, Cursor())
        if cursor.seen(event.id, event.timestamp):
            with self._lock:
                self._duplicates += 1
            return False
        errors = 0
        for index, sink in enumerate(self.sinks):
            try:
                sink.deliver(event)
            except Exception:
                errors += 1
                logger.exception("sink %s failed on event %s", sink.name, event.id)
                with self._lock:
                    self._sink_failed[index] += 1
            else:
                with self._lock:
                    self._sink_delivered[index] += 1
        cursor.advance(event.id, event.timestamp)
        with self._lock:
            self._delivered += 1
            self._sink_errors += errors
            self._lag_ms = max(0, int(time.time() * 1000) - event.timestamp)
            if self._newest_ms is None or event.timestamp > self._newest_ms:
                self._newest_ms = event.timestamp
        return True

    def _checkpoint(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        ok = True
        for sink in self.sinks:  # every sink, even after one failed
            ok = sink.flush(max(0.0, deadline - time.monotonic())) and ok
        self._save()
        return ok

    def _save(self) -> None:
        if self._state is None:
            return
        try:
            self._state.save(self._cursors)
        except OSError as exc:
            logger.warning("cannot save the state file %s: %s", self._state.path, exc)
