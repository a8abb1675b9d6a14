"""``SegmentWriter``: one process appending frames to the segment it created."""

from __future__ import annotations

import contextlib
import fcntl
import os
from typing import Any

from ._format import encode_header

__all__ = ["SegmentWriter"]

_datasync = getattr(os, "fdatasync", os.fsync)
"""``fdatasync`` where there is one (Linux); macOS has ``fsync`` only."""


class SegmentWriter:
    """
    An open segment, created and exclusively locked (``flock``) by this process.

    The lock says "being written": no replay claims the segment until the writer
    closes it (``seal``) or its process dies, when the kernel drops the lock. The
    file is born under a hidden temporary name and renamed once its header is
    written and locked, so no other process ever sees a segment without a header.
    Worker thread only.
    """

    def __init__(self, path: str, fd: int, size: int) -> None:
        self.path = path
        self.fd = fd
        self.size = size
        """Bytes in the file: header plus frames written."""
        self.events = 0
        """Frames written."""

    @classmethod
    def create(cls, directory: str, name: str, meta: dict[str, Any]) -> SegmentWriter:
        """
        Create, lock and name segment *name* in *directory*.

        Raises:
            OSError: The directory cannot be written (read-only, full, missing).
        """
        hidden = os.path.join(directory, f".{name}.tmp")
        path = os.path.join(directory, name)
        fd = os.open(hidden, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            header = encode_header(meta)
            _write_all(fd, header)
            os.rename(hidden, path)
            _sync_directory(directory)
        except BaseException:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(hidden)
            raise
        return cls(path, fd, len(header))

    def write(self, frames: bytes, count: int) -> None:
        """
        Append *frames* (*count* of them) with one ``write``; all or nothing.

        A SIGKILL cannot split a ``write`` to a regular file, so a crash leaves
        whole frames; only a power cut or a full disk can tear the last one. On a
        short write (a full disk) the file is cut back to where it was.

        Raises:
            OSError: The write failed; the file holds what it held before.
        """
        try:
            _write_all(self.fd, frames)
        except OSError:
            with contextlib.suppress(OSError):
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(frames)
        self.events += count

    def sync(self) -> None:
        """Ask the disk to keep what was written (``fdatasync``); may raise OSError."""
        _datasync(self.fd)

    def seal(self) -> None:
        """Sync, unlock and close: the segment is now anyone's to replay. No raise."""
        with contextlib.suppress(OSError):
            self.sync()
        self.forget()

    def forget(self) -> None:
        """Close without syncing (a fork child drops the parent's segment). No raise."""
        fd, self.fd = self.fd, -1
        if fd >= 0:
            with contextlib.suppress(OSError):
                os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        if written <= 0:
            raise OSError("short write")
        view = view[written:]


def _sync_directory(directory: str) -> None:
    # The new name survives a power cut only once its directory is synced.
    with contextlib.suppress(OSError):
        fd = os.open(directory, os.O_RDONLY | os.O_CLOEXEC)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
