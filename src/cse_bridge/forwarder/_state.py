"""
Where each sandbox's stream was delivered up to: duplicate suppression and resume.

A ``Cursor`` keeps the newest delivered timestamp, the ids delivered at that very
millisecond, and a bounded window of recent ids. ``StateFile`` persists the cursors
atomically (write a temporary file, fsync, rename), so a forwarder restarted after a
crash asks for history strictly after ``timestamp - 1`` and skips the ids it has.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

__all__ = ["RECENT_IDS", "Cursor", "StateFile"]

logger = logging.getLogger(__name__)

RECENT_IDS: Final = 4096
"""Delivered ids remembered per sandbox: more than any overlap at a reconnect seam."""
_VERSION: Final = 1


class Cursor:
    """
    One sandbox's delivery position; used by the sink thread only, so it has no lock.

    Args:
        timestamp: Newest delivered event time in ms, or None for nothing yet.
        ids: Ids of the events delivered at exactly *timestamp*.
    """

    def __init__(self, timestamp: int | None = None, ids: Iterable[str] = ()) -> None:
        self.timestamp = timestamp
        self.ids: set[str] = set(ids)
        self._recent: OrderedDict[str, None] = OrderedDict.fromkeys(self.ids)

    def seen(self, event_id: str, timestamp: int) -> bool:
        """
        Return True if the event *event_id* at *timestamp* was delivered already.

        A sandbox's events arrive in timestamp order, except that a resync after an
        overflow may run ahead of what still waits in the hand-off: anything older
        than the cursor was delivered then.
        """
        if self.timestamp is not None and timestamp < self.timestamp:
            return True
        return event_id in self._recent or event_id in self.ids

    def advance(self, event_id: str, timestamp: int) -> None:
        """Record *event_id* at *timestamp* as delivered."""
        self._recent[event_id] = None
        if len(self._recent) > RECENT_IDS:
            self._recent.popitem(last=False)
        if self.timestamp is None or timestamp > self.timestamp:
            self.timestamp, self.ids = timestamp, {event_id}
        elif timestamp == self.timestamp:
            self.ids.add(event_id)

    def resume_since(self) -> int | None:
        """Return the ``since`` (strictly after) that re-reads this millisecond."""
        return None if self.timestamp is None else self.timestamp - 1

    def to_json(self) -> dict[str, object]:
        """Return the persisted form: the timestamp and the ids at it."""
        return {"timestamp": self.timestamp, "ids": sorted(self.ids)}


class StateFile:
    """
    The ``--state-file``: per-sandbox cursors as JSON, replaced atomically.

    ``load`` and ``save`` block on disk I/O; call them from one thread at a time (the
    forwarder calls them from its sink thread, and ``load`` before it starts).

    Args:
        path: The file; its directory must exist.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)

    def load(self) -> dict[str, Cursor]:
        """Return the saved cursors; none if the file is missing or unreadable."""
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            logger.warning("ignoring unreadable state file %s: %s", self.path, exc)
            return {}
        sandboxes = raw.get("sandboxes") if isinstance(raw, dict) else None
        cursors: dict[str, Cursor] = {}
        for sandbox, entry in (sandboxes or {}).items():
            if not isinstance(entry, dict):
                continue
            timestamp = entry.get("timestamp")
            ids = entry.get("ids")
            cursors[str(sandbox)] = Cursor(
                timestamp if isinstance(timestamp, int) else None,
                [i for i in ids if isinstance(i, str)] if isinstance(ids, list) else (),
            )
        return cursors

    def save(self, cursors: Mapping[str, Cursor]) -> None:
        """
        Write *cursors* atomically: a reader sees the old file or the new, never half.

        Raises:
            OSError: The directory is not writable (the old file stays).
        """
        body = {
            "version": _VERSION,
            "sandboxes": {sid: cursor.to_json() for sid, cursor in cursors.items()},
        }
        fd, tmp = tempfile.mkstemp(
            prefix=self.path.name + ".", suffix=".tmp", dir=self.path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                json.dump(body, out, separators=(",", ":"))
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
