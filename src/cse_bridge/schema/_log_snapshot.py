"""
The application-thread snapshot of a ``logging.LogRecord``.

See docs/protocol.md#protocol-log-records.

``snapshot_log_record`` takes only what must be taken on the thread that logged; the
``log.<level>`` data is built from it when the engine's worker first reads it.
``logs`` is the public face.
"""

from __future__ import annotations

import itertools
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final

from ._lazy import LazyData, json_value
from ._log_encode import (
    STANDARD_RECORD_ATTRIBUTES,
    _exception_from_text,
    _safe_str,
    current_trace_ids,
    encode_exception,
)

__all__ = [
    "LogRecordData",
    "encode_log_record",
    "estimate_size",
    "snapshot_log_record",
]

# The dict's own memory, keys table and values included, without its GC header (in
# _BASE_SIZE): O(1), and 5x cheaper than sys.getsizeof, which looks the method up.
_dict_size: Final = dict.__sizeof__

# Memory a queued snapshot holds, measured with tracemalloc on CPython 3.10 to 3.13 (see
# tests/schema/test_logs.py): the engine's byte bound counts memory, not JSON bytes.
# The copy of the record's dict is not among these: its size depends on the layout
# CPython gave the record's dict (see ``size_hint``), so it is read off the copy.
_BASE_SIZE: Final = 620
"""
An ``EventItem``, its ``LogRecordData``, the message's header, the copy's GC header and
what the copy keeps alive of the record's own (times, pid, thread id, file names).
"""
_EXTRA_SIZE: Final = 32
"""Each ``extra=`` field's value, if small and its own (the entry is in the dict)."""
_EXCEPTION_SIZE: Final = _dict_size({"type": 0, "message": 0, "stacktrace": 0}) + 140
"""
The exception's dict (as this Python lays it out) and its three strings' headers and
type name: the traceback and the message count by their lengths.
"""
_TRACE_SIZE: Final = 208
"""The active span's ids: two hex strings (32 and 16 characters) and their tuple."""
_STANDARD_COUNT: Final = len(vars(logging.LogRecord("", 0, "", 0, "", None, None)))

_DATA_SIZE: Final = 300
"""
An ``EventItem`` around a data dict, the GC headers of the dict and its attributes,
the message's header and the timestamp.
"""
_DICT_GUESS: Final = 640
"""A dict of ten or so entries, for a mapping that is not a dict."""
_RECORD_PARTS_SIZE: Final = (
    _dict_size({"file": 0, "line": 0, "function": 0, "module": 0})
    + 2 * _dict_size({"id": 0, "name": 0})
    + 240
)
"""
The ``source``, ``process`` and ``thread`` dicts, as this Python lays them out, with
their GC headers and the values of the record's own they keep (module name, ids).
"""


_WALK: Final = 256
"""Values one size walk visits at most: a record's cost stays bounded."""
_ENTRY: Final = 64
"""Bytes a container entry costs beyond its value (slot, hash, key)."""
_SMALL: Final = (int, float, bool, type(None))
"""Values whose size the per-field allowance (``_EXTRA_SIZE``) already covers."""


def _values_size(values: Iterable[object]) -> int:
    """
    Return the bytes *values* hold beyond the small allowance per field.

    A bounded walk, so that a 100 KB ``extra=`` value counts as 100 KB: string and
    bytes lengths, and ``_ENTRY`` per container entry, visiting at most ``_WALK``
    values (a larger container counts its entries, not what they hold). Runs on the
    producer's thread: nothing for small values, a few microseconds for large ones.
    """
    size = 0
    budget = _WALK
    stack = list(values)
    while stack and budget > 0:
        value = stack.pop()
        budget -= 1
        if isinstance(value, (str, bytes, bytearray)):
            size += len(value)
        elif isinstance(value, dict):
            size += _ENTRY * len(value)
            stack.extend(value.values())
        elif isinstance(value, (list, tuple, set, frozenset)):
            size += _ENTRY // 8 * len(value)
            stack.extend(value)
    return size


