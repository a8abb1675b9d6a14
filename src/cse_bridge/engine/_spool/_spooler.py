"""
``Spooler``: one engine's use of a spool: its own segment, its replay, its counts.

The engine's worker hands it encoded events to keep (``write``) and asks it for
batches to replay (``next_batch``, then ``settle`` with the exporter's answer). It
never raises: a directory that cannot be written is said once on stderr and the
spool stays off for ``RETRY_BROKEN`` seconds, so the engine counts what it could not
keep as lost, exactly as without a spool.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import Final

from .._lifecycle import Diagnostics
from .._types import EncodedEvent, SendResult
from ._claim import Claim
from ._format import encode_frame
from ._spool import Spool
from ._writer import SegmentWriter

__all__ = ["RESCAN_INTERVAL", "RETRY_BROKEN", "WRITE_BYTES", "Spooler"]

RESCAN_INTERVAL: Final = 5.0
"""Seconds between two looks for segments to replay when the last found none."""
RETRY_BROKEN: Final = 60.0
"""Seconds a spool that failed to write stays off before it is tried again."""
WRITE_BYTES: Final = 32 * 1024
"""Frames handed to the OS in one ``write`` at most: a full disk keeps what fit,
and the engine's lock (held across a write) is never held long."""
_MIN_SEGMENT: Final = 64 * 1024
_MAX_SEGMENT: Final = 8 * 1024 * 1024


