"""
The engine's worker loop: take a batch, encode it, send it, retry or pause, resolve.

Runs on the ``cse-bridge-engine`` thread (or, at interpreter exit with no worker, on
the thread calling ``shutdown``). It is the only code that calls ``sink.send``, and it
handles one batch at a time until every event of it is sent or dropped, so "resolved
up to sequence number N" is exact and ``flush`` can wait for it.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from typing import TYPE_CHECKING, Final

from ._retry import AUTH_REPROBE_INTERVAL, PERMANENT_RETRY_INTERVAL, backoff_delay
from ._stream import BatchStream
from ._types import EncodedEvent, SendResult

if TYPE_CHECKING:
    from ._engine import BatchEngine

__all__ = ["DROPPED_TYPE", "Worker", "dropped_report"]

DROPPED_TYPE: Final = "bridge.dropped"
"""The self-report event; ``data.dropped`` counts lost items by reason."""

_CLOSING_RETRY: Final = 0.5
"""Longest backoff while draining for shutdown: a few more tries fit the budget."""


def dropped_report(engine: BatchEngine) -> EncodedEvent | None:
    """Take the unreported drop counts into one ``bridge.dropped`` event, or None."""
    with engine.lock:
        if not engine.unreported:
            return None
        counts = dict(engine.unreported)
        engine.unreported.clear()
    total = sum(counts.values())
    data = {
        "message": f"cse-bridge dropped {total} events",
        "dropped": counts,
        "total": total,
        "pid": os.getpid(),
    }
    body = json.dumps({"type": DROPPED_TYPE, "data": data}, separators=(",", ":"))
    return EncodedEvent(DROPPED_TYPE, body.encode(), items=0)


class Worker:
    """One run of the worker loop over *engine*'s state; see the module docstring."""

    def __init__(self, engine: BatchEngine) -> None:
        self.engine = engine
        self.pending: list[EncodedEvent] = []
        self.pending_end = 0
        self.failures = 0
        self.resume_at: float | None = None
        self.partial_since: float | None = None
        self.auth_paused = False
        self.said: dict[str, int] = {}
        """The drop count of each reason at its last report line."""

    def run(self) -> None:
        """Loop until shutdown drained the queue or its deadline passed."""
        engine = self.engine
        while True:
            now = engine.clock.now()
            deadline = engine.drain_deadline
            if engine.closing and deadline is not None and now >= deadline:
                self._give_up()
                return
            if self.pending:
                left = self._pause_left(now)
                if left > 0:
                    was_closing = engine.closing
                    self._sleep(left, lambda: engine.closing != was_closing)  # noqa: B023
                else:
                    self._send(now)
                continue
            with engine.lock:
                depth, removed = len(engine.queue), engine.removed
            if depth == 0:
                self._resolve(removed)
                self.report_drops()
                if engine.unreported and not self.auth_paused:
                    report = dropped_report(engine)
                    self.pending = [report] if report else []
                    continue
                if engine.closing:
                    return
                self._sleep(
                    None, lambda: bool(engine.queue or engine.waiters or engine.closing)
                )
                continue
            # Natural batching: send as soon as the worker is free; what arrives
            # while a send is in flight forms the next one. Only packing waits (at
            # most schedule_delay) for a small queue to fill a log.batch.
            urgent = engine.closing or bool(engine.waiters)
            if engine.pack > 1 and not urgent and not self._batch_ready():
                if self.partial_since is None:
                    self.partial_since = now
                left = self.partial_since + engine.schedule_delay - now
                if left > 0:
                    self._sleep(left, self._batch_ready)
                    continue
            self.partial_since = None
            self._send_new(now)

    def _sleep(self, timeout: float | None, ready: Callable[[], bool]) -> None:
        engine = self.engine
        # Clear first, then re-check: a submit/flush/shutdown that set the event
        # after our last look is then seen by ready(), not lost.
        engine.wake.clear()
        if ready() or engine.resume_requested:
            return
        if engine.closing and engine.drain_deadline is not None:
            left = engine.drain_deadline - engine.clock.now()
            timeout = left if timeout is None else min(timeout, left)
        engine.clock.wait(engine.wake, timeout)

    def _batch_ready(self) -> bool:
        engine = self.engine
        return (
            engine.closing
            or bool(engine.waiters)
            or len(engine.queue) >= min(engine.pack, engine.max_batch_size)
            or engine.queue_bytes >= engine.max_batch_bytes
        )

    def _pause_left(self, now: float) -> float:
        engine = self.engine
        if engine.resume_requested:
            engine.resume_requested = False
            self.resume_at = None
        if self.resume_at is None:
            return 0.0
        left = self.resume_at - now
        if engine.closing:
            if self.auth_paused and engine.drain_deadline is not None:
                return engine.drain_deadline - now  # refused credentials: no use
            return min(left, _CLOSING_RETRY)
        return left

    def _send_new(self, now: float) -> None:
        """Send what is queued, encoding each event as the sink is ready for it."""
        engine = self.engine
        report = dropped_report(engine) if not self.failures else None
        stream = BatchStream(engine, [report] if report else [])
        send_stream = getattr(engine.sink, "send_stream", None)
        if send_stream is not None:
            batch, result = send_stream(iter(stream), self._deadline(now))
        else:  # a sink that takes whole batches (InMemorySink, custom sinks)
            batch = list(stream)
            try:
                result = (
                    engine.sink.send(batch, self._deadline(now))
                    if batch
                    else SendResult()
                )
            except Exception as exc:  # a sink's bug: retry the batch, report it
                error = f"{type(exc).__name__}: {exc}"
                result = SendResult(retry=list(batch), error=error)
        self.pending_end = stream.end
        self._account(now, batch, result, stream.leftover())

    def _deadline(self, now: float) -> float:
        engine = self.engine
        deadline = now + engine.send_timeout
        if engine.closing and engine.drain_deadline is not None:
            deadline = min(deadline, engine.drain_deadline)
        return deadline

    def _send(self, now: float) -> None:
        """Send the events handed back for a retry (a plain list)."""
        batch = self.pending
        try:
            result = self.engine.sink.send(batch, self._deadline(now))
        except Exception as exc:  # a sink's bug: retry the batch, report it
            result = SendResult(retry=list(batch), error=f"{type(exc).__name__}: {exc}")
        self._account(now, batch, result, [])

    def _account(
        self,
        now: float,
        batch: list[EncodedEvent],
        result: SendResult,
        leftover: list[EncodedEvent],
    ) -> None:
        """Count what *result* says of *batch*; keep retries and *leftover* pending."""
        engine = self.engine
        retry = list(result.retry)
        dropped = {reason: n for reason, n in result.dropped.items() if n > 0}
        done = sum(e.items for e in batch) - sum(e.items for e in retry)
        delivered = max(0, done - sum(dropped.values()))
        with engine.lock:
            if engine.abandoned:  # shutdown counted these already
                self.pending = []
                return
            engine.sent += delivered
            engine.in_flight -= max(0, done)
            for reason, count in dropped.items():
                engine.dropped[reason] += count
                engine.unreported[reason] += count
                cause = result.drop_errors.get(reason) or result.error
                if cause:
                    engine.drop_errors[reason] = cause
            if retry and not result.auth_failed:
                engine.retried += sum(1 for e in retry if e.attempts)
            if result.error:
                engine.last_error = result.error
        if delivered:
            # Something got through: a new outage is worth a line at once.
            engine.diagnostics.reset("send")
        self.report_drops()
        self.pending = retry + leftover
        if not self.pending:
            self.failures, self.resume_at = 0, None
            if self.auth_paused:
                self.auth_paused = False
                engine.diagnostics.reset("auth")
                engine.diagnostics.reset("permanent")
            self._resolve(self.pending_end)
        elif not retry:  # only leftover (the send deadline cut it short): go on
            self.resume_at = None
        elif result.auth_failed:
            self.auth_paused = True
            self.resume_at = now + AUTH_REPROBE_INTERVAL
            engine.diagnostics.warn(
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
            self.auth_paused = True
            self.resume_at = now + PERMANENT_RETRY_INTERVAL
            engine.diagnostics.warn(
                "permanent",
                "cse-bridge: %s; retrying every %d s, %d queued",
                result.permanent,
                PERMANENT_RETRY_INTERVAL,
                self._queued(),
            )
        else:
            self.failures = 1 if done > 0 else self.failures + 1
            # Retry-After is a floor under the backoff, never a reason to hurry.
            wait = backoff_delay(self.failures)
            if result.retry_after is not None:
                wait = max(wait, result.retry_after)
            self.resume_at = now + wait
            engine.diagnostics.warn(
                "send",
                "cse-bridge: cannot ship events (%s); retrying, %d queued",
                result.error or "no answer",
                self._queued(),
            )

    def _queued(self) -> int:
        """Items waiting: in the queue, and held for a retry."""
        return len(self.engine.queue) + sum(e.items for e in self.pending)

    def report_drops(self) -> None:
        """Say, once per reason and interval, how many events were dropped and why."""
        engine = self.engine
        with engine.lock:
            counts = dict(engine.dropped)
        for reason, count in counts.items():
            if count > self.said.get(reason, 0) and engine.diagnostics.warn(
                "drop:" + reason,
                "cse-bridge: dropped %d events (%s: %s)",
                count,
                reason,
                engine.drop_error(reason),
            ):
                self.said[reason] = count

    def _resolve(self, seq: int) -> None:
        engine = self.engine
        engine.resolved = max(engine.resolved, seq)
        for waiter in list(engine.waiters):
            if waiter.target <= engine.resolved:
                waiter.event.set()
                # flush() may have removed it already, after its timeout.
                with contextlib.suppress(ValueError):
                    engine.waiters.remove(waiter)

    def _give_up(self) -> None:
        engine = self.engine
        with engine.lock:
            if not engine.abandoned:
                lost = sum(e.items for e in self.pending) + len(engine.queue)
                engine.in_flight -= sum(e.items for e in self.pending)
                engine.removed += len(engine.queue)
                engine.queue.clear()
                engine.queue_bytes = 0
                if lost:
                    engine.count_exit(lost)
            end = engine.accepted
        self.pending = []
        self._resolve(end)
