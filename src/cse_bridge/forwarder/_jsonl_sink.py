"""
``JsonlSink``: one SandboxEvent JSON object per line, to a file or stdout.

Appending to a file is idempotent by event id: on open, the ids already in the file
are read back (and a torn last line from a crash is cut off), so a forwarder that
restarts and receives events again leaves each one in the file exactly once.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from ..models import SandboxEvent

__all__ = ["JsonlSink"]


def _existing_ids(path: Path) -> set[str]:
    """Return the ids in *path*; cut a last line without its newline (a torn write)."""
    ids: set[str] = set()
    with path.open("rb+") as file:
        good = 0
        for line in file:
            if not line.endswith(b"\n"):
                break
            good += len(line)
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and isinstance(obj.get("id"), str):
                ids.add(obj["id"])
        file.truncate(good)
    return ids


class JsonlSink:
    """
    Writes each event as one JSON line (the API's camelCase form).

    A file is opened for appending with each line written by one ``write`` call, so
    a crash leaves whole lines; ``flush`` fsyncs. Call from one thread at a time.

    Args:
        path: The file, or None / ``"-"`` for stdout.
        dedupe: Skip ids already in the file (read back when it is opened).
    """

    name = "jsonl"

    def __init__(
        self, path: str | os.PathLike[str] | None = None, *, dedupe: bool = True
    ):
        self.path = None if path is None or str(path) == "-" else Path(path)
        self._dedupe = dedupe
        self._seen: set[str] = set()
        self._fd: int | None = None
        self._stream: IO[str] | None = None
        if self.path is None:
            self._stream = sys.stdout
            return
        if dedupe and self.path.exists():
            self._seen = _existing_ids(self.path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def deliver(self, event: SandboxEvent) -> None:
        """Write *event* as one line (skipped if its id is in the file already)."""
        if self._fd is not None:
            if event.id in self._seen:
                return
            line = json.dumps(event.to_json(), ensure_ascii=False) + "\n"
            os.write(self._fd, line.encode("utf-8"))
            if self._dedupe:
                self._seen.add(event.id)
        elif self._stream is not None:
            self._stream.write(json.dumps(event.to_json(), ensure_ascii=False) + "\n")

    def flush(self, timeout: float) -> bool:
        """Make the lines durable (fsync) or flush stdout; blocks on the disk."""
        if self._fd is not None:
            os.fsync(self._fd)
        elif self._stream is not None:
            self._stream.flush()
        return True

    def close(self, timeout: float) -> None:
        """Flush and close the file (stdout stays open); idempotent."""
        if self._fd is not None:
            fd, self._fd = self._fd, None
            os.fsync(fd)
            os.close(fd)
        elif self._stream is not None:
            self._stream.flush()
            self._stream = None

    def drops(self) -> Mapping[str, int]:
        """No drops of its own: returns an empty mapping."""
        return {}