def _extras_size(snapshot: dict[str, object]) -> int:
    """``_values_size`` of the ``extra=`` fields, set after the standard attributes."""
    size = 0
    for value in itertools.islice(snapshot.values(), _STANDARD_COUNT, None):
        kind = type(value)
        if kind is str:
            size += len(value)  # type: ignore[arg-type]  # kind checked
        elif kind not in _SMALL:
            size += _values_size((value,))
    return size


class LogRecordData(LazyData):
    """
    The ``data`` of a ``log.<level>`` event, built from a record snapshot when read.

    ``snapshot_log_record`` makes it on the logging thread from what must be taken
    there (the message, a shallow copy of the record's attributes, the active span,
    the traceback); the mapping itself is built on first access, on the engine's
    worker. Read it like a dict; it does not change once built. Thread-safe.
    """

    __slots__ = ("_exception", "_message", "_resource", "_snapshot", "_trace")

    def __init__(
        self,
        snapshot: dict[str, object],
        message: str,
        *,
        resource: Mapping[str, object],
        exception: dict[str, str] | None,
        trace: tuple[str, str] | None,
    ) -> None:
        self._snapshot, self._message, self._resource = snapshot, message, resource
        self._exception, self._trace = exception, trace
        self._data: dict[str, object] | None = None

    @property
    def size_hint(self) -> int:
        """
        The memory the queued snapshot holds, in bytes, for the queue's byte bound.

        Cheap: a fixed overhead, the size of the copied attribute dict and the lengths
        of the strings that vary. It errs on the high side so the bound holds real
        memory (the JSON is about half of it).
        """
        # The copy of a record's dict costs 250 B to 1.6 KB depending on the layout
        # CPython gave that record's dict (split, sharing its keys with every
        # LogRecord, or combined, cloned table and all), which depends on the Python
        # version and on the attribute names set on earlier records: ``__sizeof__``
        # reads the copy's own size in O(1) instead of guessing it.
        snapshot = self._snapshot
        size = _BASE_SIZE + _dict_size(snapshot) + len(self._message)
        extras = len(snapshot) - _STANDARD_COUNT
        if extras > 0:
            size += _EXTRA_SIZE * extras + _extras_size(snapshot)
        if self._trace is not None:
            size += _TRACE_SIZE
        exception = self._exception
        if exception is not None:
            size += (
                _EXCEPTION_SIZE
                + len(exception["stacktrace"])
                + len(exception["message"])
            )
        return size

    def _build(self) -> dict[str, object]:
        return _build_log_data(
            self._snapshot, self._message, self._resource, self._exception, self._trace
        )

    def build_json(self, encode: Callable[[object], str]) -> str:
        """
        Return the JSON text of ``build()``'s dict, written straight from the snapshot.

        The engine's per-record step: no intermediate dicts; strings, ints and
        ``None`` are written here, every other value (and the attributes, exception
        and resource) by *encode* (the engine's JSON encoder), which raises for what
        it cannot write so the caller can fall back. The same JSON content as
        ``encode(build())``.
        """
        data = self._data
        if data is not None:  # already built (and readable by anyone): write that
            return encode(data)
        return _log_data_json(
            self._snapshot,
            self._message,
            self._resource,
            self._exception,
            self._trace,
            encode=encode,
        )


def _build_log_data(
    attrs: Mapping[str, object],
    message: str,
    resource: Mapping[str, object],
    exception: dict[str, str] | None,
    trace: tuple[str, str] | None,
) -> dict[str, object]:
    created_ns, created = attrs.get("created_ns"), attrs.get("created")
    if not isinstance(created_ns, int):
        created_ns = int(created * 1e9) if isinstance(created, (int, float)) else 0
    data: dict[str, object] = {
        "message": message,
        "level": attrs.get("levelname"),
        "levelno": attrs.get("levelno"),
        "logger": attrs.get("name"),
        "timeUnixNano": created_ns,
        "source": {
            "file": attrs.get("pathname"),
            "line": attrs.get("lineno"),
            "function": attrs.get("funcName"),
            "module": attrs.get("module"),
        },
        "process": {"pid": attrs.get("process"), "name": attrs.get("processName")},
        "thread": {"id": attrs.get("thread"), "name": attrs.get("threadName")},
    }
    if exception is not None:
        data["exception"] = exception
    stack = attrs.get("stack_info")
    if stack:
        data["stack"] = stack
    if trace is not None:
        data["traceId"], data["spanId"] = trace
    data["attributes"] = {
        key: value
        for key, value in attrs.items()
        if key not in STANDARD_RECORD_ATTRIBUTES
    }
    data["resource"] = resource
    return data


