"""
``BatchEngine``: the one queue and worker every producer shares.

The story of a record, top to bottom of this file: a producer calls ``submit`` on an
application thread; the item waits in the bounded queue; one daemon worker thread
(``cse-bridge-engine``) takes what is queued, has ``BatchStream`` encode it as the
exporter is ready for each event, and hands it to the exporter (the ``Sink``), which
posts it through its transport. The answer is counted in one place (``_settle``):
sent, dropped by reason, or kept for a retry after a pause. ``flush`` waits for a
point of the queue; ``shutdown`` drains within the exit budget.

With a spool (``spool_dir``), what would be lost goes to disk instead, written by
the worker (``_keep``): the oldest items of a full queue (``_write_spill``), the
backlog once the gateway has not answered for ``spool_after`` seconds, and what is
left when the exit budget runs out (``_spool_backlog``). Between its own sends the
worker replays its sandbox's spooled events (``_replay``).

One class owns the queue, the counters and the worker loop, as the OpenTelemetry
SDK's ``BatchProcessor`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import weakref
from collections import Counter, deque
from collections.abc import Callable
from typing import Any, Final

from ._clock import MONOTONIC, Clock
from ._encode import BatchStream, encode_body
from ._lifecycle import (
    Diagnostics,
    ensure_sigterm_handler,
    exit_budget_left,
    interpreter_exiting,
    keep_sigterm_off_this_thread,
    logger,
    mark_engine_thread,
    on_engine_thread,
    record_spooled,
    record_undelivered,
    register_engine,
)
from ._options import EngineOptions, Overflow
from ._retry import AUTH_REPROBE_INTERVAL, PERMANENT_RETRY_INTERVAL, backoff_delay
from ._spool import RESCAN_INTERVAL, Spool, Spooler
from ._types import EncodedEvent, EngineStats, EventItem, SendResult, Sink

__all__ = ["DROPPED_TYPE", "BatchEngine"]

DROPPED_TYPE: Final = "bridge.dropped"
"""The self-report event; ``data.dropped`` counts lost items by reason."""

_CLOSING_RETRY: Final = 0.5
"""Longest backoff while draining for shutdown: a few more tries fit the budget."""
_CLOSE_TIME: Final = 0.05
"""Seconds of the exit budget kept for closing the exporter after a spool's write."""
_SPILL_SHARE: Final = 8
"""With a spool, a full queue's oldest items wait for the worker in a spill of an
eighth of the queue's bounds (memory stays within 1.125 times them)."""
_LOST_WHEN_UNSPOOLED: Final = {
    "exit": "exit",
    "outage": "spool_failed",
    "overflow": "queue_full",
}
"""The drop reason of events the spool could not take, by why they went there."""


def _clamp(size_hint: int, cap: int) -> int:
    """The bytes an item counts for: its hint, at least 1, at most *cap*."""
    return 1 if size_hint < 1 else cap if size_hint > cap else size_hint


class _FlushWaiter:
    """A ``flush`` call waiting for the worker to resolve sequence number *target*."""

    __slots__ = ("event", "target")

    def __init__(self, target: int) -> None:
        self.target = target
        self.event = threading.Event()


