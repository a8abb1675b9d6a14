"""
The producer side of ``BatchEngine``: the bounded queue, ``submit`` and the counters.

``submit`` is the hot path of every log call, so it does as little as it can: clamp
the size hint, append under a lock held for a few bytecodes, and wake the worker only
when it has something new to decide (the first item, or a full batch). Everything
rare (overflow, starting the worker, fork detection) is off that path.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import Counter, deque

from ._settings import Overflow
from ._types import EngineStats, EventItem

__all__ = ["QueueState", "clamp_size"]


def clamp_size(size_hint: int, cap: int) -> int:
    """Return the bytes an item counts for: its hint, at least 1, at most *cap*."""
    return 1 if size_hint < 1 else cap if size_hint > cap else size_hint


class FlushWaiter:
    """A ``flush`` call waiting for the worker to resolve sequence number *target*."""

    __slots__ = ("event", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.event = threading.Event()


class QueueState:
    """
    The queue, its bounds and counters; ``BatchEngine`` adds the worker and lifecycle.

    Subclasses provide ``_start_worker`` and ``_after_fork_in_child``.
    """

    max_queue_size: int
    max_queue_bytes: int
    max_batch_size: int
    max_batch_bytes: int
    overflow: Overflow
    closing: bool
    _thread: threading.Thread | None

    def _init_state(self) -> None:
        """Fresh queue, counters, locks and no worker (construction and fork child)."""
        # Guards the queue and every counter. Held only for a few bytecodes (submit)
        # or to pop one batch (the worker), never across encoding or I/O, so submit
        # never waits long. Reentrant: a signal handler that logs may interrupt
        # submit in the same thread; a plain Lock would deadlock there.
        self.lock = threading.RLock()
        self.wake = threading.Event()
        """Set to make the worker look: first item, full batch, flush, shutdown."""
        self.queue: deque[EventItem] = deque()
        self.queue_bytes = 0
        self.accepted = 0
        """Items accepted so far: the sequence number of the newest one."""
        self.removed = 0
        """Items taken off the queue's front (by the worker or by drop_oldest)."""
        self.resolved = 0
        """Every item up to this sequence number was sent or dropped."""
        self.sent = 0
        self.retried = 0
        self.in_flight = 0
        self.last_error: str | None = None
        self.dropped: Counter[str] = Counter()
        self.unreported: Counter[str] = Counter()
        """Drops not yet told to the gateway in a ``bridge.dropped`` event."""
        self.drop_errors: dict[str, str] = {}
        """The last cause of each drop reason, for the report lines."""
        self.abandoned = False
        """True once shutdown gave up on a hung worker: it counts nothing more."""
        self.waiters: deque[FlushWaiter] = deque()
        self.resume_requested = False
        self._thread = None
        self._pid = os.getpid()

    def _start_worker(self) -> None:
        raise NotImplementedError

    def _after_fork_in_child(self) -> None:
        raise NotImplementedError

    def submit(self, item: EventItem) -> None:
        """
        Queue *item* for shipping.

        Safe from any thread, O(1); never blocks on I/O and never raises. A full queue
        drops by the overflow policy; after shutdown the item is dropped. Every drop
        is counted in ``stats().dropped``. Starts the worker on the first call.
        """
        try:
            if self.closing:
                self._refuse("after_shutdown")
                return
            cap = self.max_queue_bytes
            size = item.size_hint
            if size < 1 or size > cap:
                size = clamp_size(size, cap)
            queue = self.queue
            with self.lock:  # a few bytecodes; see _init_state
                if (
                    len(queue) >= self.max_queue_size or self.queue_bytes + size > cap
                ) and not self._make_room(size):
                    return
                queue.append(item)
                self.queue_bytes += size
                self.accepted += 1
                depth = len(queue)
                full = (
                    depth >= self.max_batch_size
                    or self.queue_bytes >= self.max_batch_bytes
                )
            # Wake the worker only when it has something new to decide: the first
            # item starts the batching delay, a full batch ends it.
            if (depth == 1 or full) and (
                self._thread is None or not self.wake.is_set()
            ):
                self._wake_worker()
        except Exception:  # the application thread must never see our bug...
            with contextlib.suppress(Exception):  # ...but the drop is still counted
                self._refuse("internal_error")

    def _wake_worker(self) -> None:
        # The slow path of submit: at most once per batch. The fork hook resets a
        # child's state; the pid check here catches a fork that bypassed it.
        if self._pid != os.getpid():
            self._after_fork_in_child()
            return
        if self._thread is None:
            self._start_worker()
        self.wake.set()

    def _make_room(self, size: int) -> bool:
        """Apply the overflow policy for an item of *size*; True if it may go in."""
        # Caller holds self.lock.
        if self.overflow == "drop_newest":
            self._count_drop("queue_full", 1)
            return False
        queue, cap, lost = self.queue, self.max_queue_bytes, 0
        while queue and (
            len(queue) >= self.max_queue_size or self.queue_bytes + size > cap
        ):
            self.queue_bytes -= clamp_size(queue.popleft().size_hint, cap)
            lost += 1
        self.removed += lost
        self._count_drop("queue_full", lost)
        return True

    def abandon(self) -> None:
        """
        Count everything queued or in flight as lost (reason ``exit``); any thread.

        From then on the worker's late results count nothing, so each item is
        counted once: delivered, or dropped.
        """
        with self.lock:
            if self.abandoned:
                return
            lost = self.in_flight + len(self.queue)
            self.abandoned = True
            self.removed += len(self.queue)
            self.queue.clear()
            self.queue_bytes = 0
            self.in_flight = 0
            if lost:
                self.count_exit(lost)
            self.resolved = max(self.resolved, self.accepted)

    def count_exit(self, lost: int) -> None:
        """Count *lost* items as dropped for lack of time (caller holds the lock)."""
        self._count_drop("exit", lost)
        self.drop_errors["exit"] = (
            self.last_error or "the exit budget ran out while a send was in flight"
        )

    def drop_error(self, reason: str) -> str:
        """The cause of *reason*'s drops, said in a few words, for report lines."""
        known = self.drop_errors.get(reason)
        if known:
            return known
        if reason == "queue_full":
            return (
                f"the queue was full ({self.max_queue_size} items or "
                f"{self.max_queue_bytes} bytes) and {self.overflow} applied"
            )
        if reason == "after_shutdown":
            return "submitted after the engine shut down"
        if reason == "internal_error":
            return "a bug of cse-bridge in submit"
        return reason.replace("_", " ")

    def _refuse(self, reason: str) -> None:
        with self.lock:
            self._count_drop(reason, 1)

    def _count_drop(self, reason: str, count: int) -> None:
        # Caller holds self.lock.
        if count:
            self.dropped[reason] += count
            self.unreported[reason] += count

    def take(
        self, most: int | None = None, limit: int | None = None
    ) -> tuple[list[EventItem], int]:
        """
        Take the next batch off the queue (worker only); counts it as in flight.

        At most *most* items (``max_batch_size``) and *limit* bytes of hints
        (``max_batch_bytes``), at least one item if any is queued. The lock is held
        only while popping.

        Returns:
            The items, and the sequence number of the last item taken off the queue.
        """
        items: list[EventItem] = []
        cap = self.max_queue_bytes
        limit = self.max_batch_bytes if limit is None else limit
        most = self.max_batch_size if most is None else most
        taken = 0
        with self.lock:  # popping only: producers wait at most this loop
            queue = self.queue
            while queue and len(items) < most:
                size = queue[0].size_hint
                if size < 1 or size > cap:
                    size = clamp_size(size, cap)
                if items and taken + size > limit:
                    break
                items.append(queue.popleft())
                taken += size
            self.queue_bytes -= taken
            self.removed += len(items)
            self.in_flight += len(items)
            end = self.removed
        return items, end

    def stats(self) -> EngineStats:
        """Return a snapshot of the counters; safe from any thread, O(reasons)."""
        with self.lock:
            return EngineStats(
                queued=self.accepted,
                sent=self.sent,
                retried=self.retried,
                dropped=dict(self.dropped),
                in_flight=self.in_flight,
                queue_depth=len(self.queue),
                queue_bytes=self.queue_bytes,
                last_error=self.last_error,
            )
