"""
What the producers share: where their engine comes from, how long they may wait for
it, and unhandled exceptions as ``log.critical`` records. Private to this package.
"""

from __future__ import annotations

import atexit
import logging
import sys
import threading
import time
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any

from ..engine import (
    BatchEngine,
    EngineOptions,
    EventsSink,
    Transport,
    get_shared_engine,
)

__all__ = [
    "EngineSlot",
    "Throttle",
    "install_excepthook",
]

_LOCKED_WAIT = 0.1  # seconds; the worker may itself be waiting for logging's lock
_exiting = False


def _at_exit() -> None:
    # Runs before logging.shutdown (atexit is LIFO, logging registered first): from
    # here on producers neither wait for engines nor start them; engines flush
    # themselves within the exit budget.
    global _exiting  # noqa: PLW0603 - one process-wide flag
    _exiting = True


atexit.register(_at_exit)


def _wait(timeout: float) -> float:
    # dictConfig() flushes and closes handlers while holding logging's module lock; a
    # sender thread that logs blocks on it, so do not wait long for the worker then.
    owned = getattr(logging._lock, "_is_owned", None)  # type: ignore[attr-defined] # private, on RLock
    return min(timeout, _LOCKED_WAIT) if owned is not None and owned() else timeout


class Throttle:
    """Allow one diagnostic per key and *interval* seconds: a broken setup logs once."""

    def __init__(self, interval: float = 60.0) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def allow(self, key: str) -> bool:
        """Return True, and start a new interval, if *key* may be reported now."""
        now, last = time.monotonic(), self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        return True


class EngineSlot:
    """
    The engine a producer submits to: a given one, a private one, or the shared one.

    The producer's engine keywords are resolved here, once, into ``EngineOptions``
    (plus an optional ``transport``): an unknown or out-of-range one raises when the
    producer is built, not at its first record. Opened lazily on the first record
    (never during interpreter exit); safe from any thread. A private engine is shut
    down by ``close``; the others only flushed.

    Raises:
        TypeError: An unknown engine keyword.
        ValueError: An engine keyword out of range.
    """

    def __init__(
        self,
        engine: BatchEngine | None,
        *,
        own: bool,
        gateway_url: str | None = None,
        access_token: str | None = None,
        engine_options: Mapping[str, Any] | None = None,
    ) -> None:
        self.engine, self._given = engine, engine is not None
        self._own = own and engine is None
        options = dict(engine_options or {})
        self._transport: Transport | None = options.pop("transport", None)
        self._options = EngineOptions.resolve(**options)
        self._gateway_url, self._access_token = gateway_url, access_token
        self._lock = threading.Lock()

    def open(self) -> BatchEngine | None:
        """Return the engine, creating or looking it up on first use."""
        with self._lock:  # one engine even if the first records race
            if self.engine is None and not _exiting:
                if self._own:
                    sink = EventsSink(
                        self._gateway_url,
                        self._access_token,
                        connections=self._options.connections,
                        transport=self._transport,
                        ca_file=self._options.ca_file,
                    )
                    self.engine = BatchEngine(sink, self._options)
                else:
                    self.engine = get_shared_engine(
                        gateway_url=self._gateway_url,
                        access_token=self._access_token,
                        options=self._options,
                        transport=self._transport,
                    )
            return self.engine

    def flush(self, timeout: float) -> None:
        """Wait at most *timeout* for the engine; nothing at exit or when unopened."""
        engine = self.engine
        if engine is not None and not _exiting:
            engine.flush(_wait(timeout))

    def close(self, timeout: float) -> None:
        """Flush (or shut down a private engine) within *timeout*; reopens on use."""
        engine = self.engine
        if engine is None or _exiting:
            return
        if self._own:
            self.engine = None
            engine.shutdown(_wait(timeout))
        else:
            engine.flush(_wait(timeout))
            if not self._given:
                self.engine = None  # the next record asks for the current shared one


def install_excepthook(handler: logging.Handler) -> Callable[[], None]:
    """
    Ship unhandled exceptions of every thread through *handler* as ``log.critical``.

    Chains ``sys.excepthook`` and ``threading.excepthook``: the record is submitted
    first, then the previous hook runs (printing the traceback), then *handler* is
    flushed within its budget. The record's logger is ``uncaught``.

    Returns:
        A function that puts the previous hooks back (if ours are still installed).
    """
    previous_sys, previous_thread = sys.excepthook, threading.excepthook

    def ship(exc: BaseException, tb: TracebackType | None, where: str) -> None:
        frame = tb
        while frame is not None and frame.tb_next is not None:
            frame = frame.tb_next
        code = frame.tb_frame.f_code if frame is not None else None
        record = logging.LogRecord(
            "uncaught",
            logging.CRITICAL,
            code.co_filename if code else "",
            frame.tb_lineno if frame else 0,
            "Uncaught %s in %s: %s",
            (type(exc).__name__, where, exc),
            (type(exc), exc, tb),
            code.co_name if code else None,
        )
        handler.handle(record)

    def sys_hook(
        exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
    ) -> None:
        ship(exc, tb, "the main thread")
        previous_sys(exc_type, exc, tb)
        handler.flush()

    def thread_hook(args: threading.ExceptHookArgs) -> None:
        if args.exc_value is not None and args.exc_type is not SystemExit:
            name = args.thread.name if args.thread is not None else "a thread"
            ship(args.exc_value, args.exc_traceback, f"thread {name}")
        previous_thread(args)
        handler.flush()

    sys.excepthook, threading.excepthook = sys_hook, thread_hook

    def uninstall() -> None:
        if sys.excepthook is sys_hook:
            sys.excepthook = previous_sys
        if threading.excepthook is thread_hook:
            threading.excepthook = previous_thread

    return uninstall