_SITE_CACHE_SIZE: Final = 1024
"""Call sites whose JSON pieces ``_site_json`` keeps (cleared when full)."""
_sites: dict[tuple[object, ...], tuple[str, str]] = {}
"""
(level, logger, source, process, thread fields, encoder) -> their JSON pieces: the
same for every record of one call site on one thread, so written once, not per record.
"""


def _site_json(
    get: Callable[[str], object], encode: Callable[[object], str]
) -> tuple[str, str]:
    """
    The JSON of a record's call-site fields: ``,"level"...,"logger":..`` and
    ``,"source":{..},"process":{..},"thread":{..}``, reused while they repeat.
    """
    levelno, lineno = get("levelno"), get("lineno")
    process, thread = get("process"), get("thread")
    key = (
        get("levelname"),
        levelno,
        get("name"),
        get("pathname"),
        lineno,
        get("funcName"),
        get("module"),
        process,
        get("processName"),
        thread,
        get("threadName"),
        encode,
    )
    # Only ints (or None) where numbers go: 1, 1.0 and True are equal keys but not
    # equal JSON. Anything unhashable is written afresh, never cached.
    cacheable = (
        type(levelno) is int
        and type(lineno) is int
        and (process is None or type(process) is int)
        and (thread is None or type(thread) is int)
    )
    if cacheable:
        try:
            cached = _sites.get(key)
        except TypeError:  # an unhashable value where a string belongs
            cacheable = False
        else:
            if cached is not None:
                return cached
    (level, _, logger, path, _, function, module, _, process_name, _, thread_name) = (
        key[:-1]
    )
    pieces = (
        f',"level":{json_value(level, encode)}'
        f',"levelno":{json_value(levelno, encode)}'
        f',"logger":{json_value(logger, encode)}',
        f',"source":{{"file":{json_value(path, encode)}'
        f',"line":{json_value(lineno, encode)}'
        f',"function":{json_value(function, encode)}'
        f',"module":{json_value(module, encode)}}}'
        f',"process":{{"pid":{json_value(process, encode)}'
        f',"name":{json_value(process_name, encode)}}}'
        f',"thread":{{"id":{json_value(thread, encode)}'
        f',"name":{json_value(thread_name, encode)}}}',
    )
    if cacheable:
        if len(_sites) >= _SITE_CACHE_SIZE:
            _sites.clear()
        _sites[key] = pieces
    return pieces


def _log_data_json(
    attrs: Mapping[str, object],
    message: str,
    resource: Mapping[str, object],
    exception: dict[str, str] | None,
    trace: tuple[str, str] | None,
    *,
    encode: Callable[[object], str],
) -> str:
    # Mirrors _build_log_data key for key (a test holds the two to the same content).
    get = attrs.get
    created_ns, created = get("created_ns"), get("created")
    if not isinstance(created_ns, int):
        created_ns = int(created * 1e9) if isinstance(created, (int, float)) else 0
    level, site = _site_json(get, encode)
    text = (
        f'{{"message":{json_value(message, encode)}{level}'
        f',"timeUnixNano":{json_value(created_ns, encode)}{site}'
    )
    if exception is not None:
        text += ',"exception":' + encode(exception)
    stack = get("stack_info")
    if stack:
        text += ',"stack":' + json_value(stack, encode)
    if trace is not None:
        trace_id, span_id = trace
        text += (
            f',"traceId":{json_value(trace_id, encode)}'
            f',"spanId":{json_value(span_id, encode)}'
        )
    if attrs.keys() <= STANDARD_RECORD_ATTRIBUTES:
        attributes = "{}"
    else:
        attributes = encode(
            {
                key: value
                for key, value in attrs.items()
                if key not in STANDARD_RECORD_ATTRIBUTES
            }
        )
    return f'{text},"attributes":{attributes},"resource":{encode(resource)}}}'


