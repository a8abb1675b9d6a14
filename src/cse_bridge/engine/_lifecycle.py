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
from collections import Counter
from collections.abc import Callable, Mapping
from types import FrameType
from typing import Final, Protocol

from ._sigterm_watch import start_sigterm_watch

__all__ = [
    "DIAGNOSTIC_INTERVAL",
    "Diagnostics",
    "begin_exit",
    "ensure_sigterm_handler",
    "exit_budget_left",
    "exit_line",
    "format_exit_line",
    "format_spool_line",
    "install_sigterm_flush",
    "keep_sigterm_off_this_thread",
    "mark_engine_thread",
    "on_engine_thread",
    "record_spooled",
    "record_undelivered",
    "register_engine",
    "report_exit",
    "run_exit",
    "say",
    "spool_lines",
]

DIAGNOSTIC_INTERVAL: Final = 60.0
"""Seconds between two diagnostics of the same kind (a dead backend logs once)."""

logger: Final = logging.getLogger("cse_bridge.engine")
_local = threading.local()


class _Engine(Protocol):
    exit_timeout: float

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
    # Through the thread's own dict: getattr() with a default on a missing attribute
    # raises and catches an AttributeError inside, about 1 us on every record.
    return bool(_local.__dict__.get("engine", False))


def say(line: str) -> None:
    """
    Write *line* to stderr; never raises.

    The engine's reports go straight to stderr, not through ``logging``: when the
    application's only handler is an ``EventsHandler``, a warning logged about the
    gateway would go nowhere, exactly when the operator needs it.
    """
    try:
        stream = sys.stderr
        if stream is not None:
            stream.write(line + "\n")
            stream.flush()
    except Exception:  # noqa: S110 - a closed or reentered stderr: nothing to do
        pass


class Diagnostics:
    """Rate-limited report lines on stderr: one per kind and interval (``say``)."""

    def __init__(self, interval: float = DIAGNOSTIC_INTERVAL) -> None:
        self.interval = interval
        self._last: dict[str, float] = {}

    def warn(self, key: str, message: str, *args: object) -> bool:
        """Say ``message % args`` unless a *key* line was said within the interval."""
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self.interval:
            return False
        self._last[key] = now
        say(message % args if args else message)
        return True

    def reset(self, key: str) -> None:
        """Allow the next *key* line at once (the condition cleared)."""
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


# --- the process's undelivered events and the exit line -------------------------


class _Ledger:
    """What every engine of this process did not deliver, by reason."""

    def __init__(self) -> None:
        self.pid = os.getpid()
        self.counts: Counter[str] = Counter()
        self.errors: dict[str, str] = {}
        self.spooled: dict[str, Counter[str]] = {}
        """Events spooled, by spool directory, then by reason (``record_spooled``)."""
        self.reported = False


# Reentrant: the SIGTERM handler may run the exit while the main thread holds it.
_ledger_lock = threading.RLock()
_ledger = _Ledger()


def _current_ledger() -> _Ledger:
    global _ledger  # noqa: PLW0603 - one ledger per process, by design
    if _ledger.pid != os.getpid():  # a fork child: the parent's losses are not ours
        _ledger = _Ledger()
    return _ledger


def record_undelivered(counts: Mapping[str, int], errors: Mapping[str, str]) -> None:
    """Add one shut-down engine's drops (by reason) and their causes to the ledger."""
    with _ledger_lock:
        ledger = _current_ledger()
        for reason, count in counts.items():
            if count > 0:
                ledger.counts[reason] += count
                if reason in errors:
                    ledger.errors[reason] = errors[reason]


def format_exit_line(
    counts: Mapping[str, int], errors: Mapping[str, str]
) -> str | None:
    """
    The final report for these drop *counts*, or None if there are none.

    ``cse-bridge: <N> events not delivered (<reason>: <last error>)``: the reason
    with the most events first; any other reasons follow with their counts.
    """
    ranked = sorted(
        ((r, n) for r, n in counts.items() if n > 0), key=lambda kv: (-kv[1], kv[0])
    )
    if not ranked:
        return None
    reason = ranked[0][0]
    error = errors.get(reason) or reason.replace("_", " ")
    others = "".join(f"; {r}: {n}" for r, n in ranked[1:])
    total = sum(n for _, n in ranked)
    return f"cse-bridge: {total} events not delivered ({reason}: {error}{others})"


