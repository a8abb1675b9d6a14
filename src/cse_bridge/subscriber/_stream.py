"""
The inboxes behind ``PubSubClient.stream()``: one unbounded queue per iterator.

The dispatcher thread fills them (an ``event`` listener each) and ends them all
(``end``), after ``disconnect()`` or with the error that ended the client for good;
the iterating thread drains its own.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Iterator
from typing import Any, Final

from ..errors import EventsError
from ..models import SandboxEvent

__all__ = ["Streams"]

_END: Final = object()


class Streams:
    """The open ``stream()`` iterators of one client; safe from any thread."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: list[queue.SimpleQueue[object]] = []
        self.ended_by: EventsError | None = None
        """What ended the client for good, raised from every iterator; None: none."""

    def open(
        self, on: Callable[[str, Callable[..., Any]], Callable[[], None]]
    ) -> tuple[queue.SimpleQueue[object], Callable[[], None]]:
        """Add an inbox fed by an ``event`` listener (added with *on*); return both."""
        inbox: queue.SimpleQueue[object] = queue.SimpleQueue()
        remove = on("event", inbox.put)
        with self._lock:
            self._inboxes.append(inbox)
        return inbox, remove

    def drain(
        self, inbox: queue.SimpleQueue[object], remove: Callable[[], None]
    ) -> Iterator[SandboxEvent]:
        """Yield *inbox*'s events until ``end``; then return or raise ``ended_by``."""
        try:
            while True:
                item = inbox.get()
                if item is _END:
                    if self.ended_by is not None:
                        raise self.ended_by
                    return
                assert isinstance(item, SandboxEvent)  # noqa: S101 - narrows for mypy
                yield item
        finally:
            self.forget(inbox, remove)

    def forget(
        self, inbox: queue.SimpleQueue[object], remove: Callable[[], None]
    ) -> None:
        """Remove *inbox* and its listener (a finished or never started iterator)."""
        remove()
        with self._lock:
            self._inboxes.remove(inbox)

    def end(self, error: EventsError | None) -> None:
        """End every open iterator, raising *error* if given (dispatcher thread)."""
        self.ended_by = error
        with self._lock:
            inboxes = list(self._inboxes)
        for inbox in inboxes:
            inbox.put(_END)
