"""
Log records as events: ``logging.LogRecord`` and structlog event dicts.

See docs/protocol.md#protocol-log-records.

Encoders run on the application thread, so they are cheap and never format more than
they must: they take a snapshot (the message with its args applied, a shallow copy of
the ``extra=`` fields) whose values the engine's worker makes JSON-safe later. Decoders
run in the subscriber and accept whatever JSON arrived, falling back to defaults.

The codecs live in private modules, re-exported here: ``_log_encode`` (event types,
trace ids, exceptions), ``_log_snapshot`` (``LogRecord`` snapshot), ``_log_structlog``
(structlog event dicts) and ``_log_decode``.
"""

from __future__ import annotations

from ._log_decode import DecodedLog, decode_log_data, decode_log_record
from ._log_encode import (
    LOG_EVENT_TYPES,
    STANDARD_RECORD_ATTRIBUTES,
    ExcInfo,
    current_trace_ids,
    encode_exception,
    log_event_type,
    resolve_exc_info,
)
from ._log_snapshot import (
    LogRecordData,
    encode_log_record,
    estimate_size,
    snapshot_log_record,
)
from ._log_structlog import encode_structlog_event

__all__ = [
    "LOG_EVENT_TYPES",
    "STANDARD_RECORD_ATTRIBUTES",
    "DecodedLog",
    "ExcInfo",
    "LogRecordData",
    "current_trace_ids",
    "decode_log_data",
    "decode_log_record",
    "encode_exception",
    "encode_log_record",
    "encode_structlog_event",
    "estimate_size",
    "log_event_type",
    "resolve_exc_info",
    "snapshot_log_record",
]