def exit_line() -> str | None:
    """The process's final report so far, or None if everything was delivered."""
    with _ledger_lock:
        ledger = _current_ledger()
        return format_exit_line(ledger.counts, ledger.errors)


def report_exit() -> None:
    """Say the exit lines once per process: what was spooled, what was lost."""
    with _ledger_lock:
        ledger = _current_ledger()
        if ledger.reported:
            return
        lines = spool_lines()
        line = exit_line()
        if line is not None:
            lines.append(line)
        if not lines:
            return
        ledger.reported = True
    for text in lines:
        say(text)


# --- the spool's part of the exit line (the durable spool) --------------------------


def record_spooled(counts: Mapping[str, int], directory: str) -> None:
    """Add one shut-down engine's spooled events (by reason) in *directory*."""
    with _ledger_lock:
        ledger = _current_ledger()
        spooled = ledger.spooled.setdefault(directory, Counter())
        for reason, count in counts.items():
            if count > 0:
                spooled[reason] += count


def format_spool_line(counts: Mapping[str, int], directory: str) -> str | None:
    """
    ``cse-bridge: <N> events spooled in <dir> (<reason>: <n>; ...)``, or None.

    Reasons: ``exit`` (the exit budget ran out), ``outage`` (the gateway did not
    answer for ``spool_after`` seconds), ``overflow`` (the memory queue was full).
    """
    ranked = sorted(
        ((r, n) for r, n in counts.items() if n > 0), key=lambda kv: (-kv[1], kv[0])
    )
    if not ranked:
        return None
    total = sum(n for _, n in ranked)
    reasons = "; ".join(f"{r}: {n}" for r, n in ranked)
    return (
        f"cse-bridge: {total} events spooled in {directory} ({reasons}); the next "
        "engine with a token for the same sandbox sends them"
    )


def spool_lines() -> list[str]:
    """The process's spool lines so far, one per spool directory."""
    with _ledger_lock:
        ledger = _current_ledger()
        found = (format_spool_line(c, d) for d, c in sorted(ledger.spooled.items()))
        return [line for line in found if line is not None]


# --- registration of one engine ----------------------------------------------------

_engines: weakref.WeakSet[_Engine] = weakref.WeakSet()
_hooked_pid: int | None = None


_exit_running: int | None = None
"""The pid whose exit is under way (a SIGTERM then waits for it)."""
_sigterm_pending = False


def run_exit(budget: float) -> None:
    """
    End every live engine within one exit budget, then say the exit line.

    Called by atexit, by a multiprocessing child's finalizer and on SIGTERM; the
    budget starts with the first of them. Never raises; a SIGTERM that arrived
    meanwhile is obeyed at the end.
    """
    global _exit_running, _sigterm_pending  # noqa: PLW0603 - one exit per process
    outer = _exit_running != os.getpid()
    _exit_running = os.getpid()
    try:
        begin_exit(budget)
        for engine in list(_engines):
            engine.shutdown(None)
        report_exit()
    except Exception:
        logger.exception("cse-bridge engine shutdown failed")
    finally:
        if outer:
            _exit_running = None
            if _sigterm_pending:
                _sigterm_pending = False
                _die_of_sigterm()


def _at_exit() -> None:
    budgets = [engine.exit_timeout for engine in list(_engines)]
    run_exit(max(budgets, default=0.0))


def register_engine(engine: _Engine, *, sigterm: bool) -> None:
    """
    Hook *engine* into the process: atexit, fork, multiprocessing children, SIGTERM.

    Every hook holds the engine weakly; one process-wide atexit hook ends every live
    engine and says the exit line. With *sigterm*, install the SIGTERM handler if
    this is the main thread and SIGTERM's disposition is still the default.
    """
    global _hooked_pid  # noqa: PLW0603 - one atexit hook per process
    _engines.add(engine)
    if _hooked_pid is None:
        atexit.register(_at_exit)  # inherited by fork children, like _hooked_pid
        _hooked_pid = os.getpid()
    ref = weakref.ref(engine)
    if hasattr(os, "register_at_fork"):
        reinit = weakref.WeakMethod(engine._after_fork_in_child)

        def after_in_child() -> None:
            method = reinit()
            if method is not None:
                method()
                _watch_multiprocessing_child(ref)

        os.register_at_fork(after_in_child=after_in_child)
    if _in_multiprocessing_child():
        # Built in a multiprocessing child (a Pool worker's first record): the
        # child ends in os._exit(), so atexit will not end this engine.
        _finalize_in_child()
    if sigterm:
        ensure_sigterm_handler()


