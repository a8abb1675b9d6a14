"""BatchEngine: queue bound, batching, flush, shutdown, retries, pauses, GC, fork."""

from __future__ import annotations

import gc
import json
import os
import threading
import time
import weakref

import pytest

from cse_bridge.engine import (
    DROPPED_TYPE,
    BatchEngine,
    EngineOptions,
    EventItem,
    FakeClock,
    InMemorySink,
    on_engine_thread,
)

from .conftest import EngineFactory, item


class TestBatchEngineQueue:
    """The bounded queue and its overflow policies."""

    def test_drop_oldest_counts_exactly_and_keeps_the_newest(
        self, make_engine: EngineFactory
    ) -> None:
        """With the worker held up, drop_oldest loses exactly the oldest surplus."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink, max_queue_size=10, max_batch_size=1)
        engine.submit(item(0))  # taken by the worker, which then hangs
        assert sink.wait_for(0)
        assert sink.wait_calls(1)
        for index in range(1, 26):
            engine.submit(item(index))
        assert 15 == engine.stats().dropped["queue_full"]
        sink.release()
        assert engine.flush(10)
        received = [
            event["data"]["i"] for event in sink.decoded() if "i" in event["data"]
        ]
        assert [0, *range(16, 26)] == received

    def test_drop_newest_refuses_the_surplus(self, make_engine: EngineFactory) -> None:
        """With drop_newest, the queue keeps the first items and counts the rest."""
        sink = InMemorySink()
        engine = make_engine(sink, max_queue_size=5, overflow="drop_newest")
        # Hold the worker off the queue while we fill it: it sends at once now.
        engine.lock.acquire()
        try:
            for index in range(9):
                engine.submit(item(index))
        finally:
            engine.lock.release()
        assert 4 == engine.stats().dropped["queue_full"]
        assert engine.flush(10)
        received = [e["data"]["i"] for e in sink.decoded() if "i" in e["data"]]
        assert [0, 1, 2, 3, 4] == received

    def test_byte_bound_drops_by_size_hint(self, make_engine: EngineFactory) -> None:
        """The byte bound holds the queue to max_queue_bytes of size hints."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink, max_queue_bytes=1000, max_batch_size=1)
        engine.submit(EventItem("log.info", {"i": 0}, size_hint=100))
        assert sink.wait_calls(1)
        for index in range(1, 21):
            engine.submit(EventItem("log.info", {"i": index}, size_hint=100))
        stats = engine.stats()
        assert (10, 1000, 10) == (
            stats.queue_depth,
            stats.queue_bytes,
            stats.dropped["queue_full"],
        )
        sink.release()

    def test_byte_bound_holds_real_memory_under_a_burst(
        self, make_engine: EngineFactory
    ) -> None:
        """4 threads overflow a stuck queue: its bytes, and its memory, stay bounded."""
        import logging
        import tracemalloc

        from cse_bridge.schema.logs import snapshot_log_record

        sink = InMemorySink(["hang"])
        bound = 2 * 1024 * 1024
        engine = make_engine(sink, max_queue_bytes=bound, max_batch_size=1)
        engine.submit(item(0))
        assert sink.wait_calls(1)  # the worker is stuck in send from now on
        logger = logging.getLogger("burst")
        seen: list[int] = []

        def burst(thread: int) -> None:
            # Only the highest count is kept: a list of all 20,000 would hold as many
            # ints allocated in the engine, which the filter below would count as held.
            highest = 0
            for index in range(5000):
                record = logger.makeRecord(
                    "burst", logging.INFO, __file__, 1, "request %s done",
                    (index,), None, extra={"user": "ann", "producer": thread},
                )  # fmt: skip
                snapshot = snapshot_log_record(record)
                engine.submit(EventItem("log.info", snapshot, snapshot.size_hint))
                highest = max(highest, engine.queue_bytes)
            seen.append(highest)

        # Count only what our code allocated (the snapshots and the queue): other
        # threads of the test process (a gateway, the logging module) are not ours.
        ours = [tracemalloc.Filter(True, "*/cse_bridge/*")]
        tracemalloc.start()
        try:
            before = tracemalloc.take_snapshot().filter_traces(ours)
            threads = [threading.Thread(target=burst, args=(n,)) for n in range(4)]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            del thread, threads
            after = tracemalloc.take_snapshot().filter_traces(ours)
            held = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
        finally:
            tracemalloc.stop()
        stats = engine.stats()
        assert max(seen) <= bound
        assert stats.dropped["queue_full"] > 0
        assert held <= bound, (held, stats)
        sink.release()

    def test_the_worker_holds_no_lock_while_sending(
        self, make_engine: EngineFactory
    ) -> None:
        """While a send hangs, the queue's lock is free: submit cannot wait on I/O."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink, max_batch_size=1)
        engine.submit(item(0))
        assert sink.wait_calls(1)
        free: list[bool] = []

        def probe() -> None:  # another thread: an RLock held by us would succeed
            free.append(engine.lock.acquire(blocking=False))
            if free[-1]:
                engine.lock.release()

        prober = threading.Thread(target=probe)
        prober.start()
        prober.join()
        started = time.perf_counter()
        for index in range(1, 1001):
            engine.submit(item(index))
        took = time.perf_counter() - started
        sink.release()
        assert [True] == free
        assert 1001 == engine.stats().queued
        assert took < 1.0  # a thousand submits; generous for a shared machine

    def test_submit_never_raises(self, make_engine: EngineFactory) -> None:
        """A malformed item is swallowed rather than raised into the caller."""
        engine = make_engine(InMemorySink())
        engine.submit(None)  # type: ignore[arg-type]
        assert 0 == engine.stats().queued


class TestBatchEngineBatching:
    """Batches by count and by time."""

    def test_lone_item_is_sent_at_once(self) -> None:
        """Unpacked, an idle worker sends a lone item without waiting for the delay."""
        clock = FakeClock()
        sink = InMemorySink()
        engine = BatchEngine(sink, schedule_delay=3600, clock=clock)
        try:
            engine.submit(item(1))
            assert sink.wait_for(1)
        finally:
            engine.shutdown(1.0)

    def test_items_arriving_during_a_send_form_the_next_batch(
        self, make_engine: EngineFactory
    ) -> None:
        """Natural batching: what queues while a send is in flight goes out together."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink, schedule_delay=3600)
        engine.submit(item(0))
        assert sink.wait_calls(1)
        for index in range(1, 6):
            engine.submit(item(index))
        sink.release()
        assert engine.flush(10)
        expected = (2, list(range(6)))  # the hung call's item is retried first
        assert expected == (sink.calls - 1, [e["data"]["i"] for e in sink.decoded()])

    def test_partial_pack_waits_for_the_schedule_delay(self) -> None:
        """Packing, a lone item waits until the fake clock passes the delay."""
        clock = FakeClock()
        sink = InMemorySink()
        engine = BatchEngine(sink, schedule_delay=5.0, pack=10, clock=clock)
        try:
            engine.submit(item(1))
            assert clock.waiting.wait(10)
            assert 0 == sink.calls
            clock.advance(5.0)
            assert sink.wait_for(1)
            assert 1 == len(sink.events)
        finally:
            engine.shutdown(1.0)

    def test_full_batch_is_sent_without_waiting(self) -> None:
        """Packing, max_batch_size items go out at once, whatever the delay."""
        clock = FakeClock()
        sink = InMemorySink()
        engine = BatchEngine(
            sink, schedule_delay=3600, max_batch_size=4, pack=4, clock=clock
        )
        try:
            for index in range(4):
                engine.submit(item(index))
            assert sink.wait_for(1)
            assert 1 == sink.calls
            assert 4 == len(sink.decoded()[0]["data"]["records"])
        finally:
            engine.shutdown(1.0)

    def test_packing_joins_log_records(self, make_engine: EngineFactory) -> None:
        """pack=N sends log.* items as log.batch events of at most N records."""
        sink = InMemorySink()
        engine = make_engine(sink, pack=4, max_batch_size=100)
        for index in range(10):
            engine.submit(item(index))
        engine.submit(EventItem("custom", {"x": 1}))
        assert engine.flush(10)
        events = sink.decoded()
        assert ["log.batch", "log.batch", "log.batch", "custom"] == [
            e["type"] for e in events
        ]
        records = [r["data"]["i"] for e in events[:3] for r in e["data"]["records"]]
        assert list(range(10)) == records
        assert 11 == engine.stats().sent

    def test_pack_spans_joins_spans_apart_from_log_records(self) -> None:
        """pack_spans=N packs trace.span items as trace.batch; logs pack apart."""
        sink = InMemorySink()
        options = EngineOptions.resolve(
            pack=4, pack_spans=3, schedule_delay=3600, handle_sigterm=False
        )
        engine = BatchEngine(sink, options)
        try:
            kinds = ["log.info"] * 2 + ["trace.span"] * 4 + ["log.info", "custom"]
            for index, kind in enumerate(kinds):
                engine.submit(item(index, kind))
            assert engine.flush(10)
            events = sink.decoded()
            assert [
                ("log.batch", [0, 1]),
                ("trace.batch", [2, 3, 4]),
                ("trace.span", [5]),
                ("log.info", [6]),
                ("custom", [7]),
            ] == [
                (
                    e["type"],
                    [r["data"]["i"] for r in e["data"]["records"]]
                    if e["type"].endswith(".batch")
                    else [e["data"]["i"]],
                )
                for e in events
            ]
            assert ["trace.span"] * 3 == [
                r["type"] for r in events[1]["data"]["records"]
            ]
            assert 8 == engine.stats().sent
        finally:
            engine.shutdown(1.0)

    def test_spans_travel_alone_without_pack_spans(
        self, make_engine: EngineFactory
    ) -> None:
        """pack=N alone never packs spans: trace.batch is opt-in."""
        sink = InMemorySink()
        engine = make_engine(sink, pack=10)
        for index in range(3):
            engine.submit(item(index, "trace.span"))
        assert engine.flush(10)
        assert ["trace.span"] * 3 == [e["type"] for e in sink.decoded()]