def snapshot_log_record(
    record: logging.LogRecord,
    *,
    resource: Mapping[str, object] | None = None,
    message: str | None = None,
) -> LogRecordData:
    """
    Take what the ``log.<level>`` event of *record* needs, on the thread that logged.

    Applies the args to the message, copies the record's attributes (so ``extra=``
    fields are a shallow copy), resolves the active span and formats the traceback
    now; everything else waits until the data is read. Costs about a microsecond
    without an exception.

    Args:
        record: The record to encode.
        resource: The resource attributes (``service.name``, ...), shared, not copied.
        message: The message to ship instead of ``record.getMessage()`` (a formatter's
            output).
    """
    exception = None
    exc_info = record.exc_info
    # The cheapest copy (of a split dict, only its values); its size varies with the
    # layout of the record's dict, so size_hint reads it off the copy.
    attrs = record.__dict__.copy()
    # The message is formatted now, so the args are not needed later; nor is the
    # traceback once its text is taken. Not keeping them keeps the application's
    # objects (and a traceback's frames) out of the queue and its memory bound.
    attrs["args"] = None
    if exc_info:
        attrs["exc_info"] = None
        if exc_info[0] is not None:
            exception = encode_exception(exc_info, text=record.exc_text)
    if exception is None and record.exc_text:
        # a rebuilt or forwarded record: the text is all there is
        exception = _exception_from_text(record.exc_text)
    return LogRecordData(
        attrs,
        record.getMessage() if message is None else message,
        resource=resource if resource is not None else {},
        exception=exception,
        trace=current_trace_ids(),
    )


def encode_log_record(
    record: logging.LogRecord,
    *,
    resource: Mapping[str, object] | None = None,
    message: str | None = None,
) -> dict[str, object]:
    """
    Return the ``data`` of the ``log.<level>`` event for *record*.

    See docs/protocol.md#protocol-log-records.

    Call it on the thread that logged: it applies the args to the message now and
    resolves the active span. Values are not made JSON-safe here; nested values of
    ``extra=`` fields are shared, the top level is copied. ``snapshot_log_record`` is
    the same, with the building deferred.

    Args:
        record: The record to encode.
        resource: The resource attributes (``service.name``, ...), shared, not copied.
        message: The message to ship instead of ``record.getMessage()`` (a formatter's
            output).
    """
    return snapshot_log_record(record, resource=resource, message=message).build()


def estimate_size(data: Mapping[str, object]) -> int:
    """
    Return a cheap guess of the memory *data* holds in the queue, in bytes.

    For the dicts the structlog and OpenTelemetry encoders build: their own size
    (O(1), as this Python lays them out), the message, the traceback, the active
    span's ids and the attributes' values (a bounded walk); calibrated like
    ``LogRecordData.size_hint``.
    """
    size = _DATA_SIZE + len(_safe_str(data.get("message", "")))
    size += _dict_size(data) if isinstance(data, dict) else _DICT_GUESS
    if "source" in data:
        size += _RECORD_PARTS_SIZE
    if "traceId" in data:
        size += _TRACE_SIZE
    exception = data.get("exception")
    if isinstance(exception, Mapping):
        size += (
            _EXCEPTION_SIZE
            + len(exception.get("stacktrace", ""))
            + len(exception.get("message", ""))
        )
    attributes = data.get("attributes")
    if isinstance(attributes, dict):
        size += _dict_size(attributes) + _EXTRA_SIZE * len(attributes)
    elif isinstance(attributes, Mapping):
        size += _DICT_GUESS + 64 * len(attributes)
    if isinstance(attributes, Mapping):
        size += _values_size(attributes.values())
    return size
