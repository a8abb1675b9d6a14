"""
Log codecs: LogRecord and structlog event dicts to event data, and back.

See docs/protocol.md#protocol-log-records.
"""

from __future__ import annotations

import json
import logging
import sys
from typing import Any

import pytest

from cse_bridge._json import to_json_safe
from cse_bridge.schema.logs import (
    current_trace_ids,
    decode_log_data,
    decode_log_record,
    encode_exception,
    encode_log_record,
    encode_structlog_event,
    estimate_size,
    log_event_type,
    resolve_exc_info,
    snapshot_log_record,
)


def make_record(
    msg: str = "hello %s",
    args: Any = ("world",),
    *,
    level: int = logging.WARNING,
    extra: dict[str, Any] | None = None,
    exc_info: Any = None,
    sinfo: str | None = None,
) -> logging.LogRecord:
    """A record as ``Logger.makeRecord`` builds it, extras included."""
    logger = logging.getLogger("app.module")
    return logger.makeRecord(
        "app.module",
        level,
        "/src/app/module.py",
        42,
        msg,
        args,
        exc_info,
        func="handler",
        extra=extra,
        sinfo=sinfo,
    )


def wire(data: dict[str, object]) -> dict[str, Any]:
    """What the gateway stores: the worker's JSON-safe conversion, through JSON."""
    return json.loads(json.dumps(to_json_safe(data)))


def fail(exc: BaseException) -> None:
    """Raise *exc* (so tests raise from a frame of their own)."""
    raise exc


def raised() -> tuple[Any, Any, Any]:
    """The exc_info of a raised and caught ValueError."""
    try:
        fail(ValueError("bad value"))
    except ValueError:
        return sys.exc_info()


class TestLogEventType:
    """``log_event_type``."""

    @pytest.mark.parametrize(
        ("levelno", "expected"),
        [
            (logging.DEBUG, "log.debug"),
            (logging.INFO, "log.info"),
            (logging.WARNING, "log.warning"),
            (logging.ERROR, "log.error"),
            (logging.CRITICAL, "log.critical"),
        ],
    )
    def test_standard_levels(self, levelno: int, expected: str) -> None:
        """Each standard level has its own type."""
        assert expected == log_event_type(levelno)

    @pytest.mark.parametrize(
        ("levelno", "expected"),
        [
            (0, "log.debug"),
            (5, "log.debug"),
            (25, "log.info"),
            (45, "log.error"),
            (99, "log.critical"),
        ],
    )
    def test_custom_levels_map_to_the_nearest_lower(
        self, levelno: int, expected: str
    ) -> None:
        """A custom level takes the type of the nearest standard level below it."""
        assert expected == log_event_type(levelno)


