"""``Spool``: a directory of segment files, shared by any number of processes."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import secrets
import time
from typing import Any, Final

from ._claim import Claim
from ._format import SEGMENT_SUFFIX, parse_header
from ._reader import SegmentReader
from ._status import SpoolStatus
from ._writer import SegmentWriter

__all__ = ["Spool", "sandbox_key"]

_KEY_LENGTH: Final = 16


def sandbox_key(sandbox: str) -> str:
    """The part of a segment's file name that says its sandbox: a short hash."""
    return hashlib.sha256(sandbox.encode("utf-8", "replace")).hexdigest()[:_KEY_LENGTH]


class Spool:
    """
    The segments in *directory*: ``<ns>-<sandbox key>-<pid>-<random>.seg``.

    Names sort oldest first (creation time in nanoseconds leads). Every method
    only lists, locks and reads files, so several processes (and the CLI) may work
    on one directory at once: a segment's ``flock`` says who holds it. No method
    raises for a segment another process deleted meanwhile.
    """

    def __init__(self, directory: str, max_bytes: int) -> None:
        self.directory = directory
        self.max_bytes = max_bytes

    def names(self, sandbox: str | None = None) -> list[str]:
        """Segment paths, oldest first; only *sandbox*'s when given. No raise."""
        try:
            found = os.listdir(self.directory)
        except OSError:
            return []
        key = None if sandbox is None else f"-{sandbox_key(sandbox)}-"
        return [
            os.path.join(self.directory, name)
            for name in sorted(found)
            if name.endswith(SEGMENT_SUFFIX)
            and not name.startswith(".")
            and (key is None or key in name)
        ]

    def total_bytes(self) -> int:
        """Bytes of every segment file now. No raise."""
        total = 0
        for path in self.names():
            with contextlib.suppress(OSError):
                total += os.stat(path).st_size
        return total

    def create_writer(self, sandbox: str, writer: str) -> SegmentWriter:
        """
        Start a new segment for *sandbox*, locked by this process.

        Raises:
            OSError: The directory cannot be created or written.
        """
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        now = time.time_ns()
        name = (
            f"{now:020d}-{sandbox_key(sandbox)}-{os.getpid()}-"
            f"{secrets.token_hex(4)}{SEGMENT_SUFFIX}"
        )
        meta = {
            "sandbox": sandbox,
            "writer": writer,
            "pid": os.getpid(),
            "created": now / 1e9,
        }
        return SegmentWriter.create(self.directory, name, meta)

    def claim_oldest(
        self, sandbox: str, skip: frozenset[str] = frozenset()
    ) -> Claim | None:
        """
        Lock the oldest segment of *sandbox* no one holds, or return None.

        Raises:
            OSError: A segment exists but cannot be opened (permissions).
        """
        for path in self.names(sandbox):
            if path in skip:
                continue
            claim = Claim.take_lock(path)
            if claim is not None:
                return claim
        return None

    def evict_oldest(self, skip: frozenset[str]) -> tuple[str, int] | None:
        """
        Delete the oldest segment no one holds (not in *skip*).

        Returns:
            Its sandbox and the events it still held, or None if none could go.
        """
        for path in self.names():
            if path in skip:
                continue
            try:
                claim = Claim.take_lock(path)
            except OSError:
                continue
            if claim is None:
                continue
            _, items = claim.reader.count()
            sandbox = claim.sandbox or "?"
            claim.finish()
            return sandbox, items
        return None

    def clear(self, sandbox: str | None = None) -> tuple[int, int, int]:
        """
        Delete every segment (of *sandbox*) no process holds now.

        Returns:
            Segments deleted, the events they held, segments skipped as held.
        """
        deleted = events = busy = 0
        for path in self.names(sandbox):
            try:
                claim = Claim.take_lock(path)
            except OSError:
                busy += 1
                continue
            if claim is None:
                if os.path.exists(path):
                    busy += 1
                continue
            events += claim.reader.count()[1]
            claim.finish()
            deleted += 1
        return deleted, events, busy

    def status(self) -> SpoolStatus:
        """What waits now, read without locks (a live writer may add more). No raise."""
        segments = events = size = damaged = busy = 0
        oldest: float | None = None
        sandboxes: dict[str, int] = {}
        for path in self.names():
            try:
                with open(path, "rb") as fh:
                    data = fh.read()
                    busy += _held(fh.fileno())
            except OSError:
                continue
            segments += 1
            size += len(data)
            header = parse_header(data)
            if header is None:
                damaged += 1
                continue
            start, meta, first = header
            reader = SegmentReader(data, start if start <= len(data) else first)
            items = reader.count()[1]
            damaged += reader.damaged
            events += items
            name = str(meta.get("sandbox", "?"))
            sandboxes[name] = sandboxes.get(name, 0) + items
            created = _number(meta.get("created"))
            if created is not None and (oldest is None or created < oldest):
                oldest = created
        return SpoolStatus(
            directory=self.directory,
            segments=segments,
            events=events,
            bytes=size,
            oldest=oldest,
            sandboxes=sandboxes,
            damaged=damaged,
            busy=busy,
        )


def _held(fd: int) -> int:
    """1 if another process holds the file's lock now, else 0."""
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return 1
    except OSError:
        return 0
    fcntl.flock(fd, fcntl.LOCK_UN)
    return 0


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    return None
