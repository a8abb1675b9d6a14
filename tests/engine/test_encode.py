"""EventItem encoding: strict JSON, repr fallbacks, the size rule, packing."""

from __future__ import annotations

import enum
import json
import logging
import sys
import types
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from cse_bridge.engine import MAX_EVENT_BYTES, EventItem, _encode, encode_item
from cse_bridge.engine._encode import BatchStream, encode_body, pack_events
from cse_bridge.schema._log_snapshot import LogRecordData, snapshot_log_record


class TestEncodeItem:
    """encode_item()."""

    def test_body_is_the_post_events_envelope(self) -> None:
        """The body is {"type", "data"} in compact JSON."""
        event = encode_item(EventItem("log.info", {"message": "hi"}))
        assert b'{"type":"log.info","data":{"message":"hi"}}' == event.body

    def test_non_json_values_become_strings(self) -> None:
        """NaN, sets, bytes, tuple keys and lone surrogates still give valid JSON."""
        data = {"n": float("nan"), "s": {1}, "b": b"x", (1, 2): 3, "u": "\ud800"}
        decoded = json.loads(encode_item(EventItem("log.info", data)).body)["data"]
        assert {
            "n": "nan",
            "s": "{1}",
            "b": "b'x'",
            "(1, 2)": 3,
            "u": "\ud800",
        } == decoded

    def test_long_string_is_cut_with_a_marker(self) -> None:
        """An over-limit message is cut to fit and data.truncated is set."""
        event = encode_item(EventItem("log.info", {"message": "é" * 2_000_000, "k": 1}))
        data = json.loads(event.body)["data"]
        assert (True, 1) == (data["truncated"], data["k"])
        assert len(event.body) <= MAX_EVENT_BYTES
        assert data["message"].endswith("[truncated] 2000000 chars")

    def test_many_small_values_are_replaced(self) -> None:
        """Without long strings, the largest attribute is replaced by a marker."""
        item = EventItem("log.info", {"attributes": {"big": list(range(400_000))}})
        data = json.loads(encode_item(item).body)["data"]
        assert data["attributes"]["big"].startswith("[truncated ")
        assert data["truncated"] is True


class TestPackEvents:
    """pack_events()."""

    def test_records_keep_type_and_data(self) -> None:
        """A log.batch carries each record's type and data, in order."""
        events = [
            encode_item(EventItem(f"log.{n}", {"i": n})) for n in ("info", "error")
        ]
        packed = pack_events(events)
        assert (
            2,
            {
                "records": [
                    {"type": "log.info", "data": {"i": "info"}},
                    {"type": "log.error", "data": {"i": "error"}},
                ]
            },
        ) == (packed.items, json.loads(packed.body)["data"])


class _Queue:
    """The engine's side of a ``BatchStream`` over a list, with no worker thread."""

    pack = 1000
    pack_spans = 1
    max_batch_size = 100_000
    max_batch_bytes = max_queue_bytes = 1 << 30

    def __init__(self, items: list[EventItem], *, producing: bool) -> None:
        self.items = items
        self.removed = 0
        self.producing = producing
        self._accepted = len(items)

    @property
    def accepted(self) -> int:
        """Grows at every look while a producer is busy, as submit() makes it."""
        if self.producing:
            self._accepted += 1
        return self._accepted

    def take(
        self, most: int | None = None, limit: int | None = None
    ) -> tuple[list[EventItem], int]:
        taken = self.items[: most or len(self.items)]
        del self.items[: len(taken)]
        self.removed += len(taken)
        return taken, self.removed

    def encode_failed(self, exc: Exception) -> None:
        raise exc