class TestEncodeLogRecord:
    """``encode_log_record``."""

    def test_standard_fields(self) -> None:
        """Message, level, logger, time, source, process and thread are filled in."""
        record = make_record()
        data = encode_log_record(record)
        expected = "hello world"
        assert expected == data["message"]
        expected = ("WARNING", 30)
        assert expected == (data["level"], data["levelno"])
        expected = "app.module"
        assert expected == data["logger"]
        assert int(record.created * 1e9) == data["timeUnixNano"]
        expected_source = {
            "file": "/src/app/module.py",
            "line": 42,
            "function": "handler",
            "module": "module",
        }
        assert expected_source == data["source"]
        assert {"pid": record.process, "name": record.processName} == data["process"]
        assert {"id": record.thread, "name": record.threadName} == data["thread"]
        expected = {}
        assert expected == data["attributes"]
        expected = {}
        assert expected == data["resource"]

    def test_no_optional_fields_without_cause(self) -> None:
        """exception, stack and trace ids are absent when there is nothing to say."""
        data = encode_log_record(make_record())
        assert set() == {"exception", "stack", "traceId", "spanId"} & data.keys()

    def test_extras_become_a_shallow_copy(self) -> None:
        """``extra=`` fields are attributes, copied so later rebinding does not leak."""
        tags = ["a"]
        record = make_record(extra={"user": "ann", "tags": tags})
        data = encode_log_record(record)
        record.user = "bob"
        expected = {"user": "ann", "tags": ["a"]}
        assert expected == data["attributes"]

    def test_message_is_formatted_now(self) -> None:
        """The args are applied at encode time: mutating them later changes nothing."""
        args = [1, 2]
        record = make_record("values %s", (args,))
        data = encode_log_record(record)
        args.append(3)
        expected = "values [1, 2]"
        assert expected == data["message"]

    def test_message_override(self) -> None:
        """A formatter's output replaces ``getMessage()``."""
        expected = "FORMATTED"
        assert (
            expected == encode_log_record(make_record(), message="FORMATTED")["message"]
        )

    def test_resource(self) -> None:
        """Resource attributes are copied in."""
        data = encode_log_record(make_record(), resource={"service.name": "svc"})
        expected = {"service.name": "svc"}
        assert expected == data["resource"]

    def test_exception(self) -> None:
        """exc_info becomes type, message and the full traceback text."""
        data = encode_log_record(make_record(exc_info=raised()))
        exception = data["exception"]
        assert isinstance(exception, dict)
        expected = ("ValueError", "bad value")
        assert expected == (exception["type"], exception["message"])
        assert exception["stacktrace"].startswith("Traceback (most recent call last):")
        assert exception["stacktrace"].endswith("ValueError: bad value")

    def test_exception_reuses_exc_text(self) -> None:
        """A traceback a formatter already rendered is reused as is."""
        record = make_record(exc_info=raised())
        record.exc_text = "already formatted"
        exception = encode_log_record(record)["exception"]
        assert isinstance(exception, dict)
        expected = "already formatted"
        assert expected == exception["stacktrace"]

    def test_empty_exc_info_is_no_exception(self) -> None:
        """``logger.exception`` outside an except block ships no exception field."""
        data = encode_log_record(make_record(exc_info=(None, None, None)))
        assert "exception" not in data

    def test_stack_info(self) -> None:
        """stack_info is shipped as ``stack``."""
        data = encode_log_record(make_record(sinfo="Stack (most recent call last):"))
        expected = "Stack (most recent call last):"
        assert expected == data["stack"]

    def test_created_ns_is_preferred(self) -> None:
        """An integer ``created_ns`` is used as is, without float rounding."""
        record = make_record()
        record.created_ns = 1_700_000_000_123_456_789
        expected = 1_700_000_000_123_456_789
        assert expected == encode_log_record(record)["timeUnixNano"]
        assert "created_ns" not in encode_log_record(record)["attributes"]  # type: ignore[operator]

    def test_trace_ids_of_the_active_span(self) -> None:
        """Inside an OpenTelemetry span the record carries its ids in lowercase hex."""
        from opentelemetry.sdk.trace import TracerProvider

        tracer = TracerProvider().get_tracer("test")
        with tracer.start_as_current_span("op") as span:
            data = encode_log_record(make_record())
        context = span.get_span_context()
        assert format(context.trace_id, "032x") == data["traceId"]
        assert format(context.span_id, "016x") == data["spanId"]
        expected = (32, 16)
        assert expected == (len(str(data["traceId"])), len(str(data["spanId"])))

    def test_no_trace_ids_without_a_span(self) -> None:
        """With OpenTelemetry imported but no span active there are no ids."""
        import opentelemetry.trace  # noqa: F401 - imported to exercise the lookup

        assert None is current_trace_ids()

    def test_everything_is_json_safe_after_conversion(self) -> None:
        """Objects, bytes, sets and recursive dicts in extras arrive as strings."""
        loop: dict[str, Any] = {}
        loop["self"] = loop
        extra = {"obj": object(), "raw": b"\x00", "set": {1}, "loop": loop}
        attributes = wire(encode_log_record(make_record(extra=extra)))["attributes"]
        expected = "b'\\x00'"
        assert expected == attributes["raw"]
        expected = "{1}"
        assert expected == attributes["set"]
        assert attributes["obj"].startswith("<object object at")
        assert isinstance(attributes["loop"]["self"], str)


