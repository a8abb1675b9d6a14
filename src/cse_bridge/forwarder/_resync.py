"""
Recovering what overflowed the forwarder's hand-off: re-read it from the store.

The subscriber's dispatcher must never block, so a full hand-off turns events away;
with an API key nothing is lost, because the store still has them. ``Gaps`` notes
which sandboxes overflowed (from the dispatcher threads); the sink thread, once it has
room, pages each one's history after the last event it delivered.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

from ..errors import EventsError
from ._state import Cursor

if TYPE_CHECKING:
    from ..client import EventsClient
    from ..models import SandboxEvent

__all__ = ["Gaps"]

logger = logging.getLogger(__name__)


class Gaps:
    """
    Sandboxes with overflowed events, and the reader that fills them in.

    ``note`` is safe from any thread; ``fill`` and ``close`` belong to the sink thread.

    Args:
        api_key: Reads the history; without one, ``note`` reports the event lost.
        gateway_url: The gateway's HTTP base URL (else the environment's).
        ca_file: The CA bundle verifying an ``https`` gateway (else the
            environment's, else the system's).
    """

    def __init__(
        self,
        api_key: str | None,
        gateway_url: str | None,
        *,
        ca_file: str | None = None,
    ) -> None:
        from ..config import resolve_api_key

        self.enabled = resolve_api_key(api_key) is not None
        self._api_key, self._gateway_url = api_key, gateway_url
        self._ca_file = ca_file
        self._lock = threading.Lock()
        self._floors: dict[str, int] = {}  # sandbox -> oldest overflowed timestamp
        self._reader: EventsClient | None = None

    def __bool__(self) -> bool:
        # Read without the lock: a racy hint, a gap noted meanwhile is seen next time.
        return bool(self._floors)

    def note(self, event: SandboxEvent) -> bool:
        """Remember that *event* overflowed; False if it cannot be re-read (lost)."""
        if not self.enabled:
            return False
        with self._lock:
            floor = self._floors.get(event.sandbox_id, event.timestamp)
            self._floors[event.sandbox_id] = min(floor, event.timestamp)
        return True

    def fill(
        self, cursors: dict[str, Cursor], deliver: Callable[[SandboxEvent], bool]
    ) -> int:
        """Re-read every noted sandbox after its cursor; return how many were new."""
        with self._lock:
            floors, self._floors = self._floors, {}
        delivered = 0
        for sandbox_id, floor in sorted(floors.items()):
            cursor = cursors.setdefault(sandbox_id, Cursor())
            since = cursor.resume_since()
            try:
                for event in self._history(
                    sandbox_id, floor - 1 if since is None else since
                ):
                    delivered += deliver(event)
            except EventsError as exc:
                # The store keeps the events: try again on a later pass.
                logger.warning(
                    "cannot re-read %s after an overflow: %s", sandbox_id, exc
                )
                with self._lock:
                    self._floors[sandbox_id] = min(
                        floor, self._floors.get(sandbox_id, floor)
                    )
        return delivered

    def _history(self, sandbox_id: str, since: int) -> Iterator[SandboxEvent]:
        if self._reader is None:
            from ..client import EventsClient

            self._reader = EventsClient(
                api_key=self._api_key,
                gateway_url=self._gateway_url,
                ca_file=self._ca_file,
            )
        return self._reader.iter_events(sandbox_id, since=max(0, since))

    def close(self) -> None:
        """Close the history reader, if one was opened."""
        if self._reader is not None:
            self._reader.close()
