"""
``BatchEngine``: the one queue and worker every producer shares.

Producers call ``submit`` on application threads; one daemon worker thread
(``cse-bridge-engine``) sends as soon as it is free, encoding each event as a
connection is ready for it, retrying and pausing as the gateway asks. See STYLE.md
section 6.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from ._clock import MONOTONIC, Clock
from ._lifecycle import (
    Diagnostics,
    ensure_sigterm_handler,
    exit_budget_left,
    interpreter_exiting,
    logger,
    mark_engine_thread,
    on_engine_thread,
    record_undelivered,
    register_engine,
)
from ._queue import FlushWaiter, QueueState
from ._settings import (
    DEFAULT_EXIT_TIMEOUT,
    DEFAULT_MAX_BATCH_BYTES,
    DEFAULT_MAX_BATCH_SIZE,
    DEFAULT_MAX_QUEUE_BYTES,
    DEFAULT_MAX_QUEUE_SIZE,
    DEFAULT_PACK,
    DEFAULT_SCHEDULE_DELAY,
    DEFAULT_SEND_TIMEOUT,
    DEFAULT_SIGTERM,
    ENV_EXIT_TIMEOUT,
    ENV_MAX_BATCH_BYTES,
    ENV_MAX_BATCH_SIZE,
    ENV_MAX_QUEUE_BYTES,
    ENV_MAX_QUEUE_SIZE,
    ENV_PACK,
    ENV_SCHEDULE_DELAY,
    ENV_SEND_TIMEOUT,
    ENV_SIGTERM,
    resolve_bool,
    resolve_float,
    resolve_int,
    resolve_overflow,
)
from ._types import Sink
from ._worker import Worker

__all__ = ["BatchEngine"]


class BatchEngine(QueueState):
    """
    A bounded queue of ``EventItem`` and the worker that ships it through a ``Sink``.

    Every argument left None comes from its ``CSE_BRIDGE_*`` environment variable,
    else the default in ``cse_bridge.engine._settings``.

    Args:
        sink: Where batches go; only the worker thread calls it.
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
        clock: The time source (a ``FakeClock`` in tests).

    Raises:
        ValueError: An argument is out of range.
    """

    def __init__(
        self,
        sink: Sink,
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
        clock: Clock = MONOTONIC,
    ) -> None:
        self.sink = sink
        self.max_queue_size = resolve_int(
            max_queue_size, ENV_MAX_QUEUE_SIZE, DEFAULT_MAX_QUEUE_SIZE
        )
        self.max_queue_bytes = resolve_int(
            max_queue_bytes, ENV_MAX_QUEUE_BYTES, DEFAULT_MAX_QUEUE_BYTES
        )
        self.max_batch_size = resolve_int(
            max_batch_size, ENV_MAX_BATCH_SIZE, DEFAULT_MAX_BATCH_SIZE
        )
        self.max_batch_bytes = resolve_int(
            max_batch_bytes, ENV_MAX_BATCH_BYTES, DEFAULT_MAX_BATCH_BYTES
        )
        self.schedule_delay = resolve_float(
            schedule_delay, ENV_SCHEDULE_DELAY, DEFAULT_SCHEDULE_DELAY
        )
        self.overflow = resolve_overflow(overflow)
        self.exit_timeout = resolve_float(
            exit_timeout, ENV_EXIT_TIMEOUT, DEFAULT_EXIT_TIMEOUT
        )
        self.pack = resolve_int(pack, ENV_PACK, DEFAULT_PACK, minimum=0)
        self.send_timeout = resolve_float(
            send_timeout, ENV_SEND_TIMEOUT, DEFAULT_SEND_TIMEOUT, minimum=0.001
        )
        self.handle_sigterm = resolve_bool(handle_sigterm, ENV_SIGTERM, DEFAULT_SIGTERM)
        self.clock = clock
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
        self._init_state()
        register_engine(self, sigterm=self.handle_sigterm)
        add_listener = getattr(sink, "add_token_listener", None)
        if add_listener is not None:
            add_listener(_weak_resume(self))

    def _after_fork_in_child(self) -> None:
        """In a fork child: forget the parent's queue, locks and worker thread."""
        self._start_lock = threading.RLock()
        self._init_state()

    def _start_worker(self) -> None:
        if self.handle_sigterm:  # the engine may have been built on another thread
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
        mark_engine_thread()
        try:
            Worker(self).run()
        except BaseException:  # the worker's own bug: say so, never take the app down
            logger.exception("cse-bridge engine worker failed")
        finally:
            mark_engine_thread(False)

    # --- flush, shutdown, stats -----------------------------------------------------

    def flush(self, timeout: float = 5.0) -> bool:
        """
        Wait until every item submitted before this call has been sent or dropped.

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
            waiter = FlushWaiter(target)
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
        worker drains until shortly before that, then ``sink.close`` gets the rest.
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
            # count what it gave up and leaves sink.close() some time.
            reserve = min(0.25, budget * 0.1)
            self.drain_deadline = end - reserve
            self.wake.set()
            thread = self._thread
            if thread is None and self.queue:
                # Items queued while the interpreter exits, with no worker: drain them
                # on this thread rather than start one.
                mark_engine_thread()
                try:
                    Worker(self).run()
                finally:
                    mark_engine_thread(False)
            elif thread is not None and thread is not threading.current_thread():
                thread.join(max(0.0, end - reserve / 2 - self.clock.now()))
            stopped = thread is None or not thread.is_alive()
            if not stopped:
                # A send that hangs (a gateway that never answers, a resolver that
                # never returns) cannot stretch the exit: what it holds is counted
                # as lost now, and the worker's late answer is ignored.
                self.abandon()
            self._shutdown_clean = (
                stopped and self.resolved >= self.accepted and not self.dropped["exit"]
            )
            self.sink.close(max(0.0, end - self.clock.now()))
        except Exception:
            logger.exception("cse-bridge engine shutdown failed")
        finally:
            with self.lock:
                counts = dict(self.dropped)
            record_undelivered(counts, {r: self.drop_error(r) for r in counts})
        return self._shutdown_clean

    def resume(self) -> None:
        """End a 401/403 pause or a backoff now (the token changed). Any thread."""
        self.resume_requested = True
        self.wake.set()


def _weak_resume(engine: BatchEngine) -> Callable[[], None]:
    import weakref

    ref = weakref.ref(engine)

    def resume() -> None:
        target = ref()
        if target is not None:
            target.resume()

    return resume
