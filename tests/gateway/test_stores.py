"""Store conformance (memory, sqlite, redis); what only the sqlite store promises."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from cse_bridge.gateway import GatewayThread
from cse_bridge.gateway.stores import (
    EventStore,
    LocalBroker,
    SandboxKey,
    open_store,
)
from cse_bridge.gateway.stores._base import new_event_id
from cse_bridge.gateway.stores._redis_broker import RedisBroker
from cse_bridge.gateway.stores.redis import RedisStore
from cse_bridge.gateway.stores.sqlite import SqliteStore

from ..conftest import make_gateway_config
from ..helpers import API_KEY
from .redis_fixtures import unique_redis_url

KEY: SandboxKey = (1, "sbx")
OTHER_KEY: SandboxKey = (2, "sbx")

StoreFactory = Callable[..., EventStore]


@pytest.fixture(params=["memory", "sqlite", "redis"])
def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[StoreFactory]:
    """Build unopened stores of one kind; ``retention`` may be given."""
    with contextlib.ExitStack() as cleanup:
        if request.param == "redis":  # a fresh key prefix, deleted afterwards
            url = cleanup.enter_context(unique_redis_url())
        elif request.param == "sqlite":
            url = f"sqlite:///{tmp_path}/s.db"
        else:
            url = "memory://"

        def make(retention: int = 10_000) -> EventStore:
            return open_store(url, retention=retention)

        yield make


def run(store: EventStore, scenario: Callable[[EventStore], Awaitable[Any]]) -> Any:
    """Open *store*, run *scenario* on it in a fresh event loop, close it."""

    async def main() -> Any:
        await store.open()
        try:
            return await scenario(store)
        finally:
            await store.close()

    return asyncio.run(main())


async def append_all(
    store: EventStore, types: list[str], key: SandboxKey = KEY
) -> list[int]:
    """Append one event per type (``data.i`` is its index); return the timestamps."""
    stamps = []
    for i, event_type in enumerate(types):
        event = await store.append(key, event_type, json.dumps({"i": i}))
        stamps.append(event.timestamp)
    return stamps


def indexes(events: list[Any]) -> list[int]:
    """The ``data.i`` of each stored event, decoded from its wire JSON."""
    return [json.loads(e.json)["data"]["i"] for e in events]


class TestStoreConformance:
    """Every embedded store implements EventStore.query the same way."""

    def test_append_returns_the_encoded_event(self, make_store: StoreFactory) -> None:
        """The returned event carries its id, key, type, timestamp and wire JSON."""

        async def scenario(store: EventStore) -> None:
            event = await store.append(KEY, "log.info", '{"msg":"hé"}')
            assert KEY == event.key
            assert {
                "id": event.id,
                "sandboxId": "sbx",
                "workspaceId": 1,
                "type": "log.info",
                "data": {"msg": "hé"},
                "timestamp": event.timestamp,
            } == json.loads(event.json)
            [stored] = await store.query(KEY, event_type=None, since=None, limit=10)
            assert event == stored

        run(make_store(), scenario)

    def test_newest_first_n_in_ascending_order(self, make_store: StoreFactory) -> None:
        """Without since, the newest *limit* events come back oldest first."""

        async def scenario(store: EventStore) -> None:
            await append_all(store, ["a"] * 6)
            events = await store.query(KEY, event_type=None, since=None, limit=3)
            assert [3, 4, 5] == indexes(events)

        run(make_store(), scenario)

    def test_since_and_limit(self, make_store: StoreFactory) -> None:
        """With since, the first *limit* events strictly after it come back."""

        async def scenario(store: EventStore) -> None:
            stamps = await append_all(store, ["a"] * 6)
            events = await store.query(KEY, event_type=None, since=stamps[1], limit=3)
            assert [2, 3, 4] == indexes(events)
            last = await store.query(KEY, event_type=None, since=stamps[5], limit=3)
            assert [] == last

        run(make_store(), scenario)

    def test_type_filter_with_and_without_since(self, make_store: StoreFactory) -> None:
        """The type filter matches exactly, for both query shapes."""

        async def scenario(store: EventStore) -> None:
            stamps = await append_all(store, ["a", "b", "a", "ab", "a", "b"])
            newest = await store.query(KEY, event_type="a", since=None, limit=2)
            assert [2, 4] == indexes(newest)
            after = await store.query(KEY, event_type="b", since=stamps[0], limit=9)
            assert [1, 5] == indexes(after)

        run(make_store(), scenario)

    def test_timestamps_are_unique_and_increasing(
        self, make_store: StoreFactory
    ) -> None:
        """A burst in one millisecond still gets strictly increasing timestamps."""

        async def scenario(store: EventStore) -> None:
            stamps = await append_all(store, ["a"] * 500)
            assert sorted(set(stamps)) == stamps

        run(make_store(), scenario)

    def test_paging_forward_sees_everything_once(
        self, make_store: StoreFactory
    ) -> None:
        """Paging with since=<last timestamp> loses nothing and repeats nothing."""

        async def scenario(store: EventStore) -> None:
            await append_all(store, ["a"] * 2000)
            seen: list[int] = []
            since = 0
            while page := await store.query(
                KEY, event_type=None, since=since, limit=100
            ):
                seen.extend(indexes(page))
                since = page[-1].timestamp
            assert list(range(2000)) == seen

        run(make_store(), scenario)

    def test_workspaces_are_separate(self, make_store: StoreFactory) -> None:
        """One sandbox id in two workspaces is two separate sandboxes."""

        async def scenario(store: EventStore) -> None:
            await append_all(store, ["a", "a"], KEY)
            await append_all(store, ["b"], OTHER_KEY)
            mine = await store.query(KEY, event_type=None, since=None, limit=10)
            theirs = await store.query(OTHER_KEY, event_type=None, since=0, limit=10)
            assert (["a", "a"], ["b"]) == (
                [e.type for e in mine],
                [e.type for e in theirs],
            )
            nobody = await store.query((3, "x"), event_type=None, since=None, limit=9)
            assert [] == nobody

        run(make_store(), scenario)

    @pytest.mark.parametrize("since", [None, 0])
    def test_retention_keeps_the_newest(
        self, make_store: StoreFactory, since: int | None
    ) -> None:
        """At most *retention* events per sandbox are visible: the newest ones."""

        async def scenario(store: EventStore) -> None:
            await append_all(store, ["a", "b"] * 20)
            everything = await store.query(KEY, event_type=None, since=since, limit=99)
            assert list(range(30, 40)) == indexes(everything)
            typed = await store.query(KEY, event_type="b", since=since, limit=99)
            assert [31, 33, 35, 37, 39] == indexes(typed)

        run(make_store(retention=10), scenario)

    def test_retention_window_slides_with_every_append(
        self, make_store: StoreFactory
    ) -> None:
        """Between trims, reads still see exactly the newest *retention* events."""

        async def scenario(store: EventStore) -> None:
            for n in range(1, 60):
                await store.append(KEY, "a", json.dumps({"i": n - 1}))
                expected = list(range(max(0, n - 16), n))
                newest = await store.query(KEY, event_type=None, since=None, limit=99)
                after = await store.query(KEY, event_type="a", since=0, limit=99)
                assert (expected, expected) == (indexes(newest), indexes(after))

        run(make_store(retention=16), scenario)

    def test_broker_is_local(self, make_store: StoreFactory) -> None:
        """The embedded stores fan out in process; the redis store through Redis."""
        store = make_store()
        expected = RedisBroker if isinstance(store, RedisStore) else LocalBroker
        assert expected is type(store.create_broker())


def sqlite_rows(path: Path, key: SandboxKey = KEY) -> int:
    """How many rows *key* has in the database file, read with a fresh connection."""
    # closing(): sqlite3's own context manager commits but does not close, and
    # Python 3.13 warns about every connection left for the collector.
    with contextlib.closing(sqlite3.connect(path)) as db:
        (count,) = db.execute(
            "SELECT COUNT(*) FROM events WHERE workspace_id = ? AND sandbox_id = ?", key
        ).fetchone()
    return int(count)


@pytest.fixture
def db_path(tmp_path: Path) -> Path:
    """Where an sqlite test keeps its database (its parent directories don't exist)."""
    return tmp_path / "nested" / "dir" / "events.db"


class TestSqliteStore:
    """What the sqlite store adds: durability, restarts and trimming on disk."""

    def test_from_url_accepts_relative_and_absolute_paths(
        self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """sqlite:///rel.db is relative to the cwd, sqlite:////abs.db absolute."""
        monkeypatch.chdir(tmp_path)
        relative = SqliteStore.from_url("sqlite:///sub/rel.db", retention=5)
        absolute = SqliteStore.from_url(f"sqlite:///{tmp_path}/abs.db", retention=5)
        run(relative, lambda s: s.append(KEY, "a", "{}"))
        run(absolute, lambda s: s.append(KEY, "a", "{}"))
        assert (1, 1) == (
            sqlite_rows(tmp_path / "sub" / "rel.db"),
            sqlite_rows(tmp_path / "abs.db"),
        )

    @pytest.mark.parametrize(
        "url",
        ["sqlite://host/x.db", "sqlite://", "sqlite:///", "sqlite:///x.db?mode=ro"],
    )
    def test_bad_urls_are_refused(self, url: str) -> None:
        """URLs naming a host, no file, or options raise ValueError."""
        with pytest.raises(ValueError, match="sqlite URL"):
            SqliteStore.from_url(url, retention=5)

    def test_acknowledged_append_is_committed(self, db_path: Path) -> None:
        """Once append returns, another connection sees the event."""

        async def scenario(store: EventStore) -> int:
            await store.append(KEY, "a", "{}")
            return sqlite_rows(db_path)

        assert 1 == run(SqliteStore(db_path), scenario)

    def test_concurrent_appends_share_a_commit(self, db_path: Path) -> None:
        """Appends made together are all committed, with distinct timestamps."""

        async def scenario(store: EventStore) -> list[int]:
            events = await asyncio.gather(
                *(store.append(KEY, "a", json.dumps({"i": i})) for i in range(50))
            )
            assert 50 == sqlite_rows(db_path)
            return [e.timestamp for e in events]

        stamps = run(SqliteStore(db_path), scenario)
        assert sorted(set(stamps)) == stamps

    def test_restart_keeps_events_and_timestamps_increase(self, db_path: Path) -> None:
        """After a restart with a clock that went back, timestamps still increase."""
        first = run(
            SqliteStore(db_path, clock=lambda: 5_000),
            lambda s: append_all(s, ["a", "b", "c"]),
        )

        async def reopened(store: EventStore) -> tuple[list[int], list[Any]]:
            stamps = await append_all(store, ["d"])
            events = await store.query(KEY, event_type=None, since=None, limit=10)
            return stamps, events

        second, events = run(SqliteStore(db_path, clock=lambda: 1_000), reopened)
        assert [5_000, 5_001, 5_002, 5_003] == first + second
        assert ["a", "b", "c", "d"] == [e.type for e in events]

    def test_trimming_deletes_rows_in_chunks(self, db_path: Path) -> None:
        """The file holds at most retention plus one chunk of events per sandbox."""
        run(SqliteStore(db_path, retention=16), lambda s: append_all(s, ["a"] * 100))
        assert 16 <= sqlite_rows(db_path) <= 16 + 16 // 8

    def test_retention_holds_across_restarts(self, db_path: Path) -> None:
        """A reopened store trims and reads a sandbox it did not fill itself."""
        run(SqliteStore(db_path, retention=100), lambda s: append_all(s, ["a"] * 50))

        async def reopened(store: EventStore) -> list[Any]:
            return await store.query(KEY, event_type=None, since=0, limit=100)

        assert list(range(40, 50)) == indexes(
            run(SqliteStore(db_path, retention=10), reopened)
        )
        run(SqliteStore(db_path, retention=10), lambda s: append_all(s, ["b"]))
        assert 10 == sqlite_rows(db_path)

    def test_acknowledged_event_survives_a_killed_process(self, db_path: Path) -> None:
        """An event acknowledged just before SIGKILL is in the file afterwards."""
        script = textwrap.dedent(
            f"""
            import asyncio, os, signal
            from cse_bridge.gateway.stores.sqlite import SqliteStore

            async def main():
                store = SqliteStore({str(db_path)!r})
                await store.open()
                for i in range(20):
                    await store.append((1, "sbx"), "a", "{{}}")
                print("acknowledged", flush=True)
                os.kill(os.getpid(), signal.SIGKILL)

            asyncio.run(main())
            """
        )
        done = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=False
        )
        assert "acknowledged" in done.stdout
        assert 20 == sqlite_rows(db_path)

    def test_store_is_unusable_after_close(self, db_path: Path) -> None:
        """Appending to a closed store raises instead of writing nowhere."""
        store = SqliteStore(db_path)
        run(store, lambda s: s.append(KEY, "a", "{}"))
        with pytest.raises(RuntimeError, match="not open"):
            asyncio.run(store.append(KEY, "a", "{}"))


class TestSqliteGatewayRestart:
    """An sqlite-backed gateway keeps its events across a restart."""

    def test_restart_keeps_events(self, sqlite_url: str) -> None:
        """Events stored before a restart are read after it, then new ones follow."""
        stamps = []
        with requests.Session() as http:
            for run_no in range(2):
                with GatewayThread(make_gateway_config(sqlite_url)) as gw:
                    token = gw.issue_token("sbx")
                    for i in range(3):
                        answer = http.post(
                            f"{gw.http_url}/events",
                            json={"type": "t", "data": {"run": run_no, "i": i}},
                            headers={"Authorization": f"Bearer {token}"},
                        )
                        stamps.append(answer.json()["data"]["timestamp"])
                    events = http.get(
                        f"{gw.http_url}/events/sbx", headers={"X-API-Key": API_KEY}
                    ).json()["data"]["events"]
        assert sorted(set(stamps)) == stamps
        assert [(r, i) for r in range(2) for i in range(3)] == [
            (e["data"]["run"], e["data"]["i"]) for e in events
        ]


class TestEventIds:
    """Ids come 256 to an ``os.urandom`` call; none is ever handed out twice."""

    def test_ids_are_unique_across_many_batches(self) -> None:
        """1,000 ids (four batches): all distinct, ``evt_`` and 32 hex digits."""
        ids = [new_event_id() for _ in range(1000)]
        assert len(set(ids)) == len(ids)
        for event_id in ids:
            assert event_id.startswith("evt_")
            assert len(event_id) == 36
            int(event_id[4:], 16)

    def test_a_forked_child_never_repeats_its_parents_ids(self) -> None:
        """The child of a process holding spare ids draws fresh ones."""
        script = textwrap.dedent(
            """
            import os
            from cse_bridge.gateway.stores._base import new_event_id
            new_event_id()  # the parent now holds 255 spare ids
            read, write = os.pipe()
            pid = os.fork()
            if pid == 0:
                os.write(write, " ".join(new_event_id() for _ in range(3)).encode())
                os._exit(0)
            os.waitpid(pid, 0)
            child = os.read(read, 4096).decode().split()
            parent = [new_event_id() for _ in range(255)]
            print(len(child), len(set(child) & set(parent)))
            """
        )
        out = subprocess.run(
            [sys.executable, "-c", script],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
        assert out.split() == ["3", "0"]
