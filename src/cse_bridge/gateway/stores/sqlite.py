"""
``sqlite:///path``: events in an SQLite file, kept across gateway restarts.

The embedded default for self-hosting: no server to run. The file is in WAL mode with
``synchronous=NORMAL``: every acknowledged event is committed, so it survives a killed
gateway process (a power cut may lose the last commits). Appends made in the same
event loop iteration share one commit.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Final
from urllib.parse import urlsplit

from ._base import (
    DEFAULT_RETENTION,
    Broker,
    LocalBroker,
    SandboxKey,
    StoredEvent,
    TimestampAllocator,
    encode_event_json,
    new_event_id,
    now_ms,
)

__all__ = ["SqliteStore"]

_MAX_INT64: Final = 2**63 - 1
_MIN_INT64: Final = -(2**63)

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    workspace_id INTEGER NOT NULL,
    sandbox_id TEXT NOT NULL,
    type TEXT NOT NULL,
    timestamp INTEGER NOT NULL,
    id TEXT NOT NULL,
    json TEXT NOT NULL
);
CREATE UNIQUE INDEX IF NOT EXISTS events_by_time
    ON events (workspace_id, sandbox_id, timestamp);
CREATE INDEX IF NOT EXISTS events_by_type
    ON events (workspace_id, sandbox_id, type, timestamp);
"""

_INSERT: Final = (
    "INSERT INTO events (workspace_id, sandbox_id, type, timestamp, id, json)"
    " VALUES (?, ?, ?, ?, ?, ?)"
)
_STATS: Final = (
    "SELECT COUNT(*), MAX(timestamp) FROM events"
    " WHERE workspace_id = ? AND sandbox_id = ?"
)
# The oldest event to keep is the one ``offset`` entries after a known timestamp: the
# walk covers only the events stored since the floor was last computed.
_FLOOR: Final = (
    "SELECT timestamp FROM events WHERE workspace_id = ? AND sandbox_id = ?"
    " AND timestamp >= ? ORDER BY timestamp LIMIT 1 OFFSET ?"
)
_TRIM: Final = (
    "DELETE FROM events WHERE workspace_id = ? AND sandbox_id = ? AND timestamp < ?"
)
_COLUMNS: Final = "SELECT id, type, timestamp, json FROM events"
_AFTER: Final = (
    f"{_COLUMNS} WHERE workspace_id = ? AND sandbox_id = ? AND timestamp > ?"
    " ORDER BY timestamp LIMIT ?"
)
_AFTER_TYPED: Final = (
    f"{_COLUMNS} WHERE workspace_id = ? AND sandbox_id = ? AND type = ?"
    " AND timestamp > ? ORDER BY timestamp LIMIT ?"
)
_NEWEST: Final = (
    f"{_COLUMNS} WHERE workspace_id = ? AND sandbox_id = ? AND timestamp >= ?"
    " ORDER BY timestamp DESC LIMIT ?"
)
_NEWEST_TYPED: Final = (
    f"{_COLUMNS} WHERE workspace_id = ? AND sandbox_id = ? AND type = ?"
    " AND timestamp >= ? ORDER BY timestamp DESC LIMIT ?"
)

_Row = tuple[str, str, int, str]