class TestGilOffers:
    """BatchStream offers the GIL after each 0.1 ms of encoding while a producer is
    busy, else about once a millisecond (a thread that woke from I/O may be waiting)."""

    @pytest.mark.parametrize(
        ("producing", "per_item", "offers"),
        [(True, 30e-6, 79), (True, 3e-6, 8), (False, 30e-6, 9), (False, 3e-6, 1)],
        ids=["busy-spans", "busy-logs", "idle-spans", "idle-logs"],
    )
    def test_offers(
        self,
        monkeypatch: pytest.MonkeyPatch,
        producing: bool,
        per_item: float,
        offers: int,
    ) -> None:
        """320 records taking *per_item* seconds each; the clock is looked at every 4.

        The first offer comes after 0.1 ms (nothing was seen submitted yet). Then,
        busy: every 4 spans (0.12 ms) or 36 log records (0.108 ms); idle: every 36
        spans (1.08 ms), and no more within 320 log records (0.96 ms).
        """
        sleeps, _ = self._clock(monkeypatch, per_item)
        items = [EventItem("log.info", {"i": n}) for n in range(320)]
        packs = list(BatchStream(_Queue(items, producing=producing), []))
        assert [320] == [pack.items for pack in packs]
        assert [0] * offers == sleeps

    def test_time_handed_out_is_not_encoding(
        self, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """One event per send, 1 ms on the wire each: only the encoding is timed."""
        sleeps, advance = self._clock(monkeypatch, 3e-6)
        items = [EventItem("log.info", {"i": n}) for n in range(320)]
        queue = _Queue(items, producing=False)
        queue.pack = 1
        sent = 0
        for _ in BatchStream(queue, []):
            advance(0.001)
            sent += 1
        assert (320, [0]) == (sent, sleeps)  # once at 0.1 ms, never at 1 ms

    @staticmethod
    def _clock(
        monkeypatch: pytest.MonkeyPatch, per_item: float
    ) -> tuple[list[float], Callable[[float], None]]:
        """A fake clock: each encoding takes *per_item* s, each sleep(0) 80 us."""
        sleeps: list[float] = []
        now = [0.0]

        def advance(seconds: float) -> None:
            now[0] += seconds

        def sleep(seconds: float) -> None:
            sleeps.append(seconds)
            advance(80e-6)  # CPython 3.11+'s timer slack: not encoding either

        encode_body = _encode.encode_body

        def timed_encode(item: EventItem) -> bytes:
            advance(per_item)
            return encode_body(item)

        clock = types.SimpleNamespace(sleep=sleep, perf_counter=lambda: now[0])
        monkeypatch.setattr(_encode, "time", clock)
        monkeypatch.setattr(_encode, "encode_body", timed_encode)
        return sleeps, advance


def _circular() -> list[object]:
    loop: list[object] = [1]
    loop.append(loop)
    return loop


class _Level(enum.IntEnum):
    LOW = 1


class _Obj:
    def __repr__(self) -> str:
        return "<obj>"


_EXTRAS: list[dict[str, object]] = [
    {},
    {"user": "ann", "n": 3, "f": 1.5, "ok": True, "none": None},
    {"tags": ["a", 2, None], "nested": {"k": {"deep": [1, {"x": "y"}]}}},
    {"raw": b"x", "set": {1}, "obj": _Obj(), "tuple": (1, 2)},
    {"nan": float("nan")},
    {"inf": float("-inf")},
    {"loop": _circular()},
    {"tuple_key": {(1, 2): 3}, "int_key": {1: "a", None: "b"}},
    {"proxy": types.MappingProxyType({"a": 1}), "level": _Level.LOW},
    {"text": 'é\u2028"\\\n\t\x00 \ud800', "ü": "snowman ☃"},
]


def _fail(exc: BaseException) -> None:
    raise exc


def _record(extra: dict[str, object], *, exc: bool, stack: bool) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            _fail(ValueError("bad \u00e9"))
        except ValueError:
            exc_info = sys.exc_info()
    return logging.getLogger("app.mod").makeRecord(
        "app.mod",
        logging.ERROR,
        "/src/app/mod.py",
        7,
        "hello %s \ud800 ü",
        ("world",),
        exc_info,
        func="handler",
        extra=dict(extra),
        sinfo="Stack (most recent call last):\n  here" if stack else None,
    )


class TestLogRecordFastPath:
    """LogRecordData.build_json: the same JSON content as encoding build()'s dict."""

    @pytest.mark.parametrize("extra", _EXTRAS)
    @pytest.mark.parametrize(
        ("exc", "stack"), [(False, False), (True, False), (False, True), (True, True)]
    )
    @pytest.mark.parametrize("trace", [None, ("a" * 32, "b" * 16)])
    @pytest.mark.parametrize(
        "resource",
        [{}, {"service.name": "s", "n": 1}, types.MappingProxyType({"r": [1]})],
    )
    @pytest.mark.parametrize("message", [None, "formatted: ü \ud800"])
    def test_same_content_as_the_built_dict(
        self,
        extra: dict[str, object],
        exc: bool,
        stack: bool,
        trace: tuple[str, str] | None,
        *,
        resource: Mapping[str, object],
        message: str | None,
    ) -> None:
        """Every record shape decodes to the same JSON either way."""
        record = _record(extra, exc=exc, stack=stack)

        def snapshot() -> LogRecordData:
            snap = snapshot_log_record(record, resource=resource, message=message)
            return LogRecordData(
                dict(snap._snapshot),
                snap._message,
                resource=snap._resource,
                exception=snap._exception,
                trace=trace,
            )

        old = encode_body(EventItem("log.error", snapshot().build()))
        fast = snapshot()
        assert fast._data is None
        new = encode_body(EventItem("log.error", fast))
        assert json.loads(old) == json.loads(new)

    @pytest.mark.parametrize(
        "attrs",
        [
            {"levelname": None, "lineno": "7", "created": 1.5, "process": True},
            {"created_ns": 1_700_000_000_123_456_789, "name": _Level.LOW},
            {"created": "not a number", "threadName": 3.25, "stack_info": ""},
        ],
    )
    def test_odd_standard_fields(self, attrs: dict[str, object]) -> None:
        """Standard fields of unusual types (a rebuilt record) encode alike."""
        record = _record({}, exc=False, stack=False)
        old = snapshot_log_record(record)._snapshot | attrs
        new = dict(old)
        kwargs: dict[str, Any] = {"resource": {}, "exception": None, "trace": None}
        built = LogRecordData(old, "m", **kwargs).build()
        assert json.loads(encode_body(EventItem("log.info", built))) == json.loads(
            encode_body(EventItem("log.info", LogRecordData(new, "m", **kwargs)))
        )

    def test_call_site_pieces_reused_only_for_the_same_json(self) -> None:
        """Equal but differently typed site fields (7, 7.0, True) keep own JSON."""
        kwargs: dict[str, Any] = {"resource": {}, "exception": None, "trace": None}
        base = snapshot_log_record(_record({}, exc=False, stack=False))._snapshot
        variants: list[dict[str, object]] = [
            {},
            {"lineno": 7},
            {"lineno": 7.0},
            {"lineno": True},
            {"levelno": 20.0},
            {"thread": 1.0},
            {"funcName": ["unhashable"]},
            {"lineno": 7},
            {},
        ]
        for changed in variants:
            attrs = base | changed
            built = LogRecordData(dict(attrs), "m", **kwargs).build()
            expected = encode_body(EventItem("log.info", built))
            twice = [
                encode_body(
                    EventItem("log.info", LogRecordData(dict(attrs), "m", **kwargs))
                )
                for _ in range(2)
            ]
            assert [expected, expected] == twice, changed

    def test_read_snapshot_writes_its_built_dict(self) -> None:
        """Once built (and maybe changed by a reader), that dict is what is written."""
        snap = snapshot_log_record(_record({"k": 1}, exc=False, stack=False))
        snap.build()["message"] = "changed"
        body = json.loads(encode_body(EventItem("log.info", snap)))
        assert "changed" == body["data"]["message"]

    def test_plain_record_skips_the_dict(self) -> None:
        """A record of plain JSON values is written without building the dict."""
        snap = snapshot_log_record(_record(_EXTRAS[2], exc=True, stack=True))
        encode_body(EventItem("log.info", snap))
        assert snap._data is None
