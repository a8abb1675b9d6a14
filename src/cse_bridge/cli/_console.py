"""
``forward`` and ``demo``'s console: forwarded records on stdout, the rest on stderr.

Forwarded records pass at any level and go where the user's console goes (stdout);
our own diagnostics and other libraries' warnings go to stderr. Each write clears the
status line first, so a record never lands on the end of it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final

from ._status import StatusLine

__all__ = [
    "DIAGNOSTIC_FORMAT",
    "LOG_FORMAT",
    "ConsoleHandler",
    "console_logging",
]

LOG_FORMAT: Final = "%(asctime)s %(levelname)-8s %(name)s [%(sandboxId)s] %(message)s"
"""The format of forwarded records on stdout."""
DIAGNOSTIC_FORMAT: Final = "cse-bridge: %(levelname)s %(name)s: %(message)s"
"""The format of our own (and other libraries') records on stderr."""


class _Forwarded(logging.Filter):
    """Passes only the records a ``LoggingSink`` re-emitted (or, inverted, others)."""

    def __init__(self, *, forwarded: bool) -> None:
        from ..forwarder import is_forwarded  # here: the subscriber is an extra

        super().__init__()
        self._forwarded = forwarded
        self._is_forwarded = is_forwarded

    def filter(self, record: logging.LogRecord) -> bool:
        record.__dict__.setdefault("sandboxId", "-")
        return self._is_forwarded(record) is self._forwarded


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg] # generic in typeshed only
    """A stream handler that clears the status line before it writes a record."""

    def __init__(self, stream: Any, status: StatusLine | None) -> None:
        super().__init__(stream)
        self.status = status
        """The status line to clear before each record; may be set later."""

    def emit(self, record: logging.LogRecord) -> None:
        if self.status is None:
            super().emit(record)
            return
        with self.status.suspended():
            super().emit(record)


def _console_handlers(status: StatusLine | None) -> list[ConsoleHandler]:
    records = ConsoleHandler(sys.stdout, status)
    records.setFormatter(logging.Formatter(LOG_FORMAT))
    records.addFilter(_Forwarded(forwarded=True))
    diagnostics = ConsoleHandler(sys.stderr, status)
    diagnostics.setLevel(logging.WARNING)
    diagnostics.setFormatter(logging.Formatter(DIAGNOSTIC_FORMAT))
    diagnostics.addFilter(_Forwarded(forwarded=False))
    return [records, diagnostics]


@contextmanager
def console_logging(status: StatusLine | None = None) -> Iterator[list[ConsoleHandler]]:
    """
    For the length of a command: forwarded records to stdout, the rest to stderr.

    Forwarded records pass at any level (the root logger is set to DEBUG); our own
    and other libraries' records only from WARNING. Each write clears *status* first.
    Yields the two handlers; afterwards the root logger's handlers and level are as
    they were: a command may run inside a process that goes on (a test, a program
    calling ``cli.main``), and its handlers must not outlive it, writing to a stream
    that may be closed by then.
    """
    root = logging.getLogger()
    level = root.level
    handlers = _console_handlers(status)
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    try:
        yield handlers
    finally:
        for handler in handlers:
            root.removeHandler(handler)
        root.setLevel(level)