_finalizer_pid: int | None = None


def _watch_multiprocessing_child(ref: weakref.ref[_Engine]) -> None:
    # multiprocessing's fork children end with os._exit(), so atexit never runs; its
    # Process._bootstrap clears finalizers, then runs the after-fork callbacks, then
    # at the end runs finalizers: register a finalizer from an after-fork callback.
    util = sys.modules.get("multiprocessing.util")
    if util is None:
        return

    def in_child(_: object) -> None:
        _finalize_in_child()

    engine = ref()
    if engine is not None:
        util.register_after_fork(engine, in_child)


def _finalize_in_child() -> None:
    """In a multiprocessing child, end the engines when the child's run ends."""
    global _finalizer_pid  # noqa: PLW0603 - one finalizer per process
    util = sys.modules.get("multiprocessing.util")
    if util is None or _finalizer_pid == os.getpid():
        return
    _finalizer_pid = os.getpid()
    util.Finalize(None, _at_exit, exitpriority=10)


def _in_multiprocessing_child() -> bool:
    process = sys.modules.get("multiprocessing.process")
    return process is not None and process.parent_process() is not None


# --- SIGTERM -----------------------------------------------------------------------

_SignalHandler = (
    Callable[[int, FrameType | None], object] | int | signal.Handlers | None
)


_sigterm_pid: int | None = None
"""The process whose SIGTERM disposition we checked (a fork child checks again)."""
_sigterm_began_in: int | None = None
"""The process whose SIGTERM handler has begun (the watch then stops kicking)."""


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    # A SIGTERM is an ending: end the engines within the exit budget, say the exit
    # line, then die of the signal as if we had not been here (status 143 in a
    # shell; a parent's waitpid sees the signal).
    global _sigterm_began_in  # noqa: PLW0603 - one ending per process
    _sigterm_began_in = os.getpid()
    if _exit_running == os.getpid():
        # The exit is under way below us on this stack (atexit, or a Pool worker's
        # finalizer that Pool.terminate interrupted): let it finish within its
        # budget, then die of the signal.
        global _sigterm_pending  # noqa: PLW0603 - one ending per process
        _sigterm_pending = True
        return
    try:
        _at_exit()
    finally:
        _die_of_sigterm()


def _die_of_sigterm() -> None:
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTERM)


def keep_sigterm_off_this_thread() -> None:
    """
    Block SIGTERM on the calling thread (and the threads it starts); never raises.

    The kernel hands a process-directed signal to any thread that does not block
    it, and only the main thread runs Python handlers: when the worker thread took
    the SIGTERM, a main thread blocked in a lock (a Pool worker waiting for its
    next task) never woke to run the handler, and ``Pool.terminate()`` waited
    forever. Called first thing on the engine's worker thread.
    """
    with contextlib.suppress(AttributeError, ValueError, OSError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})


def ensure_sigterm_handler() -> bool:
    """
    Install the SIGTERM handler if it may be: main thread, default disposition.

    An application's own handler (or SIG_IGN) is kept. Cheap after the first call
    in a process. Returns True if ours is installed now.
    """
    global _sigterm_pid  # noqa: PLW0603 - one handler per process
    pid = os.getpid()
    if _sigterm_pid == pid:
        return signal.getsignal(signal.SIGTERM) is _on_sigterm
    if threading.current_thread() is not threading.main_thread():
        return False  # signal.signal works in the main thread only: try later
    _sigterm_pid = pid
    try:
        current = signal.getsignal(signal.SIGTERM)
        if current is not _on_sigterm:  # else inherited from the parent over fork
            if current != signal.SIG_DFL:
                return False
            signal.signal(signal.SIGTERM, _on_sigterm)
    except (ValueError, OSError):  # no signals here (embedded interpreter)
        return False
    start_sigterm_watch(_sigterm_began, _sigterm_handler_installed)
    return True


def _sigterm_began() -> bool:
    return _sigterm_began_in == os.getpid()


def _sigterm_handler_installed() -> bool:
    return signal.getsignal(signal.SIGTERM) is _on_sigterm


def install_sigterm_flush(timeout: float = 3.0) -> None:
    """
    On SIGTERM, flush every live engine (within *timeout* in all), then do what the
    previous handler did: call it, ignore the signal, or die of it by default.

    For an application that installs its own SIGTERM handler first (engines then
    leave SIGTERM alone) and wants a flush before it runs. Call from the main thread.

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