class TestBatchEngineFlush:
    """flush() deadlines."""

    def test_flush_returns_true_when_all_sent(self, make_engine: EngineFactory) -> None:
        """flush() returns True once everything submitted before it arrived."""
        sink = InMemorySink()
        engine = make_engine(sink, schedule_delay=3600)
        for index in range(5):
            engine.submit(item(index))
        assert engine.flush(10)
        assert 5 == len(sink.events)

    def test_flush_times_out_on_a_hung_sink(self, make_engine: EngineFactory) -> None:
        """flush() gives up after its timeout when the sink hangs."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink)
        engine.submit(item(1))
        started = time.monotonic()
        assert not engine.flush(0.3)
        assert time.monotonic() - started < 2.0
        sink.release()
        assert engine.flush(10)

    def test_flush_without_items_is_immediate(self, make_engine: EngineFactory) -> None:
        """An engine that never got an item flushes at once and starts no thread."""
        engine = make_engine(InMemorySink())
        assert engine.flush(0)
        assert not any(t.name == "cse-bridge-engine" for t in threading.enumerate())


class TestBatchEngineShutdown:
    """shutdown() bounds, idempotence, later submits, garbage collection."""

    def test_shutdown_is_bounded_with_a_dead_backend(
        self, make_engine: EngineFactory
    ) -> None:
        """A backend that refuses everything cannot hold shutdown past its timeout."""
        sink = InMemorySink(["down"] * 1000)
        engine = make_engine(sink)
        for index in range(50):
            engine.submit(item(index))
        started = time.monotonic()
        assert not engine.shutdown(0.5)
        assert time.monotonic() - started < 1.5
        assert 50 == engine.stats().dropped["exit"]
        assert sink.closed

    def test_shutdown_sends_the_rest_and_is_idempotent(
        self, make_engine: EngineFactory
    ) -> None:
        """shutdown() drains the queue once; a second call returns the same answer."""
        sink = InMemorySink()
        engine = make_engine(sink, schedule_delay=3600)
        for index in range(7):
            engine.submit(item(index))
        assert engine.shutdown(5)
        assert engine.shutdown(5)
        assert 7 == len(sink.events)

    def test_submit_after_shutdown_is_counted(self, make_engine: EngineFactory) -> None:
        """Items submitted after shutdown are dropped as after_shutdown."""
        engine = make_engine(InMemorySink())
        engine.shutdown(1)
        engine.submit(item(1))
        engine.submit(item(2))
        assert {"after_shutdown": 2} == engine.stats().dropped

    def test_shut_down_engine_is_garbage_collected(self) -> None:
        """Nothing (atexit, fork hook, worker) keeps a shut-down engine alive."""
        engine = BatchEngine(InMemorySink(), schedule_delay=0.01)
        engine.submit(item(1))
        assert engine.flush(10)
        engine.shutdown(2)
        ref = weakref.ref(engine)
        del engine
        gc.collect()
        assert ref() is None


class TestBatchEngineFailures:
    """Retries, Retry-After, rejections, auth pauses and the bridge.dropped report."""

    def test_retry_after_pauses_then_delivers(self) -> None:
        """A 503 with Retry-After: 30 waits 30 (fake) seconds, then delivers."""
        clock = FakeClock()
        sink = InMemorySink([503], retry_after="30")
        engine = BatchEngine(sink, schedule_delay=0, clock=clock)
        try:
            engine.submit(item(1))
            assert sink.wait_calls(1)
            clock.waiting.clear()
            assert clock.waiting.wait(10)
            clock.advance(29)
            assert 1 == sink.calls
            clock.advance(1.5)
            assert sink.wait_for(1)
            assert 1 == engine.stats().retried
        finally:
            engine.shutdown(1.0)

    def test_other_5xx_are_retried_a_few_times_then_dropped(
        self, make_engine: EngineFactory
    ) -> None:
        """A persistent 500 is tried three times, then counted as send_failed."""
        sink = InMemorySink([500, 500, 500])
        engine = make_engine(sink)
        engine.submit(item(1))
        assert engine.flush(20)
        assert ({"send_failed": 1}, 3) == (engine.stats().dropped, sink.calls - 1)

    def test_rejected_event_is_dropped_alone(self, make_engine: EngineFactory) -> None:
        """A 400 drops that event only; its neighbours arrive."""
        sink = InMemorySink(reject=lambda event: b'"i":2}' in event.body)
        engine = make_engine(sink)
        for index in range(5):
            engine.submit(item(index))
        assert engine.flush(10)
        received = [e["data"]["i"] for e in sink.decoded() if e["type"] == "log.info"]
        assert [0, 1, 3, 4] == received
        assert {"rejected": 1} == engine.stats().dropped

    def test_auth_failure_pauses_until_the_token_is_replaced(
        self, make_engine: EngineFactory
    ) -> None:
        """A 401 pauses sending; resume() (a new token) delivers what was kept."""
        sink = InMemorySink([401])
        engine = make_engine(sink)
        engine.submit(item(1))
        assert not engine.flush(0.3)
        assert 1 == sink.calls
        engine.submit(item(2))
        engine.resume()
        assert engine.flush(10)
        assert [1, 2] == [e["data"]["i"] for e in sink.decoded()]

    def test_bridge_dropped_arrives_after_an_outage(
        self, make_engine: EngineFactory
    ) -> None:
        """Drops during an outage are reported in a bridge.dropped event afterwards."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink, max_queue_size=3, max_batch_size=1)
        engine.submit(item(0))
        assert sink.wait_calls(1)
        for index in range(1, 9):
            engine.submit(item(index))
        sink.release()
        assert engine.flush(10)
        reports = [e["data"] for e in sink.decoded() if e["type"] == DROPPED_TYPE]
        assert [{"queue_full": 5}] == [report["dropped"] for report in reports]


