"""
The process around the engines: engine threads, the exit budget, atexit, fork, SIGTERM.

Everything here is process-wide on purpose: one exit budget for every engine, one
SIGTERM handler, one registry of live engines (weakly held, so none is kept alive).
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import signal
import sys
import threading
import time
import weakref
from collections.abc import Callable
from types import FrameType
from typing import Final, Protocol

__all__ = [
    "DIAGNOSTIC_INTERVAL",
    "Diagnostics",
    "begin_exit",
    "exit_budget_left",
    "install_sigterm_flush",
    "mark_engine_thread",
    "on_engine_thread",
    "register_engine",
]

DIAGNOSTIC_INTERVAL: Final = 60.0
"""Seconds between two diagnostics of the same kind (a dead backend logs once)."""

logger: Final = logging.getLogger("cse_bridge.engine")
_local = threading.local()


class _Engine(Protocol):
    def flush(self, timeout: float = 5.0) -> bool: ...
    def shutdown(self, timeout: float | None = None) -> bool: ...
    def _after_fork_in_child(self) -> None: ...


def mark_engine_thread(value: bool = True) -> None:
    """
    Mark the calling thread as the engine's own: its records are not shipped.

    Also, when OpenTelemetry is already imported (never imported from here), attach
    its suppress-instrumentation keys on this thread while marked, so instrumented
    HTTP clients and asyncio make no spans of the engine's own POSTs. ``False``
    unmarks the thread and detaches them.
    """
    _local.engine = value
    if value:
        _suppress_otel()
    else:
        _unsuppress_otel()


def _suppress_otel() -> None:
    context = sys.modules.get("opentelemetry.context")
    if context is None or getattr(_local, "otel_token", None) is not None:
        return
    try:
        current = context.get_current()
        for name in (
            "_SUPPRESS_INSTRUMENTATION_KEY",
            "_SUPPRESS_HTTP_INSTRUMENTATION_KEY",
        ):
            key = getattr(context, name, None)
            if key is not None:
                current = context.set_value(key, True, current)
        # The plain-string key older instrumentations check.
        current = context.set_value("suppress_instrumentation", True, current)
        _local.otel_token = context.attach(current)
    except Exception:  # noqa: S110 - an OTel API change must not stop the engine
        pass


def _unsuppress_otel() -> None:
    token = getattr(_local, "otel_token", None)
    context = sys.modules.get("opentelemetry.context")
    _local.otel_token = None
    if token is not None and context is not None:
        with contextlib.suppress(Exception):  # detached elsewhere: nothing to undo
            context.detach(token)


def on_engine_thread() -> bool:
    """
    Return True on a thread the engine owns (its worker and what sends for it).

    Producers call it to drop records logged while the engine itself sends (urllib3,
    our own warnings): shipping them would feed the queue from its own output. O(1).
    """
    return getattr(_local, "engine", False)


class Diagnostics:
    """Rate-limited warnings on ``cse_bridge.engine`` (stderr via ``lastResort``)."""

    def __init__(self, interval: float = DIAGNOSTIC_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Log *message* unless a *key* warning was logged within the interval."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        logger.warning(message, *args)
        return True

    def reset(self, key: str) -> None:
        """Allow the next *key* warning at once (the condition cleared)."""
        self._last.pop(key, None)


# --- the exit budget --------------------------------------------------------------

_exit_deadline: float | None = None


def begin_exit(budget: float) -> None:
    """Start the process's exit budget of *budget* seconds, unless already started."""
    global _exit_deadline  # noqa: PLW0603 - one budget per process, by design
    if _exit_deadline is None:
        _exit_deadline = time.monotonic() + budget


def exit_budget_left(default: float) -> float:
    """Seconds left of the exit budget once exit began, else *default*."""
    if _exit_deadline is None:
        return default
    return max(0.0, _exit_deadline - time.monotonic())


def interpreter_exiting() -> bool:
    """True once the main thread finished: threads must not be started any more."""
    return sys.is_finalizing() or not threading.main_thread().is_alive()


# --- registration of one engine ----------------------------------------------------

_engines: weakref.WeakSet[_Engine] = weakref.WeakSet()


def _exit_hook(ref: weakref.ref[_Engine], budget: float) -> None:
    engine = ref()
    if engine is not None:
        begin_exit(budget)
        engine.shutdown(None)


def register_engine(engine: _Engine, exit_timeout: float) -> Callable[[], None]:
    """
    Hook *engine* into the process: atexit, fork, multiprocessing children, SIGTERM.

    Every hook holds the engine weakly. Returns the function that unregisters its
    atexit hook (``shutdown`` calls it).
    """
    _engines.add(engine)
    ref = weakref.ref(engine)

    def at_exit() -> None:
        _exit_hook(ref, exit_timeout)

    atexit.register(at_exit)
    if hasattr(os, "register_at_fork"):
        reinit = weakref.WeakMethod(engine._after_fork_in_child)

        def after_in_child() -> None:
            method = reinit()
            if method is not None:
                method()
                _watch_multiprocessing_child(ref, exit_timeout)

        os.register_at_fork(after_in_child=after_in_child)

    def unregister() -> None:
        atexit.unregister(at_exit)

    return unregister


def _watch_multiprocessing_child(ref: weakref.ref[_Engine], budget: float) -> None:
    # multiprocessing's fork children end with os._exit(), so atexit never runs; its
    # Process._bootstrap clears finalizers, then runs the after-fork callbacks, then
    # at the end runs finalizers: register a finalizer from an after-fork callback.
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return

    def in_child(_: object) -> None:
        util.Finalize(None, _exit_hook, args=(ref, budget), exitpriority=10)

    engine = ref()
    if engine is not None:
        util.register_after_fork(engine, in_child)


# --- SIGTERM -----------------------------------------------------------------------

_SignalHandler = (
    Callable[[int, FrameType | None], object] | int | signal.Handlers | None
)


def install_sigterm_flush(timeout: float = 3.0) -> None:
    """
    On SIGTERM, flush every live engine (within *timeout* in all), then do what the
    previous handler did: call it, ignore the signal, or die of it by default.

    Opt-in, for containers that stop with SIGTERM. Call from the main thread.

    Raises:
        ValueError: Not called from the main thread (``signal.signal``'s rule).
    """
    previous: _SignalHandler = signal.getsignal(signal.SIGTERM)

    def on_sigterm(signum: int, frame: FrameType | None) -> None:
        end = time.monotonic() + timeout
        for engine in list(_engines):
            engine.flush(max(0.0, end - time.monotonic()))
        if callable(previous):
            previous(signum, frame)
        elif previous != signal.SIG_IGN:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGTERM)

    signal.signal(signal.SIGTERM, on_sigterm)