class SqliteStore:
    """
    Keeps up to *retention* events per sandbox in an SQLite database file.

    Runs on the gateway's event loop: every call is a short, synchronous SQLite
    statement on one connection, so the store needs no lock.

    Args:
        path: The database file (created with its parent directories), or
            ``":memory:"``.
        retention: Events kept per sandbox; the oldest go first.
        clock: Wall-clock milliseconds, for the timestamps; injectable for tests.
    """

    def __init__(
        self,
        path: str | Path,
        *,
        retention: int = DEFAULT_RETENTION,
        clock: Callable[[], int] = now_ms,
    ) -> None:
        if retention < 1:
            raise ValueError("retention must be at least 1")
        self._path = str(path)
        self._retention = retention
        # Trim in chunks so that appending stays amortised O(1) at the cap.
        self._slack = max(1, retention // 8)
        self._clock = TimestampAllocator(clock)
        # Events per sandbox, for the sandboxes this process has touched.
        self._counts: dict[SandboxKey, int] = {}
        # (floor timestamp, count it was computed for) of sandboxes over retention.
        self._floors: dict[SandboxKey, tuple[int, int]] = {}
        self._db: sqlite3.Connection | None = None
        # The open group-commit transaction: resolved once it is committed.
        self._commit: asyncio.Future[None] | None = None
        self._pending: list[SandboxKey] = []

    @classmethod
    def from_url(cls, url: str, *, retention: int) -> SqliteStore:
        """
        Return a store for ``sqlite:///relative.db`` or ``sqlite:////abs/path.db``.

        Raises:
            ValueError: The URL names a host, a query, or no file.
        """
        parts = urlsplit(url)
        if parts.scheme.lower() != "sqlite" or parts.netloc:
            raise ValueError(
                f"bad sqlite URL {url!r}: use sqlite:///relative.db "
                "or sqlite:////absolute/path.db"
            )
        if parts.query or parts.fragment:
            raise ValueError(f"bad sqlite URL {url!r}: options are not supported")
        path = parts.path[1:]
        if not path or path.endswith("/"):
            raise ValueError(f"bad sqlite URL {url!r}: it names no database file")
        return cls(path, retention=retention)

    async def open(self) -> None:
        """Create the file, its parent directories and the schema if needed."""
        if self._path != ":memory:":
            Path(self._path).parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: we issue BEGIN and COMMIT ourselves.
        db = sqlite3.connect(self._path, isolation_level=None)
        try:
            db.execute("PRAGMA journal_mode=WAL")
            # With WAL, NORMAL still makes every commit survive a killed process.
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
        except BaseException:
            db.close()
            raise
        self._db = db

    def _connection(self) -> sqlite3.Connection:
        if self._db is None:
            raise RuntimeError("the sqlite store is not open")
        return self._db

    async def append(
        self, key: SandboxKey, event_type: str, data_json: str
    ) -> StoredEvent:
        """
        Store one event; return once it is committed.

        Appends made in the same loop iteration share one transaction, committed on
        the next iteration.
        """
        db = self._connection()
        count = self._count(db, key)
        timestamp = self._clock.next(key)
        event_id = new_event_id()
        text = encode_event_json(event_id, key, event_type, data_json, timestamp)
        commit = self._commit
        if commit is None:
            loop = asyncio.get_running_loop()
            db.execute("BEGIN")
            commit = self._commit = loop.create_future()
            loop.call_soon(self._finish_commit)
        try:
            db.execute(_INSERT, (*key, event_type, timestamp, event_id, text))
            count += 1
            if count > self._retention + self._slack:
                count = self._trim(db, key, count)
        except BaseException:
            # Unsure what the transaction holds for this sandbox: recount next time.
            self._counts.pop(key, None)
            self._floors.pop(key, None)
            raise
        self._counts[key] = count
        self._pending.append(key)
        # shield: a cancelled request must not cancel the others' shared commit.
        await asyncio.shield(commit)
        return StoredEvent(event_id, key[0], key[1], event_type, timestamp, text)

    def _finish_commit(self) -> None:
        commit, pending = self._commit, self._pending
        self._commit, self._pending = None, []
        if commit is None:
            return
        db = self._connection()
        try:
            db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            # The cached counts may include rolled-back rows: recount on next use.
            for key in pending:
                self._counts.pop(key, None)
                self._floors.pop(key, None)
            commit.set_exception(exc)
            # Mark it retrieved: appends whose requests went away never await it.
            commit.exception()
        else:
            commit.set_result(None)

    def _count(self, db: sqlite3.Connection, key: SandboxKey) -> int:
        """Return *key*'s event count, loading it the first time."""
        count = self._counts.get(key)
        if count is None:
            count, newest = db.execute(_STATS, key).fetchone()
            if newest is not None:
                # Keep timestamps increasing across restarts, even if the wall
                # clock went back meanwhile.
                self._clock.seed(key, newest)
                self._counts[key] = count
        return int(count)

    def _floor(self, db: sqlite3.Connection, key: SandboxKey, count: int) -> int | None:
        """The oldest timestamp within retention; None if all of *count* are."""
        if count <= self._retention:
            return None
        # Each append moves the floor one event on: walk only from the last floor.
        floor, known = self._floors.get(key, (_MIN_INT64, self._retention))
        if known > count:  # recounted meanwhile: start again from the oldest event
            floor, known = _MIN_INT64, self._retention
        if known != count:
            row = db.execute(_FLOOR, (*key, floor, count - known)).fetchone()
            floor = _MAX_INT64 if row is None else int(row[0])
            self._floors[key] = (floor, count)
        return floor

    def _trim(self, db: sqlite3.Connection, key: SandboxKey, count: int) -> int:
        floor = self._floor(db, key, count)
        if floor is not None:
            db.execute(_TRIM, (*key, floor))
            # The floor event is now the oldest, as it is at exactly ``retention``.
            self._floors[key] = (floor, self._retention)
        return self._retention

    async def query(
        self, key: SandboxKey, *, event_type: str | None, since: int | None, limit: int
    ) -> list[StoredEvent]:
        """Return events of *key* as ``EventStore.query`` defines."""
        db = self._connection()
        count = self._count(db, key)
        if count == 0:
            return []
        floor = self._floor(db, key, count)
        rows: list[_Row]
        if since is not None:
            after = min(since if floor is None else max(since, floor - 1), _MAX_INT64)
            if event_type is None:
                rows = db.execute(_AFTER, (*key, after, limit)).fetchall()
            else:
                args = (*key, event_type, after, limit)
                rows = db.execute(_AFTER_TYPED, args).fetchall()
        else:
            lowest = _MIN_INT64 if floor is None else floor
            if event_type is None:
                rows = db.execute(_NEWEST, (*key, lowest, limit)).fetchall()
            else:
                args = (*key, event_type, lowest, limit)
                rows = db.execute(_NEWEST_TYPED, args).fetchall()
            rows.reverse()
        workspace_id, sandbox_id = key
        return [
            StoredEvent(event_id, workspace_id, sandbox_id, kind, timestamp, text)
            for event_id, kind, timestamp, text in rows
        ]

    def create_broker(self) -> Broker:
        """Return an in-process broker: one gateway process owns the file."""
        return LocalBroker()

    async def close(self) -> None:
        """Commit what is pending and close the database. Idempotent."""
        if self._db is None:
            return
        self._finish_commit()
        self._db.close()
        self._db = None
        self._counts.clear()
        self._floors.clear()
