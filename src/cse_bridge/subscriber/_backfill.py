"""
Gap-free reconnects: order and de-duplicate live pushes and backfilled history.

After a reconnect (or a first connect with ``since``), a ``Backfill`` thread pages
``EventsClient.get_events(since=<last timestamp delivered>)`` until a page comes back
short, while the ``Sequencer`` holds the live pushes that arrive meanwhile. When the
backfill is done the held pushes are merged after it, in timestamp order, and every
event id already delivered is dropped: the listener sees each event once, in order.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ..client.protocol import next_cursor
from ..errors import EventsAuthError, EventsError, EventsPubSubError
from ._rules import backfill_retry_delay, backfill_start

if TYPE_CHECKING:
    from ..client import EventsClient
    from ..models import SandboxEvent
    from ._dispatch import Dispatcher

__all__ = ["BACKFILL_PAGE", "Backfill", "Resumer", "Sequencer"]

logger = logging.getLogger(__name__)

BACKFILL_PAGE: Final = 1000
"""Events per backfill request, the API's largest page."""
_SEEN_KEPT: Final = 4096
"""Delivered ids remembered between backfills: enough for any overlap at the seam."""
_JOIN_TIMEOUT: Final = 2.0
"""How long a disconnect waits for a backfill request in flight."""


class Sequencer:
    """
    Decides which events reach the listener, and in which order.

    Used by the dispatcher thread only, so it needs no lock.

    Args:
        since: Where the first backfill starts (strictly after this millisecond
            timestamp); None until the first connect sets it.
    """

    def __init__(self, since: int | None = None) -> None:
        self.last_timestamp = since
        """Timestamp of the newest event delivered (or the starting point)."""
        self._seen: OrderedDict[str, None] = OrderedDict()
        self._held: list[SandboxEvent] | None = None

    @property
    def holding(self) -> bool:
        """True while a backfill runs and live pushes are held back."""
        return self._held is not None

    def live(self, events: list[SandboxEvent]) -> list[SandboxEvent]:
        """Return the live pushes to deliver now (none while a backfill runs)."""
        if self._held is not None:
            self._held.extend(events)
            return []
        out = self._accept(events)
        self._trim()
        return out

    def begin_backfill(self) -> None:
        """Start holding live pushes back (idempotent while one is running)."""
        if self._held is None:
            self._held = []

    def abort_backfill(self) -> None:
        """Drop the held pushes: a later backfill will read them from the store."""
        self._held = None

    def backfilled(self, events: list[SandboxEvent]) -> list[SandboxEvent]:
        """Return the events of one backfill page that were not delivered yet."""
        return self._accept(events)

    def end_backfill(self) -> list[SandboxEvent]:
        """Stop holding; return the held pushes not delivered yet, oldest first."""
        held, self._held = self._held or [], None
        # sort() is stable: events sharing a millisecond keep their push order.
        held.sort(key=lambda event: event.timestamp)
        out = self._accept(held)
        self._trim()
        return out

    def _accept(self, events: list[SandboxEvent]) -> list[SandboxEvent]:
        out: list[SandboxEvent] = []
        seen = self._seen
        for event in events:
            if event.id in seen:
                continue
            seen[event.id] = None
            if self.last_timestamp is None or event.timestamp > self.last_timestamp:
                self.last_timestamp = event.timestamp
            out.append(event)
        return out

    def _trim(self) -> None:
        # Only between backfills: during one, every id of it must stay known.
        seen = self._seen
        while len(seen) > _SEEN_KEPT:
            seen.popitem(last=False)


