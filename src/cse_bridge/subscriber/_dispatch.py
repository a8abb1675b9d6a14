"""
The dispatcher: the one thread that runs user callbacks, off the socket's path.

The socket thread only parses and hands batches over through a bounded queue; this
thread sequences them (``Sequencer``: backfill merge, de-duplication) and calls the
listeners. A listener that raises is reported through ``error`` and the stream goes on.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from typing import Any, Final, cast

__all__ = ["DEFAULT_QUEUE_SIZE", "Dispatcher", "EventName"]

logger = logging.getLogger(__name__)

DEFAULT_QUEUE_SIZE: Final = 1024
"""Batches (one per socket read) the socket thread may be ahead of the callbacks."""
EVENT_NAMES: Final = ("event", "connect", "disconnect", "error")
EventName = str
_LOG_INTERVAL: Final = 10.0
_STOP: Final = object()


class Dispatcher:
    """
    Runs work items and listener calls in order on ``cse-bridge-pubsub-dispatch``.

    ``post`` is safe from any thread; it blocks while the queue is full (back-pressure
    on the socket thread, never a silent drop), giving up once *stopped* is set.

    Args:
        stopped: Set when the client is shutting down; unblocks ``post``.
        maxsize: Queue bound, in items.
    """

    def __init__(self, stopped: threading.Event, maxsize: int = DEFAULT_QUEUE_SIZE):
        self._queue: queue.Queue[object] = queue.Queue(maxsize)
        self._stopped = stopped
        self._listeners: dict[str, tuple[Callable[..., Any], ...]] = dict.fromkeys(
            EVENT_NAMES, ()
        )
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._logged_at = -_LOG_INTERVAL

    # listeners (copy-on-write tuples: the dispatcher reads them without the lock)

    def add(self, name: str, callback: Callable[..., Any]) -> None:
        """Register *callback* for *name*; safe from any thread."""
        if name not in self._listeners:
            raise ValueError(f"unknown event {name!r}; expected one of {EVENT_NAMES}")
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._lock:
            self._listeners[name] = (*self._listeners[name], callback)

    def remove(self, name: str, callback: Callable[..., Any]) -> None:
        """Unregister *callback* (its first registration); no error if absent."""
        with self._lock:
            current = list(self._listeners.get(name, ()))
            if callback in current:
                current.remove(callback)
                self._listeners[name] = tuple(current)

    def has(self, name: str) -> bool:
        """True when *name* has a listener."""
        return bool(self._listeners.get(name))

    # the thread

    def start(self) -> None:
        """Start the thread if it is not running; safe from any thread."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return
            self._thread = threading.Thread(
                target=self._run, name="cse-bridge-pubsub-dispatch", daemon=True
            )
            self._thread.start()

    def stop(self, timeout: float) -> None:
        """
        Run what is queued, then end the thread; waits at most *timeout* seconds.

        From a listener (the dispatcher thread itself) it returns at once.
        """
        thread = self._thread
        if thread is None:
            return
        self._put(_STOP, force=True)
        # ident is None if start() was interrupted (Ctrl-C) before the thread ran.
        if thread.ident is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def post(self, func: Callable[..., None], *args: Any, force: bool = False) -> bool:
        """
        Queue ``func(*args)`` for the thread.

        Returns:
            False if the queue stayed full until the client stopped (unless *force*:
            then it waits for room however long it takes).
        """
        return self._put((func, args), force=force)

    def emit(self, name: str, *args: Any) -> None:
        """Queue a call of every *name* listener with *args*."""
        self.post(self.call_listeners, name, *args)

    def _put(self, item: object, *, force: bool) -> bool:
        while True:
            try:
                # A timeout, not a plain put(): disconnect() must be able to get a
                # socket thread unstuck that waits on a callback that never returns.
                self._queue.put(item, timeout=0.1)
            except queue.Full:
                if self._stopped.is_set() and not force:
                    return False
                continue
            return True

    def _run(self) -> None:
        get = self._queue.get
        while True:
            item = get()
            if item is _STOP:
                return
            func, args = cast("tuple[Callable[..., None], tuple[Any, ...]]", item)
            try:
                func(*args)
            except Exception as exc:  # our own bug: report, keep the thread alive
                self._report(exc, "pub/sub dispatcher step failed")

    def call_listeners(self, name: str, *args: Any) -> None:
        """Call every *name* listener now; dispatcher thread only."""
        for callback in self._listeners[name]:
            try:
                callback(*args)
            except Exception as exc:
                self._failed(name, exc)

    def call_each(self, name: str, items: list[Any]) -> None:
        """
        Call every *name* listener with each of *items* in turn; dispatcher only.

        ``call_listeners`` for each item, in one call per batch; the listeners are
        read again for every item, so an ``off()`` from a listener applies at once.
        """
        listeners = self._listeners
        for item in items:
            for callback in listeners[name]:
                try:
                    callback(item)
                except Exception as exc:
                    self._failed(name, exc)

    def _failed(self, name: str, exc: Exception) -> None:
        if name == "error":
            self._report(exc, "pub/sub error listener raised")
        elif self.has("error"):
            self.call_listeners("error", exc)
        else:
            self._report(exc, f"pub/sub {name} listener raised")

    def report(self, error: BaseException) -> None:
        """Deliver *error* to the ``error`` listeners, or log it if there are none."""
        if self.has("error"):
            self.call_listeners("error", error)
        else:
            self._report(error, "pub/sub error")

    def _report(self, exc: BaseException, what: str) -> None:
        # Rate-limited: a listener failing on every event must not flood the log.
        now = time.monotonic()
        if now - self._logged_at >= _LOG_INTERVAL:
            self._logged_at = now
            logger.warning("%s: %r", what, exc, exc_info=exc)
