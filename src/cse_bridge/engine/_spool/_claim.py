"""``Claim``: one segment locked by this process to replay it, and its progress."""

from __future__ import annotations

import contextlib
import fcntl
import os
import struct
from typing import Any

from .._types import EncodedEvent
from ._format import ACKED_AT, parse_header
from ._reader import SegmentReader

__all__ = ["Claim"]

_OFFSET = struct.Struct(">Q")


class Claim:
    """
    A segment this process holds the ``flock`` of: no other process replays it.

    Events come out in order (``take``); ``ack`` records how far the gateway
    acknowledged them by overwriting the header's acked offset in place, so a later
    replay starts there: an event is sent again only if its answer was lost (or the
    process died between the answer and the ``ack``). Worker thread (or the CLI).
    """

    def __init__(self, path: str, fd: int, data: bytes) -> None:
        self.path = path
        self.fd = fd
        header = parse_header(data)
        self.meta: dict[str, Any] = header[1] if header else {}
        start = header[0] if header else len(data)
        damaged = 0
        if header is not None and start > len(data):
            # The progress points past the end: damage. Replay it all again
            # rather than lose it (at least once).
            start, damaged = header[2], 1
        self.reader = SegmentReader(data, start)
        self.reader.damaged = damaged
        self.acked = start
        self.bad_header = header is None
        """The header is damaged: the whole segment is unreadable."""

    @classmethod
    def take_lock(cls, path: str) -> Claim | None:
        """
        Lock and read the segment at *path*; None if another process holds it or
        it is gone (replayed and deleted meanwhile).

        Raises:
            OSError: The file exists but cannot be opened or read.
        """
        try:
            fd = os.open(path, os.O_RDWR | os.O_CLOEXEC)
        except FileNotFoundError:
            return None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                return None
            # Locked, but maybe after its replayer deleted it: the name must still
            # lead to this very file, or it was replayed already.
            try:
                same = os.stat(path).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                return None
            size = os.fstat(fd).st_size
            data = os.pread(fd, size, 0) if size else b""
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return cls(path, fd, data)

    @property
    def sandbox(self) -> str | None:
        """The sandbox its header names, if readable."""
        value = self.meta.get("sandbox")
        return value if isinstance(value, str) else None

    def take(self, most: int, limit: int) -> list[tuple[EncodedEvent, int]]:
        """
        The next events in order, at most *most* and about *limit* body bytes (at
        least one), each with the offset just past it.
        """
        taken: list[tuple[EncodedEvent, int]] = []
        size = 0
        while len(taken) < most and (not taken or size < limit):
            found = self.reader.next()
            if found is None:
                break
            taken.append(found)
            size += len(found[0].body)
        return taken

    @property
    def exhausted(self) -> bool:
        """True once every frame was taken (or skipped as damaged)."""
        return self.reader.at_end

    def ack(self, offset: int) -> None:
        """Record that every event before *offset* is done; no raise, no sync."""
        if offset <= self.acked:
            return
        self.acked = offset
        with contextlib.suppress(OSError):
            os.pwrite(self.fd, _OFFSET.pack(offset), ACKED_AT)

    def rewind(self, offset: int) -> None:
        """Read again from *offset* (events taken but not done)."""
        self.reader.offset = offset

    def finish(self) -> None:
        """Delete the segment (every event done) and let go of it. No raise."""
        with contextlib.suppress(OSError):
            os.unlink(self.path)
        self.release()

    def release(self) -> None:
        """Unlock and close; the progress stays recorded. No raise."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)