class TestBatchEngineThreads:
    """The worker thread's identity and fork children."""

    def test_on_engine_thread_is_true_only_in_the_sink(
        self, make_engine: EngineFactory
    ) -> None:
        """The sink runs on an engine thread; the test thread is not one."""
        seen: list[bool] = []
        sink = InMemorySink(
            reject=lambda event: seen.append(on_engine_thread()) or False
        )
        engine = make_engine(sink)
        engine.submit(item(1))
        assert engine.flush(10)
        assert ([True], False) == (seen, on_engine_thread())

    def test_fork_child_starts_empty_and_ships_its_own(
        self, make_engine: EngineFactory
    ) -> None:
        """A fork child never re-sends the parent's queue; its own items are sent."""
        sink = InMemorySink(["hang"])
        engine = make_engine(sink)
        engine.submit(item(0, origin="parent"))
        assert sink.wait_calls(1)
        engine.submit(item(1, origin="parent-queued"))
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:  # the child: report what it shipped through the pipe
            code = 1
            try:
                sink.events.clear()
                sink._released.set()
                engine.submit(item(2, origin="child"))
                engine.flush(5)
                payload = json.dumps([e["data"]["origin"] for e in sink.decoded()])
                os.write(write_end, payload.encode())
                code = 0
            finally:
                os._exit(code)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as pipe:
            child_sent = json.loads(pipe.read() or b"null")
        assert 0 == os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        assert ["child"] == child_sent
        sink.release()
        assert engine.flush(10)
        assert ["parent", "parent-queued"] == [
            e["data"]["origin"] for e in sink.decoded()
        ]


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_env_configures_the_engine(
    monkeypatch: pytest.MonkeyPatch, policy: str
) -> None:
    """CSE_BRIDGE_* variables configure an engine; arguments still win."""
    monkeypatch.setenv("CSE_BRIDGE_MAX_QUEUE_SIZE", "77")
    monkeypatch.setenv("CSE_BRIDGE_OVERFLOW", policy)
    monkeypatch.setenv("CSE_BRIDGE_PACK", "bogus")
    engine = BatchEngine(InMemorySink(), max_batch_size=3)
    try:
        assert (77, policy, 0, 3) == (
            engine.max_queue_size,
            engine.overflow,
            engine.pack,
            engine.max_batch_size,
        )
    finally:
        engine.shutdown(1)
