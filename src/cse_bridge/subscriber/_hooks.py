"""
``SessionHooks``: what ``PubSubClient`` does when its socket thread reports.

A mixin of ``PubSubClient`` (it implements ``_session.Hooks``): the hooks run on the
socket thread and never block on listeners; whatever reaches user code is posted to
the dispatcher.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from ..errors import EventsError, EventsPubSubError
from ..models import SandboxEvent

if TYPE_CHECKING:
    from ._backfill import Resumer
    from ._client import PubSubState
    from ._dispatch import Dispatcher
    from ._session import Session
    from ._stream import Streams

__all__ = ["SessionHooks"]


class SessionHooks:
    """The client state the session changes, and the hooks that change it."""

    # Set by PubSubClient.__init__.
    _dispatcher: Dispatcher
    _lock: threading.Condition
    _resumer: Resumer
    _session: Session | None
    _state: PubSubState
    _stopped: threading.Event
    _streams: Streams

    def _set_state(self, state: PubSubState) -> None:
        with self._lock:
            self._state = state
            self._lock.notify_all()

    def session_events(self, events: list[SandboxEvent]) -> None:
        """Hand a batch of live pushes to the dispatcher (socket thread)."""
        self._dispatcher.post(self._resumer.live, events)

    def session_connected(self) -> None:
        """A reconnect was answered ``+OK`` (socket thread)."""
        self._set_state("connected")
        self._dispatcher.post(self._resumer.connected, True)
        self._dispatcher.emit("connect")

    def session_dropped(self, error: EventsError | None, reconnecting: bool) -> None:
        """The connection ended (socket thread)."""
        if self._stopped.is_set() or self._session is None:
            self._dispatcher.emit("disconnect")
            return
        if error is not None:
            self._dispatcher.post(self._dispatcher.report, error)
        self._set_state("connecting" if reconnecting else "disconnected")
        self._dispatcher.emit("disconnect")
        if not reconnecting:
            with self._lock:
                self._session = None
            self._dispatcher.post(
                self._streams.end, error or EventsPubSubError("pub/sub connection lost")
            )

    def session_error(self, error: EventsError) -> None:
        """Report a recoverable error (socket thread)."""
        self._dispatcher.post(self._dispatcher.report, error)

    def session_gave_up(self, error: EventsError) -> None:
        """Reconnecting was refused for good (socket thread)."""
        with self._lock:
            self._session = None
        self._set_state("error")
        self._dispatcher.post(self._dispatcher.report, error)
        self._dispatcher.post(self._streams.end, error)