class BatchEngine:
    """
    A bounded queue of ``EventItem`` and the worker that ships it through a ``Sink``.

    Takes its knobs as one ``EngineOptions`` (*options*), or as the same keywords,
    each left None resolved from its ``CSE_BRIDGE_*`` environment variable, else the
    default (``EngineOptions.resolve``).

    Args:
        sink: The exporter batches go to; only the worker thread calls it.
        options: Every knob at once; the keywords below are then not allowed.
        max_queue_size: Items the queue holds (131 072).
        max_queue_bytes: Sum of their ``size_hint`` the queue holds (160 MiB).
        max_batch_size: Events per ``sink.send`` (512).
        max_batch_bytes: Estimated bytes of unpacked items per ``sink.send`` (4 MiB).
        schedule_delay: When packing, the longest wait for a small queue to fill a
            ``log.batch`` (0.005). Unpacked, the worker sends as soon as it is free.
        overflow: ``drop_oldest`` (default) or ``drop_newest`` when the queue is full.
        exit_timeout: The exit budget in seconds for atexit and ``shutdown()`` (3.0).
        pack: Pack up to this many ``log.*`` items per ``log.batch`` event (0: off),
            and never more than fit the 1 MiB body limit; a large N (10 000) packs
            adaptively: as many as are queued, up to that limit.
        send_timeout: Seconds one ``sink.send`` may take (10.0).
        handle_sigterm: Install the SIGTERM handler that ends the engines within the
            exit budget and then dies of the signal (True; ``CSE_BRIDGE_SIGTERM=0``
            turns it off). Only from the main thread, and only while SIGTERM's
            disposition is the default: an application's own handler is kept.
        spool_dir: Keep on disk, in this directory, what would be lost
            (``CSE_BRIDGE_SPOOL_DIR``; None: no spool). See docs/how-to/spool.md.
        spool_max_bytes: Bytes the spool directory may hold (256 MiB).
        spool_after: Seconds without an answer before the queue goes to the spool
            (10.0).
        clock: The time source (a ``FakeClock`` in tests).

    Raises:
        ValueError: An argument is out of range.
        TypeError: Both *options* and keywords.
    """

    def __init__(
        self,
        sink: Sink,
        options: EngineOptions | None = None,
        *,
        max_queue_size: int | None = None,
        max_queue_bytes: int | None = None,
        max_batch_size: int | None = None,
        max_batch_bytes: int | None = None,
        schedule_delay: float | None = None,
        overflow: str | None = None,
        exit_timeout: float | None = None,
        pack: int | None = None,
        send_timeout: float | None = None,
        handle_sigterm: bool | None = None,
        spool_dir: str | None = None,
        spool_max_bytes: int | None = None,
        spool_after: float | None = None,
        clock: Clock = MONOTONIC,
    ) -> None:
        given: dict[str, Any] = {
            name: value
            for name, value in (
                ("max_queue_size", max_queue_size),
                ("max_queue_bytes", max_queue_bytes),
                ("max_batch_size", max_batch_size),
                ("max_batch_bytes", max_batch_bytes),
                ("schedule_delay", schedule_delay),
                ("overflow", overflow),
                ("exit_timeout", exit_timeout),
                ("pack", pack),
                ("send_timeout", send_timeout),
                ("handle_sigterm", handle_sigterm),
                ("spool_dir", spool_dir),
                ("spool_max_bytes", spool_max_bytes),
                ("spool_after", spool_after),
            )
            if value is not None
        }
        if options is not None and given:
            raise TypeError(f"pass options or keywords, not both: {sorted(given)}")
        self.options = options or EngineOptions.resolve(**given)
        self.sink = sink
        self.clock = clock
        # Read on every submit: plain attributes, not a lookup through options.
        self.max_queue_size = self.options.max_queue_size
        self.max_queue_bytes = self.options.max_queue_bytes
        self.max_batch_size = self.options.max_batch_size
        self.max_batch_bytes = self.options.max_batch_bytes
        self.overflow: Overflow = self.options.overflow
        self.pack = self.options.pack
        self.pack_spans = self.options.pack_spans
        self.exit_timeout = self.options.exit_timeout
        self.diagnostics = Diagnostics()
        # Guards starting the worker and the shutdown flag (rare, never on submit's
        # fast path). Reentrant: the SIGTERM handler shuts down on the main thread,
        # which the signal may have interrupted while it held this lock.
        self._start_lock = threading.RLock()
        self._shutdown_started = False
        self._shutdown_clean = False
        self.closing = False
        """True once ``shutdown`` began: submits are refused, the worker drains."""
        self.drain_deadline: float | None = None
        self.spooler: Spooler | None = None
        """The durable spool, if ``spool_dir`` is set; only the worker uses it."""
        if self.options.spool_dir is not None:
            self.spooler = Spooler(
                Spool(self.options.spool_dir, self.options.spool_max_bytes),
                self._spool_sandbox,
                self.diagnostics,
            )
        self._init_state()
        register_engine(self, sigterm=self.options.handle_sigterm)
        add_listener = getattr(sink, "add_token_listener", None)
        if add_listener is not None:
            add_listener(_weak_resume(self))

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
        self.taken = 0
        """Items the worker took off the queue; ``in_flight`` is taken - settled."""
        self.settled = 0
        """Items of those that were sent or dropped (``_settle`` only)."""
        self.sent = 0
        self.retried = 0
        self.last_error: str | None = None
        self.dropped: Counter[str] = Counter()
        self.unreported: Counter[str] = Counter()
        """Drops not yet told to the gateway in a ``bridge.dropped`` event."""
        self.drop_errors: dict[str, str] = {}
        """The last cause of each drop reason, for the report lines."""
        self.abandoned = False
        """True once shutdown gave up on a hung worker: it counts nothing more."""
        self.waiters: deque[_FlushWaiter] = deque()
        self.resume_requested = False
        self.spill: deque[EventItem] = deque()
        """With a spool: a full queue's oldest items, for the worker to write."""
        self.spill_bytes = 0
        self.spooled = 0
        """Items written to the spool."""
        self.spooled_by: Counter[str] = Counter()
        """The same by why: exit, outage, overflow."""
        self._thread: threading.Thread | None = None
        self._pid = os.getpid()
        self._init_worker()

    def _init_worker(self) -> None:
        """The worker loop's own state; only the worker thread touches it."""
        self._pending: list[EncodedEvent] = []
        """Events handed back for a retry, then what a cut-short send left."""
        self._pending_end = 0
        self._failures = 0
        self._resume_at: float | None = None
        self._partial_since: float | None = None
        self._paused = False
        """Refused credentials or a setup error: retried only now and then."""
        self._said: dict[str, int] = {}
        """The drop count of each reason at its last report line."""
        self._failing_since: float | None = None
        """When the gateway last stopped answering (None: it answers)."""
        self._replay_turn = False

    def _after_fork_in_child(self) -> None:
        """In a fork child: forget the parent's queue, locks and worker thread."""
        self._start_lock = threading.RLock()
        if self.spooler is not None:
            self.spooler.after_fork()
        self._init_state()

    def _spool_sandbox(self) -> str:
        """The sandbox the sink's credentials name: which segments are this engine's."""
        name = getattr(self.sink, "spool_sandbox", None)
        return str(name()) if callable(name) else "default"

    # --- submit: the producers' side ------------------------------------------------

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
                size = _clamp(size, cap)
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
        if self.spooler is not None and self.spooler.accepting():
            self._spill(size)
            return True
        if self.overflow == "drop_newest":
            self._count_drop("queue_full", 1)
            return False
        queue, cap, lost = self.queue, self.max_queue_bytes, 0
        while queue and (
            len(queue) >= self.max_queue_size or self.queue_bytes + size > cap
        ):
            self.queue_bytes -= _clamp(queue.popleft().size_hint, cap)
            lost += 1
        self.removed += lost
        self._count_drop("queue_full", lost)
        return True

    def _spill(self, size: int) -> None:
        """Move the oldest items to the spill until *size* fits; the worker writes
        them to the spool. Only a spill full too (the worker is stuck in a send)
        drops its oldest. Caller holds self.lock."""
        queue, spill, cap = self.queue, self.spill, self.max_queue_bytes
        moved = 0
        while queue and (
            len(queue) >= self.max_queue_size or self.queue_bytes + size > cap
        ):
            item = queue.popleft()
            hint = _clamp(item.size_hint, cap)
            self.queue_bytes -= hint
            spill.append(item)
            self.spill_bytes += hint
            moved += 1
        self.removed += moved
        self.taken += moved  # the worker's now: in flight until written
        lost = 0
        while spill and (
            len(spill) > max(1, self.max_queue_size // _SPILL_SHARE)
            or self.spill_bytes > max(1, cap // _SPILL_SHARE)
        ):
            self.spill_bytes -= _clamp(spill.popleft().size_hint, cap)
            lost += 1
        self.settled += lost
        self._count_drop("queue_full", lost)
        if moved:
            self.wake.set()

    def _refuse(self, reason: str) -> None:
        with self.lock:
            self._count_drop(reason, 1)

    def _count_drop(self, reason: str, count: int, error: str | None = None) -> None:
        # Caller holds self.lock.
        if count:
            self.dropped[reason] += count
            self.unreported[reason] += count
            if error:
                self.drop_errors[reason] = error

    # --- the queue: what the worker takes -------------------------------------------

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
                    size = _clamp(size, cap)
                if items and taken + size > limit:
                    break
                items.append(queue.popleft())
                taken += size
            self.queue_bytes -= taken
            self.removed += len(items)
            self.taken += len(items)
            end = self.removed
        return items, end

    def _settle(
        self,
        *,
        sent: int = 0,
        dropped: dict[str, int] | None = None,
        errors: dict[str, str] | None = None,
        last_error: str | None = None,
        retried: int = 0,
    ) -> bool:
        """
        Count taken items as *sent* or *dropped* by reason: the one place the send
        counters change. Any thread; False once abandoned (nothing is counted then).
        """
        with self.lock:
            if self.abandoned:  # shutdown counted these already
                return False
            lost = sum(dropped.values()) if dropped else 0
            self.sent += sent
            self.settled += sent + lost
            self.retried += retried
            if dropped:
                for reason, count in dropped.items():
                    self._count_drop(reason, count, (errors or {}).get(reason))
            if last_error:
                self.last_error = last_error
        return True

    def encode_failed(self, exc: Exception) -> None:
        """One taken item could not be encoded: dropped (``BatchStream`` calls it)."""
        error = f"{type(exc).__name__}: {exc}"
        self._settle(dropped={"encode_failed": 1}, errors={"encode_failed": error})

    # --- the worker loop ------------------------------------------------------------

    def _start_worker(self) -> None:
        if self.options.handle_sigterm:  # built on another thread, perhaps
            ensure_sigterm_handler()
        with self._start_lock:
            if self._thread is not None or self.closing or interpreter_exiting():
                return
            thread = threading.Thread(
                target=self._run_worker, name="cse-bridge-engine", daemon=True
            )
            thread.start()
            self._thread = thread

    def _run_worker(self) -> None:
        keep_sigterm_off_this_thread()  # the main thread must get it; see there
        mark_engine_thread()
        try:
            self._run()
        except BaseException:  # the worker's own bug: say so, never take the app down
            logger.exception("cse-bridge engine worker failed")
        finally:
            mark_engine_thread(False)

    def _run(self) -> None:
        """Loop until shutdown drained the queue or its deadline passed."""
        while True:
            now = self.clock.now()
            deadline = self.drain_deadline
            if self.closing and deadline is not None and now >= deadline:
                self._give_up()
                return
            if self.spooler is not None:
                self._spool_work(now)
            if self._pending:
                left = self._outage_left(now, self._pause_left(now))
                if left > 0:
                    was_closing = self.closing
                    self._sleep(left, lambda: self.closing != was_closing)  # noqa: B023
                else:
                    self._send_pending(now)
                continue
            with self.lock:
                depth, removed = len(self.queue), self.removed
                spilled = bool(self.spill)
            if depth == 0:
                if spilled:  # overflowed since _spool_work looked: write it first
                    continue
                self._resolve(removed)
                self._report_drops()
                if self.unreported and not self._paused:
                    report = self._dropped_report()
                    self._pending = [report] if report else []
                    continue
                if self.closing:
                    return
                if self._replay(now):
                    continue
                self._sleep(
                    self._idle_timeout(now),
                    lambda: bool(self.queue or self.waiters or self.closing),
                )
                continue
            # Natural batching: send as soon as the worker is free; what arrives
            # while a send is in flight forms the next one. Only packing waits (at
            # most schedule_delay) for a small queue to fill a log.batch.
            urgent = self.closing or bool(self.waiters)
            packing = self.pack > 1 or self.pack_spans > 1
            if packing and not urgent and not self._batch_ready():
                if self._partial_since is None:
                    self._partial_since = now
                left = self._partial_since + self.options.schedule_delay - now
                if left > 0:
                    self._sleep(left, self._batch_ready)
                    continue
            self._partial_since = None
            # Spooled events go alongside new ones: one batch each, in turn.
            self._replay_turn = not self._replay_turn
            if self._replay_turn and self._replay(now):
                continue
            self._send_new(now)

    def _sleep(self, timeout: float | None, ready: Callable[[], bool]) -> None:
        # Clear first, then re-check: a submit/flush/shutdown that set the event
        # after our last look is then seen by ready(), not lost.
        self.wake.clear()
        if ready() or self.resume_requested:
            return
        if self.closing and self.drain_deadline is not None:
            left = self.drain_deadline - self.clock.now()
            timeout = left if timeout is None else min(timeout, left)
        self.clock.wait(self.wake, timeout)

    def _batch_ready(self) -> bool:
        return (
            self.closing
            or bool(self.waiters)
            or len(self.queue)
            >= min(max(self.pack, self.pack_spans), self.max_batch_size)
            or self.queue_bytes >= self.max_batch_bytes
        )

    def _pause_left(self, now: float) -> float:
        if self.resume_requested:
            self.resume_requested = False
            self._resume_at = None
        if self._resume_at is None:
            return 0.0
        left = self._resume_at - now
        if self.closing:
            if self._paused and self.drain_deadline is not None:
                return self.drain_deadline - now  # a setup error: no use retrying
            return min(left, _CLOSING_RETRY)
        return left

    def _outage_left(self, now: float, left: float) -> float:
        """*left*, but no later than when the backlog is due to go to the spool."""
        since = self._failing_since
        if self.spooler is None or since is None or not self.spooler.accepting():
            return left  # no spool to go to: the backoff alone
        if self.closing:
            return 0.0  # _spool_work writes it now
        return min(left, max(0.0, since + self.options.spool_after - now))

    def _deadline(self, now: float) -> float:
        deadline = now + self.options.send_timeout
        if self.closing and self.drain_deadline is not None:
            deadline = min(deadline, self.drain_deadline)
        return deadline

    def _send_new(self, now: float) -> None:
        """Send what is queued, encoding each event as the exporter is ready for it."""
        report = self._dropped_report() if not self._failures else None
        stream = BatchStream(self, [report] if report else [])
        send_stream = getattr(self.sink, "send_stream", None)
        if send_stream is not None:
            batch, result = send_stream(iter(stream), self._deadline(now))
        else:  # a sink that takes whole batches (InMemorySink, custom sinks)
            batch = list(stream)
            result = self._call_sink(batch, now) if batch else SendResult()
        self._pending_end = stream.end
        self._account(now, batch, result, stream.leftover())

    def _send_pending(self, now: float) -> None:
        """Send the events handed back for a retry (a plain list)."""
        batch = self._pending
        self._account(now, batch, self._call_sink(batch, now), [])

    def _call_sink(self, batch: list[EncodedEvent], now: float) -> SendResult:
        try:
            return self.sink.send(batch, self._deadline(now))
        except Exception as exc:  # a sink's bug: retry the batch, report it
            return SendResult(retry=list(batch), error=f"{type(exc).__name__}: {exc}")

    def _account(
        self,
        now: float,
        batch: list[EncodedEvent],
        result: SendResult,
        leftover: list[EncodedEvent],
    ) -> None:
        """Count what *result* says of *batch*; keep retries and *leftover* pending."""
        retry = list(result.retry)
        dropped = {reason: n for reason, n in result.dropped.items() if n > 0}
        done = sum(e.items for e in batch) - sum(e.items for e in retry)
        delivered = max(0, done - sum(dropped.values()))
        fallback = result.error or ""  # a custom sink may not say why per reason
        counted = self._settle(
            sent=delivered,
            dropped=dropped,
            errors={r: result.drop_errors.get(r) or fallback for r in dropped},
            last_error=result.error,
            retried=0 if result.auth_failed else sum(1 for e in retry if e.attempts),
        )
        if not counted:
            self._pending = []
            return
        if delivered:
            # Something got through: a new outage is worth a line at once.
            self.diagnostics.reset("send")
            self._failing_since = None
        self._report_drops()
        self._pending = retry + leftover
        if not self._pending:
            self._recovered()
            self._resolve(self._pending_end)
        elif not retry:  # only leftover (the send deadline cut it short): go on
            self._resume_at = None
        else:
            self._failed(now, result, done)

    def _recovered(self) -> None:
        """The gateway answered: no backoff, no pause, no outage."""
        self._failures, self._resume_at = 0, None
        self._failing_since = None
        if self._paused:
            self._paused = False
            self.diagnostics.reset("auth")
            self.diagnostics.reset("permanent")

    def _failed(self, now: float, result: SendResult, done: int) -> None:
        """Nothing of a send got through: pause or back off, and say why."""
        if self._failing_since is None:
            self._failing_since = now
        if result.auth_failed:
            self._paused = True
            self._resume_at = now + AUTH_REPROBE_INTERVAL
            self.diagnostics.warn(
                "auth",
                "cse-bridge: the gateway refused the access token (%s); set "
                "COMPUTESDK_ACCESS_TOKEN to a valid token; shipping paused until "
                "it is replaced, %d queued",
                result.error,
                self._queued(),
            )
        elif result.permanent:
            # A setup error: no use retrying soon, but the operator may fix it
            # while the process runs. Same pause as refused credentials.
            self._paused = True
            self._resume_at = now + PERMANENT_RETRY_INTERVAL
            self.diagnostics.warn(
                "permanent",
                "cse-bridge: %s; retrying every %d s, %d queued",
                result.permanent,
                PERMANENT_RETRY_INTERVAL,
                self._queued(),
            )
        else:
            self._failures = 1 if done > 0 else self._failures + 1
            # Retry-After is a floor under the backoff, never a reason to hurry.
            wait = backoff_delay(self._failures)
            if result.retry_after is not None:
                wait = max(wait, result.retry_after)
            self._resume_at = now + wait
            self.diagnostics.warn(
                "send",
                "cse-bridge: cannot ship events (%s); retrying, %d queued",
                result.error or "no answer",
                self._queued(),
            )

    def _queued(self) -> int:
        """Items waiting: in the queue, and held for a retry."""
        return len(self.queue) + sum(e.items for e in self._pending)

    def _report_drops(self) -> None:
        """Say, once per reason and interval, how many events were dropped and why."""
        with self.lock:
            counts = dict(self.dropped)
        for reason, count in counts.items():
            if reason == "exit":  # the exit line says these, once
                continue
            if count > self._said.get(reason, 0) and self.diagnostics.warn(
                "drop:" + reason,
                "cse-bridge: dropped %d events (%s: %s)",
                count,
                reason,
                self.drop_error(reason),
            ):
                self._said[reason] = count

    def _dropped_report(self) -> EncodedEvent | None:
        """Take the unreported drop counts into one ``bridge.dropped`` event."""
        with self.lock:
            if not self.unreported:
                return None
            counts = dict(self.unreported)
            self.unreported.clear()
        total = sum(counts.values())
        data = {
            "message": f"cse-bridge dropped {total} events",
            "dropped": counts,
            "total": total,
            "pid": os.getpid(),
        }
        body = json.dumps({"type": DROPPED_TYPE, "data": data}, separators=(",", ":"))
        return EncodedEvent(DROPPED_TYPE, body.encode(), items=0)

    def _resolve(self, seq: int) -> None:
        self.resolved = max(self.resolved, seq)
        for waiter in list(self.waiters):
            if waiter.target <= self.resolved:
                waiter.event.set()
                # flush() may have removed it already, after its timeout.
                with contextlib.suppress(ValueError):
                    self.waiters.remove(waiter)

    def _give_up(self) -> None:
        """
        The drain deadline passed: what is pending or queued goes to the spool, or
        is lost (``exit``) without one.
        """
        if self.spooler is not None and self.spooler.accepting():
            self._write_spill()
            self._spool_backlog("exit")
        self.abandon()
        self._pending = []

    # --- the spool: keeping on disk what would be lost, and replaying it -----------

    def _spool_work(self, now: float) -> None:
        """
        Write the spill; in an outage, move the whole backlog to the spool.

        While shutting down, a failing gateway is outage enough: the spool keeps
        the backlog at once, where retrying would spend the exit budget and then
        leave more of it unwritten.
        """
        if self.spill:
            self._write_spill()
        since = self._failing_since
        spooler = self.spooler
        if (
            spooler is not None
            and since is not None
            and (self.closing or now - since >= self.options.spool_after)
            and (self._pending or self.queue)
            and spooler.accepting()
        ):
            self._spool_backlog("exit" if self.closing else "outage")

    def _write_spill(self) -> None:
        """Encode the spill's items and write them (``overflow``)."""
        with self.lock:
            items = list(self.spill)
            self.spill.clear()
            self.spill_bytes = 0
        events: list[EncodedEvent] = []
        for item in items:
            try:
                events.append(EncodedEvent(item.type, encode_body(item)))
            except Exception as exc:  # one bad item never sinks the rest
                self.encode_failed(exc)
        if events:
            self._keep(events, "overflow")

    def _spool_backlog(self, reason: str) -> None:
        """Write what is pending, then the queue, to the spool, batch by batch."""
        if self._pending:
            pending, self._pending = self._pending, []
            if not self._keep(pending, reason):
                return
        while self.queue and not self.abandoned:
            events = list(BatchStream(self, []))
            if events and not self._keep(events, reason):
                return
        self._resolve(self.removed)

    def _keep(self, events: list[EncodedEvent], reason: str) -> bool:
        """
        Write *events* (taken items) to the spool and count them ``spooled``.

        Once shutdown began, the write and its count happen under the lock, so
        ``abandon`` on the main thread counts an item either spooled or lost, never
        both (a late submit then waits for one write; the sync to the disk happens
        after). Before that, ``abandon`` cannot run, and submit never waits for the
        disk. If the disk failed before anything was written, the events go back
        to ``_pending`` (the engine retries them from memory; overflow ones are
        lost); False then.
        """
        spooler = self.spooler
        assert spooler is not None  # noqa: S101 - only called with a spool
        guard = self.lock if self.closing else contextlib.nullcontext()
        with guard:
            if self.closing and self.abandoned:  # the main thread counted them lost
                return False
            written, lost = spooler.write(events)
            if written == 0 and reason != "overflow" and not spooler.accepting():
                # The disk failed: the events stay ours to retry from memory, as
                # without a spool (counted lost at the deadline if still unsent).
                self._pending = events + self._pending
                return False
            with self.lock:  # reentrant when held above
                if self.abandoned:  # counted as lost already (see above)
                    return False
                self.settled += written + lost
                self.spooled += written
                self.spooled_by[reason] += written
                self._count_drop(_LOST_WHEN_UNSPOOLED[reason], lost, spooler.error)
        spooler.sync()
        return True

    def _replay(self, now: float) -> bool:
        """Send one batch of this sandbox's spooled events; True if there was one."""
        spooler = self.spooler
        if spooler is None or self.closing or not spooler.has_backlog():
            return False
        if self.resume_requested:
            self.resume_requested = False
            self._resume_at = None
        if self._resume_at is not None and now < self._resume_at:
            return False
        batch = spooler.next_batch(self.max_batch_size, self.max_batch_bytes)
        if not batch:
            return False
        result = self._call_sink(batch, now)
        delivered, refused = spooler.settle(result)
        if refused:
            self.diagnostics.warn(
                "spool_refused",
                "cse-bridge: the gateway refused %d spooled events for good (%s)",
                spooler.refused,
                result.error,
            )
        if result.error:
            self.last_error = result.error
        if delivered or not result.retry:
            self.diagnostics.reset("send")
            self._recovered()
        else:
            self._failed(now, result, 0)
        return True

    def _idle_timeout(self, now: float) -> float | None:
        """How long an idle worker sleeps: for ever without a spool, else until the
        next replay attempt or look at the directory."""
        if self.spooler is None:
            return None
        if self._resume_at is not None:
            return max(0.0, self._resume_at - now)
        return RESCAN_INTERVAL

    # --- flush, shutdown, stats -----------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """
        Wait until every item submitted before this call has been sent or dropped
        (or written to the spool, with one).

        Safe from any thread; blocks at most *timeout* seconds; never sends on the
        calling thread (on the worker itself it returns at once).

        Returns:
            True if the worker got past this point of the queue in time.
        """
        try:
            target = self.accepted
            if self.resolved >= target:
                return True
            thread = self._thread
            if thread is None or not thread.is_alive() or on_engine_thread():
                return False
            waiter = _FlushWaiter(target)
            self.waiters.append(waiter)
            if self.resolved >= target:  # the worker got there while we queued up
                return True
            self.wake.set()
            done = self.clock.wait(waiter.event, max(0.0, timeout))
            if not done:
                try:
                    self.waiters.remove(waiter)
                except ValueError:  # the worker just released it
                    return True
        except Exception:
            return False
        return done or self.resolved >= target

    @property
    def is_shutdown(self) -> bool:
        """True once ``shutdown`` was called; flush and submit then do nothing."""
        return self.closing

    def shutdown(self, timeout: float | None = None) -> bool:
        """
        Send what is queued, stop the worker and close the sink. Idempotent.

        Blocks at most *timeout* seconds (None: what is left of the exit budget). The
        worker drains until shortly before that; a send still in flight then is
        abandoned and its events counted as ``exit``; ``sink.close`` gets the rest.
        Safe from any thread but the worker.

        Returns:
            True if the worker stopped with nothing left behind: everything
            submitted was sent or dropped, none for lack of time.
        """
        with self._start_lock:
            if self._shutdown_started:
                return self._shutdown_clean
            self._shutdown_started = True
            self.closing = True
        try:
            budget = exit_budget_left(self.exit_timeout) if timeout is None else timeout
            end = self.clock.now() + max(0.0, budget)
            # The worker drains until a little before the end; the reserve lets it
            # count (or spool) what it gave up and leaves sink.close() some time.
            reserve = min(0.25, budget * 0.1)
            if self.spooler is not None:
                reserve = min(0.5, budget * 0.25)
            self.drain_deadline = end - reserve
            self.wake.set()
            thread = self._thread
            if thread is None and self.queue:
                # Items queued while the interpreter exits, with no worker: drain them
                # on this thread rather than start one.
                mark_engine_thread()
                try:
                    self._init_worker()
                    self._run()
                finally:
                    mark_engine_thread(False)
            elif thread is not None and thread is not threading.current_thread():
                # What the worker still has to do in the reserve: count what it
                # gave up (reserve / 2), or write it to the spool (all but the
                # last 50 ms, which closing the idle connections takes).
                keep = reserve / 2
                if self.spooler is not None:
                    self._cut_send_at_deadline(thread)
                    keep = min(keep, _CLOSE_TIME)
                thread.join(max(0.0, end - keep - self.clock.now()))
            stopped = thread is None or not thread.is_alive()
            if not stopped:
                # A send that hangs (a gateway that never answers, a resolver that
                # never returns) cannot stretch the exit: what it holds is counted
                # as lost now, and the worker's late answer is ignored.
                self.abandon()
            self._shutdown_clean = (
                stopped
                and self.resolved >= self.accepted
                and not self.dropped["exit"]
                and not self.spooled_by["exit"]
            )
            if stopped and self.spooler is not None:
                self.spooler.close()
            self.sink.close(max(0.0, end - self.clock.now()))
        except Exception:
            logger.exception("cse-bridge engine shutdown failed")
        finally:
            with self.lock:
                counts = dict(self.dropped)
                spooled = dict(self.spooled_by)
            record_undelivered(counts, {r: self.drop_error(r) for r in counts})
            if self.spooler is not None:
                record_spooled(spooled, self.spooler.directory)
        return self._shutdown_clean

    def _cut_send_at_deadline(self, thread: threading.Thread) -> None:
        """At the drain deadline, end a send still in flight, so the worker can
        spool its events in the reserve (a send begun before shutdown would run to
        its own deadline)."""
        deadline = self.drain_deadline
        if deadline is None:
            return
        thread.join(max(0.0, deadline - self.clock.now()))
        interrupt = getattr(self.sink, "interrupt", None)
        if thread.is_alive() and interrupt is not None:
            interrupt()

    def abandon(self) -> None:
        """
        Count everything queued or in flight as lost (reason ``exit``); any thread.

        From then on the worker's late results count nothing, so each item is
        counted once: delivered, or dropped.
        """
        with self.lock:  # reentrant: _settle takes it again
            if self.abandoned:
                return
            queued = len(self.queue)  # taken off the queue now, to be counted lost
            self.queue.clear()
            self.queue_bytes = 0
            self.spill.clear()  # taken already: counted below
            self.spill_bytes = 0
            self.removed += queued
            self.taken += queued
            error = (
                self.last_error or "the exit budget ran out while a send was in flight"
            )
            self._settle(
                dropped={"exit": self.taken - self.settled}, errors={"exit": error}
            )
            self.abandoned = True
            end = self.accepted
        self._resolve(end)

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
        if reason == "spool_failed" and self.spooler is not None:
            return self.spooler.error or "the spool could not be written"
        return reason.replace("_", " ")

    def resume(self) -> None:
        """End a 401/403 pause or a backoff now (the token changed). Any thread."""
        self.resume_requested = True
        self.wake.set()

    def stats(self) -> EngineStats:
        """Return a snapshot of the counters; safe from any thread, O(reasons)."""
        spooler = self.spooler
        with self.lock:
            return EngineStats(
                queued=self.accepted,
                sent=self.sent,
                retried=self.retried,
                dropped=dict(self.dropped),
                in_flight=self.taken - self.settled,
                queue_depth=len(self.queue),
                queue_bytes=self.queue_bytes,
                last_error=self.last_error,
                spooled=self.spooled,
                spooled_by=dict(self.spooled_by),
                spool_replayed=spooler.replayed if spooler else 0,
                spool_refused=spooler.refused if spooler else 0,
                spool_evicted=spooler.evicted if spooler else 0,
                spool_damaged=spooler.damaged if spooler else 0,
                spool_error=spooler.error if spooler else None,
            )


def _weak_resume(engine: BatchEngine) -> Callable[[], None]:
    ref = weakref.ref(engine)

    def resume() -> None:
        target = ref()
        if target is not None:
            target.resume()

    return resume
