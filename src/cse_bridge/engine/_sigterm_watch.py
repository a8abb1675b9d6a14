"""
Make sure a SIGTERM reaches the main thread's Python handler, even when it sleeps.

CPython runs a Python signal handler on the main thread only, between bytecodes;
the C-level handler just sets a flag, and a blocking call that the signal
interrupts (EINTR) checks it. When the signal lands on another thread, or on the
main thread a moment before it enters a blocking call (a ``Pool`` worker going
back to ``sem_wait`` for its next task), the flag is set and the main thread
sleeps on. Without a handler the kernel would have ended the process; with ours,
``Pool.terminate()`` waited forever for a worker that never noticed.

So the C handler also writes each signal's number to a wakeup pipe
(``signal.set_wakeup_fd``), and a small daemon thread reads it: while our handler
has not begun, it sends SIGTERM again to the main thread alone
(``signal.pthread_kill``), which interrupts whatever the main thread is blocked in.
It steps aside when the application owns the wakeup fd (asyncio's signal handlers
do): a loop woken by its own wakeup fd has no such sleep.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Callable
from typing import Final

__all__ = ["KICK_INTERVAL", "start_sigterm_watch"]

KICK_INTERVAL: Final = 0.05
"""Seconds the main thread gets to run the handler before it is sent SIGTERM again."""
_KICKS: Final = 100
"""At most this many kicks per SIGTERM (5 s): then the watch gives up, never spins."""

_watch_pid: int | None = None
_pipe: tuple[int, int] | None = None
_fork_hooked = False


def start_sigterm_watch(
    handler_began: Callable[[], bool], handler_installed: Callable[[], bool]
) -> bool:
    """
    Start the watch for this process, once; main thread only. True if it runs.

    *handler_began* says whether our SIGTERM handler has started (then no kick is
    needed); *handler_installed* whether it is still SIGTERM's handler (an
    application may replace it later; then its own handler is not ours to kick).
    """
    global _watch_pid, _pipe, _fork_hooked  # noqa: PLW0603 - one watch per process
    pid = os.getpid()
    if _watch_pid == pid:
        return _pipe is not None
    if not hasattr(signal, "pthread_kill"):
        return False
    _watch_pid = pid
    if not _fork_hooked:
        os.register_at_fork(after_in_child=_forget_in_child)
        _fork_hooked = True
    try:
        read_fd, write_fd = os.pipe()  # close-on-exec: no subprocess inherits it
    except OSError:
        return False
    try:
        os.set_blocking(write_fd, False)  # set_wakeup_fd's requirement
        previous = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
        if previous != -1:  # the application's: leave it in place
            signal.set_wakeup_fd(previous)
            _close(read_fd, write_fd)
            return False
    except (ValueError, OSError):  # not the main thread, or no signals here
        _close(read_fd, write_fd)
        return False
    _pipe = (read_fd, write_fd)
    main = threading.get_ident()
    threading.Thread(
        target=_watch,
        args=(read_fd, main, handler_began, handler_installed),
        name="cse-bridge-sigterm",
        daemon=True,
    ).start()
    return True


def _watch(
    read_fd: int,
    main: int,
    handler_began: Callable[[], bool],
    handler_installed: Callable[[], bool],
) -> None:
    # This thread must never be the one that takes a SIGTERM.
    with contextlib.suppress(ValueError, OSError):
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
    while True:
        try:
            numbers = os.read(read_fd, 512)
        except OSError:  # closed after a fork, or at exit
            return
        if not numbers:
            return
        if signal.SIGTERM in numbers:
            _kick_until_handled(main, handler_began, handler_installed)


def _kick_until_handled(
    main: int, handler_began: Callable[[], bool], handler_installed: Callable[[], bool]
) -> None:
    for _ in range(_KICKS):
        time.sleep(KICK_INTERVAL)
        if handler_began() or not handler_installed():
            return
        try:
            signal.pthread_kill(main, signal.SIGTERM)
        except (ProcessLookupError, OSError):  # the main thread is gone
            return


def _forget_in_child() -> None:
    # A fork child shares the parent's pipe: its signals must not wake the parent's
    # watch. Stop writing to it; the child starts its own watch when it needs one.
    global _pipe
    pipe, _pipe = _pipe, None
    if pipe is None:
        return
    with contextlib.suppress(ValueError, OSError):
        previous = signal.set_wakeup_fd(-1)
        if previous != pipe[1]:  # replaced by the application since: put it back
            signal.set_wakeup_fd(previous)
    _close(*pipe)


def _close(*fds: int) -> None:
    for fd in fds:
        with contextlib.suppress(OSError):
            os.close(fd)
