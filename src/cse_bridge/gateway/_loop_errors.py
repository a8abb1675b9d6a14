"""Keep asyncio's per-``accept`` error reports out of the log, but one per interval."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from ._log_throttle import LogThrottle

__all__ = ["throttle_accept_errors"]

_ACCEPT_FAILED = "socket.accept() out of system resource"
"""What asyncio reports when ``accept`` fails for want of descriptors or memory."""


def throttle_accept_errors(
    loop: asyncio.AbstractEventLoop, log: LogThrottle
) -> Callable[[], None]:
    """
    Route *loop*'s failed-``accept`` reports through *log*; return the undo.

    Out of descriptors, asyncio reports every failed ``accept`` with a traceback,
    thousands of lines under attack; this writes one line per interval with a
    count. Every other report goes where it went before.
    """
    previous = loop.get_exception_handler()

    def handle(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        if context.get("message") == _ACCEPT_FAILED:
            log.report(
                "accept",
                "cannot accept connections: %s (out of file descriptors? lower "
                "--max-connections or raise the limit: ulimit -n)",
                context.get("exception"),
            )
        elif previous is not None:
            previous(loop, context)
        else:
            loop.default_exception_handler(context)

    loop.set_exception_handler(handle)

    def restore() -> None:
        if loop.get_exception_handler() is handle:
            loop.set_exception_handler(previous)

    return restore
