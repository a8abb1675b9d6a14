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

from ._encode import MAX_EVENT_BYTES, PACKED_TYPE, encode_item, pack_events, packed_size
from ._retry import AUTH_REPROBE_INTERVAL, backoff_delay
from ._types import EncodedEvent, EventItem, SendResult

if TYPE_CHECKING:
    from ._engine import BatchEngine

__all__ = ["DROPPED_TYPE", "Worker", "dropped_report"]

DROPPED_TYPE: Final = "bridge.dropped"
"""The self-report event: ``data.dropped`` counts lost items by reason."""

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
                depth, queued_bytes, removed = (
                    len(engine.queue),
                    engine.queue_bytes,
                    engine.removed,
                )
            if depth == 0:
                self._resolve(removed)
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
            urgent = engine.closing or bool(engine.waiters)
            small = (
                depth < engine.max_batch_size and queued_bytes < engine.max_batch_bytes
            )
            if small and not urgent:
                if self.partial_since is None:
                    self.partial_since = now
                left = self.partial_since + engine.schedule_delay - now
                if left > 0:
                    self._sleep(left, self._batch_ready)
                    continue
            self.partial_since = None
            self._take()

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
            or len(engine.queue) >= engine.max_batch_size
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

    def _take(self) -> None:
        engine = self.engine
        items, end = engine.take()
        events = self._encode(items)
        report = dropped_report(engine) if not self.failures else None
        self.pending = ([report] if report else []) + events
        self.pending_end = end
        if not self.pending:
            self._resolve(end)

    def _encode(self, items: list[EventItem]) -> list[EncodedEvent]:
        events: list[EncodedEvent] = []
        for item in items:
            try:
                events.append(encode_item(item))
            except Exception:  # one bad item never sinks the batch
                with self.engine.lock:
                    self.engine.in_flight -= 1
                    self.engine.dropped["encode_failed"] += 1
                    self.engine.unreported["encode_failed"] += 1
        pack = self.engine.pack
        return _pack(events, pack) if pack > 1 else events

    def _send(self, now: float) -> None:
        engine = self.engine
        batch = self.pending
        deadline = now + engine.send_timeout
        if engine.closing and engine.drain_deadline is not None:
            deadline = min(deadline, engine.drain_deadline)
        try:
            result = engine.sink.send(batch, deadline)
        except Exception as exc:  # a sink's bug: retry the batch, report it
            result = SendResult(retry=list(batch), error=f"{type(exc).__name__}: {exc}")
        retry = list(result.retry)
        dropped = {reason: n for reason, n in result.dropped.items() if n > 0}
        done = sum(e.items for e in batch) - sum(e.items for e in retry)
        with engine.lock:
            engine.sent += max(0, done - sum(dropped.values()))
            engine.in_flight -= max(0, done)
            for reason, count in dropped.items():
                engine.dropped[reason] += count
                engine.unreported[reason] += count
            if retry and not result.auth_failed:
                engine.retried += sum(1 for e in retry if e.attempts)
            if result.error:
                engine.last_error = result.error
        if dropped.get("rejected"):
            engine.diagnostics.warn(
                "rejected", "cse-bridge: the gateway rejected events: %s", result.error
            )
        self.pending = retry
        if not retry:
            self.failures, self.resume_at = 0, None
            if self.auth_paused:
                self.auth_paused = False
                engine.diagnostics.reset("auth")
            engine.diagnostics.reset("send")
            self._resolve(self.pending_end)
        elif result.auth_failed:
            self.auth_paused = True
            self.resume_at = now + AUTH_REPROBE_INTERVAL
            engine.diagnostics.warn(
                "auth",
                "cse-bridge: the gateway refused the access token (%s); shipping "
                "paused until the token is replaced",
                result.error,
            )
        else:
            self.failures = 1 if done > 0 else self.failures + 1
            wait = result.retry_after
            self.resume_at = now + (
                backoff_delay(self.failures) if wait is None else wait
            )
            engine.diagnostics.warn(
                "send", "cse-bridge: cannot ship events, retrying: %s", result.error
            )

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
            lost = sum(e.items for e in self.pending) + len(engine.queue)
            engine.in_flight -= sum(e.items for e in self.pending)
            engine.removed += len(engine.queue)
            engine.queue.clear()
            engine.queue_bytes = 0
            if lost:
                engine.dropped["shutdown_timeout"] += lost
            end = engine.accepted
        self.pending = []
        self._resolve(end)


def _pack(events: list[EncodedEvent], pack: int) -> list[EncodedEvent]:
    """Join runs of ``log.*`` events into ``log.batch`` events of at most *pack*."""
    out: list[EncodedEvent] = []
    run: list[EncodedEvent] = []
    run_bytes = 0

    def close_run() -> None:
        nonlocal run, run_bytes
        if len(run) == 1:
            out.append(run[0])
        elif run:
            out.append(pack_events(run))
        run, run_bytes = [], 0

    for event in events:
        if not event.type.startswith("log.") or event.type == PACKED_TYPE:
            close_run()
            out.append(event)
            continue
        size = len(event.body)
        if run and (
            len(run) >= pack
            or packed_size(run_bytes + size, len(run) + 1) > MAX_EVENT_BYTES
        ):
            close_run()
        run.append(event)
        run_bytes += size
    close_run()
    return out