class Spooler:
    """
    Writes one engine's events to its own segments and replays its sandbox's.

    Args:
        spool: The directory.
        sandbox: Returns the sandbox the engine's credentials name now.
        diagnostics: Where the one-line reports go (rate-limited).

    Worker thread only (the CLI's ``spool flush`` is a worker of its own).
    """

    def __init__(
        self,
        spool: Spool,
        sandbox: Callable[[], str],
        diagnostics: Diagnostics | None = None,
    ) -> None:
        self.spool = spool
        self.sandbox = sandbox
        self.diagnostics = diagnostics or Diagnostics()
        self.segment_bytes = min(_MAX_SEGMENT, max(_MIN_SEGMENT, spool.max_bytes // 8))
        self._reset()

    def _reset(self) -> None:
        self.writer_id = secrets.token_hex(8)
        self._writer: SegmentWriter | None = None
        self._writer_sandbox = ""
        self._total = 0
        self._claim: Claim | None = None
        self._claim_damaged = 0
        self._batch: list[tuple[EncodedEvent, int, int]] = []
        self._attempts: dict[int, int] = {}
        self._done: set[int] = set()
        self._look_at = 0.0
        self._fresh = True
        self._broken_until: float | None = None
        self.error: str | None = None
        """Why the spool last could not take an event (a failed write, or an event
        too large for it)."""
        self.written = 0
        """Items written to segments."""
        self.replayed = 0
        """Items read back from segments and acknowledged by the gateway."""
        self.refused = 0
        """Items read back that the gateway refused for good (dropped)."""
        self.damaged = 0
        """Damaged stretches skipped while replaying."""
        self.evicted = 0
        """Items lost with segments removed to stay under ``max_bytes``."""

    def after_fork(self) -> None:
        """In a fork child: let go of the parent's files (their locks stay its)."""
        if self._writer is not None:
            self._writer.forget()
        if self._claim is not None:
            self._claim.release()
        self._reset()

    @property
    def directory(self) -> str:
        """The spool directory."""
        return self.spool.directory

    def accepting(self) -> bool:
        """True unless a failed write turned the spool off a short while ago."""
        until = self._broken_until
        return until is None or time.monotonic() >= until

    # --- writing ----------------------------------------------------------------

    def write(self, events: Sequence[EncodedEvent]) -> tuple[int, int]:
        """
        Append *events* to this engine's segment, making room by the byte bound.

        Does not sync (``sync`` does). Never raises.

        Returns:
            Items written, and items not written (``error`` says why).
        """
        total = sum(event.items for event in events)
        if not self.accepting():
            return 0, total
        written = lost = 0
        frames: list[bytes] = []
        size = items = 0
        try:
            for event in events:
                frame = encode_frame(event.type, event.body, event.items)
                if len(frame) > self.spool.max_bytes // 2:
                    lost += event.items
                    self.error = (
                        f"an event of {len(frame)} bytes is too large for the spool "
                        f"in {self.directory} (spool_max_bytes={self.spool.max_bytes})"
                    )
                    continue
                if frames and not self._fits(size + len(frame)):
                    written += self._append(frames, size, items)
                    frames, size, items = [], 0, 0
                if not frames:
                    self._prepare(len(frame))
                frames.append(frame)
                size += len(frame)
                items += event.items
            if frames:
                written += self._append(frames, size, items)
        except OSError as exc:
            self._break(exc)
            return written, total - written
        return written, lost

    def _fits(self, size: int) -> bool:
        writer = self._writer
        return (
            writer is not None
            and size <= WRITE_BYTES
            and writer.size + size <= self.segment_bytes
            and self._total + size <= self.spool.max_bytes
        )

    def _prepare(self, size: int) -> None:
        """Make sure an open segment of the current sandbox has room for *size*."""
        sandbox = self.sandbox()
        writer = self._writer
        if writer is not None and (
            writer.size >= self.segment_bytes or self._writer_sandbox != sandbox
        ):
            self._seal()
        if self._writer is None:
            self._total = self.spool.total_bytes()
        for _ in range(10_000):  # each round deletes a segment; bounded anyway
            if self._total + size + 512 <= self.spool.max_bytes:
                break
            keep = frozenset([self._writer.path]) if self._writer else frozenset()
            evicted = self.spool.evict_oldest(keep)
            if evicted is None:
                if self._writer is None or not self._writer.events:
                    break  # nothing left to remove: the event still goes in
                self._seal()  # our own segment is the oldest left: it goes too
                continue
            self._said_eviction(*evicted)
            self._total = self.spool.total_bytes()
        if self._writer is None:
            self._writer = self.spool.create_writer(sandbox, self.writer_id)
            self._writer_sandbox = sandbox
            self._total += self._writer.size

    def _append(self, frames: list[bytes], size: int, items: int) -> int:
        writer = self._writer
        assert writer is not None  # noqa: S101 - _prepare opened it
        writer.write(b"".join(frames), len(frames))
        self._total += size
        self.written += items
        self._fresh = True
        return items

    def sync(self) -> None:
        """Flush what was written to the disk (``fdatasync``); never raises."""
        if self._writer is not None:
            try:
                self._writer.sync()
            except OSError as exc:
                self._break(exc)

    def _seal(self) -> None:
        if self._writer is not None:
            self._writer.seal()
            self._writer = None

    def _break(self, exc: OSError) -> None:
        self._broken_until = time.monotonic() + RETRY_BROKEN
        self.error = (
            f"cannot write the spool in {self.directory} ({type(exc).__name__}: "
            f"{exc.strerror or exc})"
        )
        if self._writer is not None:
            self._writer.forget()
            self._writer = None
        self.diagnostics.warn(
            "spool",
            "cse-bridge: %s; events that cannot be sent are counted as lost instead "
            "of spooled until it works (fix the directory, or unset "
            "CSE_BRIDGE_SPOOL_DIR)",
            self.error,
        )

    def _said_eviction(self, sandbox: str, items: int) -> None:
        self.evicted += items
        self.diagnostics.warn(
            "spool_full",
            "cse-bridge: the spool in %s reached spool_max_bytes (%d): removed its "
            "oldest segment (%d events of sandbox %s); %d spooled events lost so far",
            self.directory,
            self.spool.max_bytes,
            items,
            sandbox,
            self.evicted,
        )

    # --- replaying ----------------------------------------------------------------

    def has_backlog(self) -> bool:
        """True if a batch may be waiting (a claim, fresh writes, or time to look)."""
        return (
            self._claim is not None or self._fresh or time.monotonic() >= self._look_at
        )

    def next_batch(self, most: int, limit: int) -> list[EncodedEvent]:
        """
        The next events to replay, oldest segment first: at most *most* events and
        about *limit* body bytes. Empty if nothing of this sandbox waits.

        Seals this engine's own segment when nothing else waits, so what it spooled
        during an outage is sent too once the gateway answers. Never raises.
        """
        for _ in range(100):  # each round finishes one empty segment
            claim = self._current_claim()
            if claim is None:
                return []
            start = claim.reader.offset
            taken = claim.take(most, limit)
            self._count_damage(claim)
            if not taken:
                self._finish_claim()
                continue
            batch: list[tuple[EncodedEvent, int, int]] = []
            for event, end in taken:
                if start not in self._done:  # else delivered after a retry point
                    tries = self._attempts.get(start)
                    kept = replace(event, attempts=tries) if tries else event
                    batch.append((kept, start, end))
                start = end
            if not batch:
                claim.ack(start)
                continue
            self._batch = batch
            return [event for event, _, _ in batch]
        return []

    def settle(self, result: SendResult) -> tuple[int, int]:
        """
        Record what the gateway did with the last batch; keep its retries for the
        next ``next_batch``.

        Returns:
            Items delivered, and items the gateway refused for good.
        """
        claim, batch, self._batch = self._claim, self._batch, []
        if claim is None or not batch:
            return 0, 0
        retry = {id(event.body): event for event in result.retry}
        refused_ids = {id(event.body) for event in result.dropped_events}
        delivered = refused = 0
        first_retry: int | None = None
        acked = batch[0][1]
        for event, start, end in batch:
            again = retry.get(id(event.body))
            if again is not None:
                self._attempts[start] = again.attempts
                if first_retry is None:
                    first_retry = start
                continue
            self._attempts.pop(start, None)
            if id(event.body) in refused_ids:
                refused += event.items
            else:
                delivered += event.items
            if first_retry is None:
                acked = end
            else:
                self._done.add(start)
        claim.ack(acked)
        # Done events before the progress mark need no remembering any more.
        self._done = {start for start in self._done if start >= acked}
        self.replayed += delivered
        self.refused += refused
        if first_retry is not None:
            claim.rewind(first_retry)
        elif claim.exhausted:
            self._finish_claim()
        return delivered, refused

    def _current_claim(self) -> Claim | None:
        sandbox = self.sandbox()
        claim = self._claim
        if claim is not None and claim.sandbox not in (None, sandbox):
            self._release_claim()  # the credentials changed: that one is not ours
        if self._claim is not None:
            return self._claim
        now = time.monotonic()
        if not self._fresh and now < self._look_at:
            return None
        self._fresh = False
        self._look_at = now + RESCAN_INTERVAL
        for _ in range(100):  # each round finishes one unreadable segment
            claim = self._find_claim(sandbox)
            if claim is None:
                return None
            if claim.bad_header:
                self.damaged += 1
                claim.finish()
                continue
            self._claim, self._claim_damaged = claim, 0
            self._attempts.clear()
            self._done.clear()
            return claim
        return None

    def _find_claim(self, sandbox: str) -> Claim | None:
        writer = self._writer
        keep = frozenset([writer.path]) if writer is not None else frozenset()
        try:
            claim = self.spool.claim_oldest(sandbox, keep)
            if claim is None and writer is not None and self._writer_sandbox == sandbox:
                if not writer.events:
                    return None
                path = writer.path
                self._seal()
                claim = Claim.take_lock(path)
        except OSError:
            return None
        return claim

    def _count_damage(self, claim: Claim) -> None:
        self.damaged += claim.reader.damaged - self._claim_damaged
        self._claim_damaged = claim.reader.damaged

    def _finish_claim(self) -> None:
        claim, self._claim = self._claim, None
        self._fresh = True  # the next segment may be waiting: look at once
        if claim is not None:
            self._count_damage(claim)
            claim.finish()

    def _release_claim(self) -> None:
        claim, self._claim = self._claim, None
        self._batch = []
        if claim is not None:
            self._count_damage(claim)
            claim.release()

    def close(self) -> None:
        """Seal this engine's segment and let go of the one replaying. No raise."""
        with contextlib.suppress(Exception):
            self._seal()
        with contextlib.suppress(Exception):
            self._release_claim()