class TestEncodeException:
    """``encode_exception`` and ``resolve_exc_info``."""

    def test_qualified_type_name(self) -> None:
        """Exceptions outside builtins are named with their module."""
        exc = json.JSONDecodeError("msg", "doc", 0)
        encoded = encode_exception((type(exc), exc, None))
        expected = "json.decoder.JSONDecodeError"
        assert expected == encoded["type"]

    def test_broken_str(self) -> None:
        """An exception whose ``__str__`` raises still encodes."""

        class Broken(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        exc = Broken()
        expected = "<unprintable Broken>"
        assert expected == encode_exception((Broken, exc, None))["message"]

    def test_resolve_forms(self) -> None:
        """An exception, a triple and True (inside except) all resolve to a triple."""
        exc = ValueError("x")
        assert (ValueError, exc, None) == resolve_exc_info(exc)
        assert (ValueError, exc, None) == resolve_exc_info((ValueError, exc, None))
        assert None is resolve_exc_info(True)
        assert None is resolve_exc_info(False)
        try:
            raise exc
        except ValueError:
            assert exc is resolve_exc_info(True)[1]  # type: ignore[index]


class TestEncodeStructlogEvent:
    """``encode_structlog_event``."""

    def test_event_level_logger_and_attributes(self) -> None:
        """``event`` is the message, the remaining keys are attributes."""
        data = encode_structlog_event(
            {
                "event": "user logged in",
                "level": "warning",
                "logger": "auth",
                "user": "ann",
                "timestamp": 1700000000.5,
            },
        )
        expected = "user logged in"
        assert expected == data["message"]
        expected = ("WARNING", 30)
        assert expected == (data["level"], data["levelno"])
        expected = "auth"
        assert expected == data["logger"]
        expected = 1_700_000_000_500_000_000
        assert expected == data["timeUnixNano"]
        expected = {"user": "ann"}
        assert expected == data["attributes"]

    def test_method_name_and_logger_name_fallbacks(self) -> None:
        """Without ``level``/``logger`` keys the method and logger names are used."""
        data = encode_structlog_event(
            {"event": "x"}, method_name="exception", logger_name="svc"
        )
        expected = ("ERROR", "svc")
        assert expected == (data["level"], data["logger"])

    def test_iso_timestamp(self) -> None:
        """An ISO 8601 timestamp (``TimeStamper(fmt="iso")``) is parsed."""
        data = encode_structlog_event(
            {"event": "x", "timestamp": "2024-01-02T03:04:05.500000Z"}
        )
        expected = 1_704_164_645_500_000_000
        assert expected == data["timeUnixNano"]

    def test_unparsable_timestamp_is_kept_as_attribute(self) -> None:
        """A custom timestamp format is kept as an attribute; the time is now."""
        data = encode_structlog_event({"event": "x", "timestamp": "Jan 2"})
        expected = {"timestamp": "Jan 2"}
        assert expected == data["attributes"]
        assert isinstance(data["timeUnixNano"], int)

    def test_exc_info_true_inside_except(self) -> None:
        """``exc_info=True`` means the exception being handled."""
        try:
            fail(KeyError("k"))
        except KeyError:
            data = encode_structlog_event({"event": "failed", "exc_info": True})
        exception = data["exception"]
        assert isinstance(exception, dict)
        expected = "KeyError"
        assert expected == exception["type"]
        assert "exc_info" not in data["attributes"]  # type: ignore[operator]

    def test_rendered_exception_text(self) -> None:
        """An ``exception`` string (``format_exc_info``) gives type and message."""
        text = "Traceback (most recent call last):\n  File ...\nValueError: bad\n"
        exception = encode_structlog_event({"event": "x", "exception": text})[
            "exception"
        ]
        assert {
            "type": "ValueError",
            "message": "bad",
            "stacktrace": text.rstrip("\n"),
        } == exception

    def test_dict_tracebacks(self) -> None:
        """``dict_tracebacks`` output gives type, message and a traceback text."""
        import structlog

        try:
            fail(ValueError("bad"))
        except ValueError:
            ed = structlog.processors.dict_tracebacks(
                None, "error", {"event": "x", "exc_info": True}
            )
        exception = encode_structlog_event(ed)["exception"]
        assert isinstance(exception, dict)
        expected = ("ValueError", "bad")
        assert expected == (exception["type"], exception["message"])
        assert "in fail" in exception["stacktrace"]

    def test_record_supplies_source(self) -> None:
        """The carrying stdlib record supplies source, process, thread and logger."""
        record = make_record()
        data = encode_structlog_event({"event": "x"}, record=record)
        expected = "app.module"
        assert expected == data["logger"]
        expected = 42
        assert expected == data["source"]["line"]
        assert int(record.created * 1e9) == data["timeUnixNano"]

    def test_stack(self) -> None:
        """``stack`` (``StackInfoRenderer``) is shipped as ``stack``."""
        expected = "s"
        assert expected == encode_structlog_event({"event": "x", "stack": "s"})["stack"]


class TestEstimateSize:
    """``estimate_size``."""

    def test_grows_with_content(self) -> None:
        """A longer message, a traceback and more attributes mean a larger estimate."""
        small = estimate_size(encode_log_record(make_record()))
        large = estimate_size(
            encode_log_record(
                make_record("x" * 1000, None, extra={"a": 1}, exc_info=raised())
            )
        )
        assert small < large
        assert small >= len(json.dumps(wire(encode_log_record(make_record())))) // 2

    @pytest.mark.parametrize(
        ("event", "with_record", "exc"),
        [
            ({"event": "request done", "user": "ann"}, False, False),
            ({"event": "r", **{f"k{n}": n for n in range(12)}}, False, False),
            ({"event": "x" * 4000}, False, False),
            ({"event": "request done", "user": "ann"}, True, False),
            ({"event": "failed"}, False, True),
        ],
    )
    def test_covers_the_memory_a_queued_structlog_event_holds(
        self, event: dict[str, Any], with_record: bool, exc: bool
    ) -> None:
        """The estimate is at least the tracemalloc-measured memory, not far above."""
        import tracemalloc

        from cse_bridge.engine import EventItem

        count = 2000
        kept: list[EventItem] = []
        kept_append = kept.append
        error = raised() if exc else None
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(count):
                event_dict = {**event, "event": f"{event['event']} {index}"}
                if error is not None:
                    event_dict["exc_info"] = error
                record = make_record() if with_record else None
                data = encode_structlog_event(
                    event_dict, method_name="info", record=record
                )
                kept_append(EventItem("log.info", data, estimate_size(data)))
                del event_dict, record, data
            real = (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
        hint = kept[-1].size_hint
        assert real <= hint <= real * 1.6, (real, hint)


class TestRoundTrip:
    """encode -> JSON -> decode gives back what a record needs."""

    @pytest.mark.parametrize(
        "kwargs",
        [
            {},
            {"extra": {"user": "ann", "n": 3}},
            {"exc_info": "raised"},
            {"sinfo": "Stack (most recent call last):\n  File x"},
            {"level": 25},
        ],
        ids=["plain", "extras", "exception", "stack", "custom-level"],
    )
    def test_record_round_trip(self, kwargs: dict[str, Any]) -> None:
        """Level, logger, message, time, source, traceback and attributes survive."""
        if kwargs.get("exc_info") == "raised":
            kwargs["exc_info"] = raised()
        original = make_record(**kwargs)
        data = wire(encode_log_record(original, resource={"service.name": "svc"}))
        decoded = decode_log_data(data)
        rebuilt = decode_log_record(data, logger_prefix="sandbox.")
        assert original.getMessage() == rebuilt.getMessage() == decoded.message
        assert (original.levelno, original.levelname) == (
            rebuilt.levelno,
            rebuilt.levelname,
        )
        expected = "sandbox.app.module"
        assert expected == rebuilt.name
        assert original.created == pytest.approx(rebuilt.created, abs=1e-6)
        assert int(original.msecs) == int(rebuilt.msecs)
        assert (
            original.pathname,
            original.lineno,
            original.funcName,
            original.module,
        ) == (rebuilt.pathname, rebuilt.lineno, rebuilt.funcName, rebuilt.module)
        assert (original.process, original.processName) == (
            rebuilt.process,
            rebuilt.processName,
        )
        assert (original.thread, original.threadName) == (
            rebuilt.thread,
            rebuilt.threadName,
        )
        assert original.stack_info == rebuilt.stack_info
        expected_text = (
            logging.Formatter().formatException(original.exc_info)
            if original.exc_info
            else None
        )
        assert expected_text == rebuilt.exc_text
        for key, value in (kwargs.get("extra") or {}).items():
            assert value == getattr(rebuilt, key)
        expected = {"service.name": "svc"}
        assert expected == decoded.resource
        # Re-encoding the rebuilt record gives the same data (the name aside).
        again = wire(encode_log_record(rebuilt, resource={"service.name": "svc"}))
        assert {**data, "logger": "sandbox.app.module"} == again

    def test_rebuilt_record_formats(self) -> None:
        """A stdlib Formatter renders a rebuilt record, traceback included."""
        data = wire(encode_log_record(make_record(exc_info=raised())))
        text = logging.Formatter("%(levelname)s %(name)s %(message)s").format(
            decode_log_record(data)
        )
        assert text.startswith("WARNING app.module hello world\nTraceback")

    @pytest.mark.parametrize(
        ("prefix", "expected"),
        [("sandbox.", "sandbox"), ("sandbox", "sandbox"), ("", "root")],
    )
    def test_root_logger_gets_the_bare_prefix(self, prefix: str, expected: str) -> None:
        """A record without a logger name is named by the prefix, no trailing dot."""
        record = decode_log_record({"message": "m", "logger": ""}, logger_prefix=prefix)
        assert expected == record.name

    def test_trace_ids_become_otel_attributes(self) -> None:
        """Trace ids are restored as ``otelTraceID``/``otelSpanID``."""
        record = decode_log_record(
            {"message": "m", "traceId": "a" * 32, "spanId": "b" * 16}
        )
        expected = ("a" * 32, "b" * 16)
        assert expected == (record.otelTraceID, record.otelSpanID)

    def test_garbage_decodes_to_defaults(self) -> None:
        """Mistyped fields fall back to defaults instead of raising."""
        decoded = decode_log_data(
            {
                "message": 5,
                "level": 3,
                "levelno": True,
                "source": "x",
                "attributes": [1],
            }
        )
        expected = ("5", "INFO", logging.INFO, 0, {})
        assert expected == (
            decoded.message,
            decoded.level,
            decoded.levelno,
            decoded.source_line,
            decoded.attributes,
        )

    def test_levelno_from_level_name(self) -> None:
        """A missing levelno is looked up from the level name."""
        expected = logging.ERROR
        assert expected == decode_log_data({"level": "error"}).levelno

    def test_standard_names_do_not_shadow(self) -> None:
        """An attribute named like a standard field does not overwrite it."""
        record = decode_log_record(
            {"message": "m", "attributes": {"msg": "evil", "k": 1}}
        )
        expected = ("m", 1)
        assert expected == (record.msg, record.k)


class TestSnapshotLogRecord:
    """``snapshot_log_record`` and ``LogRecordData``."""

    def test_same_data_as_encode(self) -> None:
        """The deferred mapping reads exactly like ``encode_log_record``'s dict."""
        record = make_record(extra={"user": "ann"}, exc_info=raised())
        snapshot = snapshot_log_record(record, resource={"service.name": "s"})
        assert encode_log_record(record, resource={"service.name": "s"}) == dict(
            snapshot
        )

    def test_later_record_changes_do_not_leak(self) -> None:
        """Attributes added to the record after the snapshot are not shipped."""
        record = make_record(extra={"user": "ann"})
        snapshot = snapshot_log_record(record)
        record.added_later = 1
        record.user = "bob"
        expected = {"user": "ann"}
        assert expected == snapshot["attributes"]

    def test_engine_encodes_it(self) -> None:
        """The engine's encoder writes the mapping as the event's data."""
        from cse_bridge.engine import EventItem, encode_item

        snapshot = snapshot_log_record(make_record(extra={"raw": b"x"}))
        body = json.loads(encode_item(EventItem("log.warning", snapshot, 1)).body)
        expected = {"raw": "b'x'"}
        assert expected == body["data"]["attributes"]
        assert "hello world" == body["data"]["message"]

    def test_size_hint_counts_message_extras_and_traceback(self) -> None:
        """The size hint grows with the message, the extras and the traceback."""
        plain = snapshot_log_record(make_record()).size_hint
        extras = snapshot_log_record(make_record(extra={"a": 1})).size_hint
        failed = snapshot_log_record(make_record(exc_info=raised())).size_hint
        assert plain < extras
        assert plain < failed

    @pytest.mark.parametrize("layout", ["as-left", "shared-keys", "keys-exhausted"])
    @pytest.mark.parametrize(
        ("msg", "extra", "exc"),
        [
            ("request %s done", None, False),
            ("request %s done", {"user": "ann", "path": "/api/items"}, False),
            ("long %s " + "x" * 4000, None, False),
            ("r %s", {f"k{n}": n for n in range(12)}, False),
            ("failed %s", {"user": "ann"}, True),
        ],
    )
    def test_size_hint_covers_the_memory_a_queued_snapshot_holds(
        self, msg: str, extra: dict[str, Any] | None, exc: bool, layout: str
    ) -> None:
        """
        The hint is at least the tracemalloc-measured memory, and not far above.

        The copy of a record's dict costs 250 B to 1.6 KB depending on its layout,
        which CPython picks from the attribute names earlier records of the class got
        (and the version), so each case runs on LogRecord as the earlier tests left it,
        on a fresh subclass (shared keys with room) and on a subclass whose shared
        keys are used up.
        """
        import tracemalloc

        from cse_bridge.engine import EventItem

        record_class: type[logging.LogRecord] = logging.LogRecord
        if layout != "as-left":
            record_class = type("FreshRecord", (logging.LogRecord,), {})
        if layout == "keys-exhausted":
            for index in range(40):  # more names than a shared-keys table holds
                setattr(record_class("", 0, "", 0, "", None, None), f"n{index}", 0)
        count = 2000
        kept: list[EventItem] = []
        kept_append = kept.append
        error = raised() if exc else None
        factory = logging.getLogRecordFactory()
        logging.setLogRecordFactory(record_class)
        tracemalloc.start()
        try:
            before = tracemalloc.get_traced_memory()[0]
            for index in range(count):
                record = make_record(
                    msg, (index,), extra=dict(extra or {}), exc_info=error
                )
                snapshot = snapshot_log_record(record)
                kept_append(EventItem("log.info", snapshot, snapshot.size_hint))
                del record, snapshot
            real = (tracemalloc.get_traced_memory()[0] - before) / count
        finally:
            tracemalloc.stop()
            logging.setLogRecordFactory(factory)
        hint = kept[-1].size_hint
        assert real <= hint <= real * 1.6, (real, hint)