class Backfill:
    """
    Pages a sandbox's stored events after a timestamp, on its own daemon thread.

    ``on_page(events)`` gets each non-empty page, then ``on_done(error)`` is called
    once: ``None`` when caught up, or the error that made it give up (a rejected API
    key). Network and server errors are retried with capped, jittered backoff until
    it succeeds or ``cancel()`` is called; after ``cancel()`` nothing more is reported.

    Args:
        client: The HTTP client, with an API key.
        sandbox_id: The sandbox to read.
        since: Read events strictly after this millisecond timestamp.
        retry_delay: First retry delay in seconds; doubles up to 30 s.
    """

    def __init__(
        self,
        client: EventsClient,
        sandbox_id: str,
        since: int,
        *,
        on_page: Callable[[list[SandboxEvent]], None],
        on_done: Callable[[EventsError | None], None],
        retry_delay: float = 1.0,
    ) -> None:
        self._client = client
        self._sandbox_id = sandbox_id
        self._cursor = since
        self._on_page = on_page
        self._on_done = on_done
        self._retry_delay = retry_delay
        self._cancelled = threading.Event()
        self._thread = threading.Thread(
            target=self._run, name="cse-bridge-pubsub-backfill", daemon=True
        )

    def start(self) -> None:
        """Start paging; returns at once."""
        self._thread.start()

    def cancel(self) -> None:
        """Stop at the next page or retry; never blocks, safe from any thread."""
        self._cancelled.set()

    def join(self, timeout: float) -> None:
        """Wait up to *timeout* seconds for the thread (a request may be in flight)."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def _run(self) -> None:
        failures = 0
        while not self._cancelled.is_set():
            try:
                page = self._client.get_events(
                    self._sandbox_id, since=self._cursor, limit=BACKFILL_PAGE
                )
            except EventsAuthError as exc:
                # A rejected key will not start working on its own: give up.
                self._finish(exc)
                return
            except EventsError as exc:
                failures += 1
                logger.warning("pub/sub backfill failed (retrying): %s", exc.message)
                self._cancelled.wait(backfill_retry_delay(failures, self._retry_delay))
                continue
            failures = 0
            if page and not self._cancelled.is_set():
                self._on_page(page)
            try:
                cursor = next_cursor(page, self._cursor, BACKFILL_PAGE)
            except EventsError as exc:
                self._finish(exc)
                return
            if cursor is None:
                self._finish(None)
                return
            self._cursor = cursor

    def _finish(self, error: EventsError | None) -> None:
        if not self._cancelled.is_set():
            self._on_done(error)


class Resumer:
    """
    Feeds the ``event`` listeners: live pushes, and backfills after each (re)connect.

    Every method but ``cancel`` runs on the dispatcher thread, in queue order, so the
    state here needs no lock: a connect is always seen before the pushes that follow
    it. Backfill pages come back through the dispatcher queue too.

    Args:
        dispatcher: Where listeners are called and backfill results are queued.
        sandbox_id: The subscribed sandbox.
        events_client: An HTTP client with an API key, or None (no backfill).
        since: Deliver stored events after this millisecond timestamp first.
        retry_delay: First retry delay of a failing backfill, in seconds.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        sandbox_id: str,
        events_client: EventsClient | None,
        *,
        since: int | None = None,
        retry_delay: float = 1.0,
    ) -> None:
        self._dispatcher = dispatcher
        self._sandbox_id = sandbox_id
        self._client = events_client
        self._sequencer = Sequencer(since)
        self._history_wanted = since is not None
        self._retry_delay = retry_delay
        self._backfill: Backfill | None = None
        self._generation = 0
        self._warned = False

    def connected(self, resumed: bool) -> None:
        """A subscription is active: backfill if anything may have been missed."""
        sequencer = self._sequencer
        sequencer.last_timestamp, wanted = backfill_start(
            sequencer.last_timestamp,
            resumed=resumed,
            history_wanted=self._history_wanted,
        )
        if not wanted:
            return
        self._history_wanted = False
        if self._client is None:
            if resumed and not self._warned:
                self._warned = True
                logger.warning(
                    "pub/sub reconnected without an API key: events stored while "
                    "disconnected were not backfilled (a gap is possible)"
                )
                self._dispatcher.report(
                    EventsPubSubError(
                        "reconnected without an API key: events stored while "
                        "disconnected may be missing"
                    )
                )
            return
        self.cancel()
        self._generation += 1
        generation = self._generation
        sequencer.begin_backfill()
        post = self._dispatcher.post

        def on_page(page: list[SandboxEvent]) -> None:
            post(self._page, generation, page)

        def on_done(error: EventsError | None) -> None:
            post(self._done, generation, error)

        self._backfill = Backfill(
            self._client,
            self._sandbox_id,
            sequencer.last_timestamp,
            on_page=on_page,
            on_done=on_done,
            retry_delay=self._retry_delay,
        )
        self._backfill.start()

    def live(self, events: list[SandboxEvent]) -> None:
        """Deliver (or hold, during a backfill) a batch of live pushes."""
        self._deliver(self._sequencer.live(events))

    def stopped(self) -> None:
        """The client disconnected on purpose: drop the backfill and what it held."""
        backfill = self._backfill
        self.cancel()
        if backfill is not None:
            backfill.join(_JOIN_TIMEOUT)
        self._generation += 1  # pages already queued must not move the cursor on
        self._sequencer.abort_backfill()

    def cancel(self) -> None:
        """Cancel the running backfill, if any; never blocks."""
        backfill, self._backfill = self._backfill, None
        if backfill is not None:
            backfill.cancel()

    def _page(self, generation: int, events: list[SandboxEvent]) -> None:
        if generation == self._generation:
            self._deliver(self._sequencer.backfilled(events))

    def _done(self, generation: int, error: EventsError | None) -> None:
        if generation != self._generation:
            return
        self._backfill = None
        if error is not None:
            self._dispatcher.report(error)
        self._deliver(self._sequencer.end_backfill())

    def _deliver(self, events: list[SandboxEvent]) -> None:
        if events:
            self._dispatcher.call_each("event", events)
